"""Partial text, replayed: every stabilising setting over the same drafts, in seconds.

    python -m bench.partial_replay                       # the embedded model
    python -m bench.partial_replay --fake                # the fake upstream (echo, paced)
    python -m bench.partial_replay --agreement 0,2,5 --masks 0,2,3,4 --pace 1,2

`bench.live_partial` runs a real session per setting at real time, so one setting costs
minutes and a model's run is noisy. This one translates each distinct guess and final of the
same speech (`bench.live_partial.speech`, same seed) once, through a real server and its
upstream, and records how long each took; then, for every setting, it replays the lane of one
language (one draft at a time, of the newest guess, at most every `--retranslate-ms`, each
lasting what its translation took, times `--pace`), decides what listeners are shown with the
service's own `shown_after`, and measures it as `bench.live_partial` does (erasure, word lag,
final lag, drafts shown). With the fake upstream its figures match the real run's within a few
hundredths of a second; with a model, every setting sees the same drafts, so the settings
differ by what they show and not by what the model happened to say.

The translations are kept in `--cache` (a JSON file per upstream, language and seed), so that
a second run costs no model time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.live_partial import LECTURE, Seen, Segment, _pct, measure, speech
from bench.procs import start
from dragoman.live.stabilise import shown_after
from tests.conftest import free_port

Translated = dict[str, tuple[str, float]]  # text -> (translation, seconds it took)


def collect(texts: list[str], upstream_env: dict[str, str], lang: str, cache: Path) -> Translated:
    """Each text translated once (alone, no script context), with the time it took."""
    done: Translated = {}
    if cache.exists():
        done = {k: (v[0], v[1]) for k, v in json.loads(cache.read_text()).items()}
    todo = [t for t in dict.fromkeys(texts) if t not in done]
    if not todo:
        return done
    with tempfile.TemporaryDirectory() as workdir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGOMAN_")}
        env.update(upstream_env)
        env.update({"DRAGOMAN_LOG_LEVEL": "warning", "DRAGOMAN_CONTEXT_SEGMENTS": "0",
                    "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/r.db"})  # fmt: skip
        port = free_port()
        server = start([sys.executable, "-m", "dragoman", "serve", "--port", str(port)], env,
                       port, "/readyz")  # fmt: skip
        try:
            _translate(f"http://127.0.0.1:{port}", todo, lang, done, cache)
        finally:
            server.terminate()
            server.wait(60)
    return done


def _translate(base: str, todo: list[str], lang: str, done: Translated, cache: Path) -> None:
    with httpx.Client(base_url=base, timeout=300) as client:
        for i, text in enumerate(todo, 1):
            body = {"text": text, "target_lang": lang, "source_lang": "en", "stream": False}
            began = time.monotonic()
            answer = client.post("/v1/translations", json=body)
            answer.raise_for_status()
            done[text] = (answer.json()["translation"], time.monotonic() - began)
            if i % 25 == 0 or i == len(todo):
                cache.write_text(json.dumps(done, ensure_ascii=False))
                print(f"translated {i}/{len(todo)}", file=sys.stderr, flush=True)


Show = Callable[[str, list[str]], str | None]  # (shown, drafts so far) -> new shown text


def lane(segment: Segment, translated: Translated, show: Show, pace: float, every: float) -> Seen:
    """What a listener sees of one segment: the service's lane, replayed on a clock."""
    seen = Seen()
    guesses = [g for g in segment.guesses if not g.final]
    final = segment.guesses[-1]
    now, last_start, drafted = 0.0, -1e9, -1
    drafts: list[str] = []
    shown = ""
    while now < final.at:
        heard = [i for i, g in enumerate(guesses) if g.at <= now]
        if not heard or heard[-1] == drafted:  # nothing new: wait for the next guess
            later = [g.at for g in guesses if g.at > now]
            now = min([*later, final.at])
            continue
        if now < last_start + every:  # not more often than DRAGOMAN_LIVE_RETRANSLATE_MS
            now = last_start + every
            continue
        drafted, last_start = heard[-1], now
        text, took = translated[guesses[drafted].text]
        now += took * pace
        drafts.append(text)
        new = show(shown, drafts)
        if new is not None and now < final.at:  # a draft that ends after the final is dropped
            shown = new
            seen.shown.append((now, new))
    text, took = translated[final.text]
    seen.final, seen.final_at = text, max(final.at, now) + took * pace
    return seen


