"""dragoman: live machine translation streamed over Server-Sent Events."""

__version__ = "0.1.0"
