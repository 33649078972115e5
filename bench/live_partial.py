"""Partial text: how early captions appear, how much they jump, and what the finals cost.

    python -m bench.live_partial                      # the fake upstream, every setting
    python -m bench.live_partial --embedded --segments 8   # the embedded model too

Replays, at real time, the speech of a transcript as a recogniser hands it over: the English
segments of `bench/quality/script_lecture.tsv`, their words arriving at `--wpm` words a minute,
a guess of the utterance so far every 200 to 300 ms in which now and then the last word or two
are wrong (the recogniser's guess, corrected by the next), then the final text. The speaker's
guesses go to `POST /v1/live/{id}/segments` (`"final": false`) and its finals without it; a
listener reads the session. Each setting runs on a server of its own (the same upstream):
words masked (`DRAGOMAN_LIVE_MASK_WORDS`, `--masks`: 0, 2, 3, 4) and shown text kept until the
final or not (`DRAGOMAN_LIVE_KEEP_PREFIX`), with drafts shown only as far as the last few agree
(`--agreement`: how many, `DRAGOMAN_LIVE_AGREEMENT_DRAFTS`, 5 by default; 0 for
`DRAGOMAN_LIVE_AGREEMENT=false`; a list runs each).

Upstreams: the fake OpenAI-compatible server echoing the text ("T:" and its words, one piece
every `--delay` seconds: deterministic, at a model's pace), and with `--embedded` the embedded
model (into `--lang`).

Reported per setting:

- erasure: characters taken back from what was shown (from one revision to the next, and to
  the final), over the final text's length, all segments together;
- word lag: from a word's first arrival in a guess to the moment its translation is shown and
  stays (p50, p95); a source word is matched to the translation's text at the same share of
  its length, which is exact for the echo and an approximation for a model;
- final lag: from the final text's arrival to its `done` (p50, p95);
- translations per segment: drafts and finals the upstream ran, per segment;
- chrF of the finals against the same sentences translated alone (`POST /v1/translations`);
  the servers run without script context (`DRAGOMAN_CONTEXT_SEGMENTS=0`), so the two are the
  same prompt, and any difference is what partial text did to the final.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.procs import start
from dragoman.live.stabilise import erased
from tests.conftest import free_port

LECTURE = Path(__file__).parent / "quality" / "script_lecture.tsv"
# Words a recogniser gets wrong for a moment: what its next guess corrects.
_MISHEARD = ["the", "a", "and", "to", "in", "sea", "see", "tied", "warning", "storm", "for"]


@dataclass
class Guess:
    at: float  # seconds from the segment's start
    text: str
    final: bool


@dataclass
class Segment:
    text: str
    guesses: list[Guess]
    arrivals: list[float]  # when each word first appeared (correct) in a guess


@dataclass
class Seen:
    """What the listener saw of one segment: (time, text) shown, and its final."""

    shown: list[tuple[float, str]] = field(default_factory=list)
    final: str | None = None
    final_at: float | None = None


def speech(text: str, wpm: float, rng: random.Random) -> Segment:
    """A recogniser's guesses of `text` spoken at `wpm` words a minute."""
    words = text.split()
    per_word = 60.0 / wpm
    guesses: list[Guess] = []
    arrivals: list[float | None] = [None] * len(words)
    t = rng.uniform(0.2, 0.3)
    end = len(words) * per_word
    while t < end:
        heard = words[: int(t / per_word) + 1]
        guess = list(heard)
        wrong = rng.random()
        if wrong < 0.25 and guess:
            guess[-1] = rng.choice(_MISHEARD)
        elif wrong < 0.35 and len(guess) > 1:
            guess[-2:] = [rng.choice(_MISHEARD), rng.choice(_MISHEARD)]
        for i, word in enumerate(guess):
            if arrivals[i] is None and word == words[i]:
                arrivals[i] = t
        guesses.append(Guess(t, " ".join(guess), False))
        t += rng.uniform(0.2, 0.3)
    final_at = end + 0.3
    guesses.append(Guess(final_at, text, True))
    return Segment(text, guesses, [a if a is not None else final_at for a in arrivals])


def stable_times(seen: Seen) -> list[float]:
    """For each character of the final, when it was first shown and never taken back."""
    assert seen.final is not None and seen.final_at is not None
    final = seen.final
    stable = [seen.final_at] * len(final)
    # Walk back from the end: a character is stable from the earliest display after which
    # every display (and the final) agrees with the final up to it.
    agreed = len(final)
    for at, text in reversed(seen.shown):
        common = 0
        for a, b in zip(text, final, strict=False):
            if a != b:
                break
            common += 1
        agreed = min(agreed, common)
        for p in range(agreed):
            stable[p] = at
    return stable


