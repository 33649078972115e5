"""Streaming gateway benchmark: dragoman against the original design, and the upstream itself.

    python -m bench.load                  # full run (a few minutes)
    python -m bench.load --quick          # seconds-long smoke run
    python -m bench.load --production     # the price of keys, Redis limits and metrics
    python -m bench.load --against HEAD~3 # this tree against an earlier revision, in turns

Starts, side by side in this run, each in a process of its own:

1. a fast fake OpenAI-compatible upstream (tests/fake_openai.py on uvloop) streaming `--pieces`
   pieces of `--piece` per request, `--delay` seconds apart;
2. `dragoman serve` pointed at it;
3. the baseline, `bench/baseline_app.py`: the original design (awaited SQLAlchemy insert, then
   LangChain `ChatOpenAI(streaming=True).astream` through FastAPI's `StreamingResponse`);

and reads all three the same way, with a raw-socket client on uvloop that counts SSE `data:`
events as they arrive. The upstream read directly is the limit row. Reported for each: time to
first text at concurrency 1 (p50, p99) with the upstream pacing its pieces `--ttft-delay` apart
(what the service adds in front of the first token), the same with the whole stream written at
once behind the first piece (where, on a small machine, the upstream, the service and the reader
compete for the CPUs), and at 100 and at 1,000 concurrent streams (the round with the median
rate of `--rounds`): pieces per second, the p99 gap between pieces, server CPU seconds per
1,000 pieces, and server memory (RSS) at the peak of the 1,000-stream run.

With `--against REF` it runs instead, in the same run, this tree's dragoman against the one of
git revision REF (checked out into a temporary work tree, served from it with the same
packages), measured in turns (one request to each, one round of streams to each), and reports
time to first text (p50, p99), pieces per second, the p99 gap and server CPU per 1,000 pieces at
each concurrency, and the ratios of the two: what a change did to the gateway's speed.

With `--production` it runs instead, in the same run, dragoman with everything off against
dragoman with API keys, per-key limits counted in Redis (a redis-server of its own) and a
metrics token on, each with its own fresh database, and reports time to first text (p50) and
pieces per second at 100 streams for both. The two are measured in turns (one request to each,
one 100-stream round to each), so that whatever else the machine does weighs on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from bench.procs import cpu_seconds, rss_mb, start, start_redis
from tests.conftest import free_port


@dataclass
class Target:
    name: str
    port: int
    pid: int
    request: bytes
    marker: bytes


@dataclass
class Phase:
    pieces: int = 0
    seconds: float = 0.0
    gaps: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    rss_peak_mb: float = 0.0
    errors: int = 0


def _http_post(path: str, body: dict[str, object], headers: str = "") -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"{headers}Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload


async def _stream(target: Target, gaps: list[float] | None) -> tuple[int, float | None]:
    """One request: (text pieces received, seconds to the first one)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    writer.write(target.request)
    pieces, first, last, tail = 0, None, 0.0, b""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            now = time.perf_counter()
            window = tail + data
            # Counting the piece's own text reads every format the same way (JSON chunks,
            # raw data lines) and ignores empty events.
            count = window.count(target.marker) - tail.count(target.marker)
            finished = b"[DONE]" in window
            if count > 0:
                if first is None:
                    first = now - started
                elif gaps is not None:
                    gaps.append(now - last)
                if gaps is not None and count > 1:
                    gaps.extend([0.0] * (count - 1))
                last = now
                pieces += count
            if finished:
                break
            tail = window[-(len(target.marker) - 1) :] if len(target.marker) > 1 else b""
    finally:
        writer.close()
    return pieces, first


async def first_text(target: Target, runs: int) -> list[float]:
    times = []
    for i in range(runs + 5):
        _, first = await _stream(target, None)
        if first is not None and i >= 5:
            times.append(first * 1000)
    return times


