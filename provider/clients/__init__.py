"""One HTTP client per platform, on a shared retrying session."""
