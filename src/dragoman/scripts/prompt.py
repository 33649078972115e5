"""What a script adds to a segment's prompt: its previous segments in that language, the
glossary entries that occur in the text, and its own renderings of its other recurring terms
(`memory.py`)."""

from __future__ import annotations

import asyncio

import structlog

from dragoman.errors import DatabaseUnavailable
from dragoman.prompts import TranslationTask
from dragoman.records.store import ANYONE
from dragoman.scripts.glossary import applicable_glossary, glossary_terms
from dragoman.scripts.memory import HISTORY_SEGMENTS, learned_terms
from dragoman.scripts.store import ScriptStore

log = structlog.get_logger(__name__)


async def add_script_prompt(
    task: TranslationTask,
    store: ScriptStore,
    script_id: str,
    key_id: str | None,
    *,
    context_segments: int,
    term_memory: bool,
) -> None:
    # The term memory reads further back; with context off, it is off too.
    memory = term_memory and context_segments > 0
    try:
        history = await store.context(
            script_id, task.target_lang, key_id, HISTORY_SEGMENTS if memory else context_segments
        )
        # A key's scripts are its own; with keys off (no key id) every script is ANYONE's.
        entries = await store.glossary(script_id, key_id or ANYONE)
    except Exception as exc:
        log.error("script_read_failed", error=type(exc).__name__, detail=str(exc)[:300])
        raise DatabaseUnavailable("The script's context could not be read.") from exc
    task.context = history[-context_segments:] if context_segments else []
    task.glossary = applicable_glossary(entries, task.text, task.target_lang)
    if memory:
        # Off the event loop: a long text against a long history is a few hundred ms.
        task.learned = await asyncio.to_thread(
            learned_terms, history, task.text, glossary_terms(entries, task.target_lang)
        )
