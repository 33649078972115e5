"""The embedded engine: batched decoding against one-at-a-time and llama-cpp-python directly.

    python -m bench.local [--threads 2] [--parallel 1 4 8] [--concurrency 1 2 4 8]
        [--examples similar|fixed] [--rounds 3]

The same sentences (the 40 English sentences of bench/quality/pairs.tsv into Korean, French,
Spanish and Japanese), the same few-shot prompts, greedy decoding and token cap, run:

- by `llama_cpp.Llama` in this process, one at a time, with the prompt dragoman builds (its
  prompt cache reuses the shared prefix of consecutive requests of one language pair);
- through `dragoman serve` (its own processes, streamed over HTTP), with the engine decoding
  `--parallel` sequences together, at each `--concurrency` (that many clients, each sending
  its next sentence when the last one ends). `--parallel 1` is one-at-a-time decoding.

Measured in turns, as `bench.load` does: every server runs at once (idle while it is not
measured), and each round runs llama-cpp-python, then every server at every concurrency, one
after the other; each figure is the median of the rounds (ratios: the median of the rounds'
ratios). So whatever else the machine does at some moment lands on every row alike, instead
of on whichever ran then.

With `--full-vocabulary` each `--parallel` setting is also served from the shipped model file
as it is (`DRAGOMAN_LOCAL_VOCABULARY=full`), beside the default (the languages' vocabulary,
`engine/vocabulary.py`), in the same rounds: what the smaller output layer does to speed.

`--examples` is `DRAGOMAN_LOCAL_EXAMPLES` for both (default `similar`, the service's default:
the two bank examples nearest to each sentence; `fixed`: the shared examples only).

Reports aggregate generated tokens per second, each request's own tokens per second, time to
first token (client side, from the request to the first piece), the engine's memory, and the
server's total memory with one and two HTTP workers (one engine either way).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from dragoman.engine.scheduler import max_new_tokens
from dragoman.engine.units import base_model_units
from dragoman.engine.vocabulary import bundled_model_path
from tests.conftest import free_port
from tests.helpers import wait_until_answers

PAIRS = Path(__file__).parent / "quality" / "pairs.tsv"


def _cases() -> list[tuple[str, str]]:
    rows = list(csv.DictReader(PAIRS.open(encoding="utf-8"), delimiter="\t"))
    return [(row["lang"], row["en"]) for row in rows]


@dataclass
class Run:
    tokens: int
    seconds: float
    ttft_ms: list[float]
    per_request: list[float]  # each request's tokens / its wall time
    # Each request's decoding alone: tokens after the first / time from the first to the last.
    decoding: list[float] = field(default_factory=list)

    @property
    def aggregate(self) -> float:
        return self.tokens / self.seconds

    def ttft(self, q: float) -> float:
        values = sorted(self.ttft_ms)
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def load_direct(threads: int) -> Any:
    from llama_cpp import Llama

    return Llama(model_path=str(bundled_model_path()), n_ctx=4096, n_threads=threads,
                 n_batch=512, verbose=False)  # fmt: skip


def direct(llm: Any, cases: list[tuple[str, str]], similar: bool = True) -> Run:
    """One round of the sentences through `llm`, one at a time."""
    run = Run(0, 0.0, [], [])
    for i, (target, text) in enumerate([cases[0], *cases]):
        n_in = len(llm.tokenize(text.encode(), add_bos=False))
        started = time.perf_counter()
        first = None
        tokens = 0
        (unit,) = base_model_units(text, "en", target, similar=similar)  # as dragoman does
        for _ in llm.create_completion(
            unit.prefix + unit.prompt,
            max_tokens=max_new_tokens(n_in),
            temperature=0.0,
            stop=["\n"],
            stream=True,
        ):
            if first is None:
                first = time.perf_counter() - started
            tokens += 1
        seconds = time.perf_counter() - started
        if i:  # the first run warms up, untimed
            run.tokens += tokens
            run.seconds += seconds
            run.ttft_ms.append((first or seconds) * 1000)
            run.per_request.append(tokens / seconds)
    return run


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += _rss_mb(current)
        todo += children.get(current, [])
    return total


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@contextmanager
def serve(
    threads: int,
    parallel: int,
    workers: int = 1,
    examples: str = "similar",
    vocabulary: str = "languages",
) -> Iterator[tuple[str, int, int]]:
    """A running `dragoman serve`: its URL, its pid and its engine's pid."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "DRAGOMAN_PROVIDER": "local", "DRAGOMAN_LOCAL_THREADS": str(threads),
               "DRAGOMAN_LOCAL_PARALLEL": str(parallel), "DRAGOMAN_LOG_LEVEL": "warning",
               "DRAGOMAN_QUEUE_MAX": "256", "DRAGOMAN_LOCAL_EXAMPLES": examples,
               "DRAGOMAN_LOCAL_VOCABULARY": vocabulary,
               "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/local.db"}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "dragoman", "serve", "--port", str(port),
             "--workers", str(workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            if not wait_until_answers(f"{url}/readyz", proc, 300):
                raise SystemExit("dragoman did not become ready")
            engine_pid = int(httpx.get(f"{url}/readyz").json()["engine"]["pid"])
            yield url, proc.pid, engine_pid
        finally:
            proc.terminate()
            proc.wait(30)


async def _concurrent(url: str, cases: list[tuple[str, str]], concurrency: int) -> Run:
    todo = list(cases)
    run = Run(0, 0.0, [], [])

    async def client_loop(http: httpx.AsyncClient) -> None:
        while todo:
            target, text = todo.pop(0)
            body = {"text": text, "source_lang": "en", "target_lang": target}
            started = time.perf_counter()
            first = last = None
            tokens = 0
            async with http.stream("POST", "/v1/translations", json=body) as response:
                event = ""
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        if event == "delta":
                            last = time.perf_counter() - started
                            first = last if first is None else first
                        elif event == "done":
                            tokens = orjson.loads(line[6:])["usage"]["completion_tokens"]
            seconds = time.perf_counter() - started
            run.tokens += tokens
            run.ttft_ms.append((first or seconds) * 1000)
            run.per_request.append(tokens / seconds)
            if first is not None and last is not None and last > first and tokens > 2:
                run.decoding.append((tokens - 1) / (last - first))

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        # Warm-up, untimed: every language pair's examples evaluated once.
        for target in dict.fromkeys(t for t, _ in cases):
            await http.post(
                "/v1/translations",
                json={"text": "Hello.", "source_lang": "en", "target_lang": target,
                      "stream": False},
            )  # fmt: skip
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(concurrency)))
        run.seconds = time.perf_counter() - started
    return run


