"""Partial text from a recogniser: guesses of the segment being spoken drafted and shown
stabilised (`revision`), the final translated once as the record, over real HTTP with the fake
upstream (which echoes the text as "T:" and its words)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from dragoman.live.stabilise import agreed, erased, masked, next_shown, shown_after
from tests.conftest import ServerThread
from tests.fake_openai import FakeOpenAI
from tests.helpers import wait_until
from tests.test_live import (  # the autouse fixture too: sessions closed after each test
    Listener,
    _close_sessions,  # noqa: F401
    _open,
    _say,
    _upstream_texts,
)

# What it checks does not depend on the database: CI's second pass leaves it out.
pytestmark = pytest.mark.once


def _guess(client: httpx.Client, session: dict[str, Any], text: str) -> httpx.Response:
    return _say(client, session, text, final=False)


def _revisions(listener: Listener, index: int = 0) -> list[str]:
    return [d["text"] for _, k, d in listener.events if k == "revision" and d["index"] == index]


def test_masking_and_keeping_the_prefix() -> None:
    assert masked("the city council met", "en", 2) == "the city"
    assert masked("the city", "en", 2) == ""
    assert masked("le  conseil municipal", "fr", 1) == "le  conseil"
    assert masked("市議会が開かれた", "ja", 1) == "市議会が開か"
    assert masked("anything", "en", 0) == "anything"
    # A draft that agrees with what was shown and says more is shown.
    assert next_shown("the city", "the city council met on", "en", 2, True) == "the city council"
    # One that would take back shown text waits (keep_prefix) or replaces it (without).
    assert next_shown("the city council", "a town board met on", "en", 2, True) is None
    assert next_shown("the city council", "a town board met on", "en", 2, False) == "a town board"
    # A guess that shrank shows nothing new.
    assert next_shown("the city council", "the city council", "en", 2, True) is None
    assert erased("the city council", "the city hall") == len("council")


def test_agreement_keeps_what_the_drafts_share() -> None:
    assert agreed("the city council met", "the city council meets today", "en") == (
        "the city council"
    )
    assert agreed("", "the city", "en") == ""
    assert agreed("le  conseil a", "le  conseil municipal", "fr") == "le  conseil"
    assert agreed("市議会が開かれた", "市議会が開く", "ja") == "市議会が開"
    # With agreement, the draft without its masked words counts as far as the drafts before
    # it agree with it, every one of them.
    assert next_shown("", "the city council meets today", "en", 1, True,
                      ["the city council met"]) == "the city council"  # fmt: skip
    assert next_shown("", "the city council meets today", "en", 3, True,
                      ["the city council met"]) == "the city"  # fmt: skip
    assert next_shown("", "the city council meets today", "en", 0, True,
                      ["the city", "the city council met"]) == "the city"  # fmt: skip
    assert next_shown("", "a town board", "en", 0, True, ["the city council"]) is None
    assert next_shown("the", "the town board", "en", 0, True, ["a town", "the town"]) is None


def test_agreement_waits_for_enough_drafts_and_looks_only_at_the_last_ones() -> None:
    drafts = ["a town board", "the city council met", "the city council meets today"]
    # Three must agree: nothing is shown before the third draft.
    assert shown_after("", drafts[:2], "en", 0, True, 3) is None
    # The third is compared with the two before it: the first shares no word with it.
    assert shown_after("", drafts, "en", 0, True, 3) is None
    # Two must agree: the oldest no longer counts.
    assert shown_after("", drafts, "en", 0, True, 2) == "the city council"
    # Without agreement (1 or 0) the newest alone decides, from the first draft on.
    assert shown_after("", drafts[:1], "en", 1, True, 1) == "a town"
    assert shown_after("", drafts, "en", 1, True, 0) == "the city council meets"


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(
        live_mask_words=1, live_retranslate_ms=0, live_keep_prefix=True, live_agreement=False
    )


def test_guesses_are_shown_without_their_last_word_then_the_final_replaces_them(
    server: ServerThread, fake: FakeOpenAI
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        session = _open(client, target_langs=["ko"])
        listener = Listener(server.url, session["join_code"], "ko").start()
        marker = f"m{session['join_code'][:5]}"
        assert _guess(client, session, f"{marker} the city").json()["segment_index"] == 0
        wait_until(lambda: len(_revisions(listener)) >= 1)
        _guess(client, session, f"{marker} the city council met")
        wait_until(lambda: len(_revisions(listener)) >= 2)
        # The last word changes: it was never shown, so nothing is taken back.
        _guess(client, session, f"{marker} the city council meets")
        assert _revisions(listener) == [f"T:{marker} the", f"T:{marker} the city council"]
        final = _say(client, session, f"{marker} the city council meets today.")
        assert final.json()["segment_index"] == 0
        listener.wait_done(1)
        kinds = [(k, d.get("final")) for _, k, d in listener.events]
        assert ("segment", False) in kinds and kinds[-2:] == [("segment", True), ("done", None)]
        assert "delta" not in listener.kinds()  # the final replaced the draft at once
        done = listener.done()[0]
        assert done == f"T:{marker} the city council meets today."
        record_id = next(d["id"] for _, k, d in listener.events if k == "done")
        record = client.get(f"/v1/translations/{record_id}").json()
        assert record["translation"] == done and record["segment_index"] == 0
        assert record["revisions"] == len(_revisions(listener))
        # Drafts are not records: the script has this one segment.
        assert client.get(f"/v1/scripts/{session['script_id']}").json()["segments"] == 1
        # The next segment starts on the next index.
        assert _say(client, session, "Next.").json()["segment_index"] == 1


def test_a_shrinking_guess_and_a_final_unlike_every_guess(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        session = _open(client, target_langs=["fr"])
        listener = Listener(server.url, session["join_code"], "fr").start()
        _guess(client, session, "the city council met on")
        wait_until(lambda: len(_revisions(listener)) >= 1)
        _guess(client, session, "the city")  # the recogniser took words back
        _guess(client, session, "the city council met on Monday")
        wait_until(lambda: len(_revisions(listener)) >= 2)
        shown = _revisions(listener)
        assert shown == ["T:the city council met", "T:the city council met on"]
        _say(client, session, "Nothing like it.")
        listener.wait_done(1)
        assert listener.done() == {0: "T:Nothing like it."}


def test_only_the_newest_guess_is_drafted_when_one_is_running(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server(live_mask_words=0, live_retranslate_ms=0)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        session = _open(client, target_langs=["ko"])
        listener = Listener(server.url, session["join_code"], "ko").start()
        tag = f"newest-{session['join_code']}"
        # Each draft streams its pieces slowly: guesses pile up while one runs.
        _guess(client, session, f"[[slow:{tag}:3:0.3]] one")
        wait_until(lambda: len(_upstream_texts(fake, tag)) == 1)
        for words in ("one two", "one two three", "one two three four"):
            _guess(client, session, f"[[slow:{tag}:3:0.3]] {words}")
        wait_until(lambda: len(_upstream_texts(fake, tag)) == 2)
        _say(client, session, f"[[slow:{tag}:1:0]] the final text")
        listener.wait_done(1)
        sent = _upstream_texts(fake, tag)
        # The first guess, then only the newest, then the final: nothing in between.
        assert len(sent) == 3, sent
        assert "one two three four" in sent[1] and "the final text" in sent[2]


def test_with_agreement_a_draft_shows_what_it_shares_with_the_ones_before(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    server = make_server(
        live_mask_words=0, live_retranslate_ms=0, live_agreement=True, live_agreement_drafts=3
    )
    with httpx.Client(base_url=server.url, timeout=30) as client:
        session = _open(client, target_langs=["fr"])
        listener = Listener(server.url, session["join_code"], "fr").start()
        marker = f"a{session['join_code'][:5]}"
        guesses = ["the city council met", "the city council meets today", "the city hall meets"]
        for i, guess in enumerate(guesses[:2]):
            _guess(client, session, f"{marker} {guess}")
            wait_until(lambda i=i: len(_upstream_texts(fake, marker)) == i + 1)
        _guess(client, session, f"{marker} {guesses[2]}")
        wait_until(lambda: len(_revisions(listener)) >= 1)
        # Two drafts showed nothing (their common text would be shown and kept); the third
        # shows what all three said.
        assert _revisions(listener) == [f"T:{marker} the city"]
        _say(client, session, f"{marker} the city council meets today.")
        listener.wait_done(1)
        assert listener.done() == {0: f"T:{marker} the city council meets today."}


def test_partials_for_a_closed_session_are_refused(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        session = _open(client)
        client.post(f"/v1/live/{session['session_id']}/close")
        refused = _guess(client, session, "too late")
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "session_closed"
        assert _guess(client, session, " ").status_code == 422


def test_a_listener_joining_mid_segment_gets_its_current_text_at_once(
    server: ServerThread,
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        session = _open(client, target_langs=["ko"])
        first = Listener(server.url, session["join_code"], "ko").start()
        _say(client, session, "A finished segment.")
        first.wait_done(1)
        _guess(client, session, "and now the speaker goes on")
        wait_until(lambda: len(_revisions(first, 1)) >= 1)
        late = Listener(server.url, session["join_code"], "ko").start()
        wait_until(lambda: len(_revisions(late, 1)) >= 1)
        assert _revisions(late, 1)[-1] == _revisions(first, 1)[-1]
        assert late.kinds()[:2] == ["segment", "done"]


def test_listeners_on_another_replica_see_the_drafts(
    make_server: Callable[..., ServerThread], redis_url: str
) -> None:
    settings = {"live_mask_words": 1, "live_retranslate_ms": 0, "live_agreement": False,
                "redis_url": redis_url}  # fmt: skip
    one, two = make_server(**settings), make_server(**settings)
    with httpx.Client(base_url=one.url, timeout=30) as client:
        session = _open(client, target_langs=["ko"])
        there = Listener(two.url, session["join_code"], "ko").start()
        _guess(client, session, "the harbour gates close")
        wait_until(lambda: len(_revisions(there)) >= 1)
        assert _revisions(there) == ["T:the harbour gates"]
        _say(client, session, "The harbour gates close at noon.")
        there.wait_done(1)
        assert there.done() == {0: "T:The harbour gates close at noon."}
