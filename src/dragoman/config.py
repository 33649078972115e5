"""Settings, read from the environment and an optional `.env` file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Local OpenAI-compatible servers (vLLM, Ollama, llama.cpp) accept any key; the SDK refuses to
# build a client without one, so this stands in when a base URL is set and no key is.
PLACEHOLDER_API_KEY = "sk-no-key-required"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"


def data_dir() -> Path:
    """Where dragoman keeps its data by default: `$XDG_DATA_HOME/dragoman`, else
    `~/.local/share/dragoman` (the XDG base directory rule), whichever directory a command is
    run from."""
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    # The XDG rule: a relative path is invalid and ignored.
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "dragoman"


def default_database_url() -> str:
    return f"sqlite+aiosqlite:///{data_dir() / 'dragoman.db'}"


def describe_database(url: str) -> str:
    """The database a URL names, for people: a SQLite file's path (`~` for the home
    directory), or the URL with its password masked."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: say nothing that could hold a secret
        return "(an unreadable DRAGOMAN_DATABASE_URL)"
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return "SQLite in memory (nothing is kept)"
        path = Path(parsed.database).expanduser().absolute()
        home = Path.home()
        if path.is_relative_to(home):
            return f"~/{path.relative_to(home)}"
        return str(path)
    return parsed.render_as_string(hide_password=True)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRAGOMAN_", env_file=".env", extra="ignore", populate_by_name=True
    )

    provider: Literal["local", "openai"] = "local"
    # A TOML file of upstreams (pools, failover, breakers: docs/configuration.md); when set it
    # replaces `provider` and the OPENAI_* variables.
    upstreams: str | None = None
    model: str | None = None
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url")
    )
    model_path: str | None = None
    local_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    queue_max: int = Field(default=32, ge=0)
    # Requests the embedded engine decodes together in one batch (docs/embedded-engine.md).
    # 8: measured against 4 in bench.local (docs/benchmarks.md, "Embedded model speed").
    local_parallel: int = Field(default=8, ge=1, le=64)
    # `similar`: each sentence also gets the two bank examples most like it; `fixed`: only the
    # language pair's six shared examples (kept to measure the difference).
    local_examples: Literal["similar", "fixed"] = "similar"
    # Added to the logit of the token that starts a glossary term missing from a segment's
    # translation (docs/scripts.md, "Glossary terms on the embedded model"); 0 turns it off.
    local_glossary_bias: float = Field(default=5.0, ge=0, le=100)
    # `languages`: the shipped model with the vocabulary of the languages it translates, each
    # translation choosing among its target's scripts (engine/vocabulary.py); `full`: the file
    # as shipped (kept to measure the difference).
    local_vocabulary: Literal["languages", "full"] = "languages"
    # Catch a translation that repeats itself while it streams (engine/repetition.py).
    local_loop_guard: bool = True
    # Set by `dragoman serve` for its workers: the socket of the engine it supervises.
    engine_socket: str | None = None
    # The same file for the server and every command, wherever they are run from.
    database_url: str = Field(default_factory=default_database_url)
    # How long a record's write waits for a database that cannot be reached (records/store.py):
    # a shorter outage delays the ends and starts of streams instead of failing them.
    database_wait_s: float = Field(default=10.0, ge=0)
    max_text_chars: int = Field(default=10_000, ge=1)
    first_token_timeout_s: float = Field(default=30.0, gt=0)
    idle_timeout_s: float = Field(default=30.0, gt=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    keepalive_s: float = Field(default=15.0, gt=0)
    resume_grace_s: float = Field(default=30.0, ge=0)
    resume_window_s: float = Field(default=600.0, ge=0)
    # A client that takes no byte of its stream for this long is dropped (checked every
    # keepalive interval): a reader that never reads holds no translation.
    send_timeout_s: float = Field(default=30.0, gt=0)
    log_level: str = "info"
    # Production: keys, per-key limits, shared counters, metrics, request size.
    auth: Literal["keys", "off"] | None = None
    default_rpm: int = Field(default=60, ge=1)
    default_cpm: int = Field(default=20_000, ge=1)
    default_concurrency: int = Field(default=4, ge=1)
    # Shared by all workers and replicas: limits, resumable events, cancel requests.
    redis_url: str | None = None
    metrics_token: SecretStr | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    # Scripts: how many previous segments go into a segment's prompt.
    context_segments: int = Field(default=3, ge=0, le=50)
    # Scripts: a segment's recurring terms are kept as the script's earlier segments always
    # rendered them (`scripts/memory.py`); needs context_segments > 0.
    term_memory: bool = True
    # Live sessions (`live/`): languages a session may be translated into at once, minutes
    # of silence after which it closes by itself, segments a new listener gets first, and
    # earlier segments translated into a language when its first listener picks it.
    live_max_langs: int = Field(default=10, ge=1, le=100)
    live_idle_s: float = Field(default=3600.0, gt=0)
    live_replay: int = Field(default=20, ge=0, le=1000)
    live_catch_up: int = Field(default=3, ge=0, le=100)
    # Partial text (`live/stabilise.py`): words of an unfinished translation hidden from
    # listeners, the least time between two drafts of one segment in one language, and
    # whether shown text waits for the final rather than being taken back, and whether a draft
    # counts only as far as the drafts before it agree with it, and how many drafts must
    # agree (defaults chosen by bench.live_partial: docs/benchmarks.md, "Partial text").
    live_mask_words: int = Field(default=3, ge=0, le=20)
    live_retranslate_ms: int = Field(default=300, ge=0, le=60_000)
    live_keep_prefix: bool = True
    # Only what the last `live_agreement_drafts` drafts have in common is shown (local
    # agreement); each one more costs the time of a draft before a word is shown.
    live_agreement: bool = True
    live_agreement_drafts: int = Field(default=5, ge=2, le=20)
    # Events a listener may fall behind by before its stream ends (`listener_too_slow`).
    live_listener_buffer: int = Field(default=2000, ge=10)
    # Where listeners reach this service (`https://translate.example.org`), for the QR codes
    # and the URLs the CLI prints; unset: the address the request came to.
    public_url: str | None = None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return default_database_url() if value == "" else value

    @field_validator(
        "openai_base_url",
        "openai_api_key",
        "upstreams",
        "model",
        "model_path",
        "engine_socket",
        "auth",
        "redis_url",
        "metrics_token",
        "public_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def resolved_api_key(self) -> str | None:
        """The key sent upstream: the user's, else a placeholder when a base URL is set."""
        if self.openai_api_key and self.openai_api_key.get_secret_value():
            return self.openai_api_key.get_secret_value()
        if self.openai_base_url:
            return PLACEHOLDER_API_KEY
        return None
