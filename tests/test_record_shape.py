"""The record's shape is defined once (the table); what shows it must agree with it."""

from __future__ import annotations

from typing import get_type_hints

from dragoman.api.schemas import TranslationPublic
from dragoman.client import TranslationRecord
from dragoman.records.record import Record, Usage


def _record() -> Record:
    record = Record(
        text="Hello",
        target_lang="ko",
        source_lang="en",
        script_id="s",
        provider="openai",
        model="m",
    )
    record.usage = Usage(prompt_tokens=3, completion_tokens=4)
    record.error_code, record.error_message = "upstream_error", "failed"
    return record


def test_public_record_fields_are_the_documented_schema_and_the_client_type() -> None:
    public = _record().public()
    assert list(public) == list(TranslationPublic.model_fields)
    assert set(public) == set(get_type_hints(TranslationRecord))


def test_public_record_nests_usage_and_error() -> None:
    public = _record().public()
    assert public["usage"] == {"prompt_tokens": 3, "completion_tokens": 4}
    assert public["error"] == {"code": "upstream_error", "message": "failed"}
    assert public["text"] == "Hello"
    assert "error_code" not in public and "prompt_tokens" not in public
