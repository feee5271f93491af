"""One module per platform: its router, its error envelope and its URL prefix."""
