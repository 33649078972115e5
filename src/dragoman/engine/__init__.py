"""The embedded model's engine: its own process, continuous batching, and its supervisor."""
