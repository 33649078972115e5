"""Several upstreams (fake OpenAI-compatible servers on 127.0.0.1) behind one dragoman:
failover before the first byte, breakers, health checks, weights, the retry budget, and what
records, `/readyz` and `/metrics` say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerThread
from tests.fake_openai import FakeOpenAI
from tests.helpers import openai, upstreams_file, v1_events, wait_until

BODY = {"text": "one two", "target_lang": "ko", "stream": False}


@pytest.fixture
def fakes() -> Iterator[Callable[..., FakeOpenAI]]:
    """Fake upstreams of this test's own: `make(fail=None, model="fake-model")`."""
    started: list[FakeOpenAI] = []

    def make(fail: str | None = None, model: str = "fake-model") -> FakeOpenAI:
        fake = FakeOpenAI().start()
        fake.fail = fail
        fake.models = [model]
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


@pytest.fixture
def routed(
    make_server: Callable[..., ServerThread], tmp_path: Path
) -> Iterator[Callable[..., httpx.Client]]:
    """A dragoman on these upstreams: `routed([upstream, ...], **file_settings)` → a client."""
    clients: list[httpx.Client] = []

    def start(upstreams: list[dict[str, Any]], **settings: Any) -> httpx.Client:
        server = make_server(upstreams=upstreams_file(tmp_path, upstreams, **settings))
        client = httpx.Client(base_url=server.url, timeout=30)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()