def measure(segment: Segment, seen: Seen) -> dict[str, Any]:
    final = seen.final or ""
    texts = [text for _, text in seen.shown] + [final]
    taken_back = sum(erased(a, b) for a, b in zip(["", *texts[:-1]], texts, strict=True))
    lags = []
    if final:
        stable = stable_times(seen)
        n = len(segment.arrivals)
        for i, arrived in enumerate(segment.arrivals):
            p = max(0, min(len(final) - 1, round((i + 1) / n * len(final)) - 1))
            lags.append(stable[p] - arrived)
    final_text_at = segment.guesses[-1].at
    return {
        "erased": taken_back,
        "length": len(final),
        "lags": lags,
        "final_lag": (seen.final_at or final_text_at) - final_text_at,
    }


async def _listen(base: str, code: str, lang: str, t0: list[float], seen: dict[int, Seen]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=None) as client:
        path = f"/v1/live/{code}/events"
        async with client.stream("GET", path, params={"lang": lang}) as response:
            buffer = ""
            async for chunk in response.aiter_text():
                buffer += chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
                    kind, data = fields.get("event"), fields.get("data")
                    if not kind or data is None:
                        continue
                    payload = json.loads(data)
                    now = time.monotonic() - t0[0]
                    if kind == "closed":
                        return
                    entry = seen.setdefault(payload.get("index", -1), Seen())
                    if kind == "revision":
                        entry.shown.append((now, payload["text"]))
                    elif kind == "done":
                        entry.final, entry.final_at = payload["translation"], now


async def replay(base: str, segments: list[Segment], lang: str) -> dict[int, Seen]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        session = (await client.post("/v1/live", json={"target_langs": [lang]})).json()
        seen: dict[int, Seen] = {}
        t0 = [0.0]
        listener = asyncio.create_task(_listen(base, session["join_code"], lang, t0, seen))
        info = f"/v1/live/{session['join_code']}"
        while not (await client.get(info)).json()["listeners"]:  # noqa: ASYNC110 (polled)
            await asyncio.sleep(0.05)
        path = f"/v1/live/{session['session_id']}/segments"
        for index, segment in enumerate(segments):
            t0[0] = time.monotonic()
            for guess in segment.guesses:
                delay = guess.at - (time.monotonic() - t0[0])
                if delay > 0:
                    await asyncio.sleep(delay)
                await client.post(path, json={"text": guess.text, "final": guess.final})
            # The next utterance starts once this one is translated (its times are its own).
            while index not in seen or seen[index].final is None:  # noqa: ASYNC110 (polled)
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)
        await client.post(f"/v1/live/{session['session_id']}/close")
        await listener
        return seen


async def alone(base: str, segments: list[Segment], lang: str) -> list[str]:
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        out = []
        for segment in segments:
            body = {"text": segment.text, "target_lang": lang, "source_lang": "en", "stream": False}
            out.append((await client.post("/v1/translations", json=body)).json()["translation"])
        return out


