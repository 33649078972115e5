"""Live sessions under an audience: one speaker, listeners on two replicas sharing Redis.

    python -m bench.live                        # 100 then 1,000 listeners (a few minutes)
    python -m bench.live --listeners 100 --segments 5    # a quick look

Starts, each in a process of its own: a redis-server, the fake OpenAI-compatible upstream at a
model's pace (`--pieces` pieces per translation, `--delay` seconds apart, each piece the
wall-clock time it was sent), and two `dragoman serve` replicas on one SQLite file and that
Redis. For each listener count it opens a session on the first replica with `--languages`,
connects the listeners (alternately to each replica, spread over the languages) with raw
sockets on uvloop, waits until the session counts them all, then sends `--segments` segments
to the first replica, `--gap` seconds apart, and reads every listener to the session's end.

It reports, per listener count: translations the upstream received (it must be segments times
languages); listeners whose stream lost, repeated or skipped an event (ids consecutive, every
`segment`, `delta` and `done` of its language, and `closed`); the delivery delay from the
upstream writing a piece to a listener reading it (p50, p99, max; the listeners' own reading
shares the machine's two cores with both replicas and the upstream, so this is an upper
bound); the replicas' CPU seconds and memory (RSS growth per listener); and, from the largest
count, what one replica would need for 10,000 listeners, projected from the CPU it spent per
event delivered and the memory per listener.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import uvloop

from bench.procs import cpu_seconds, rss_mb, start, start_redis
from tests.conftest import free_port


@dataclass
class Heard:
    """What one listener got."""

    lang: str
    ids: list[int] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    delays: list[float] = field(default_factory=list)
    ok: bool = False


def _request(port: int, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


async def _listen(port: int, code: str, lang: str, heard: Heard) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /v1/live/{code}/events?lang={lang} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    buffer = b""
    head_done = False
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            now = time.time()
            buffer += data
            if not head_done:
                if b"\r\n\r\n" not in buffer:
                    continue
                buffer = buffer.split(b"\r\n\r\n", 1)[1]
                head_done = True
            # The body is chunked: event blocks end with a blank line; chunk-size lines sit
            # between them and are skipped with the lines that are neither id, event nor data.
            while (end := buffer.find(b"\n\n")) >= 0:
                block, buffer = buffer[:end], buffer[end + 2 :]
                kind = b""
                for line in block.split(b"\n"):
                    if line.startswith(b"id: "):
                        heard.ids.append(int(line[4:]))
                    elif line.startswith(b"event: "):
                        kind = line[7:]
                    elif line.startswith(b"data: ") and kind == b"delta":
                        stamp = line.split(b'"text":"', 1)[1].split(b" ", 1)[0]
                        heard.delays.append(now - float(stamp))
                if kind:
                    name = kind.decode()
                    heard.kinds[name] = heard.kinds.get(name, 0) + 1
                    if name == "closed":
                        return
    finally:
        writer.close()


def _redis_commands(port: int, reset: bool = False) -> dict[str, int]:
    """Calls per Redis command since the last reset."""
    import redis

    client = redis.Redis(port=port)
    try:
        if reset:
            client.config_resetstat()
            return {}
        stats = client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    finally:
        client.close()


async def _phase(
    ports: list[int],
    listeners: int,
    args: argparse.Namespace,
    upstream: int,
    pids: list[int],
    redis_port: int,
) -> dict[str, Any]:
    langs = args.languages
    session = _request(ports[0], "POST", "/v1/live", {"target_langs": langs, "title": "bench"})
    code = session["join_code"]
    rss_before = [rss_mb(pid) for pid in pids]
    heard = [Heard(langs[i % len(langs)]) for i in range(listeners)]
    tasks = [
        asyncio.create_task(_listen(ports[i % len(ports)], code, heard[i].lang, heard[i]))
        for i in range(listeners)
    ]
    deadline = time.monotonic() + 120
    while True:
        info = await asyncio.to_thread(_request, ports[0], "GET", f"/v1/live/{code}")
        if sum(info["listeners"].values()) >= listeners or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    rss_listening = [rss_mb(pid) for pid in pids]
    requests_before = _request(upstream, "GET", "/fake/stats")["chat_requests"]
    cpu_before = [cpu_seconds(pid) for pid in pids]
    _redis_commands(redis_port, reset=True)
    peak = list(rss_listening)
    started = time.monotonic()
    path = f"/v1/live/{session['session_id']}/segments"
    for n in range(args.segments):
        body = {"text": f"Segment number {n} of the benchmark, as a speaker would say it."}
        await asyncio.to_thread(_request, ports[0], "POST", path, body)
        for _ in range(max(1, int(args.gap / 0.1))):
            await asyncio.sleep(args.gap / max(1, int(args.gap / 0.1)))
            peak = [max(p, rss_mb(pid)) for p, pid in zip(peak, pids, strict=True)]

    def all_done() -> bool:
        return all(h.kinds.get("done", 0) >= args.segments for h in heard)

    while not all_done() and time.monotonic() - started < 300:
        await asyncio.sleep(0.1)
        peak = [max(p, rss_mb(pid)) for p, pid in zip(peak, pids, strict=True)]
    spoken_s = time.monotonic() - started
    cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
    commands = _redis_commands(redis_port)
    await asyncio.to_thread(_request, ports[0], "POST", f"/v1/live/{session['session_id']}/close")
    await asyncio.wait(tasks, timeout=60)
    for task in tasks:
        task.cancel()
    translations = _request(upstream, "GET", "/fake/stats")["chat_requests"] - requests_before
    expected = {"segment": args.segments, "delta": args.segments * args.pieces,
                "done": args.segments, "closed": 1}  # fmt: skip
    for h in heard:
        consecutive = h.ids == list(range(h.ids[0], h.ids[0] + len(h.ids))) if h.ids else False
        h.ok = consecutive and all(h.kinds.get(k, 0) == v for k, v in expected.items())
    delays = sorted(d for h in heard for d in h.delays)
    delivered = sum(len(h.ids) for h in heard)
    return {
        "listeners": listeners,
        "translations": translations,
        "expected_translations": args.segments * len(langs),
        "bad_listeners": sum(not h.ok for h in heard),
        "delay_p50_ms": _pct(delays, 0.50) * 1000,
        "delay_p99_ms": _pct(delays, 0.99) * 1000,
        "delay_max_ms": (delays[-1] if delays else float("nan")) * 1000,
        "delays": len(delays),
        "events_delivered": delivered,
        "seconds": spoken_s,
        "cpu_s": cpu,
        "rss_before_mb": rss_before,
        "rss_listening_mb": rss_listening,
        "rss_peak_mb": peak,
        "redis_commands": dict(sorted(commands.items(), key=lambda kv: -kv[1])[:8]),
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", default="100,1000", help="comma-separated counts")
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--languages", default="ko,ja,fr")
    parser.add_argument("--pieces", type=int, default=20, help="pieces per translation")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between pieces")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between segments")
    args = parser.parse_args()
    args.languages = [lang.strip() for lang in args.languages.split(",")]
    counts = [int(n) for n in args.listeners.split(",")]
    with tempfile.TemporaryDirectory() as workdir:
        redis_port, upstream_port = free_port(), free_port()
        ports = [free_port(), free_port()]
        procs = []
        try:
            procs.append(start_redis(redis_port, workdir))
            env = {**os.environ}
            for variable in ("DRAGOMAN_AUTH", "DRAGOMAN_METRICS_TOKEN"):
                env.pop(variable, None)
            upstream = start(
                [sys.executable, "-m", "tests.fake_openai", "--port", str(upstream_port),
                 "--pieces", str(args.pieces), "--delay", str(args.delay), "--stamp"],
                env, upstream_port, "/v1/models",
            )  # fmt: skip
            procs.append(upstream)
            replica_env = {
                **env,
                "DRAGOMAN_PROVIDER": "openai",
                "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
                "OPENAI_API_KEY": "sk-bench",
                "DRAGOMAN_LOG_LEVEL": "warning",
                "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/live.db",
                "DRAGOMAN_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                # Every segment into every language: the bench speaker talks fast.
                "DRAGOMAN_CONTEXT_SEGMENTS": "0",
            }
            serve = [sys.executable, "-m", "dragoman", "serve", "--port"]
            replicas = [start([*serve, str(port)], replica_env, port, "/readyz") for port in ports]
            procs += replicas
            pids = [proc.pid for proc in replicas]
            rows = [
                uvloop.run(_phase(ports, n, args, upstream_port, pids, redis_port)) for n in counts
            ]
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    report(rows, args)


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"{args.segments} segments, {len(args.languages)} languages "
        f"({', '.join(args.languages)}), {args.pieces} pieces {args.delay * 1000:.0f} ms apart, "
        f"a segment every {args.gap} s; two replicas + Redis + upstream + listeners on "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print()
    print("| listeners | upstream translations (expected) | listeners with a loss, repeat or "
          "gap | delivery p50 ms | p99 ms | max ms | events delivered | replica CPU s "
          "(A, B) | RSS growth per listener KB (A, B) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        per_listener = [
            (listening - before) * 1024 / max(1, row["listeners"] / 2)
            for before, listening in zip(row["rss_before_mb"], row["rss_listening_mb"], strict=True)
        ]
        print(
            f"| {row['listeners']:,} | {row['translations']} ({row['expected_translations']}) "
            f"| {row['bad_listeners']} | {row['delay_p50_ms']:.1f} | {row['delay_p99_ms']:.1f} "
            f"| {row['delay_max_ms']:.1f} | {row['events_delivered']:,} "
            f"| {row['cpu_s'][0]:.1f}, {row['cpu_s'][1]:.1f} "
            f"| {per_listener[0]:.0f}, {per_listener[1]:.0f} |"
        )
    print()
    for row in rows:
        print(f"Redis commands while {row['listeners']:,} listened: {row['redis_commands']}")
    last = rows[-1]
    events_per_replica = last["events_delivered"] / 2
    cpu_per_event = statistics.mean(last["cpu_s"]) / max(1.0, events_per_replica)
    listeners_per_replica = last["listeners"] / 2
    rate = events_per_replica / listeners_per_replica / last["seconds"]
    kb = statistics.mean(
        (listening - before) * 1024 / max(1.0, listeners_per_replica)
        for before, listening in zip(last["rss_before_mb"], last["rss_listening_mb"], strict=True)
    )
    print()
    print(f"Projection for one replica with 10,000 listeners (from {last['listeners']:,}):")
    print(f"- CPU per event delivered: {cpu_per_event * 1e6:.1f} µs; each listener got "
          f"{rate:.1f} events/s on average over the talk")  # fmt: skip
    print(f"- CPU: {10_000 * rate * cpu_per_event:.2f} cores at that rate; at the peak rate of "
          f"one model's pace into one language ({1 / args.delay:.0f} events/s per listener): "
          f"{10_000 / args.delay * cpu_per_event:.1f} cores")  # fmt: skip
    print(f"- memory: about {kb:.0f} KB per listener, {10_000 * kb / 1024:.0f} MB")
    print(json.dumps({"rows": [{k: v for k, v in r.items()} for r in rows]}, default=str))


if __name__ == "__main__":
    main()