async def concurrent(target: Target, streams: int, expected: int) -> Phase:
    phase = Phase()
    gaps: list[float] = []
    peak = [rss_mb(target.pid)]
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(target.pid))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    cpu0 = cpu_seconds(target.pid)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_stream(target, gaps) for _ in range(streams)), return_exceptions=True
    )
    phase.seconds = time.perf_counter() - started
    phase.cpu_s = cpu_seconds(target.pid) - cpu0
    stop.set()
    await sampler
    for result in results:
        if isinstance(result, BaseException) or result[0] != expected:
            phase.errors += 1
        else:
            phase.pieces += result[0]
    phase.gaps = gaps
    phase.rss_peak_mb = peak[0]
    return phase


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _configure_upstream(port: int, pieces: int, delay: float) -> None:
    with urllib.request.urlopen(
        urllib.request.Request(
            f"http://127.0.0.1:{port}/fake/config",
            data=json.dumps({"pieces": pieces, "delay": delay}).encode(),
            method="POST",
        ),
        timeout=10,
    ) as answer:
        answer.read()


def _median_round(rounds: list[Phase]) -> Phase:
    """The round with the median rate, with the most errors and the highest RSS of them all."""
    rounds.sort(key=lambda phase: phase.pieces / phase.seconds if phase.seconds else 0.0)
    median = rounds[len(rounds) // 2]
    median.errors = max(phase.errors for phase in rounds)
    median.rss_peak_mb = max(phase.rss_peak_mb for phase in rounds)
    return median


async def measure(
    target: Target, args: argparse.Namespace, upstream_port: int
) -> dict[str, object]:
    # First token with the rest of the stream paced like a (very fast) model: what the service
    # adds in front of the first token. Then with the whole stream written at once behind it:
    # on a small machine the upstream, the service and the reader then compete for the CPUs.
    _configure_upstream(upstream_port, args.ttft_pieces, args.ttft_delay)
    ttft = await first_text(target, args.ttft_runs)
    _configure_upstream(upstream_port, args.pieces, args.delay)
    ttft_burst = await first_text(target, args.ttft_runs)
    idle_rss = rss_mb(target.pid)
    row: dict[str, object] = {"ttft": ttft, "ttft_burst": ttft_burst, "idle_rss": idle_rss}
    for streams in args.streams:
        # A phase of 100 streams lasts well under a second: one round is at the mercy of
        # whatever else the machine does in it. The round with the median rate is reported.
        rounds = [await concurrent(target, streams, args.pieces) for _ in range(args.rounds)]
        row[streams] = _median_round(rounds)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=283)
    parser.add_argument("--piece", default="word ", help="must contain a non-space marker")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--streams", default="100,1000")
    parser.add_argument("--ttft-runs", type=int, default=100)
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per concurrency; the median is reported"
    )
    parser.add_argument(
        "--ttft-pieces", type=int, default=20, help="pieces per stream in the paced TTFT run"
    )
    parser.add_argument(
        "--ttft-delay", type=float, default=0.001, help="seconds between pieces, paced TTFT run"
    )
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument(
        "--production",
        action="store_true",
        help="dragoman with keys, Redis limits and metrics on against all off (100 streams)",
    )
    parser.add_argument(
        "--against",
        metavar="REF",
        help="this tree's dragoman against git revision REF's, measured in turns",
    )
    args = parser.parse_args()
    if args.production and args.streams == parser.get_default("streams"):
        args.streams = "100"
    if args.production and args.rounds == parser.get_default("rounds"):
        args.rounds = 9
    if args.quick:
        args.pieces, args.streams, args.ttft_runs, args.rounds = 20, "10", 5, 1
    args.streams = [int(s) for s in args.streams.split(",")]
    if args.production:
        production(args)
        return
    if args.against:
        against(args)
        return

    with tempfile.TemporaryDirectory() as workdir:
        upstream_port, dragoman_port, baseline_port = free_port(), free_port(), free_port()
        base_url = f"http://127.0.0.1:{upstream_port}/v1"
        env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-bench"}
        procs = []
        try:
            upstream = _start_upstream(args, upstream_port, env)
            procs.append(upstream)
            dragoman = start(
                [sys.executable, "-m", "dragoman", "serve", "--port", str(dragoman_port)],
                {**env, "DRAGOMAN_PROVIDER": "openai", "DRAGOMAN_LOG_LEVEL": "warning",
                 "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/dragoman.db"},
                dragoman_port, "/readyz",
            )  # fmt: skip
            procs.append(dragoman)
            baseline = start(
                [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--port",
                 str(baseline_port), "--log-level", "warning", "--no-access-log"],
                {**env, "BASELINE_DB": f"sqlite+aiosqlite:///{workdir}/baseline.db"},
                baseline_port, "/docs",
            )  # fmt: skip
            procs.append(baseline)
            upstream_request = _http_post(
                "/v1/chat/completions",
                {"model": "fake-model", "stream": True,
                 "messages": [{"role": "user", "content": "hello"}]},
            )  # fmt: skip
            translate = _http_post("/translate", {"lang": "ko", "message": "hello"})
            marker = args.piece.strip().encode()
            targets = [
                Target(
                    "upstream read directly (limit)",
                    upstream_port,
                    upstream.pid,
                    upstream_request,
                    marker,
                ),
                Target("dragoman", dragoman_port, dragoman.pid, translate, marker),
                Target(
                    "baseline (original design)", baseline_port, baseline.pid, translate, marker
                ),
            ]
            rows = {t.name: uvloop.run(measure(t, args, upstream_port)) for t in targets}
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    report(rows, args)