def _stats(upstream: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{upstream}/fake/stats", timeout=10) as answer:
        requests: int = json.loads(answer.read())["chat_requests"]
        return requests


def run_setting(
    env: dict[str, str], segments: list[Segment], args: argparse.Namespace, upstream: int | None
) -> dict[str, Any]:
    port = free_port()
    server = start([sys.executable, "-m", "dragoman", "serve", "--port", str(port)], env, port,
                   "/readyz")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        before = _stats(upstream) if upstream else 0
        seen = asyncio.run(replay(base, segments, args.lang))
        translations = (_stats(upstream) - before) if upstream else None
        finals = [seen[i].final or "" for i in range(len(segments)) if i in seen]
        reference = asyncio.run(alone(base, segments, args.lang))
    finally:
        server.terminate()
        server.wait(60)
    rows = [measure(segments[i], seen[i]) for i in range(len(segments)) if i in seen]
    lags = sorted(lag for row in rows for lag in row["lags"])
    final_lags = sorted(row["final_lag"] for row in rows)
    import sacrebleu

    return {
        "erasure": sum(r["erased"] for r in rows) / max(1, sum(r["length"] for r in rows)),
        "lag_p50": _pct(lags, 0.5),
        "lag_p95": _pct(lags, 0.95),
        "final_lag_p50": _pct(final_lags, 0.5),
        "final_lag_p95": _pct(final_lags, 0.95),
        "per_segment": None if translations is None else translations / len(segments),
        "revisions": statistics.mean(len(seen[i].shown) for i in seen if i >= 0),
        "chrf": sacrebleu.corpus_chrf(finals, [reference]).score,
    }


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=33, help="of the lecture, from its start")
    parser.add_argument("--wpm", type=float, default=150)
    parser.add_argument("--delay", type=float, default=0.02, help="the fake's seconds per piece")
    parser.add_argument("--lang", default="fr")
    parser.add_argument("--masks", default="0,2,3,4")
    parser.add_argument("--retranslate-ms", type=int, default=300)
    parser.add_argument("--embedded", action="store_true", help="the embedded model too")
    parser.add_argument("--only-embedded", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--agreement", default="5",
        help="drafts that must agree (DRAGOMAN_LIVE_AGREEMENT_DRAFTS), 0 for none; a list: each",
    )  # fmt: skip
    args = parser.parse_args()
    with LECTURE.open(encoding="utf-8") as f:
        texts = [row["en"] for row in csv.DictReader(f, delimiter="\t")][: args.segments]
    rng = random.Random(args.seed)
    segments = [speech(text, args.wpm, rng) for text in texts]
    agreements = [int(n) for n in args.agreement.split(",")]
    settings = [
        (mask, keep, agree)
        for agree in agreements
        for mask in map(int, args.masks.split(","))
        for keep in (True, False)
    ]
    results: dict[str, list[tuple[int, bool, int, dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGOMAN_")}
        # No script context: each final is translated as the sentence alone would be, so that
        # the comparison with translating it alone measures what partial text does to it.
        base_env.update({"DRAGOMAN_LOG_LEVEL": "warning", "DRAGOMAN_CONTEXT_SEGMENTS": "0",
                         "DRAGOMAN_LIVE_RETRANSLATE_MS": str(args.retranslate_ms)})  # fmt: skip
        upstreams: list[tuple[str, dict[str, str], int | None]] = []
        procs = []
        try:
            if not args.only_embedded:
                port = free_port()
                procs.append(start(
                    [sys.executable, "-m", "tests.fake_openai", "--port", str(port), "--echo",
                     "--delay", str(args.delay)], base_env, port, "/v1/models",
                ))  # fmt: skip
                upstreams.append(("fake upstream (echo, paced)", {
                    "DRAGOMAN_PROVIDER": "openai", "OPENAI_API_KEY": "sk-bench",
                    "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"}, port))  # fmt: skip
            if args.embedded or args.only_embedded:
                upstreams.append(("embedded model", {"DRAGOMAN_PROVIDER": "local"}, None))
            for name, upstream_env, port in upstreams:
                results[name] = []
                for mask, keep, agree in settings:
                    env = {**base_env, **upstream_env,
                           "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/{mask}{keep}{agree}{port}.db",
                           "DRAGOMAN_LIVE_MASK_WORDS": str(mask),
                           "DRAGOMAN_LIVE_KEEP_PREFIX": "true" if keep else "false",
                           "DRAGOMAN_LIVE_AGREEMENT": "true" if agree > 1 else "false",
                           "DRAGOMAN_LIVE_AGREEMENT_DRAFTS": str(max(agree, 2))}  # fmt: skip
                    row = run_setting(env, segments, args, port)
                    results[name].append((mask, keep, agree, row))
                    print(name, mask, keep, agree, json.dumps(row), file=sys.stderr, flush=True)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    report(results, args)


def report(results: dict[str, list[tuple[int, bool, int, dict[str, Any]]]], args: Any) -> None:
    print(
        f"{args.segments} segments of the lecture into {args.lang}, {args.wpm:.0f} words a "
        f"minute, a guess every 200-300 ms (last word wrong 25%, last two 10%), "
        f"DRAGOMAN_LIVE_RETRANSLATE_MS={args.retranslate_ms}; {os.cpu_count()} CPUs"
    )
    for name, rows in results.items():
        print()
        print(f"**{name}**")
        print()
        print("| drafts agreeing | mask (words) | keep shown text | erasure | word lag p50 s "
              "| p95 s | final lag p50 s | p95 s | translations per segment "
              "| drafts shown per segment | chrF of finals vs alone |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for mask, keep, agree, r in rows:
            per = "—" if r["per_segment"] is None else f"{r['per_segment']:.1f}"
            cells = [
                str(agree) if agree > 1 else "off", str(mask), "yes" if keep else "no",
                f"{r['erasure']:.3f}", f"{r['lag_p50']:.2f}",
                f"{r['lag_p95']:.2f}", f"{r['final_lag_p50']:.2f}", f"{r['final_lag_p95']:.2f}",
                per, f"{r['revisions']:.1f}", f"{r['chrf']:.1f}",
            ]  # fmt: skip
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
