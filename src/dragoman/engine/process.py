"""The engine process: owns the model, decodes every running request in one batch.

    python -m dragoman.engine.process --socket PATH [--model-path FILE] [--threads N]
        [--parallel N] [--queue-max N] [--ctx N]

It loads the model, proves that it can generate (one token of a warm-up prompt: a library that
faults on this CPU fails here, not on a user's first request), then listens on a Unix socket
and prints `READY` on standard output. Any number of HTTP workers connect to it. It exits when
its standard input closes (the process that started it is gone) or on SIGTERM.

Exit codes: 0 stopped, 3 the model could not be loaded (restarting would not help).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import structlog

from dragoman.engine import wire
from dragoman.engine.decoder import Decoder
from dragoman.engine.scheduler import QueueFullError, Request, Scheduler
from dragoman.engine.units import Unit, base_model_units, chat_unit
from dragoman.engine.vocabulary import allowed_rows, bundled_model_path, languages_model
from dragoman.engine.wire import EXIT_LOAD_FAILED
from dragoman.logging import configure_logging

log = structlog.get_logger(__name__)


class ChatRenderer:
    """The model's own chat template (from its GGUF metadata), as llama-cpp-python renders it."""

    def __init__(self, template: str, decoder: Decoder) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos = decoder.token_text(int(decoder._ll.llama_vocab_eos(decoder.vocab)))
        self._format = Jinja2ChatFormatter(
            template=template, eos_token=eos, bos_token=decoder.token_text(decoder.bos)
        )

    def render(self, messages: list[dict[str, str]]) -> str:
        return str(self._format(messages=messages).prompt)  # type: ignore[arg-type]


class Engine:
    def __init__(
        self,
        scheduler: Scheduler,
        chat: ChatRenderer | None,
        *,
        similar: bool = True,
        groups: list[int] | None = None,
    ) -> None:
        self.similar = similar
        self.scheduler = scheduler
        self.chat = chat
        self._groups = groups  # the model's vocabulary groups (`vocabulary.py`), if any

    def rows(self, target: str) -> tuple[tuple[int, int], ...] | None:
        """The token ranges a translation into `target` may write; None: the whole vocabulary."""
        if self._groups is None:
            return None
        return tuple(allowed_rows(self._groups, target))

    def units(self, message: dict[str, Any]) -> list[Unit]:
        text, source, target = str(message["text"]), str(message["source"]), str(message["target"])
        context = [(str(s), str(t)) for s, t in message.get("context") or ()]
        glossary = [(str(s), str(t)) for s, t in message.get("glossary") or ()]
        if source == target:
            return [Unit("", "", "", text, False)]
        if self.chat is not None:
            from dragoman.prompts import TranslationTask, chat_messages

            task = TranslationTask(
                text=text,
                target_lang=target,
                source_lang=source,
                context=context,
                glossary=glossary,
            )
            terms = tuple(t for _, t in glossary)
            return [chat_unit(self.chat.render(chat_messages(task)), text, terms)]
        return base_model_units(
            text, source, target, context=context, glossary=glossary, similar=self.similar
        )

    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        requests: dict[Any, Request] = {}

        def write(message: dict[str, Any]) -> None:
            if not writer.is_closing():
                writer.write(wire.encode(message))

        def emitter(key: Any) -> Any:
            def emit(body: dict[str, Any]) -> None:
                body["id"] = key
                if "end" in body or "err" in body:
                    requests.pop(key, None)
                write(body)

            return emit

        write({"hello": {"chat": self.chat is not None, "pid": os.getpid()}})
        try:
            while line := await reader.readline():
                message = wire.decode(line)
                if "go" in message:
                    key = message["go"]
                    units = self.units(message)
                    request = Request(
                        units=units,
                        emit=emitter(key),
                        key=key,
                        rows=self.rows(str(message["target"])),
                    )
                    try:
                        position = self.scheduler.submit(request)
                    except QueueFullError:
                        write({"id": key, "full": 1})
                        continue
                    requests[key] = request
                    if position > 0:
                        write({"id": key, "q": position})
                elif "stop" in message:
                    stopped = requests.pop(message["stop"], None)
                    if stopped is not None:
                        self.scheduler.cancel(stopped)
                await writer.drain()
        except (ConnectionError, ValueError) as exc:
            log.warning("engine_client_error", error=type(exc).__name__)
        except asyncio.CancelledError:
            pass  # the engine is stopping: the connection just closes
        finally:
            # A worker that went away takes its requests with it.
            for request in requests.values():
                self.scheduler.cancel(request)
            writer.close()