def _served_env(upstream_port: int) -> dict[str, str]:
    """The environment of a `dragoman serve` on the fake upstream, everything else off."""
    base_url = f"http://127.0.0.1:{upstream_port}/v1"
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-bench",
           "DRAGOMAN_PROVIDER": "openai", "DRAGOMAN_LOG_LEVEL": "warning"}  # fmt: skip
    for variable in ("DRAGOMAN_AUTH", "DRAGOMAN_REDIS_URL", "DRAGOMAN_METRICS_TOKEN"):
        env.pop(variable, None)
    return env


def _start_upstream(
    args: argparse.Namespace, port: int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    return start(
        [sys.executable, "-m", "tests.fake_openai", "--port", str(port),
         "--pieces", str(args.pieces), "--piece", args.piece, "--delay", str(args.delay)],
        env, port, "/v1/models",
    )  # fmt: skip


def against(args: argparse.Namespace) -> None:
    """This tree's dragoman against revision `args.against`'s, in turns."""
    root = Path(__file__).resolve().parent.parent
    revision = subprocess.run(
        ["git", "rev-parse", "--short", args.against],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory() as workdir:
        tree = Path(workdir) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), revision],
            cwd=root, check=True, capture_output=True,
        )  # fmt: skip
        upstream_port, new_port, old_port = (free_port() for _ in range(3))
        env = _served_env(upstream_port)
        new_env = {**env, "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/new.db",
                   "PYTHONPATH": str(root / "src")}  # fmt: skip
        old_env = {**env, "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/old.db",
                   "PYTHONPATH": str(tree / "src")}  # fmt: skip
        procs = []
        try:
            procs.append(_start_upstream(args, upstream_port, env))
            serve = [sys.executable, "-m", "dragoman", "serve", "--port"]
            new = start([*serve, str(new_port)], new_env, new_port, "/readyz")
            procs.append(new)
            old = start([*serve, str(old_port)], old_env, old_port, "/readyz")
            procs.append(old)
            translate = _http_post("/translate", {"lang": "ko", "message": "hello"})
            marker = args.piece.strip().encode()
            targets = [
                Target("this tree", new_port, new.pid, translate, marker),
                Target(f"revision {revision}", old_port, old.pid, translate, marker),
            ]
            rows = uvloop.run(measure_in_turns(targets, args, upstream_port))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)], cwd=root, check=False
            )
    report_against(rows, args)


