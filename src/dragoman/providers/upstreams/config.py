"""The upstreams file (`DRAGOMAN_UPSTREAMS`): TOML, read with the standard library's `tomllib`.

    first_token_timeout_s = 10      # per attempt: no first piece by then, the next upstream
    breaker_failures = 5            # consecutive failures that open an upstream's breaker
    breaker_cooldown_s = 30         # then one request is let through to try it again
    health_check_s = 10             # how often every upstream's model list is asked for
    retry_budget = 0.2              # retries: at most this share of the requests (10 s window)
    retry_budget_min_per_s = 10     # ...plus this many a second, whatever the traffic

    [[upstream]]
    name = "gpu-a"                  # letters, digits, - and _
    kind = "openai"                 # "openai" (any OpenAI-compatible server) or "local"
    base_url = "http://gpu-a.internal:8000/v1"
    model = "Qwen/Qwen2.5-7B-Instruct"
    api_key_env = "GPU_KEY"         # optional: the variable that holds its key
    pool = "gpus"                   # default: its model (else its name)
    weight = 1                      # share within the pool (default 1)

Every problem is reported with the file's name and the line it is on (`UpstreamsFileError`).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dragoman.errors import InvalidRequest

Kind = Literal["openai", "local"]
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER = re.compile(r"^\s*\[")
_UPSTREAM_HEADER = re.compile(r"^\s*\[\[\s*upstream\s*\]\]")
_TOMLLIB_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)$")

_UPSTREAM_KEYS = ("name", "kind", "base_url", "model", "api_key_env", "pool", "weight")


class UpstreamsFileError(InvalidRequest):
    """The upstreams file cannot be used; the message names the file and the line."""


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    name: str
    kind: Kind
    base_url: str | None
    model: str | None
    # The key itself, read from the variable `api_key_env` names (None: no key).
    api_key: str | None
    pool: str
    weight: int


@dataclass(frozen=True, slots=True)
class UpstreamsConfig:
    upstreams: tuple[UpstreamSpec, ...]
    first_token_timeout_s: float = 10.0
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    health_check_s: float = 10.0
    retry_budget: float = 0.2
    retry_budget_min_per_s: float = 10.0

    def pools(self) -> list[tuple[str, list[UpstreamSpec]]]:
        """The pools in the order they first appear, each with its upstreams in file order."""
        pools: dict[str, list[UpstreamSpec]] = {}
        for spec in self.upstreams:
            pools.setdefault(spec.pool, []).append(spec)
        return list(pools.items())


class _Lines:
    """Where things are in the file's text, for messages: tomllib does not say."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.tables = [i for i, line in enumerate(self.lines) if _HEADER.match(line)]
        self.upstreams = [i for i, line in enumerate(self.lines) if _UPSTREAM_HEADER.match(line)]

    def top(self, key: str) -> int | None:
        end = self.tables[0] if self.tables else len(self.lines)
        return self._key(key, 0, end)

    def upstream(self, index: int, key: str | None = None) -> int | None:
        if index >= len(self.upstreams):
            return None
        start = self.upstreams[index]
        if key is None:
            return start + 1
        end = next((i for i in self.tables if i > start), len(self.lines))
        return self._key(key, start + 1, end) or start + 1

    def _key(self, key: str, start: int, end: int) -> int | None:
        pattern = re.compile(
            rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*="""
        )
        for i in range(start, end):
            if pattern.match(self.lines[i]):
                return i + 1
        return None


def load(path: str, environ: Mapping[str, str] | None = None) -> UpstreamsConfig:
    """Read and check the upstreams file at `path`; the keys are read from `environ`."""
    environ = os.environ if environ is None else environ
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UpstreamsFileError(
            f"upstreams file {path}: cannot be read ({exc.strerror or type(exc).__name__})."
        ) from None
    except UnicodeDecodeError:
        raise UpstreamsFileError(f"upstreams file {path}: is not UTF-8 text.") from None
    return parse(text, path, environ)


def parse(text: str, path: str, environ: Mapping[str, str]) -> UpstreamsConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOMLLIB_POSITION.search(message)
        if found:
            problem = message[: found.start()].strip()
            raise UpstreamsFileError(
                f"upstreams file {path}, line {found.group(1)}: not valid TOML: {problem}."
            ) from None
        raise UpstreamsFileError(f"upstreams file {path}: not valid TOML: {message}.") from None
    return _Reader(path, _Lines(text), environ).config(data)


class _Reader:
    def __init__(self, path: str, lines: _Lines, environ: Mapping[str, str]) -> None:
        self.path = path
        self.lines = lines
        self.environ = environ

    def fail(self, line: int | None, problem: str) -> UpstreamsFileError:
        where = f", line {line}" if line else ""
        return UpstreamsFileError(f"upstreams file {self.path}{where}: {problem}")

    def config(self, data: dict[str, Any]) -> UpstreamsConfig:
        known = {
            "first_token_timeout_s",
            "breaker_failures",
            "breaker_cooldown_s",
            "health_check_s",
            "retry_budget",
            "retry_budget_min_per_s",
            "upstream",
        }
        for key in data:
            if key not in known:
                raise self.fail(
                    self.lines.top(key),
                    f'unknown setting "{key}" (known: {", ".join(sorted(known))}).',
                )
        values: dict[str, Any] = {}
        for key, low, integer in (
            ("first_token_timeout_s", 0.0, False),
            ("breaker_failures", 1, True),
            ("breaker_cooldown_s", 0.0, False),
            ("health_check_s", 0.0, False),
            ("retry_budget", 0.0, False),
            ("retry_budget_min_per_s", 0.0, False),
        ):
            if key in data:
                values[key] = self.number(data[key], key, low, integer)
        if "first_token_timeout_s" in values and values["first_token_timeout_s"] <= 0:
            raise self.fail(
                self.lines.top("first_token_timeout_s"), "first_token_timeout_s: must be above 0."
            )
        if "health_check_s" in values and values["health_check_s"] <= 0:
            raise self.fail(self.lines.top("health_check_s"), "health_check_s: must be above 0.")
        if values.get("retry_budget", 0) > 1:
            raise self.fail(self.lines.top("retry_budget"), "retry_budget: a share, from 0 to 1.")
        tables = data.get("upstream")
        if not isinstance(tables, list) or not tables:
            line = self.lines.top("upstream") if "upstream" in data else None
            raise self.fail(line, "no upstream: add at least one [[upstream]] table.")
        specs = [self.upstream(i, table) for i, table in enumerate(tables)]
        seen: dict[str, int] = {}
        for i, spec in enumerate(specs):
            if spec.name in seen:
                raise self.fail(
                    self.lines.upstream(i, "name"),
                    f'upstream "{spec.name}": the name is taken by upstream {seen[spec.name] + 1} '
                    "(names must be unique).",
                )
            seen[spec.name] = i
        local = [i for i, spec in enumerate(specs) if spec.kind == "local"]
        if len(local) > 1:
            raise self.fail(
                self.lines.upstream(local[1], "kind"),
                "only one upstream may be local (there is one embedded engine).",
            )
        return UpstreamsConfig(upstreams=tuple(specs), **values)

    def number(
        self, value: object, key: str, low: float, integer: bool, line: int | None = None
    ) -> Any:
        line = line if line is not None else self.lines.top(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "a whole number" if integer else "a number"
            raise self.fail(line, f"{key}: must be {kind}, not {_shown(value)}.")
        if integer and not isinstance(value, int):
            raise self.fail(line, f"{key}: must be a whole number, not {_shown(value)}.")
        if not math.isfinite(value) or value < low:
            raise self.fail(line, f"{key}: must be at least {low}, not {_shown(value)}.")
        return value

    def upstream(self, index: int, table: object) -> UpstreamSpec:
        at = self.lines.upstream
        if not isinstance(table, dict):
            raise self.fail(self.lines.top("upstream"), "upstream: must be [[upstream]] tables.")
        label = f"upstream {index + 1}"
        name = table.get("name")
        if name is None:
            raise self.fail(at(index), f'{label}: needs a name (name = "...").')
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise self.fail(
                at(index, "name"),
                f"{label}: name: 1 to 64 letters, digits, - and _, not {_shown(name)}.",
            )
        label = f'upstream "{name}"'
        for key in table:
            if key not in _UPSTREAM_KEYS:
                raise self.fail(
                    at(index, key),
                    f'{label}: unknown key "{key}" (known: {", ".join(_UPSTREAM_KEYS)}).',
                )
        kind = table.get("kind")
        if kind not in ("openai", "local"):
            line = at(index, "kind") if "kind" in table else at(index)
            raise self.fail(
                line, f'{label}: kind: must be "openai" or "local", not {_shown(kind)}.'
            )
        strings: dict[str, str | None] = {}
        for key in ("base_url", "model", "api_key_env", "pool"):
            value = table.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise self.fail(at(index, key), f"{label}: {key}: must be a non-empty string.")
            strings[key] = value
        weight = table.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise self.fail(
                at(index, "weight"),
                f"{label}: weight: a whole number of at least 1, not {_shown(weight)}.",
            )
        base_url, model, key_env, pool = (
            strings["base_url"],
            strings["model"],
            strings["api_key_env"],
            strings["pool"],
        )
        if pool is not None and not _NAME.fullmatch(pool):
            raise self.fail(
                at(index, "pool"),
                f"{label}: pool: 1 to 64 letters, digits, - and _, not {_shown(pool)}.",
            )
        api_key = None
        if kind == "local":
            for key in ("base_url", "model", "api_key_env"):
                if strings[key] is not None:
                    raise self.fail(
                        at(index, key),
                        f"{label}: {key}: a local upstream has none (the embedded model's file "
                        "is DRAGOMAN_MODEL_PATH).",
                    )
        else:
            if base_url is not None and not re.match(r"https?://[^/\s]+", base_url):
                raise self.fail(
                    at(index, "base_url"),
                    f"{label}: base_url: an http:// or https:// URL, not {_shown(base_url)}.",
                )
            if key_env is not None:
                if not _ENV_NAME.fullmatch(key_env):
                    raise self.fail(
                        at(index, "api_key_env"),
                        f"{label}: api_key_env: the name of an environment variable, not "
                        f"{_shown(key_env)}.",
                    )
                api_key = self.environ.get(key_env) or None
                if api_key is None:
                    raise self.fail(
                        at(index, "api_key_env"),
                        f"{label}: the variable {key_env} (api_key_env) is not set.",
                    )
            elif base_url is None:
                raise self.fail(
                    at(index),
                    f"{label}: needs base_url (a self-hosted server) or api_key_env (OpenAI "
                    "itself).",
                )
        return UpstreamSpec(
            name=name,
            kind=kind,
            base_url=base_url.rstrip("/") if base_url else None,
            model=model,
            api_key=api_key,
            pool=pool or model or name,
            weight=weight,
        )


def _shown(value: object) -> str:
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return f'"{shown}"'
    if value is None:
        return "nothing"
    return repr(value)[:40]
