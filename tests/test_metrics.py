"""GET /metrics: the contract's series, route templates as labels, and its token."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerThread
from tests.helpers import v1_events, v1_text

SERIES = (
    "dragoman_requests",
    "dragoman_first_token_seconds",
    "dragoman_active_streams",
    "dragoman_pieces",
    "dragoman_queue_depth",
    "dragoman_engine_restarts",
)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def families(client: httpx.Client) -> set[str]:
    return {family.name for family in text_string_to_metric_families(client.get("/metrics").text)}


def scrape(
    client: httpx.Client, **kw: object
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **kw)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_series_move_with_translations(client: httpx.Client) -> None:
    assert families(client) >= set(SERIES)
    before = scrape(client)

    _, events = v1_events(client, {"text": "one two three", "target_lang": "ko"})
    assert v1_text(events)
    record_id = next(e for e in events if e.event == "start").json()["id"]
    assert client.get(f"/v1/translations/{record_id}").status_code == 200
    assert client.get("/v1/translations/nope").status_code == 404
    # A request is counted once its answer is sent: the last one may be a moment behind.
    one = "/v1/translations/{translation_id}"
    deadline = time.monotonic() + 10
    after = scrape(client)
    while (
        value(after, "dragoman_requests_total", endpoint=one, code="404")
        == value(before, "dragoman_requests_total", endpoint=one, code="404")
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
        after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("dragoman_requests_total", endpoint="/v1/translations", code="200") == 1
    # Route templates, not raw paths: an id never becomes a label value.
    assert delta("dragoman_requests_total", endpoint=one, code="200") == 1
    assert delta("dragoman_requests_total", endpoint=one, code="404") == 1
    assert not any(record_id in str(labels) for _, labels in after)
    assert delta("dragoman_first_token_seconds_count") == 1
    assert delta("dragoman_pieces_total") == 4  # "T:" and three words
    assert value(after, "dragoman_active_streams") == 0


def test_metrics_token(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(metrics_token="s3cret-token")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = client.get("/metrics", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
        scrape(client, headers={"Authorization": "Bearer s3cret-token"})


def test_metrics_has_its_own_token_when_keys_are_on(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(auth="keys", metrics_token="s3cret-token")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        scrape(client, headers={"Authorization": "Bearer s3cret-token"})
        assert client.get("/v1/translations").status_code == 401