def report_against(rows: dict[str, dict[str, object]], args: argparse.Namespace) -> None:
    print(
        f"pieces per stream: {args.pieces} × {args.piece!r}; paced TTFT: {args.ttft_pieces} "
        f"pieces, {args.ttft_delay}s apart; {args.rounds} rounds in turns, the median reported; "
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    head = ["", "TTFT p50 ms", "TTFT p99 ms"]
    for n in args.streams:
        head += [f"pieces/s @{n}", f"p99 gap ms @{n}", f"CPU s/1k pieces @{n}", f"errors @{n}"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    ttft: dict[str, float] = {}
    rate: dict[str, dict[int, float]] = {}
    cpu: dict[str, dict[int, float]] = {}
    for name, row in rows.items():
        times = row["ttft"]
        assert isinstance(times, list)
        ttft[name] = _pct(times, 0.5)
        cells = [name, f"{ttft[name]:.2f}", f"{_pct(times, 0.99):.2f}"]
        rate[name], cpu[name] = {}, {}
        for n in args.streams:
            phase = row[n]
            assert isinstance(phase, Phase)
            rate[name][n] = phase.pieces / phase.seconds if phase.seconds else 0.0
            cpu[name][n] = phase.cpu_s / phase.pieces * 1000 if phase.pieces else float("nan")
            cells += [f"{rate[name][n]:,.0f}", f"{_pct(phase.gaps, 0.99) * 1000:.1f}",
                      f"{cpu[name][n]:.3f}", str(phase.errors)]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    new, old = list(rows)
    print()
    print("| this tree against the revision | value |")
    print("|---|---|")
    print(f"| TTFT p50, difference | {ttft[new] - ttft[old]:+.2f} ms |")
    for n in args.streams:
        print(f"| pieces/s @{n}, ratio | {rate[new][n] / rate[old][n]:.2f}× |")
        print(f"| CPU per piece @{n}, ratio | {cpu[new][n] / cpu[old][n]:.2f}× |")


def _create_key(env: dict[str, str]) -> str:
    """A key whose limits the benchmark never reaches: what is measured is their cost."""
    created = subprocess.run(
        [sys.executable, "-m", "dragoman", "keys", "create", "--name", "bench",
         "--rpm", "100000000", "--cpm", "1000000000", "--concurrency", "100000"],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return created.stdout.strip().splitlines()[-1]


def production(args: argparse.Namespace) -> None:
    """All off against keys + Redis limits + metrics on, in the same run."""
    with tempfile.TemporaryDirectory() as workdir:
        upstream_port, off_port, on_port, redis_port = (free_port() for _ in range(4))
        env = _served_env(upstream_port)
        off_env = {**env, "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/off.db"}
        on_env = {
            **env,
            "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/on.db",
            "DRAGOMAN_AUTH": "keys",
            "DRAGOMAN_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "DRAGOMAN_METRICS_TOKEN": "bench-metrics-token",
        }
        procs = []
        try:
            procs.append(start_redis(redis_port, workdir))
            procs.append(_start_upstream(args, upstream_port, env))
            serve = [sys.executable, "-m", "dragoman", "serve", "--port"]
            off = start([*serve, str(off_port)], off_env, off_port, "/readyz")
            procs.append(off)
            on = start([*serve, str(on_port)], on_env, on_port, "/readyz")
            procs.append(on)
            secret = _create_key(on_env)
            body = {"lang": "ko", "message": "hello"}
            marker = args.piece.strip().encode()
            targets = [
                Target("dragoman, all off", off_port, off.pid, _http_post("/translate", body),
                       marker),
                Target("dragoman, keys + Redis limits + metrics", on_port, on.pid,
                       _http_post("/translate", body, f"Authorization: Bearer {secret}\r\n"),
                       marker),
            ]  # fmt: skip
            rows = uvloop.run(measure_in_turns(targets, args, upstream_port))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    report_production(rows, args)


async def measure_in_turns(
    targets: list[Target], args: argparse.Namespace, upstream_port: int
) -> dict[str, dict[str, object]]:
    """`measure`'s paced first token and its rounds of streams, taking turns between targets."""
    rows: dict[str, dict[str, object]] = {t.name: {"ttft": []} for t in targets}
    _configure_upstream(upstream_port, args.ttft_pieces, args.ttft_delay)
    for run in range(args.ttft_runs + 5):
        for target in targets:
            _, first = await _stream(target, None)
            times = rows[target.name]["ttft"]
            if first is not None and run >= 5 and isinstance(times, list):
                times.append(first * 1000)
    _configure_upstream(upstream_port, args.pieces, args.delay)
    for streams in args.streams:
        rounds: dict[str, list[Phase]] = {t.name: [] for t in targets}
        for _ in range(args.rounds):
            for target in targets:
                rounds[target.name].append(await concurrent(target, streams, args.pieces))
        for name, phases in rounds.items():
            rows[name][streams] = _median_round(phases)
    return rows


def report_production(rows: dict[str, dict[str, object]], args: argparse.Namespace) -> None:
    streams = args.streams[0]
    print(
        f"pieces per stream: {args.pieces} × {args.piece!r}; paced TTFT: {args.ttft_pieces} "
        f"pieces, {args.ttft_delay}s apart; machine: {os.cpu_count()} CPUs"
    )
    print(f"| | TTFT p50 ms | pieces/s @{streams} | errors @{streams} |")
    print("|---|---|---|---|")
    ttft: dict[str, float] = {}
    rate: dict[str, float] = {}
    for name, row in rows.items():
        times, phase = row["ttft"], row[streams]
        assert isinstance(times, list) and isinstance(phase, Phase)
        ttft[name] = _pct(times, 0.5)
        rate[name] = phase.pieces / phase.seconds if phase.seconds else 0.0
        print(f"| {name} | {ttft[name]:.2f} | {rate[name]:,.0f} | {phase.errors} |")
    off, on = list(rows)
    print()
    print(f"| on − off, TTFT p50 | {ttft[on] - ttft[off]:+.2f} ms |")
    print(f"| on / off, pieces/s @{streams} | {rate[on] / rate[off]:.2f}× |")


def report(rows: dict[str, dict[str, object]], args: argparse.Namespace) -> None:
    streams = args.streams
    print(
        f"pieces per stream: {args.pieces} × {args.piece!r}, delay {args.delay}s; "
        f"paced TTFT: {args.ttft_pieces} pieces, {args.ttft_delay}s apart; "
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    head = ["", "TTFT p50 ms", "TTFT p99 ms", "TTFT p50 ms, burst"]
    for n in streams:
        head += [f"pieces/s @{n}", f"p99 gap ms @{n}", f"CPU s/1k pieces @{n}", f"errors @{n}"]
    head += [f"RSS peak MB @{streams[-1]}", f"KB per stream @{streams[-1]}"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    rates: dict[str, dict[int, float]] = {}
    for name, row in rows.items():
        ttft, burst = row["ttft"], row["ttft_burst"]
        assert isinstance(ttft, list) and isinstance(burst, list)
        cells = [name, f"{_pct(ttft, 0.5):.2f}", f"{_pct(ttft, 0.99):.2f}"]
        cells.append(f"{_pct(burst, 0.5):.2f}")
        rates[name] = {}
        for n in streams:
            phase = row[n]
            assert isinstance(phase, Phase)
            rate = phase.pieces / phase.seconds if phase.seconds else 0.0
            rates[name][n] = rate
            cpu = phase.cpu_s / phase.pieces * 1000 if phase.pieces else float("nan")
            cells += [f"{rate:,.0f}", f"{_pct(phase.gaps, 0.99) * 1000:.1f}", f"{cpu:.3f}",
                      str(phase.errors)]  # fmt: skip
        last = row[streams[-1]]
        assert isinstance(last, Phase)
        idle = row["idle_rss"]
        assert isinstance(idle, float)
        cells += [
            f"{last.rss_peak_mb:.0f}",
            f"{(last.rss_peak_mb - idle) * 1024 / streams[-1]:.0f}",
        ]
        print("| " + " | ".join(cells) + " |")
    names = list(rows)
    limit, ours, base = names
    ttft = {name: _pct(rows[name]["ttft"], 0.5) for name in names}  # type: ignore[arg-type]
    burst = {name: _pct(rows[name]["ttft_burst"], 0.5) for name in names}  # type: ignore[arg-type]
    print()
    print("| ratio | value |")
    print("|---|---|")
    for n in streams:
        print(f"| dragoman / baseline, pieces/s @{n} | {rates[ours][n] / rates[base][n]:.1f}× |")
        print(f"| dragoman / limit, pieces/s @{n} | {rates[ours][n] / rates[limit][n]:.2f}× |")
    print(f"| dragoman TTFT p50 − limit TTFT p50 | {ttft[ours] - ttft[limit]:.2f} ms |")
    print(f"| baseline TTFT p50 − limit TTFT p50 | {ttft[base] - ttft[limit]:.2f} ms |")
    print(f"| dragoman − limit, TTFT p50 with a burst | {burst[ours] - burst[limit]:.2f} ms |")
    print(f"| baseline − limit, TTFT p50 with a burst | {burst[base] - burst[limit]:.2f} ms |")
    if len(streams) > 1:
        lo, hi = streams[0], streams[-1]
        print(
            f"| dragoman time per piece @{hi} / @{lo} | {rates[ours][lo] / rates[ours][hi]:.2f}× |"
        )


if __name__ == "__main__":
    main()
