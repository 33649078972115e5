"""Resumable runs and cancel requests for one process: the logs, the Redis channel, the
heartbeat of running translations.

Without `DRAGOMAN_REDIS_URL`, logs are in memory and a cancel reaches the translations of this
process only. With it, logs are Redis Streams, and a cancel request is published on the
`dragoman:cancel` channel, to which every process subscribes, so it reaches the process that
runs the translation, whichever answered the request.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as redis
import structlog

from dragoman.config import Settings
from dragoman.errors import Stopped
from dragoman.redis_clients import RedisClients
from dragoman.registry import StreamRegistry
from dragoman.resumable.log import EventLogs
from dragoman.resumable.memory_log import MemoryEventLogs
from dragoman.resumable.redis_log import ALIVE_EVERY_S, RedisEventLogs
from dragoman.resumable.run import ResumableRun
from dragoman.service import Job

log = structlog.get_logger(__name__)

CANCEL_CHANNEL = "dragoman:cancel"
# How long a cancel request waits for the translation to stop and store its final state.
_CANCEL_WAIT_S = 5.0


class Resumption:
    def __init__(
        self, settings: Settings, registry: StreamRegistry, clients: RedisClients | None
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._redis = clients.commands if clients is not None else None
        self.logs: EventLogs
        if clients is not None:
            self.logs = RedisEventLogs(
                clients.commands,
                clients.blocking,
                window_s=settings.resume_window_s,
                grace_s=settings.resume_grace_s,
            )
        else:
            self.logs = MemoryEventLogs(settings.resume_window_s)
        self.runs: dict[str, ResumableRun] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Checked by the background loops as well as cancelling them: redis-py (8.1) can
        # swallow a cancellation that arrives during a command.
        self._closing = False

    async def start(self) -> None:
        if self._redis is not None:
            pubsub = self._redis.pubsub()
            await pubsub.subscribe(CANCEL_CHANNEL)
            self._tasks.append(asyncio.create_task(self._listen_for_cancels(pubsub)))
            self._tasks.append(asyncio.create_task(self._heartbeat()))

    async def aclose(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        await self.logs.aclose()

    def start_run(self, job: Job) -> ResumableRun:
        run = ResumableRun(
            job, self.logs.create(job.record.id), self.logs, grace_s=self.settings.resume_grace_s
        )
        self.runs[run.id] = run
        self.registry.active.add(run)
        self.registry.running[run.id] = run
        task = run.start()
        task.add_done_callback(lambda _: self._forget(run))
        return run

    def _forget(self, run: ResumableRun) -> None:
        self.runs.pop(run.id, None)
        self.registry.active.discard(run)
        if self.registry.running.get(run.id) is run:
            self.registry.running.pop(run.id, None)

    # Cancel requests.

    async def cancel_local(self, translation_id: str) -> str | None:
        """Stop the translation if this process runs it; its record's status then."""
        target = self.registry.running.get(translation_id)
        if target is None:
            return None
        target.abort(Stopped())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CANCEL_WAIT_S):
                await target.ended()
        return target.record.status

    async def publish_cancel(self, translation_id: str) -> bool:
        """Ask the other processes; False when there is no channel to ask on."""
        if self._redis is None:
            return False
        await self._redis.publish(CANCEL_CHANNEL, translation_id)
        return True

    async def _listen_for_cancels(self, pubsub: redis.client.PubSub) -> None:
        try:
            while not self._closing:
                try:
                    async for message in pubsub.listen():
                        if self._closing:
                            break
                        if message.get("type") != "message":
                            continue
                        data = message.get("data")
                        translation_id = data.decode() if isinstance(data, bytes) else str(data)
                        target = self.registry.running.get(translation_id)
                        if target is not None:
                            log.info("cancel_received", id=translation_id)
                            target.abort(Stopped())
                except Exception as exc:  # Redis went away: try again; cancels resume with it
                    log.warning("cancel_channel_failed", error=type(exc).__name__)
                    await asyncio.sleep(1.0)
                    with contextlib.suppress(Exception):
                        await pubsub.subscribe(CANCEL_CHANNEL)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _heartbeat(self) -> None:
        while not self._closing:
            await asyncio.sleep(ALIVE_EVERY_S)
            try:
                await self.logs.keep_alive(list(self.runs))
            except Exception as exc:
                log.warning("resumable_heartbeat_failed", error=type(exc).__name__)
