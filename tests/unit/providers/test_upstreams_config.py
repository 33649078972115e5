"""The upstreams file: what a good one gives, and the message every bad one gets (its line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dragoman.providers.upstreams.config import UpstreamsFileError, load, parse

ENV = {"HOSTED_KEY": "sk-hosted"}

GOOD = """\
first_token_timeout_s = 2.5
breaker_failures = 3

[[upstream]]
name = "gpu-a"
kind = "openai"
base_url = "http://gpu-a.internal:8000/v1/"
model = "qwen"
weight = 2

[[upstream]]
name = "gpu-b"
kind = "openai"
base_url = "http://gpu-b.internal:8000/v1"
model = "qwen"

[[upstream]]
name = "hosted"
kind = "openai"
base_url = "https://api.openai.com/v1"
model = "gpt-4o-mini"
api_key_env = "HOSTED_KEY"
pool = "fallback"

[[upstream]]
name = "embedded"
kind = "local"
"""


def test_a_good_file() -> None:
    config = parse(GOOD, "up.toml", ENV)
    assert config.first_token_timeout_s == 2.5
    assert config.breaker_failures == 3
    assert config.breaker_cooldown_s == 30  # the defaults
    assert config.retry_budget == 0.2 and config.retry_budget_min_per_s == 10
    names = [(s.name, s.kind, s.pool, s.weight) for s in config.upstreams]
    assert names == [
        ("gpu-a", "openai", "qwen", 2),  # a pool by default: its model
        ("gpu-b", "openai", "qwen", 1),
        ("hosted", "openai", "fallback", 1),
        ("embedded", "local", "embedded", 1),  # no model: its name
    ]
    assert config.upstreams[0].base_url == "http://gpu-a.internal:8000/v1"
    assert config.upstreams[0].api_key is None
    assert config.upstreams[2].api_key == "sk-hosted"
    assert [(pool, [s.name for s in specs]) for pool, specs in config.pools()] == [
        ("qwen", ["gpu-a", "gpu-b"]),
        ("fallback", ["hosted"]),
        ("embedded", ["embedded"]),
    ]


def _upstream(**keys: object) -> str:
    lines = ["[[upstream]]"]
    for key, value in keys.items():
        shown = f'"{value}"' if isinstance(value, str) else str(value).lower()
        lines.append(f"{key} = {shown}")
    return "\n".join(lines) + "\n"


OK = {"name": "a", "kind": "openai", "base_url": "http://127.0.0.1:1/v1"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'breaker_failures = 5\nname = "x" "y"\n',
            ", line 2: not valid TOML: Expected newline or end of document after a statement.",
        ),
        (
            "\n\nbreaker_cooldown = 30\n" + _upstream(**OK),
            ', line 3: unknown setting "breaker_cooldown" (known: breaker_cooldown_s, '
            "breaker_failures, first_token_timeout_s, health_check_s, retry_budget, "
            "retry_budget_min_per_s, upstream).",
        ),
        (
            "breaker_failures = 0\n" + _upstream(**OK),
            ", line 1: breaker_failures: must be at least 1, not 0.",
        ),
        (
            "breaker_failures = 2.5\n" + _upstream(**OK),
            ", line 1: breaker_failures: must be a whole number, not 2.5.",
        ),
        (
            'first_token_timeout_s = "10"\n' + _upstream(**OK),
            ', line 1: first_token_timeout_s: must be a number, not "10".',
        ),
        (
            "first_token_timeout_s = 0\n" + _upstream(**OK),
            ", line 1: first_token_timeout_s: must be above 0.",
        ),
        (
            "breaker_cooldown_s = -1\n" + _upstream(**OK),
            ", line 1: breaker_cooldown_s: must be at least 0.0, not -1.",
        ),
        ("retry_budget = 1.5\n" + _upstream(**OK), ", line 1: retry_budget: a share, from 0 to 1."),
        ("breaker_failures = 5\n", ": no upstream: add at least one [[upstream]] table."),
        ('upstream = "gpu"\n', ", line 1: no upstream: add at least one [[upstream]] table."),
        (
            _upstream(kind="openai", base_url="http://x:1/v1"),
            ', line 1: upstream 1: needs a name (name = "...").',
        ),
        (
            _upstream(**OK) + _upstream(**{**OK, "name": "b c"}),
            ', line 6: upstream 2: name: 1 to 64 letters, digits, - and _, not "b c".',
        ),
        (
            _upstream(**{**OK, "kind": "vllm"}),
            ', line 3: upstream "a": kind: must be "openai" or "local", not "vllm".',
        ),
        (
            _upstream(name="a", base_url="http://x:1/v1"),
            ', line 1: upstream "a": kind: must be "openai" or "local", not nothing.',
        ),
        (
            _upstream(**OK, wieght=2),
            ', line 5: upstream "a": unknown key "wieght" (known: name, kind, base_url, model, '
            "api_key_env, pool, weight).",
        ),
        (
            _upstream(**OK, weight=0),
            ', line 5: upstream "a": weight: a whole number of at least 1, not 0.',
        ),
        (
            _upstream(**OK, weight="2"),
            ', line 5: upstream "a": weight: a whole number of at least 1, not "2".',
        ),
        (
            _upstream(**OK) + "\n" + _upstream(**{**OK, "base_url": "http://y:1/v1"}),
            ', line 7: upstream "a": the name is taken by upstream 1 (names must be unique).',
        ),
        (
            _upstream(**{**OK, "base_url": "gpu-a:8000"}),
            ', line 4: upstream "a": base_url: an http:// or https:// URL, not "gpu-a:8000".',
        ),
        (
            _upstream(name="a", kind="openai"),
            ', line 1: upstream "a": needs base_url (a self-hosted server) or api_key_env '
            "(OpenAI itself).",
        ),
        (
            _upstream(name="a", kind="openai", api_key_env="NOT_SET_ANYWHERE"),
            ', line 4: upstream "a": the variable NOT_SET_ANYWHERE (api_key_env) is not set.',
        ),
        (
            _upstream(name="a", kind="openai", api_key_env="bad-name"),
            ', line 4: upstream "a": api_key_env: the name of an environment variable, not '
            '"bad-name".',
        ),
        (
            _upstream(**{**OK, "model": ""}),
            ', line 5: upstream "a": model: must be a non-empty string.',
        ),
        (
            _upstream(**OK, pool="gpus/a"),
            ', line 5: upstream "a": pool: 1 to 64 letters, digits, - and _, not "gpus/a".',
        ),
        (
            _upstream(name="e", kind="local", base_url="http://x:1/v1"),
            ', line 4: upstream "e": base_url: a local upstream has none (the embedded model\'s '
            "file is DRAGOMAN_MODEL_PATH).",
        ),
        (
            _upstream(name="e", kind="local") + _upstream(name="f", kind="local"),
            ", line 6: only one upstream may be local (there is one embedded engine).",
        ),
    ],
)
def test_a_bad_file_names_its_line(text: str, message: str) -> None:
    with pytest.raises(UpstreamsFileError) as caught:
        parse(text, "up.toml", ENV)
    assert caught.value.message == f"upstreams file up.toml{message}"


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(UpstreamsFileError) as caught:
        load(str(path), ENV)
    assert caught.value.message == (
        f"upstreams file {path}: cannot be read (No such file or directory)."
    )


def test_a_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(UpstreamsFileError) as caught:
        load(str(path), ENV)
    assert caught.value.message == f"upstreams file {path}: is not UTF-8 text."
