"""Failover benchmark: dragoman over a pool of upstreams of which two are broken, then over two
healthy ones that share the work.

    python -m bench.failover            # about three minutes
    python -m bench.failover --quick    # seconds-long smoke run

Starts, each in a process of its own, four fake OpenAI-compatible upstreams
(`tests/fake_openai.py`): one that refuses every request (500), one that takes every request
and never answers (it hangs before its first token), and two healthy ones (`--pieces` pieces,
`--delay` seconds apart; their model lists all answer). Then, in turn, two `dragoman serve`
with an upstreams file (`DRAGOMAN_UPSTREAMS`), each on a fresh SQLite database:

1. **Failover.** One pool of three, equal weights: the refusing, the hanging and one healthy
   upstream; `--first-token-timeout` per attempt, breakers of 5 failures and a 30 s cool-down
   (`--cooldown`). `--concurrency` clients send `POST /v1/translations` streams one after the
   other for `--duration` seconds. Reported: translations and how many failed (any status but
   200, an in-band error, or a stream without its `done`); the time to the first `delta` (p50,
   p99, max) against its bound, the deadline plus the healthy upstream's own p99 (measured
   first, through a dragoman over the healthy upstream alone, at the same concurrency); and
   what each upstream received (read from the fakes): before its breaker first opened, and
   after (its trial requests, one per cool-down).
2. **Balance.** One pool of the two healthy upstreams of equal weight, then 3:1: `--requests`
   requests at `--concurrency`; each upstream's share.
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
from typing import IO, Any

import uvloop

from bench.procs import start
from tests.conftest import free_port


@dataclass
class Upstream:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def received(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/fake/stats", timeout=10) as r:
            return int(json.loads(r.read())["chat_requests"])


@dataclass
class Run:
    ttft_ms: list[float] = field(default_factory=list)
    failed: int = 0
    done: int = 0
    # Per upstream: what it had received when its breaker was first seen open (None: never).
    at_open: dict[str, int | None] = field(default_factory=dict)
    opened_after_s: dict[str, float | None] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    outcomes: dict[tuple[str, str], float] = field(default_factory=dict)


_REQUEST = json.dumps({"text": "hello there", "target_lang": "ko"}).encode()


async def translate(port: int) -> tuple[bool, float | None]:
    """One streamed translation: (whole, seconds to its first delta)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/translations HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_REQUEST), _REQUEST)
    )
    first: float | None = None
    seen = b""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            seen += data
            if first is None and b"event: delta" in seen:
                first = time.perf_counter() - started
            if b"event: done" in seen or b"event: error" in seen:
                break
    finally:
        writer.close()
    whole = seen.startswith(b"HTTP/1.1 200") and b"event: done" in seen
    return whole, first


async def load(
    port: int, concurrency: int, *, duration_s: float | None = None, requests: int | None = None
) -> Run:
    run = Run()
    deadline = time.monotonic() + (duration_s or 0)
    remaining = [requests or 0]

    async def client() -> None:
        while True:
            if duration_s is not None and time.monotonic() >= deadline:
                return
            if requests is not None:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            whole, first = await translate(port)
            if whole and first is not None:
                run.done += 1
                run.ttft_ms.append(first * 1000)
            else:
                run.failed += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    run.seconds = time.monotonic() - started
    return run


async def watch_breakers(
    port: int, upstreams: list[Upstream], run: Run, stop: asyncio.Event
) -> None:
    """Every 0.1 s: which breakers /readyz says are open; the upstreams' counts when one opens."""
    started = time.monotonic()
    for upstream in upstreams:
        run.at_open[upstream.name] = None
        run.opened_after_s[upstream.name] = None
    while not stop.is_set():
        states = await asyncio.to_thread(_readyz_states, port)
        for upstream in upstreams:
            if states.get(upstream.name) == "open" and run.at_open[upstream.name] is None:
                run.at_open[upstream.name] = await asyncio.to_thread(upstream.received)
                run.opened_after_s[upstream.name] = time.monotonic() - started
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except TimeoutError:
            pass


