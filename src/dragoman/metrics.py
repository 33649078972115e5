"""Prometheus metrics: the series, the small functions that feed them, and the exposition.

Labels stay few and bounded: `endpoint` is a route's path template (never a raw path with an
id in it), `code` an HTTP status. With several workers `dragoman serve` points
`PROMETHEUS_MULTIPROC_DIR` at a fresh directory before any worker starts, each worker writes its
values there, and `/metrics` in any of them adds up all of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "dragoman_requests_total", "HTTP requests answered, by route and status.", ["endpoint", "code"]
)
FIRST_TOKEN = Histogram(
    "dragoman_first_token_seconds",
    "Time from a translation's start to its first piece of text.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ACTIVE_STREAMS = Gauge(
    "dragoman_active_streams", "Translations being answered now.", multiprocess_mode="livesum"
)
PIECES = Counter("dragoman_pieces_total", "Pieces of translated text sent.")
QUEUE_DEPTH = Gauge(
    "dragoman_queue_depth",
    "Requests waiting for the embedded engine.",
    multiprocess_mode="livesum",
)
ENGINE_RESTARTS = Counter(
    "dragoman_engine_restarts_total", "Times the embedded engine's process was restarted."
)
LIVE_LISTENERS = Gauge(
    "dragoman_live_listeners",
    "Listeners of live sessions now, by language.",
    ["lang"],
    multiprocess_mode="livesum",
)
LIVE_DELIVERY = Histogram(
    "dragoman_live_delivery_seconds",
    "Time from a piece leaving the upstream to its write to a live listener.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10),
)
LIVE_TRANSLATIONS = Counter(
    "dragoman_live_translations_total",
    "Translations of live segments (each segment once per language), by outcome.",
    ["outcome"],
)


def request_answered(endpoint: str, status: int) -> None:
    REQUESTS.labels(endpoint, str(status)).inc()


def first_token(seconds: float) -> None:
    FIRST_TOKEN.observe(seconds)


def pieces_sent(count: int) -> None:
    PIECES.inc(count)


def stream_opened() -> None:
    ACTIVE_STREAMS.inc()


def stream_closed() -> None:
    ACTIVE_STREAMS.dec()


def set_queue_depth(depth: int) -> None:
    """For the embedded engine: how many requests wait for it now."""
    QUEUE_DEPTH.set(depth)


def engine_restarted() -> None:
    """For the embedded engine: its process was started again."""
    ENGINE_RESTARTS.inc()


def live_listener_joined(lang: str) -> None:
    LIVE_LISTENERS.labels(lang).inc()


def live_listener_left(lang: str) -> None:
    LIVE_LISTENERS.labels(lang).dec()


def live_delivered(seconds: float) -> None:
    LIVE_DELIVERY.observe(seconds)


def live_translated(outcome: str) -> None:
    """A live segment's translation ended: `succeeded`, `failed` or `cancelled`."""
    LIVE_TRANSLATIONS.labels(outcome).inc()


def exposition() -> tuple[bytes, str]:
    """The text format of every series, of all workers when there are several."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_exiting() -> None:
    """A worker going away: its live gauges stop counting in the sum."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


# Upstreams (providers/upstreams/): per upstream, by its configured name.

UPSTREAM_REQUESTS = Counter(
    "dragoman_upstream_requests_total",
    "Attempts sent to each upstream, by outcome: answered (its first piece came), error, "
    "rate_limited, timeout (no first piece in time), refused (the request's own fault), "
    "broke_off (failed after its first piece), cancelled (ended by the client or the server "
    "before the first piece).",
    ["upstream", "outcome"],
)
UPSTREAM_FALLBACKS = Counter(
    "dragoman_upstream_fallbacks_total",
    "Requests that moved on from this upstream to another before their first piece.",
    ["upstream"],
)
UPSTREAM_BREAKER_OPEN = Gauge(
    "dragoman_upstream_breaker_open",
    "1 from the moment an upstream's breaker opens until a trial request closes it.",
    ["upstream"],
    multiprocess_mode="livemax",
)
UPSTREAM_RETRIES_REFUSED = Counter(
    "dragoman_upstream_retries_refused_total",
    "Retries the retry budget refused: the request ended with its last attempt's error.",
)


def upstream_attempt(upstream: str, outcome: str) -> None:
    UPSTREAM_REQUESTS.labels(upstream, outcome).inc()


def upstream_answered(upstream: str) -> Callable[[], None]:
    """The counter of `upstream`'s answered attempts, found once: one call per request."""
    return UPSTREAM_REQUESTS.labels(upstream, "answered").inc


def upstream_fallback(upstream: str) -> None:
    UPSTREAM_FALLBACKS.labels(upstream).inc()


def upstream_breaker(upstream: str, is_open: bool) -> None:
    UPSTREAM_BREAKER_OPEN.labels(upstream).set(1 if is_open else 0)


def upstream_retry_refused() -> None:
    UPSTREAM_RETRIES_REFUSED.inc()
