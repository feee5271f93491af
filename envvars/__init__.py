"""Shared core of envvars: per-platform rules, per-key diff and the /etc/environment format."""
