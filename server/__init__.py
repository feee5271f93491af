"""The envvars reference server: the platforms' documented env-var APIs, on loopback."""
