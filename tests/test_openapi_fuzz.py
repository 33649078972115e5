"""schemathesis against /openapi.json of a running server: no 500s, answers match the schema.

A short run (a bounded number of examples per operation), part of the test suite. Every
built-in check runs except "schema-valid data is accepted": a text of only whitespace or a
language tag that is not offered fits the schema and is still rightly 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from tests.fake_openai import FakeOpenAI
from tests.processes import ServeProcess

# What it checks does not depend on the database: CI's second pass leaves it out.
pytestmark = pytest.mark.once

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def fuzz_server(fake: FakeOpenAI, tmp_path: Path) -> Iterator[ServeProcess]:
    # A process of its own, not a thread of this one: Python 3.11 can fail building an AST
    # while another thread of the process builds one, and hypothesis builds them.
    env = {
        "DRAGOMAN_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake.base_url,
        "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}",
        "DRAGOMAN_LOG_LEVEL": "error",
        "DRAGOMAN_FIRST_TOKEN_TIMEOUT_S": "5",
        "DRAGOMAN_IDLE_TIMEOUT_S": "5",
        "DRAGOMAN_MAX_TEXT_CHARS": "2000",
    }
    server = ServeProcess(env, tmp_path)
    yield server
    server.stop()


def test_every_operation_answers_within_its_schema(fuzz_server: ServeProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:
        _fuzz(operation, fuzz_server.url, operation.as_strategy())
        if operation.method.upper() == "POST":
            # Random tags are almost never offered ones: half the cases get one that is, so
            # that the success paths (streams, records) are fuzzed too.
            _fuzz(operation, fuzz_server.url, _with_offered_language(operation.as_strategy()))
    assert (200, "POST /v1/translations") in fuzz_server_statuses
    assert (200, "POST /translate") in fuzz_server_statuses
    assert (422, "POST /v1/translations") in fuzz_server_statuses


fuzz_server_statuses: list[tuple[int, str]] = []
OFFERED = st.sampled_from(["ko", "fr-FR", "zh-Hant", "pt-BR", "Korean"])


def _with_offered_language(
    cases: st.SearchStrategy[schemathesis.Case],
) -> st.SearchStrategy[schemathesis.Case]:
    def offered(pair: tuple[schemathesis.Case, str]) -> schemathesis.Case:
        case, tag = pair
        if isinstance(case.body, dict):
            for field in ("target_lang", "lang"):
                if isinstance(case.body.get(field), str):
                    case.body[field] = tag
        return case

    return st.tuples(cases, OFFERED).map(offered)


def _fuzz(
    operation: schemathesis.APIOperation,
    base_url: str,
    cases: st.SearchStrategy[schemathesis.Case],
) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            base_url=base_url,
            timeout=30,
            # The Bearer scheme is documented for servers with keys on; this one runs on
            # loopback with keys off, where it rightly serves without one (tests/test_keys.py
            # covers the 401s).
            excluded_checks=[positive_data_acceptance, ignored_auth],
        )
        fuzz_server_statuses.append((response.status_code, operation.label))

    run()
