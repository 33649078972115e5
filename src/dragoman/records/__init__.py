"""Translation records: one row per accepted request."""