def setting(lang: str, agree: int, mask: int, keep: bool) -> Show:
    """The service's choice (`live/stabilise.shown_after`, as `_Lane._draft` calls it)."""

    def show(shown: str, drafts: list[str]) -> str | None:
        return shown_after(shown, drafts, lang, mask, keep, agree)

    return show


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", action="store_true", help="the fake upstream, not the model")
    parser.add_argument("--segments", type=int, default=33)
    parser.add_argument("--wpm", type=float, default=150)
    parser.add_argument("--lang", default="fr")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--delay", type=float, default=0.02, help="the fake's seconds per piece")
    parser.add_argument("--agreement", default="0,2,3,4,5,6", help="drafts agreeing; 0: off")
    parser.add_argument("--masks", default="0,2,3,4")
    parser.add_argument("--pace", default="1", help="draft times multiplied by each")
    parser.add_argument("--retranslate-ms", type=int, default=300)
    parser.add_argument("--first", type=int, default=8, help="also report the first N segments")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dragoman")
    args = parser.parse_args()
    with LECTURE.open(encoding="utf-8") as f:
        texts = [row["en"] for row in csv.DictReader(f, delimiter="\t")][: args.segments]
    rng = random.Random(args.seed)
    segments = [speech(text, args.wpm, rng) for text in texts]
    needed = [g.text for s in segments for g in s.guesses]
    procs = []
    try:
        if args.fake:
            port = free_port()
            procs.append(start(
                [sys.executable, "-m", "tests.fake_openai", "--port", str(port), "--echo",
                 "--delay", str(args.delay)], dict(os.environ), port, "/v1/models",
            ))  # fmt: skip
            upstream = {"DRAGOMAN_PROVIDER": "openai", "OPENAI_API_KEY": "sk-bench",
                        "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"}  # fmt: skip
            name = f"fake-{args.delay}"
        else:
            upstream, name = {"DRAGOMAN_PROVIDER": "local"}, "embedded"
        args.cache.mkdir(parents=True, exist_ok=True)
        cache = args.cache / f"partial-replay-{name}-{args.lang}-{args.seed}-{args.wpm:.0f}.json"
        translated = collect(needed, upstream, args.lang, cache)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    report(segments, translated, args)


def report(segments: list[Segment], translated: Translated, args: Any) -> None:
    took = sorted(t for _, t in translated.values())
    upstream = "fake upstream" if args.fake else "embedded model"
    print(
        f"{len(segments)} segments into {args.lang} ({upstream}), seed {args.seed}; a "
        f"translation took p50 {_pct(took, 0.5):.2f} s, p95 {_pct(took, 0.95):.2f} s; "
        f"DRAGOMAN_LIVE_RETRANSLATE_MS={args.retranslate_ms}"
    )
    print()
    print(f"| pace | drafts agreeing | mask | keep | erasure (first {args.first} / all) "
          "| word lag p50 / p95 s | final lag p50 s | drafts shown per segment |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for pace in (float(p) for p in args.pace.split(",")):
        for agree in (int(a) for a in args.agreement.split(",")):
            for mask in (int(m) for m in args.masks.split(",")):
                for keep in (True, False):
                    show = setting(args.lang, agree, mask, keep)
                    seen = [lane(s, translated, show, pace, args.retranslate_ms / 1000)
                            for s in segments]  # fmt: skip
                    rows = [measure(s, v) for s, v in zip(segments, seen, strict=True)]
                    first = rows[: args.first]
                    lags = sorted(lag for r in rows for lag in r["lags"])
                    final_lags = sorted(r["final_lag"] for r in rows)
                    shown = sum(len(v.shown) for v in seen) / len(seen)
                    cells = [
                        f"{pace:g}×", str(agree) if agree > 1 else "off", str(mask),
                        "yes" if keep else "no",
                        f"{_erasure(first):.3f} / {_erasure(rows):.3f}",
                        f"{_pct(lags, 0.5):.2f} / {_pct(lags, 0.95):.2f}",
                        f"{_pct(final_lags, 0.5):.2f}", f"{shown:.1f}",
                    ]  # fmt: skip
                    print("| " + " | ".join(cells) + " |")


def _erasure(rows: list[dict[str, Any]]) -> float:
    return sum(r["erased"] for r in rows) / max(1, sum(r["length"] for r in rows))


if __name__ == "__main__":
    main()