def _metric(client: httpx.Client, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize(
    ("fail", "code"),
    [
        ("refuse", "upstream_error"),
        ("rate_limit", "upstream_rate_limited"),
        ("close", "upstream_error"),
        ("errevent", "upstream_error"),
        ("hang", "upstream_timeout"),
        ("stopped", "upstream_error"),
    ],
)
def test_a_failing_upstream_is_passed_over_before_the_first_byte(
    routed: Callable[..., httpx.Client],
    fakes: Callable[..., FakeOpenAI],
    fail: str,
    code: str,
) -> None:
    bad = fakes(None if fail == "stopped" else fail, model="bad-model")
    good = fakes(model="good-model")
    client = routed(
        [openai("bad", bad, model="bad-model"), openai("good", good, model="good-model")],
        # Short only where the deadline is the subject: elsewhere a busy machine's slow
        # answer would be taken for a silent upstream.
        first_token_timeout_s=0.5 if fail == "hang" else 10,
    )
    if fail == "stopped":  # healthy at the start, gone now: its connection is refused
        assert wait_until(lambda: client.get("/readyz").status_code == 200)
        bad.stop()
    response, events = v1_events(client, {"text": "one two", "target_lang": "ko"})
    assert response.status_code == 200
    assert [e.event for e in events] == ["start", "delta", "delta", "delta", "done"]
    # The start event and the record name the upstream that answered, with its model.
    assert json.loads(events[0].data)["model"] == "good-model"
    record = json.loads(events[-1].data)
    assert record["translation"] == "T:one two"
    assert (record["upstream"], record["provider"], record["model"]) == (
        "good",
        "openai",
        "good-model",
    )
    [attempt] = record["attempts"]
    assert attempt["upstream"] == "bad" and attempt["error"]["code"] == code
    assert isinstance(attempt["ms"], int) and attempt["ms"] >= 0
    stored = client.get(f"/v1/translations/{record['id']}").json()
    assert stored == record
    assert bad.chat_requests == (0 if fail == "stopped" else 1)
    assert good.chat_requests == 1


def test_the_first_upstream_answering_leaves_attempts_empty(
    routed: Callable[..., httpx.Client], fakes: Callable[..., FakeOpenAI]
) -> None:
    first, second = fakes(), fakes()
    client = routed([openai("first", first), openai("second", second, pool="other")])
    record = client.post("/v1/translations", json=BODY).json()
    assert record["upstream"] == "first" and record["attempts"] == []
    assert second.chat_requests == 0


def test_after_the_first_byte_the_failure_stays_in_the_stream(
    routed: Callable[..., httpx.Client], fakes: Callable[..., FakeOpenAI]
) -> None:
    first, second = fakes(), fakes()
    client = routed([openai("first", first), openai("second", second, pool="other")])
    response, events = v1_events(client, {"text": "one two three [[drop:2]]", "target_lang": "ko"})
    assert response.status_code == 200
    assert [e.event for e in events] == ["start", "delta", "delta", "error"]
    assert second.chat_requests == 0  # no continuation elsewhere
    record = client.get(f"/v1/translations/{response.headers['x-translation-id']}").json()
    assert record["status"] == "failed" and record["translation"] == "T:one"
    assert record["upstream"] == "first" and record["attempts"] == []


def test_the_request_s_own_fault_is_not_tried_elsewhere(
    routed: Callable[..., httpx.Client], fakes: Callable[..., FakeOpenAI]
) -> None:
    first, second = fakes(), fakes()
    client = routed(
        [openai("first", first), openai("second", second, pool="other")], breaker_failures=1
    )
    response = client.post("/v1/translations", json={**BODY, "text": "x [[error:400]]"})
    assert response.status_code == 502
    assert response.json()["error"]["message"] == (
        "The translation model answered with status 400."
    )
    assert (first.chat_requests, second.chat_requests) == (1, 0)
    record = client.get(f"/v1/translations/{response.headers['x-translation-id']}").json()
    assert record["upstream"] is None
    assert [a["upstream"] for a in record["attempts"]] == ["first"]
    # No failure of the upstream: its breaker (1 failure opens it) stays closed.
    states = client.get("/readyz").json()["upstreams"]
    assert [(u["name"], u["state"]) for u in states] == [
        ("first", "healthy"),
        ("second", "healthy"),
    ]


def test_the_breaker_opens_then_a_trial_closes_it(
    routed: Callable[..., httpx.Client], fakes: Callable[..., FakeOpenAI]
) -> None:
    # Names of its own: the metrics of every server of the test process add up.
    flaky, good = fakes("refuse"), fakes()
    client = routed(
        [openai("flaky-b", flaky), openai("good-b", good, pool="fallback")],
        breaker_failures=3,
        breaker_cooldown_s=1,
        health_check_s=60,
    )
    for _ in range(10):
        assert client.post("/v1/translations", json=BODY).status_code == 200
    # Three failures opened its breaker: the seven requests after them went straight to good.
    assert flaky.chat_requests == 3 and good.chat_requests == 10
    ready = client.get("/readyz").json()
    assert ready["upstreams"] == [
        {"name": "flaky-b", "state": "open", "ready": True},  # its model list still answers
        {"name": "good-b", "state": "healthy", "ready": True},
    ]
    assert _metric(client, "dragoman_upstream_breaker_open", upstream="flaky-b") == 1
    assert (
        _metric(client, "dragoman_upstream_requests_total", upstream="flaky-b", outcome="error")
        == 3
    )
    assert (
        _metric(client, "dragoman_upstream_requests_total", upstream="good-b", outcome="answered")
        == 10
    )
    assert _metric(client, "dragoman_upstream_fallbacks_total", upstream="flaky-b") == 3

    # After the cool-down one trial request goes to it: it fails, the breaker opens again.
    assert wait_until(lambda: client.get("/readyz").json()["upstreams"][0]["state"] == "half_open")
    record = client.post("/v1/translations", json=BODY).json()
    assert record["upstream"] == "good-b" and [a["upstream"] for a in record["attempts"]] == [
        "flaky-b"
    ]
    assert flaky.chat_requests == 4
    assert client.get("/readyz").json()["upstreams"][0]["state"] == "open"

    # Mended: the next trial answers and closes it; requests share again.
    flaky.fail = None
    assert wait_until(lambda: client.get("/readyz").json()["upstreams"][0]["state"] == "half_open")
    record = client.post("/v1/translations", json=BODY).json()
    assert record["upstream"] == "flaky-b" and record["attempts"] == []
    assert client.get("/readyz").json()["upstreams"][0]["state"] == "healthy"
    assert _metric(client, "dragoman_upstream_breaker_open", upstream="flaky-b") == 0


def test_a_failed_health_check_opens_the_breaker_without_any_request(
    routed: Callable[..., httpx.Client], fakes: Callable[..., FakeOpenAI]
) -> None:
    down, good = fakes("down"), fakes()
    client = routed(
        [openai("down", down, model="fake-model"), openai("good", good, pool="fallback")],
        health_check_s=0.2,
    )
    assert wait_until(lambda: client.get("/readyz").json()["upstreams"][0]["state"] == "open")
    record = client.post("/v1/translations", json=BODY).json()
    assert record["upstream"] == "good" and record["attempts"] == []
    assert down.chat_requests == 0
    # Back: the next health check passes, and a health check opened it, so it is tried at once
    # (not after its 30 s cool-down); the trial answers and closes it.
    down.fail = None
    assert wait_until(lambda: client.get("/readyz").json()["upstreams"][0]["state"] == "half_open")
    record = client.post("/v1/translations", json=BODY).json()
    assert record["upstream"] == "down" and record["attempts"] == []
    assert client.get("/readyz").json()["upstreams"][0]["state"] == "healthy"


def test_every_upstream_open_is_a_fast_clear_error(
    routed: Callable[..., httpx.Client], fakes: Callable[..., FakeOpenAI]
) -> None:
    one, two = fakes("refuse"), fakes("refuse")
    client = routed(
        [openai("one", one), openai("two", two, pool="fallback")],
        breaker_failures=2,
        breaker_cooldown_s=60,
    )
    for _ in range(2):
        failed = client.post("/v1/translations", json=BODY)
        assert failed.status_code == 502
        record = client.get(f"/v1/translations/{failed.headers['x-translation-id']}").json()
        assert [a["upstream"] for a in record["attempts"]] == ["one", "two"]
    assert (one.chat_requests, two.chat_requests) == (2, 2)
    refused = client.post("/v1/translations", json=BODY)
    assert refused.status_code == 502
    assert refused.json()["error"] == {
        "code": "upstream_error",
        "message": "No upstream can take the request now (one: open, two: open); try again "
        "in 60 s.",
    }
    assert refused.headers["retry-after"] == "60"
    assert (one.chat_requests, two.chat_requests) == (2, 2)  # nobody was asked
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["error"]["message"] == (
        "No upstream is ready (one: its breaker is open; two: its breaker is open)."
    )


def test_the_retry_budget_keeps_an_outage_from_multiplying_requests(
    routed: Callable[..., httpx.Client], fakes: Callable[..., FakeOpenAI]
) -> None:
    one, two = fakes("refuse"), fakes("refuse")
    client = routed(
        [openai("one", one), openai("two", two, pool="fallback")],
        breaker_failures=1000,  # breakers out of the way: the budget alone
        retry_budget=0,
        retry_budget_min_per_s=0.3,  # 3 in the 10 s window
    )
    refused_before = _metric(client, "dragoman_upstream_retries_refused_total")
    statuses = [client.post("/v1/translations", json=BODY).status_code for _ in range(10)]
    assert statuses == [502] * 10
    # Ten requests, three retries: not twenty attempts.
    assert one.chat_requests + two.chat_requests == 13
    refused = _metric(client, "dragoman_upstream_retries_refused_total") - refused_before
    assert refused == 7


def test_requests_follow_the_weights(
    routed: Callable[..., httpx.Client], fakes: Callable[..., FakeOpenAI]
) -> None:
    heavy, light, spare = fakes(), fakes(), fakes()
    client = routed(
        [
            openai("heavy", heavy, pool="gpus", weight=3),
            openai("light", light, pool="gpus"),
            openai("spare", spare, pool="spare"),
        ]
    )
    for _ in range(40):
        assert client.post("/v1/translations", json=BODY).status_code == 200
    assert (heavy.chat_requests, light.chat_requests, spare.chat_requests) == (30, 10, 0)


def test_one_upstream_from_the_environment_is_named_after_its_provider(
    client: httpx.Client,
) -> None:
    record = client.post("/v1/translations", json=BODY).json()
    assert record["upstream"] == "openai" and record["attempts"] == []
    ready = client.get("/readyz").json()
    assert "upstreams" not in ready and ready["provider"] == "openai"
    failed = client.post("/v1/translations", json={**BODY, "text": "x [[error:500]]"})
    record = client.get(f"/v1/translations/{failed.headers['x-translation-id']}").json()
    assert record["upstream"] is None
    assert [(a["upstream"], a["error"]["code"]) for a in record["attempts"]] == [
        ("openai", "upstream_error")
    ]


def test_an_attempt_cut_by_the_overall_first_token_timeout_is_recorded(
    make_server: Callable[..., ServerThread],
    fakes: Callable[..., FakeOpenAI],
    tmp_path: Path,
) -> None:
    one, two = fakes("hang"), fakes("hang")
    path = upstreams_file(
        tmp_path,
        [openai("one", one), openai("two", two, pool="fallback")],
        first_token_timeout_s=0.6,
    )
    # Every attempt hangs: the job's own first-token timeout (1 s) ends the request during the
    # second attempt.
    server = make_server(upstreams=path, first_token_timeout_s=1)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/v1/translations", json=BODY)
        assert response.status_code == 504
        record = client.get(f"/v1/translations/{response.headers['x-translation-id']}").json()
    assert [(a["upstream"], a["error"]["code"]) for a in record["attempts"]] == [
        ("one", "upstream_timeout"),
        ("two", "upstream_timeout"),
    ]


def test_serve_stops_on_a_bad_upstreams_file_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.toml"
    path.write_text('[[upstream]]\nname = "gpu"\nkind = "vllm"\nbase_url = "http://x:1/v1"\n')
    result = subprocess.run(
        [sys.executable, "-m", "dragoman", "serve"],
        cwd=tmp_path,
        env={**os.environ, "DRAGOMAN_UPSTREAMS": str(path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f'dragoman: upstreams file {path}, line 3: upstream "gpu": kind: must be "openai" or '
        '"local", not "vllm".'
    )


def test_the_embedded_model_as_the_last_resort(
    make_server: Callable[..., ServerThread], fakes: Callable[..., FakeOpenAI], tmp_path: Path
) -> None:
    refusing, hosted = fakes("refuse"), fakes(model="hosted-model")
    path = upstreams_file(
        tmp_path,
        [
            openai("gpu", refusing),
            {"name": "embedded", "kind": "local"},
            openai("hosted", hosted, model="hosted-model"),
        ],
        # The embedded model's first piece may take long on a busy machine: no failover for it.
        first_token_timeout_s=100,
    )
    server = make_server(upstreams=path, local_threads=2, first_token_timeout_s=120)
    with httpx.Client(base_url=server.url, timeout=120) as client:
        # Ready as soon as one upstream is; the engine loads its model meanwhile.
        assert wait_until(lambda: client.get("/readyz").status_code == 200, seconds=120)

        def states() -> list[tuple[str, bool]]:
            return [(u["name"], u["ready"]) for u in client.get("/readyz").json()["upstreams"]]

        assert wait_until(lambda: ("embedded", True) in states(), seconds=120)
        assert states() == [("gpu", True), ("embedded", True), ("hosted", True)]
        ready = client.get("/readyz").json()
        assert "engine" in ready  # the embedded engine's process, as with DRAGOMAN_PROVIDER=local
        record = client.post(
            "/v1/translations",
            json={"text": "Thank you very much.", "target_lang": "ko", "stream": False},
        ).json()
        assert record["status"] == "succeeded" and record["translation"]
        assert (record["upstream"], record["provider"], record["model"]) == (
            "embedded",
            "local",
            "gemma-3-270m (Q4_K_M)",
        )
        assert record["source_lang"] == "en"  # detected first: the embedded model needs it
        assert [a["upstream"] for a in record["attempts"]] == ["gpu"]
        # A language the embedded model does not offer goes past it, to the next that does.
        record = client.post(
            "/v1/translations", json={"text": "Thank you.", "target_lang": "sw", "stream": False}
        ).json()
        assert record["upstream"] == "hosted" and record["model"] == "hosted-model"
        assert [a["upstream"] for a in record["attempts"]] == ["gpu"]
        assert hosted.chat_requests == 1
