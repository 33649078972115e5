"""Messages between the HTTP workers and the engine: one JSON object per line on a Unix socket.

Worker to engine:
    {"go": id, "text", "source", "target",   translate (base language codes), with a script's
     "context": [[src, tgt]], "glossary": [[src, tgt]]}   previous segments and glossary terms
    {"stop": id}                              the client left: stop at the next token
Engine to worker:
    {"hello": {"model", "chat", "pid"}}       once, when the connection opens
    {"id", "q": n}                            waits at position n (1 = next); 0: started
    {"id", "full": 1}                         refused: the queue is full
    {"id", "p": "text"}                       a piece of the translation
    {"id", "end": [prompt_tokens, completion_tokens]}
    {"id", "err": "message"}                  the translation failed (message for people)

JSON never carries a raw line break, so a line is always one whole message. The messages are
a few dozen bytes: the model stays on its side of the socket.
"""

from __future__ import annotations

from typing import Any

import orjson

# The engine's exit code when its model cannot be loaded: restarting it would not help.
EXIT_LOAD_FAILED = 3

# A piece can be long (a line separator run, a long token); a message never is megabytes.
LINE_LIMIT = 4 * 1024 * 1024


def encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    message = orjson.loads(line)
    if not isinstance(message, dict):
        raise ValueError("not a message")
    return message