def _warm_up(decoder: Decoder) -> None:
    """One token through the whole path: load, prompt, decode, sample."""
    tokens = decoder.tokenize("English: Hello.\nFrench:", bos=decoder.add_bos)
    from dragoman.engine.decoder import Entry

    decoder.decode([Entry(0, t, i, i == len(tokens) - 1) for i, t in enumerate(tokens)])
    decoder.clear(0)


def _exit_when_orphaned() -> None:
    """The parent holds our standard input: when it is gone, so is the reason to run."""

    def watch() -> None:
        try:
            while os.read(0, 4096):  # unbuffered: no lock for the interpreter's exit to wait on
                pass
        except OSError:
            pass
        os._exit(0)

    threading.Thread(target=watch, name="dragoman-parent-watch", daemon=True).start()


async def _serve(args: argparse.Namespace, decoder: Decoder, chat: ChatRenderer | None) -> None:
    scheduler = Scheduler(
        decoder,
        parallel=args.parallel,
        queue_max=args.queue_max,
        glossary_bias=args.glossary_bias,
        loop_guard=not args.no_loop_guard,
    )
    engine = Engine(scheduler, chat, similar=args.examples == "similar", groups=decoder.groups)
    _remove(args.socket)
    server = await asyncio.start_unix_server(
        engine.serve_client, path=args.socket, limit=wire.LINE_LIMIT
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    runner = asyncio.create_task(scheduler.run())
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    log.info("engine_ready", pid=os.getpid(), parallel=args.parallel, ctx=args.ctx)
    await stop.wait()
    server.close()
    runner.cancel()
    _remove(args.socket)


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)


def _model_file(args: argparse.Namespace) -> Path:
    """The file to load: the one named, or the shipped model with the languages' vocabulary
    (built into the cache at its first use when install.sh did not build it; the shipped file
    as it is when that cannot be written)."""
    if args.model_path:
        return Path(args.model_path)
    shipped = bundled_model_path()
    if args.full_vocabulary:
        return shipped
    try:
        return languages_model(shipped)
    except Exception as exc:  # an unwritable cache, a full disk: the shipped file still runs
        log.warning("engine_vocabulary_build_failed", error=type(exc).__name__, detail=str(exc))
        return shipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dragoman.engine.process")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--model-path")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--queue-max", type=int, default=32)
    parser.add_argument("--ctx", type=int, default=0, help="0: 1024 cells per sequence + 2048")
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--full-vocabulary",
        action="store_true",
        help="the shipped model file as it is, not the one with the languages' vocabulary",
    )
    parser.add_argument(
        "--no-loop-guard", action="store_true", help="let repeating translations run on"
    )
    parser.add_argument(
        "--examples",
        choices=("similar", "fixed"),
        default="similar",
        help="fixed: the language pair's six examples only (for comparison)",
    )
    parser.add_argument(
        "--glossary-bias",
        type=float,
        default=0.0,
        help="logit bias towards a segment's missing glossary terms (0: none)",
    )
    args = parser.parse_args(argv)
    if args.ctx <= 0:
        args.ctx = 1024 * args.parallel + 2048
    configure_logging(args.log_level)
    _exit_when_orphaned()
    path = _model_file(args)
    try:
        decoder = Decoder(str(path), threads=args.threads, parallel=args.parallel, n_ctx=args.ctx)
    except Exception as exc:
        log.error("engine_model_load_failed", path=str(path), error=type(exc).__name__)
        return EXIT_LOAD_FAILED
    template = decoder.metadata("tokenizer.chat_template") if args.model_path else None
    chat = ChatRenderer(template, decoder) if template else None
    _warm_up(decoder)
    log.info("engine_model_loaded", path=str(path), chat_template=chat is not None)
    try:
        asyncio.run(_serve(args, decoder, chat))
    finally:
        decoder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