def _readyz_states(port: int) -> dict[str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as exc:  # 503 while every breaker is open
        body = json.loads(exc.read())
    return {u["name"]: u["state"] for u in body.get("upstreams", [])}


def _metrics(port: int) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "dragoman_upstream_requests_total":
                found[(sample.labels["upstream"], sample.labels["outcome"])] = sample.value
            elif sample.name == "dragoman_upstream_fallbacks_total":
                found[(sample.labels["upstream"], "fell back")] = sample.value
            elif sample.name == "dragoman_upstream_retries_refused_total":
                found[("", "retries refused")] = sample.value
    return found


def _upstreams_file(path: Path, settings: dict[str, Any], members: list[dict[str, Any]]) -> str:
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    for member in members:
        lines.append("[[upstream]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in member.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


class Dragoman:
    """`dragoman serve` over an upstreams file, on a fresh SQLite database."""

    def __init__(self, workdir: Path, name: str, upstreams_file: str, log: IO[bytes]) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "DRAGOMAN_UPSTREAMS": upstreams_file,
            "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / name}.db",
            "DRAGOMAN_LOG_LEVEL": "error",
        }
        for variable in ("DRAGOMAN_AUTH", "DRAGOMAN_REDIS_URL", "DRAGOMAN_METRICS_TOKEN"):
            env.pop(variable, None)
        self.proc = start(
            [sys.executable, "-m", "dragoman", "serve", "--port", str(self.port)],
            env,
            self.port,
            "/readyz",
            log,
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=20, help="pieces per healthy answer")
    parser.add_argument("--delay", type=float, default=0.005, help="seconds between pieces")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--duration", type=float, default=75.0, help="failover run, seconds")
    parser.add_argument("--requests", type=int, default=1000, help="per balance run")
    parser.add_argument("--first-token-timeout", type=float, default=1.0)
    parser.add_argument("--cooldown", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.requests, args.cooldown, args.concurrency = 4.0, 100, 2.0, 8
        args.first_token_timeout = 0.5

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        log = (workdir / "servers.log").open("wb")
        procs: list[subprocess.Popen[bytes]] = []
        servers: list[Dragoman] = []
        try:
            fakes: dict[str, Upstream] = {}
            for name, fail in (
                ("refusing", "refuse"),
                ("hanging", "hang"),
                ("healthy-a", None),
                ("healthy-b", None),
            ):
                port = free_port()
                cmd = [sys.executable, "-m", "tests.fake_openai", "--port", str(port),
                       "--pieces", str(args.pieces), "--delay", str(args.delay)]  # fmt: skip
                if fail:
                    cmd += ["--fail", fail]
                proc = start(cmd, dict(os.environ), port, "/v1/models", log)
                procs.append(proc)
                fakes[name] = Upstream(name, port, proc)

            def member(name: str, **keys: Any) -> dict[str, Any]:
                return {"name": name, "kind": "openai", "base_url": fakes[name].base_url,
                        "model": "fake-model", **keys}  # fmt: skip

            settings = {
                "first_token_timeout_s": args.first_token_timeout,
                "breaker_failures": 5,
                "breaker_cooldown_s": args.cooldown,
            }
            # The healthy upstream's own first token, through a dragoman over it alone.
            alone = Dragoman(
                workdir,
                "alone",
                _upstreams_file(workdir / "alone.toml", settings, [member("healthy-a")]),
                log,
            )
            servers.append(alone)
            baseline = uvloop.run(
                load(alone.port, args.concurrency, requests=max(200, args.requests // 2))
            )
            alone.stop()
            servers.remove(alone)

            three = [member("refusing"), member("hanging"), member("healthy-a")]
            broken = Dragoman(
                workdir, "failover", _upstreams_file(workdir / "f.toml", settings, three), log
            )
            servers.append(broken)
            before = {name: fake.received() for name, fake in fakes.items()}

            async def failover_run() -> Run:
                stop = asyncio.Event()
                run = Run()
                watcher = asyncio.create_task(
                    watch_breakers(broken.port, [fakes["refusing"], fakes["hanging"]], run, stop)
                )
                result = await load(broken.port, args.concurrency, duration_s=args.duration)
                stop.set()
                await watcher
                result.at_open, result.opened_after_s = run.at_open, run.opened_after_s
                return result

            failover = uvloop.run(failover_run())
            failover.received = {
                name: fake.received() - before[name] for name, fake in fakes.items()
            }
            failover.at_open = {
                name: (count - before[name] if count is not None else None)
                for name, count in failover.at_open.items()
            }
            failover.outcomes = _metrics(broken.port)
            broken.stop()
            servers.remove(broken)

            balance: list[tuple[str, dict[str, int], Run]] = []
            for label, weights in (("equal weights", (1, 1)), ("weights 3:1", (3, 1))):
                pool = [
                    member("healthy-a", pool="gpus", weight=weights[0]),
                    member("healthy-b", pool="gpus", weight=weights[1]),
                ]
                path = _upstreams_file(workdir / f"b{weights[0]}.toml", settings, pool)
                server = Dragoman(workdir, f"balance-{weights[0]}", path, log)
                servers.append(server)
                counts = {name: fakes[name].received() for name in ("healthy-a", "healthy-b")}
                run = uvloop.run(load(server.port, args.concurrency, requests=args.requests))
                shares = {name: fakes[name].received() - n for name, n in counts.items()}
                balance.append((label, shares, run))
                server.stop()
                servers.remove(server)
        finally:
            for server in servers:
                server.stop()
            for proc in procs:
                proc.terminate()
                proc.wait(30)
            log.close()
    report(args, baseline, failover, balance)


def report(
    args: argparse.Namespace,
    baseline: Run,
    failover: Run,
    balance: list[tuple[str, dict[str, int], Run]],
) -> None:
    print(
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
        f"{os.getloadavg()[0]:.1f}; healthy upstreams: {args.pieces} pieces {args.delay}s apart; "
        f"{args.concurrency} clients; first_token_timeout_s = {args.first_token_timeout}, "
        f"breaker_failures = 5, breaker_cooldown_s = {args.cooldown}"
    )
    print()
    bound = args.first_token_timeout * 1000 + _pct(baseline.ttft_ms, 0.99)
    p99 = _pct(failover.ttft_ms, 0.99)
    print(f"Failover: refusing + hanging + healthy, one pool, {failover.seconds:.0f} s")
    print()
    print("| | translations | failed | first token p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for name, run in (("healthy upstream alone", baseline), ("the pool of three", failover)):
        print(
            f"| {name} | {run.done + run.failed} | {run.failed} | {_pct(run.ttft_ms, 0.5):.1f} | "
            f"{_pct(run.ttft_ms, 0.99):.1f} | {max(run.ttft_ms, default=float('nan')):.1f} |"
        )
    refused = failover.outcomes.get(("", "retries refused"), 0.0)
    print()
    print(f"Retries the retry budget refused: {refused:.0f}.")
    verdict = "within" if p99 <= bound else "ABOVE"
    print()
    print(
        f"First token p99 {p99:.1f} ms: {verdict} the bound of {bound:.1f} ms (deadline "
        f"{args.first_token_timeout * 1000:.0f} ms + the healthy upstream's own p99 "
        f"{_pct(baseline.ttft_ms, 0.99):.1f} ms)."
    )
    print()
    print(
        "| upstream | requests received | breaker first open after | received before it "
        "opened | received after (trials) | answered | failed before the first piece | "
        "fell back |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in ("refusing", "hanging", "healthy-a"):
        received = failover.received[name]
        at_open = failover.at_open.get(name)
        opened = failover.opened_after_s.get(name)
        outcomes = failover.outcomes
        failed = sum(
            outcomes.get((name, outcome), 0.0) for outcome in ("error", "timeout", "rate_limited")
        )
        print(
            f"| {name} | {received} | {f'{opened:.1f} s' if opened is not None else 'never'} | "
            f"{at_open if at_open is not None else '—'} | "
            f"{received - at_open if at_open is not None else '—'} | "
            f"{outcomes.get((name, 'answered'), 0.0):.0f} | {failed:.0f} | "
            f"{outcomes.get((name, 'fell back'), 0.0):.0f} |"
        )
    print()
    print(f"Balance: two healthy upstreams in one pool, {args.requests} requests each run")
    print()
    print("| weights | healthy-a | healthy-b | share of healthy-a | failed |")
    print("|---|---|---|---|---|")
    for label, shares, run in balance:
        total = sum(shares.values())
        share = shares["healthy-a"] / total if total else float("nan")
        print(
            f"| {label} | {shares['healthy-a']} | {shares['healthy-b']} | {share:.1%} | "
            f"{run.failed} |"
        )


if __name__ == "__main__":
    main()
