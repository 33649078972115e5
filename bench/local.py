"""The embedded engine: batched decoding against one-at-a-time and llama-cpp-python directly.

    python -m bench.local [--threads 2] [--parallel 1 4 8] [--concurrency 1 2 4 8]

The same sentences (the 40 English sentences of bench/quality/pairs.tsv into Korean, French,
Spanish and Japanese), the same few-shot prompts, greedy decoding and token cap, run:

- by `llama_cpp.Llama` in this process, one at a time, with the prompt dragoman builds (its
  prompt cache reuses the shared prefix of consecutive requests of one language pair);
- through `dragoman serve` (its own processes, streamed over HTTP), with the engine decoding
  `--parallel` sequences together, at each `--concurrency` (that many clients, each sending
  its next sentence when the last one ends). `--parallel 1` is one-at-a-time decoding.

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from dragoman.engine.scheduler import max_new_tokens
from dragoman.engine.units import base_model_units
from dragoman.providers.local import bundled_model_path
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

    @property
    def aggregate(self) -> float:
        return self.tokens / self.seconds

    def ttft(self, q: float) -> float:
        values = sorted(self.ttft_ms)
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def direct(threads: int, cases: list[tuple[str, str]]) -> Run:
    from llama_cpp import Llama

    llm = Llama(model_path=str(bundled_model_path()), n_ctx=4096, n_threads=threads,
                n_batch=512, verbose=False)  # fmt: skip
    run = Run(0, 0.0, [], [])
    for i, (target, text) in enumerate([cases[0], *cases]):
        n_in = len(llm.tokenize(text.encode(), add_bos=False))
        started = time.perf_counter()
        first = None
        tokens = 0
        (unit,) = base_model_units(text, "en", target)  # the prompt dragoman sends
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
    llm.close()
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
def serve(threads: int, parallel: int, workers: int = 1) -> Iterator[tuple[str, int, int]]:
    """A running `dragoman serve`: its URL, its pid and its engine's pid."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "DRAGOMAN_PROVIDER": "local", "DRAGOMAN_LOCAL_THREADS": str(threads),
               "DRAGOMAN_LOCAL_PARALLEL": str(parallel), "DRAGOMAN_LOG_LEVEL": "warning",
               "DRAGOMAN_QUEUE_MAX": "256",
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
            first = None
            tokens = 0
            async with http.stream("POST", "/v1/translations", json=body) as response:
                event = ""
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        if event == "delta" and first is None:
                            first = time.perf_counter() - started
                        elif event == "done":
                            tokens = orjson.loads(line[6:])["usage"]["completion_tokens"]
            seconds = time.perf_counter() - started
            run.tokens += tokens
            run.ttft_ms.append((first or seconds) * 1000)
            run.per_request.append(tokens / seconds)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--sentences", type=int, default=40)
    args = parser.parse_args()
    cases = _cases()[: args.sentences]

    base = direct(args.threads, cases)
    rows = [("llama-cpp-python directly", 1, base)]
    engine_mb: dict[int, float] = {}
    for parallel in args.parallel:
        with serve(args.threads, parallel) as (url, _, engine_pid):
            for concurrency in args.concurrency:
                run = asyncio.run(_concurrent(url, cases, concurrency))
                label = (
                    "dragoman, one at a time" if parallel == 1 else f"dragoman, batch of {parallel}"
                )
                rows.append((label, concurrency, run))
            engine_mb[parallel] = _rss_mb(engine_pid)
    memory = {}
    for workers in (1, 2):
        with serve(args.threads, max(args.parallel), workers) as (url, pid, engine_pid):
            asyncio.run(_concurrent(url, cases[:4], 2))
            memory[workers] = (_tree_rss_mb(pid), _rss_mb(engine_pid))

    print(f"{len(cases)} sentences, {args.threads} threads, {os.cpu_count()} CPUs")
    print()
    print("| | concurrent requests | aggregate tokens/s | per request tokens/s (p50) "
          "| TTFT p50 ms | TTFT p99 ms |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for label, concurrency, run in rows:
        print(f"| {label} | {concurrency} | {run.aggregate:.1f} | "
              f"{statistics.median(run.per_request):.1f} | {run.ttft(0.5):.0f} | "
              f"{run.ttft(0.99):.0f} |")  # fmt: skip
    print()
    by = {(label, c): run for label, c, run in rows}
    best = max(p for p in args.parallel)
    batched = f"dragoman, batch of {best}"
    top = max(args.concurrency)
    one = by.get(("dragoman, one at a time", top))
    print("| ratio | value |")
    print("|---|---|")
    if one is not None and (batched, top) in by:
        print(f"| aggregate @{top}: batch of {best} / one at a time | "
              f"{by[(batched, top)].aggregate / one.aggregate:.2f}× |")  # fmt: skip
    if (batched, 1) in by and (batched, top) in by:
        solo = statistics.median(by[(batched, 1)].per_request)
        print(f"| per request @{top} / solo (batch of {best}) | "
              f"{statistics.median(by[(batched, top)].per_request) / solo:.2f}× |")  # fmt: skip
    if (batched, 1) in by:
        print(f"| TTFT p50 @1: dragoman (batch of {best}) / llama-cpp-python | "
              f"{by[(batched, 1)].ttft(0.5) / base.ttft(0.5):.2f}× |")  # fmt: skip
        print(f"| tokens/s @1: dragoman (batch of {best}) / llama-cpp-python | "
              f"{by[(batched, 1)].aggregate / base.aggregate:.2f}× |")  # fmt: skip
    print()
    print("| memory | MB |")
    print("|---|---|")
    for parallel, mb in engine_mb.items():
        print(f"| engine process, batch of {parallel} (RSS after the run) | {mb:.0f} |")
    for workers, (total, engine) in memory.items():
        print(f"| whole server, {workers} HTTP worker(s) (engine {engine:.0f}) | {total:.0f} |")


if __name__ == "__main__":
    main()
