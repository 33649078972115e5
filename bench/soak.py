"""Soak: many resumable streams for a long time, with clients that drop, resume and cancel.

    python -m bench.soak                              # 1,000 streams for 10 minutes
    python -m bench.soak --streams 50 --duration 30   # a short check
    python -m bench.soak --redis-url start            # resume through Redis Streams (its own
                                                      # redis-server; or a redis:// URL)

Starts the fake OpenAI-compatible upstream (tests/fake_openai.py, `--pieces` pieces of
`--piece`, `--delay` seconds apart) and `dragoman serve` pointed at it with a fresh SQLite
database (or `--database-url`), then runs `--streams` client loops for `--duration` seconds.
Each loop starts a resumable translation after another and, at random (`--seed`), reads it to
the end; or drops the connection after some event, waits less than the resume grace and
follows it again with `Last-Event-ID` (up to three times) to the end; or cancels it while
reading; or drops it and never comes back (the server's grace then cancels it). Every stream
read to the end must hold exactly the upstream's text, with event ids 0, 1, 2... across resumes.

Every `--sample` seconds it prints to stderr the server's memory (RSS), open file descriptors,
its slowest answer to `GET /healthz` and the clients' counts. At the end it stops the clients,
waits for the grace to cancel what they left, counts the records by status and prints a
markdown report. It exits 1 when a piece was lost or duplicated, an event id skipped or
repeated, a text differed, a record was left `streaming`, or anything else unexpected happened
(an error status, a stream that ended without `done`, one cancelled that was not meant to be).

The clients are raw sockets on uvloop, as in bench/load.py: on a 2-core machine an httpx client
for 1,000 streams would take the CPU that the server needs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import uvloop
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.procs import cpu_seconds, rss_mb, start, start_redis
from tests.conftest import free_port

# What each client loop does with a translation, and how often.
BEHAVIOURS = {"read": 0.55, "resume": 0.25, "cancel": 0.1, "abandon": 0.1}
COUNTS = {"accepted": "accepted (POST 200)", "resumes": "resumes",
          "checked": "read to the end and checked", "lost": "lost pieces",
          "duplicated": "duplicated pieces", "id_gaps": "event ids skipped",
          "id_repeats": "event ids repeated",
          "wrong_text": "texts unlike the upstream's"}  # fmt: skip
FAILURES = ("lost", "duplicated", "id_gaps", "id_repeats", "wrong_text")
BODY = json.dumps({"text": "soak", "target_lang": "ko", "resumable": True}).encode()
STALL_S = 60.0  # no byte for this long (keep-alives included) is an error, not a wait
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass
class Event:
    id: str | None
    name: str
    data: str


class SSEParser:
    """Server-sent events as the standard reads them: any line ending, comments, `id:`."""

    def __init__(self) -> None:
        self._buffer, self._name = b"", ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        work = self._buffer + chunk
        # A CR at the end may be the first half of a CRLF that the next chunk completes.
        held = b"\r" if work.endswith(b"\r") else b""
        lines = _LINE_END.split(work[: len(work) - len(held)])
        self._buffer = lines.pop() + held
        events = []
        for line in (raw.decode() for raw in lines):
            if not line:
                if self._data:
                    events.append(Event(self._id, self._name or "message", "\n".join(self._data)))
                self._data, self._name = [], ""
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._name = value
            elif name == "id" and "\0" not in value:
                self._id = value
        return events


class Response:
    """One HTTP/1.1 exchange on a connection of its own, its body read as it comes."""

    open_count = 0

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.status = reader, writer, 0
        self.headers: dict[str, str] = {}
        self.closed = self.ended = False
        self.parser, self.pending = SSEParser(), list[Event]()  # arrived, not yet taken
        Response.open_count += 1

    @classmethod
    async def open(
        cls, port: int, method: str, path: str, extra: str = "", body: bytes = b""
    ) -> Response:
        response = cls(*await asyncio.open_connection("127.0.0.1", port))
        try:
            response.writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
                f"{extra}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            async with asyncio.timeout(STALL_S):
                head = (await response.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")
            response.status = int(lines[0].split(" ", 2)[1])
            for key, _, value in (line.partition(":") for line in lines[1:]):
                response.headers[key.strip().lower()] = value.strip()
        except BaseException:
            response.close()
            raise
        return response

    async def read(self) -> bytes:
        """The next piece of the body; b"" at its end."""
        if self.ended:
            return b""
        async with asyncio.timeout(STALL_S):
            if self.headers.get("transfer-encoding") != "chunked":
                data = await self.reader.read(65536)
            else:
                line = await self.reader.readline()
                # The server closing the connection mid-body ends it here, without a final
                # event: the check reports it.
                size = int(line.split(b";")[0], 16) if line else 0
                data = (await self.reader.readexactly(size + 2))[:-2] if size else b""
        self.ended = not data
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            Response.open_count -= 1
            self.writer.transport.abort()  # a client that drops, not one that says goodbye


@dataclass
class Stream:
    """What a client saw of one translation, across its connections."""

    ids: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # "|1.23s|" where it was that long away
    text: list[str] = field(default_factory=list)
    final: Event | None = None
    # The longest time from a drop to the head of the resumed answer. The server saw no
    # listener for less than that: a grace cancel when it is below the grace is the server's.
    away_s: float = 0.0


class Soak:
    def __init__(self, args: argparse.Namespace, port: int) -> None:
        self.args, self.port = args, port
        self.outcomes: Counter[str] = Counter()  # of streams, by what became of them
        self.counts: Counter[str] = Counter()  # COUNTS
        self.errors: Counter[str] = Counter()
        self.expected = args.piece * args.pieces
        self.events = args.pieces + 2  # start, the deltas, done

    async def loop(self, slot: int, deadline: float) -> None:
        rng = random.Random(self.args.seed * 1_000_003 + slot)
        await asyncio.sleep(rng.uniform(0, self.args.ramp))  # not all POSTs in the same ms
        while time.monotonic() < deadline:
            try:
                await self.translation(rng)
            except Exception as exc:  # counted and reported; the loop goes on
                self.errors[type(exc).__name__] += 1
                await asyncio.sleep(1.0)

    async def _follow(self, response: Response, stream: Stream, stop_at: int | None) -> bool:
        """Read events until the final one (True) or until `stop_at` were seen (False). The
        events that have arrived after that stay with the connection: the next call reads
        them, and they are lost with it when the client drops it."""
        while True:
            while response.pending:
                event = response.pending.pop(0)
                stream.ids.append(int(event.id) if event.id is not None else -1)
                stream.names.append(event.name)
                if event.name == "delta":
                    stream.text.append(json.loads(event.data)["text"])
                elif event.name in ("done", "error"):
                    stream.final = event
                    return True
                if stop_at is not None and len(stream.ids) >= stop_at:
                    return False
            if not (chunk := await response.read()):
                return True  # ended without a final event: reported by the check
            response.pending = response.parser.feed(chunk)

    async def translation(self, rng: random.Random) -> None:
        behaviour = rng.choices(list(BEHAVIOURS), list(BEHAVIOURS.values()))[0]
        response = await Response.open(self.port, "POST", "/v1/translations", body=BODY)
        stream, cancel_status = Stream(), None
        try:
            if response.status != 200:
                self.errors[f"POST {response.status}"] += 1
                await asyncio.sleep(1.0)
                return
            self.counts["accepted"] += 1
            translation_id = response.headers["x-translation-id"]
            if behaviour == "abandon":
                await self._follow(response, stream, rng.randint(1, self.events // 2))
                self.outcomes["abandoned"] += 1
                return
            cuts = rng.sample(range(1, self.events - 1), rng.randint(1, 3))
            for cut in sorted(cuts) if behaviour == "resume" else []:
                if await self._follow(response, stream, cut):
                    break
                response.close()
                dropped = time.monotonic()
                await asyncio.sleep(rng.uniform(0.05, self.args.grace / 2))
                response = await Response.open(
                    self.port, "GET", f"/v1/translations/{translation_id}/events",
                    f"Accept: text/event-stream\r\nLast-Event-ID: {stream.ids[-1]}\r\n",
                )  # fmt: skip
                stream.away_s = max(stream.away_s, away := time.monotonic() - dropped)
                stream.names[-1] += f"|{away:.2f}s|"
                if response.status != 200:
                    self.errors[f"resume {response.status}"] += 1
                    return
                self.counts["resumes"] += 1
            if behaviour == "cancel":
                await self._follow(response, stream, rng.randint(1, self.events - 2))
                cancel = asyncio.create_task(self._cancel(translation_id))
                await self._follow(response, stream, None)
                cancel_status = await cancel
            await self._follow(response, stream, None)
        finally:
            response.close()
        before = sum(self.counts[k] for k in FAILURES) + self.errors.total()
        self._check(stream, behaviour, cancel_status)
        if sum(self.counts[k] for k in FAILURES) + self.errors.total() > before:
            seen = " ".join(f"{i}:{n}" for i, n in zip(stream.ids, stream.names, strict=True))
            final = stream.final.data if stream.final else ""
            print(f"unexpected ({behaviour}): {seen} {final}", file=sys.stderr)

    async def _cancel(self, translation_id: str) -> str:
        answer = await Response.open(self.port, "POST", f"/v1/translations/{translation_id}/cancel")
        body = b""
        try:
            while chunk := await answer.read():
                body += chunk
        finally:
            answer.close()
        if answer.status != 202:
            self.errors[f"cancel {answer.status}"] += 1
            return "?"
        return str(json.loads(body)["status"])

    def _check(self, stream: Stream, behaviour: str, cancel_status: str | None) -> None:
        previous = -1
        for event_id in stream.ids:
            if event_id <= previous:
                self.counts["id_repeats"] += 1
            elif event_id > previous + 1:
                self.counts["id_gaps"] += event_id - previous - 1
            previous = max(previous, event_id)
        got, final, piece = "".join(stream.text), stream.final, self.args.piece
        if final is None:
            self.errors["ended without done or error"] += 1
        elif final.name == "error":
            code = json.loads(final.data)["error"]["code"]
            late = behaviour == "resume" and stream.away_s >= self.args.grace
            if code != "cancelled" or not (behaviour == "cancel" or late):
                self.errors[f"in-band {code} ({behaviour})"] += 1
                return
            # Back after the grace: the machine was too slow, the server did as it should.
            self.outcomes["resumed after the grace: cancelled" if late else "cancelled"] += 1
            # What came before the cancel: whole pieces of the upstream's text, in order.
            whole = len(got) % len(piece) == 0
            self.counts["wrong_text"] += not (whole and self.expected.startswith(got))
        else:
            if behaviour == "cancel" and cancel_status == "cancelled":
                self.errors["cancelled, yet ended with done"] += 1
            name = {"read": "read to the end", "resume": "resumed, read to the end"}
            self.outcomes[name.get(behaviour, "cancel came after the end")] += 1
            self.counts["checked"] += 1
            self.counts["lost"] += max(0, self.args.pieces - got.count(piece))
            self.counts["duplicated"] += max(0, got.count(piece) - self.args.pieces)
            self.counts["wrong_text"] += got != self.expected
            self.counts["wrong_text"] += json.loads(final.data)["translation"] != self.expected


def _server_usage(pid: int) -> tuple[float, int]:
    """RSS in MB and open file descriptors of the server and its descendants, if any."""
    rss, fds, todo = 0.0, 0, [pid]
    while todo:
        member = todo.pop()
        with contextlib.suppress(OSError):
            rss += rss_mb(member)
            fds += len(os.listdir(f"/proc/{member}/fd"))
            for task in Path(f"/proc/{member}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return rss, fds


class Lags:
    """How late the server answers, and the clients' own event loop wakes, twice a second: a
    resume back after the grace is explained by the one or the other."""

    def __init__(self, port: int) -> None:
        self.port, self.health_ms, self.lag_ms = port, 0.0, 0.0
        self.probing_since: float | None = None

    async def watch(self) -> None:
        while True:
            began = time.monotonic()
            await asyncio.sleep(0.5)
            self.lag_ms = max(self.lag_ms, (time.monotonic() - began - 0.5) * 1000)
            self.probing_since = began = time.monotonic()
            with contextlib.suppress(Exception):
                (await Response.open(self.port, "GET", "/healthz")).close()
            self.probing_since = None
            self.health_ms = max(self.health_ms, (time.monotonic() - began) * 1000)

    def take(self) -> tuple[float, float]:
        health_ms = self.health_ms
        if self.probing_since is not None:  # a probe not answered yet counts as far as it got
            health_ms = max(health_ms, (time.monotonic() - self.probing_since) * 1000)
        taken, self.health_ms, self.lag_ms = (health_ms, self.lag_ms), 0.0, 0.0
        return taken


@dataclass
class Sample:
    t: float
    rss_mb: float
    fds: int
    open: int
    ended: int
    health_ms: float  # the slowest GET /healthz since the last sample
    lag_ms: float  # the clients' event loop's longest lag since the last sample


@dataclass
class Result:
    samples: list[Sample]
    statuses: Counter[str]
    drain_s: float
    server_cpu_s: float
    client_cpu_s: float


async def records_by_status(database_url: str, since: str) -> Counter[str]:
    engine = create_async_engine(database_url)
    query = "SELECT status, count(*) FROM translations WHERE created_at >= :since GROUP BY status"
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text(query), {"since": since})
            return Counter({str(status): int(count) for status, count in rows})
    finally:
        await engine.dispose()


async def run(args: argparse.Namespace, soak: Soak, pid: int, database_url: str) -> Result:
    since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    samples: list[Sample] = []
    started, server_cpu, client_cpu = time.monotonic(), cpu_seconds(pid), time.process_time()
    lags = Lags(soak.port)
    watcher = asyncio.create_task(lags.watch())

    def sample(label: str = "") -> None:
        (rss, fds), (health_ms, lag_ms) = _server_usage(pid), lags.take()
        t, ended, opened = time.monotonic() - started, soak.outcomes.total(), Response.open_count
        samples.append(Sample(t, rss, fds, opened, ended, health_ms, lag_ms))
        print(
            f"{label}t={t:.0f}s rss={rss:.1f}MB fds={fds} open={opened} healthz={health_ms:.0f}ms"
            f" lag={lag_ms:.0f}ms {dict(soak.outcomes)} {dict(soak.counts)} {dict(soak.errors)}",
            file=sys.stderr,
        )

    sample()
    deadline = started + args.duration
    loops = [asyncio.create_task(soak.loop(slot, deadline)) for slot in range(args.streams)]
    while time.monotonic() < deadline:
        await asyncio.sleep(min(args.sample, max(deadline - time.monotonic(), 0)))
        sample()
    for task in loops:  # the clients stop where they are: their translations are left behind
        task.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    # Left without a listener, each running translation is cancelled after the grace.
    stopped = time.monotonic()
    await asyncio.sleep(args.grace + 2)
    while True:
        statuses = await records_by_status(database_url, since)
        if not statuses["streaming"] or time.monotonic() - stopped > args.grace + 60:
            break
        await asyncio.sleep(1)
    drain_s = time.monotonic() - stopped
    # The server keeps idle upstream connections for 15 to 30 s (aiohttp's keep-alive, checked
    # at that interval): its fds are counted after that.
    await asyncio.sleep(max(0.0, 35 - drain_s))
    sample("after: ")
    watcher.cancel()
    server_cpu, client_cpu = cpu_seconds(pid) - server_cpu, time.process_time() - client_cpu
    return Result(samples, statuses, drain_s, server_cpu, client_cpu)


def _machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((x.split(":", 1)[1].strip() for x in cpuinfo if x.startswith("model name")), "")
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024**2
    return (
        f"{os.cpu_count()} CPUs ({model or platform.machine()}), {memory:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def _table(head: str, rows: Sequence[Sequence[object]]) -> None:
    print(f"\n| {head} |\n|{'---|' * (head.count('|') + 1)}")
    for row in rows:
        print("| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in row) + " |")


def report(args: argparse.Namespace, soak: Soak, result: Result, fd_limit: int) -> bool:
    samples, statuses = result.samples, result.statuses
    during = samples[:-1]
    warm = next((x for x in during if x.t >= args.warmup), during[len(during) // 2])
    last, peak = during[-1], max(during, key=lambda x: x.rss_mb)
    print(f"## Soak\n\nMachine: {_machine()}.\n")
    print(
        f"{args.streams} client loops for {args.duration:g} s; upstream: {args.pieces} pieces of "
        f"{args.piece!r} {args.delay:g} s apart; DRAGOMAN_RESUME_GRACE_S={args.grace:g}, "
        f"DRAGOMAN_RESUME_WINDOW_S={args.window:g}; events in "
        f"{'Redis' if args.redis_url else 'memory'}; database "
        f"{'PostgreSQL' if args.database_url else 'SQLite'}; behaviours {BEHAVIOURS}; "
        f"seed {args.seed}; open files limit {fd_limit}."
    )
    _table(
        "t s | server RSS MB | server fds | open client connections | streams ended | "
        "slowest /healthz ms | client loop lag ms",
        [(f"{x.t:.0f}", f"{x.rss_mb:.1f}", x.fds, x.open, x.ended, f"{x.health_ms:.0f}",
          f"{x.lag_ms:.0f}") for x in samples],
    )  # fmt: skip
    print(
        f"\nRSS {warm.rss_mb:.1f} MB at {warm.t:.0f} s (after warm-up), {last.rss_mb:.1f} MB at "
        f"{last.t:.0f} s ({last.rss_mb - warm.rss_mb:+.1f} MB), peak {peak.rss_mb:.1f} MB. Open "
        f"fds: {samples[0].fds} idle, peak {max(x.fds for x in during)}, {samples[-1].fds} "
        f"{samples[-1].t - last.t:.0f} s after the clients stopped. CPU: server "
        f"{result.server_cpu_s:.0f} s, clients {result.client_cpu_s:.0f} s."
    )
    counts = [(label, soak.counts[key]) for key, label in COUNTS.items()]
    _table("streams | count", [*sorted(soak.outcomes.items()), *counts])
    total = (f"total (accepted {soak.counts['accepted']:,})", statuses.total())
    _table(f"records {result.drain_s:.0f} s after the clients stopped | count",
           [*sorted(statuses.items()), total])  # fmt: skip
    print("\n(The POSTs in flight when the clients stopped have records, but were not counted.)")
    print("\nErrors: " + (", ".join(f"{k}: {v}" for k, v in soak.errors.most_common()) or "none"))
    bad = sum(soak.counts[k] for k in FAILURES) + statuses["streaming"] + soak.errors.total()
    print(
        f"\nResult: {'FAIL' if bad else 'PASS'} ({statuses['streaming']} records left streaming)."
    )
    return not bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000, help="concurrent client loops")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--pieces", type=int, default=40, help="pieces per upstream stream")
    parser.add_argument("--piece", default="word ")
    parser.add_argument("--delay", type=float, default=0.3, help="seconds between pieces")
    parser.add_argument("--grace", type=float, default=5.0, help="DRAGOMAN_RESUME_GRACE_S")
    parser.add_argument("--window", type=float, default=60.0, help="DRAGOMAN_RESUME_WINDOW_S")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=90.0, help="RSS growth is read from here")
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which loops start")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="e.g. postgresql+asyncpg://... (default: SQLite)")
    parser.add_argument("--redis-url", help="DRAGOMAN_REDIS_URL, or 'start' for a redis-server")
    parser.add_argument("--server-log", help="a file for the server's log (default: dropped)")
    args = parser.parse_args()

    # The clients, the upstream and the server each hold a socket per stream, and more.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < (need := args.streams * 4 + 1024):
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))  # the children inherit it
    with tempfile.TemporaryDirectory() as workdir:
        upstream_port, port = free_port(), free_port()
        database_url = args.database_url or f"sqlite+aiosqlite:///{workdir}/dragoman.db"
        env = {**os.environ, "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
               "OPENAI_API_KEY": "sk-bench", "DRAGOMAN_PROVIDER": "openai",
               "DRAGOMAN_LOG_LEVEL": "warning", "DRAGOMAN_DATABASE_URL": database_url,
               "DRAGOMAN_RESUME_GRACE_S": str(args.grace),
               "DRAGOMAN_RESUME_WINDOW_S": str(args.window)}  # fmt: skip
        for variable in ("DRAGOMAN_AUTH", "DRAGOMAN_REDIS_URL", "DRAGOMAN_METRICS_TOKEN"):
            env.pop(variable, None)
        procs = []
        log = open(args.server_log, "ab") if args.server_log else None  # closed below
        try:
            if args.redis_url == "start":
                procs.append(start_redis(redis_port := free_port(), workdir))
                args.redis_url = f"redis://127.0.0.1:{redis_port}/0"
            if args.redis_url:
                env["DRAGOMAN_REDIS_URL"] = args.redis_url
            procs.append(start(
                [sys.executable, "-m", "tests.fake_openai", "--port", str(upstream_port),
                 "--pieces", str(args.pieces), "--piece", args.piece, "--delay", str(args.delay)],
                env, upstream_port, "/v1/models",
            ))  # fmt: skip
            serve = [sys.executable, "-m", "dragoman", "serve", "--port", str(port)]
            procs.append(server := start(serve, env, port, "/readyz", log))
            soak = Soak(args, port)
            result = uvloop.run(run(args, soak, server.pid, database_url))
        finally:
            for proc in reversed(procs):
                proc.terminate()
                proc.wait(30)
            if log is not None:
                log.close()
    sys.exit(0 if report(args, soak, result, soft) else 1)


if __name__ == "__main__":
    main()
