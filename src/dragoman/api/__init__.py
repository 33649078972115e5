"""The HTTP layer: routes parse and answer; the service does the work."""
