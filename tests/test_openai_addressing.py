"""The stream is addressed as the SDK client says at the time of each request."""

from __future__ import annotations

import itertools

import openai

from dragoman.config import Settings
from dragoman.prompts import TranslationTask
from dragoman.providers.base import StreamState
from dragoman.providers.openai import OpenAIProvider
from tests.fake_openai import FakeOpenAI


async def _translate(provider: OpenAIProvider, text: str = "hello there") -> str:
    task = TranslationTask(text=text, target_lang="ko", source_lang="en")
    return "".join([p async for batch in provider.stream(task, StreamState()) for p in batch])


def _settings(fake: FakeOpenAI) -> Settings:
    return Settings(_env_file=None, provider="openai", openai_base_url=fake.base_url, model="m")  # type: ignore[call-arg]


async def test_default_query_and_a_rotating_key_reach_the_upstream(fake: FakeOpenAI) -> None:
    keys = (f"key-{n}" for n in itertools.count(1))

    async def next_key() -> str:
        return next(keys)

    client = openai.AsyncOpenAI(
        base_url=fake.base_url,
        api_key=next_key,
        default_query={"api-version": "2024-10-21"},
        default_headers={"X-Tenant": "blue"},
        max_retries=0,
    )
    provider = OpenAIProvider(_settings(fake), client=client)
    try:
        assert await _translate(provider) == "T:hello there"
        first = fake.request_heads[-1]
        assert await _translate(provider) == "T:hello there"
        second = fake.request_heads[-1]
    finally:
        await provider.aclose()
    assert first["path"] == "/v1/chat/completions"
    assert first["query"] == "api-version=2024-10-21"
    assert first["headers"]["authorization"] == "Bearer key-1"
    assert second["headers"]["authorization"] == "Bearer key-2"
    assert second["headers"]["x-tenant"] == "blue"


async def test_a_key_changed_on_the_client_applies_to_the_next_stream(fake: FakeOpenAI) -> None:
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="old", max_retries=0)
    provider = OpenAIProvider(_settings(fake), client=client)
    try:
        await _translate(provider)
        assert fake.request_heads[-1]["headers"]["authorization"] == "Bearer old"
        assert fake.request_heads[-1]["query"] == ""
        client.api_key = "new"
        await _translate(provider)
        assert fake.request_heads[-1]["headers"]["authorization"] == "Bearer new"
    finally:
        await provider.aclose()


async def test_azure_client_sends_its_api_version_and_api_key_header(fake: FakeOpenAI) -> None:
    client = openai.AsyncAzureOpenAI(
        base_url=fake.base_url,
        api_key="azure-key",
        api_version="2024-10-21",
        max_retries=0,
    )
    provider = OpenAIProvider(_settings(fake), client=client)
    try:
        assert await _translate(provider) == "T:hello there"
    finally:
        await provider.aclose()
    head = fake.request_heads[-1]
    assert head["query"] == "api-version=2024-10-21"
    assert head["headers"]["api-key"] == "azure-key"
