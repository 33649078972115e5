"""Whether requests need an API key.

`DRAGOMAN_AUTH=keys`: always. `off`: never. Unset: not on a loopback address (the single-user
local run stays zero-config), and `dragoman serve` refuses any other address. `serve` tells the
application where it is bound through `BOUND_LOOPBACK_ENV`; an application started another way
(uvicorn directly, tests) is taken to be on loopback unless that variable says otherwise.
"""

from __future__ import annotations

import ipaddress
import os

from dragoman.config import Settings

BOUND_LOOPBACK_ENV = "DRAGOMAN_BOUND_LOOPBACK"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def keys_required(settings: Settings) -> bool:
    if settings.auth is not None:
        return settings.auth == "keys"
    return os.environ.get(BOUND_LOOPBACK_ENV) == "0"


def serve_refusal(settings: Settings, host: str, workers: int) -> str | None:
    """Why `dragoman serve` must not start with these settings, or None."""
    if settings.auth is None and not is_loopback(host):
        return (
            f"serving on {host} (not a loopback address) needs DRAGOMAN_AUTH=keys, "
            "or DRAGOMAN_AUTH=off to serve without keys knowingly."
        )
    if workers > 1 and settings.auth == "keys" and settings.redis_url is None:
        return (
            f"{workers} workers with keys need DRAGOMAN_REDIS_URL: each worker would count "
            "a key's limits on its own."
        )
    return None
