"""Resumable translations: their events kept for replay, listeners, cancel requests."""
