"""The engine steps on its event loop's thread: what came in during a step is handled before
the next one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dragoman.engine.scheduler import _read_messages


async def test_a_message_that_came_during_a_step_is_handled_before_the_next(
    tmp_path: Path,
) -> None:
    handled: list[bytes] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            handled.append(line)
        writer.close()

    path = str(tmp_path / "engine.sock")
    server = await asyncio.start_unix_server(connection, path=path)
    _, client = await asyncio.open_unix_connection(path)
    await asyncio.sleep(0.05)  # accepted: the connection waits for a line
    for _ in range(3):
        client.write(b'{"go": 1}\n{"stop": 2}\n')
        await client.drain()
        time.sleep(0.05)  # noqa: ASYNC251 (a step: it blocks the loop while the lines arrive)
        await _read_messages()
        assert handled[-2:] == [b'{"go": 1}\n', b'{"stop": 2}\n']
        handled.clear()
    client.close()
    await client.wait_closed()
    server.close()
    await server.wait_closed()
