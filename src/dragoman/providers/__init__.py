"""Providers turn a translation task into an async stream of text pieces."""