DIRECT = "llama-cpp-python directly"


def _mode(parallel: int) -> str:
    return "one at a time" if parallel == 1 else f"batch of {parallel}"


FULL = ", full vocabulary"


def _label(parallel: int, vocabulary: str = "languages") -> str:
    return f"dragoman, {_mode(parallel)}" + (FULL if vocabulary == "full" else "")


def _median_run(runs: list[Run]) -> tuple[float, float, float, float]:
    """Medians over rounds: aggregate, per-request p50, TTFT p50, TTFT p99."""
    return (
        statistics.median(r.aggregate for r in runs),
        statistics.median(statistics.median(r.per_request) for r in runs),
        statistics.median(r.ttft(0.5) for r in runs),
        statistics.median(r.ttft(0.99) for r in runs),
    )


def _ratio(rounds: list[dict[tuple[str, int], Run]], measure: Any) -> float | None:
    """The median over rounds of `measure(round)`; None when a round lacks what it needs."""
    try:
        return statistics.median(measure(r) for r in rounds)
    except (KeyError, ZeroDivisionError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--sentences", type=int, default=40)
    parser.add_argument("--examples", choices=("similar", "fixed"), default="similar")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--full-vocabulary",
        action="store_true",
        help="also serve the shipped model file as it is, for comparison",
    )
    args = parser.parse_args()
    cases = _cases()[: args.sentences]
    similar = args.examples == "similar"

    rounds: list[dict[tuple[str, int], Run]] = []
    engine_mb: dict[int, float] = {}
    llm = load_direct(args.threads)
    vocabularies = ["languages", "full"] if args.full_vocabulary else ["languages"]
    with ExitStack() as stack:
        servers = {
            (parallel, vocabulary): stack.enter_context(
                serve(args.threads, parallel, examples=args.examples, vocabulary=vocabulary)
            )
            for parallel in args.parallel
            for vocabulary in vocabularies
        }
        for number in range(args.rounds):
            runs = {(DIRECT, 1): direct(llm, cases, similar)}
            for concurrency in args.concurrency:
                for (parallel, vocabulary), (url, _, _) in servers.items():
                    runs[(_label(parallel, vocabulary), concurrency)] = asyncio.run(
                        _concurrent(url, cases, concurrency)
                    )
            rounds.append(runs)
            print(f"round {number + 1} of {args.rounds} done", file=sys.stderr)
        engine_mb = {key: _rss_mb(engine) for key, (_, _, engine) in servers.items()}
    llm.close()
    memory = {}
    for workers in (1, 2):
        with serve(args.threads, max(args.parallel), workers, args.examples) as (
            url,
            pid,
            engine_pid,
        ):
            asyncio.run(_concurrent(url, cases[:4], 2))
            memory[workers] = (_tree_rss_mb(pid), _rss_mb(engine_pid))

    print(f"{len(cases)} sentences, {args.threads} threads, {os.cpu_count()} CPUs, "
          f"{args.examples} examples, median of {args.rounds} rounds")  # fmt: skip
    print()
    print("| | concurrent requests | aggregate tokens/s | per request tokens/s (p50) "
          "| decoding tokens/s (p50) | TTFT p50 ms | TTFT p99 ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for label, concurrency in rounds[0]:
        runs = [r[(label, concurrency)] for r in rounds]
        aggregate, per_request, p50, p99 = _median_run(runs)
        decoding = [statistics.median(r.decoding) for r in runs if r.decoding]
        decode = f"{statistics.median(decoding):.1f}" if decoding else "—"
        print(f"| {label} | {concurrency} | {aggregate:.1f} | {per_request:.1f} | {decode} | "
              f"{p50:.0f} | {p99:.0f} |")  # fmt: skip
    print()
    best = max(args.parallel)
    batched = _label(best)
    one = _label(1)
    top = max(args.concurrency)

    def per_request(r: dict[tuple[str, int], Run], key: tuple[str, int]) -> float:
        return statistics.median(r[key].per_request)

    ratios = [
        (f"aggregate @{top}: batch of {best} / one at a time",
         lambda r: r[(batched, top)].aggregate / r[(one, top)].aggregate),
        (f"per request @{top} / solo (batch of {best})",
         lambda r: per_request(r, (batched, top)) / per_request(r, (batched, 1))),
        (f"TTFT p50 @1: dragoman (batch of {best}) / llama-cpp-python",
         lambda r: r[(batched, 1)].ttft(0.5) / r[(DIRECT, 1)].ttft(0.5)),
        (f"tokens/s @1: dragoman (batch of {best}) / llama-cpp-python",
         lambda r: r[(batched, 1)].aggregate / r[(DIRECT, 1)].aggregate),
    ]  # fmt: skip
    if args.full_vocabulary:
        for parallel in args.parallel:
            for concurrency in (1, top):
                new, old = _label(parallel), _label(parallel, "full")
                ratios.append((
                    f"per request tokens/s @{concurrency}, {_mode(parallel)}: languages' / full "
                    "vocabulary",
                    lambda r, n=new, o=old, c=concurrency: (
                        per_request(r, (n, c)) / per_request(r, (o, c))),
                ))  # fmt: skip
                ratios.append((
                    f"decoding tokens/s @{concurrency}, {_mode(parallel)}: languages' / full "
                    "vocabulary",
                    lambda r, n=new, o=old, c=concurrency: (
                        statistics.median(r[(n, c)].decoding)
                        / statistics.median(r[(o, c)].decoding)),
                ))  # fmt: skip
    print("| ratio (median of the rounds' ratios) | value |")
    print("|---|---|")
    for name, measure in ratios:
        value = _ratio(rounds, measure)
        if value is not None:
            print(f"| {name} | {value:.2f}× |")
    print()
    print("| memory | MB |")
    print("|---|---|")
    for (parallel, vocabulary), mb in engine_mb.items():
        label = _mode(parallel) + (FULL if vocabulary == "full" else "")
        print(f"| engine process, {label} (RSS after the run) | {mb:.0f} |")
    for workers, (total, engine) in memory.items():
        print(f"| whole server, {workers} HTTP worker(s) (engine {engine:.0f}) | {total:.0f} |")


if __name__ == "__main__":
    main()
