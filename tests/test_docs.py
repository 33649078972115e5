"""The docs check: every example in README.md and docs/*.md is run, and its output compared with
what the page shows.

How a page is written for it (docs/architecture.md, "The docs", points here):

- Code is in fenced blocks only (an indented code block fails the check: it would escape it).
- ```console: commands after `$ `, a trailing `\\` continues one on the next line; the lines
  after a command, up to the next `$ `, are its output (standard output and standard error, as
  a terminal shows them). A command shown without output must print nothing.
- ```python: run with the project's Python; a ```text block right after it is its output.
- ```js: run in a browser page of the server (Debian's chromium through Playwright).
- In an output, `…` stands for any text within a line; a line that is only `…` for one or more
  lines; a date and time (`2025-06-01 09:00`, RFC 3339) for any other.
- `<!-- docs-check: illustrative -->` before a block: its output is a real model's (the page
  says so in words). The check then compares the output's form: the command's own messages
  (`dragoman: ...`) and the stream's framing exactly, the translated text only as "some text
  here", and the command must succeed.
- `<!-- docs-check: not run: <reason> -->` before a block: not run, with the reason (a
  configuration file, a benchmark that runs for minutes, a server of another kind). Any other
  block fails the check.

Each page runs from a fresh start, in its own order, as a reader would follow it: an empty home
directory (so the default database, `~/.local/share/dragoman/dragoman.db`, is new), the
project's `.venv/bin` on the PATH (what `. .venv/bin/activate` does), and a real `dragoman
serve` on 127.0.0.1 (its port in place of 8000) backed by the test suite's fake
OpenAI-compatible upstream, which echoes "T:" and the words. With
`DRAGOMAN_DOCS_CHECK_MODEL=embedded` the pages run on the embedded model instead and
illustrative outputs are compared exactly too: that is how they were made (slower, and exact
only on the x86-64 build the outputs were made with).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.fake_openai import FakeOpenAI

# What it checks does not depend on the database: CI's second pass leaves it out.
pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
EMBEDDED = os.environ.get("DRAGOMAN_DOCS_CHECK_MODEL") == "embedded"
DOCS_PORT = "127.0.0.1:8000"
_MARKER = re.compile(r"^<!--\s*docs-check:\s*(.*?)\s*-->$")
_FENCE = re.compile(r"^```(\S*)\s*$")
_RUN = {"console", "python", "js"}


# The pages' blocks.


@dataclass
class Block:
    page: str
    line: int
    lang: str
    body: str
    marker: str | None = None
    output: Block | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def illustrative(self) -> bool:
        return self.marker == "illustrative"

    @property
    def skipped(self) -> bool:
        return self.marker is not None and self.marker.startswith("not run:")


def parse(page: str, text: str) -> tuple[list[Block], list[str]]:
    """The page's blocks (an output block attached to its python block), and its problems."""
    blocks: list[Block] = []
    problems: list[str] = []
    lines = text.split("\n")
    i = 0
    marker: str | None = None
    after_blank = True
    previous_end = -1
    while i < len(lines):
        line = lines[i]
        found = _MARKER.match(line.strip())
        fence = _FENCE.match(line)
        if found:
            marker = found.group(1)
        elif fence:
            start = i
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i] != "```":
                body.append(lines[i])
                i += 1
            if i == len(lines):
                problems.append(f"{page}:{start + 1}: a code block is not closed")
            block = Block(page, start + 1, fence.group(1), "\n".join(body), marker)
            previous = blocks[-1] if blocks else None
            if (
                block.lang == "text"
                and marker is None
                and previous is not None
                and previous.lang == "python"
                and previous.output is None
                and all(not lines[j].strip() for j in range(previous_end + 1, start))
            ):
                previous.output = block
            else:
                blocks.append(block)
            previous_end = i
            marker = None
        elif line.strip():
            if after_blank and line.startswith("    ") and not _in_list(lines, i):
                problems.append(
                    f"{page}:{i + 1}: an indented code block; use a fenced one, so that the "
                    "docs check sees it"
                )
            if not line.lstrip().startswith("<!--"):
                marker = None
        after_blank = not line.strip()
        i += 1
    for block in blocks:
        if block.marker is not None and not (block.illustrative or block.skipped):
            problems.append(f"{block.where}: unknown docs-check marker {block.marker!r}")
        elif block.lang not in _RUN and not block.skipped:
            problems.append(
                f"{block.where}: a ```{block.lang or ''} block is neither run nor marked "
                "<!-- docs-check: not run: <reason> -->"
            )
    return blocks, problems


def _in_list(lines: list[str], i: int) -> bool:
    """Whether an indented line continues a list item (then it is not a code block)."""
    for j in range(i - 1, -1, -1):
        stripped = lines[j].strip()
        if not stripped:
            continue
        if re.match(r"^\s*([-*]|\d+\.)\s", lines[j]):
            return True
        if not lines[j].startswith(" "):
            return False
    return False


@dataclass
class Command:
    line: int
    text: str
    expected: list[str] = field(default_factory=list)


def commands(block: Block) -> list[Command]:
    found: list[Command] = []
    lines = block.body.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            text = line[2:]
            start = i
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text += "\n" + lines[i]  # bash reads the backslash-newline as the page does
            found.append(Command(block.line + 1 + start, text))
        elif found:
            found[-1].expected.append(line)
        else:
            raise AssertionError(f"{block.where}: output before any `$ ` command")
        i += 1
    for command in found:
        while command.expected and not command.expected[-1].strip():
            command.expected.pop()
    return found


# Comparing outputs.


# Times are never the point of an example: any time stands for any other.
_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?Z?)?")


def _line_matches(expected: str, actual: str) -> bool:
    expected, actual = _TIME.sub("<time>", expected), _TIME.sub("<time>", actual)
    if "…" not in expected:
        return expected == actual
    pattern = ".*".join(re.escape(part) for part in expected.split("…"))
    return re.fullmatch(pattern, actual, re.S) is not None


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; `…` within a line is any text, a line of only `…` one or more lines."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == "…":
        return any(matches(rest, actual[n:]) for n in range(1, len(actual) + 1))
    return bool(actual) and _line_matches(head, actual[0]) and matches(rest, actual[1:])


_BOX = re.compile(r"^[\s━─┏┓┗┛┣┫┳┻╋┃│┡┩╇┼└┘┌┐├┤┬┴═╞╡╪]+$")


def _json_form(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_form(item) for key, item in value.items()}
    if isinstance(value, list):
        return ["…"] if value else []
    return "…"  # any scalar: another model, another value (a detected language, a count)


def _line_form(line: str) -> str:
    if line.startswith("dragoman: "):  # the command's own messages: exactly
        return line
    if line.startswith("data: "):
        data = line[len("data: ") :]
        if data == "[DONE]":
            return line
        try:  # a `…` in shown JSON stands for any value
            shown = json.loads(data.replace('"…"', "0").replace("…", "0"))
            return "data: " + json.dumps(_json_form(shown), sort_keys=True)
        except ValueError:
            return "data: …"
    if line.startswith("event: "):
        return line
    if line.startswith("id: "):
        return "id: …"
    if _BOX.match(line):
        return "(table border)"
    if "│" in line or "┃" in line:
        return "(table row)"
    return "(text)" if line.strip() else ""


def form(lines: list[str]) -> list[str]:
    """What an illustrative output must keep: the form of each line; the events of a stream
    (blank-line separated) and the rows of a table (wrapped cells) collapsed where one repeats,
    since another model writes other pieces and other widths."""
    groups: list[tuple[str, ...]] = []
    current: list[str] = []
    for line in [*lines, ""]:
        shape = _line_form(line)
        if shape:
            current.append(shape)
            continue
        if current:
            group = tuple(current)
            if group[0].startswith(("id: ", "data: ", "event: ")):
                if not groups or groups[-1] != group:
                    groups.append(group)
            else:
                collapsed: list[str] = []
                for item in group:
                    if not (collapsed and item == collapsed[-1] and item.startswith("(table")):
                        collapsed.append(item)
                groups.append(tuple(collapsed))
            current = []
    return [item for group in groups for item in group]


def compare(
    where: str, command: str, expected: list[str], actual: str, illustrative: bool
) -> str | None:
    """None when the output is as the page shows it; else what differs, for people."""
    # Trailing spaces are invisible on the page (rich pads centred titles with them).
    lines = [line.rstrip() for line in actual.rstrip("\n").split("\n")] if actual.strip() else []
    expected = [line.rstrip() for line in expected]
    if illustrative and not EMBEDDED:
        ok = form(expected) == form(lines)
    else:
        ok = matches(expected, lines)
    if ok:
        return None
    return (
        f"{where}: `{command}`\n--- the page shows\n"
        + "\n".join(expected)
        + "\n--- it printed\n"
        + "\n".join(lines)
        + ("\n--- forms compared (illustrative output)" if illustrative and not EMBEDDED else "")
    )


# Running a page.


class Reader:
    """A reader following one page: a fresh home, the project's commands, a running server."""

    def __init__(self, workdir: Path, fake: FakeOpenAI | None) -> None:
        self.workdir = workdir
        home = workdir / "home"
        home.mkdir()
        self.cwd = workdir / "clone"
        self.cwd.mkdir()
        venv_bin = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DRAGOMAN_", "OPENAI_"))}
        env.pop("XDG_DATA_HOME", None)
        env.update(
            {"HOME": str(home), "PATH": f"{venv_bin}:{env.get('PATH', '')}", "COLUMNS": "100",
             "TERM": "dumb", "DRAGOMAN_LOG_LEVEL": "warning"}
        )  # fmt: skip
        if fake is not None:
            env.update({"DRAGOMAN_PROVIDER": "openai", "OPENAI_BASE_URL": fake.base_url})
        else:
            env["DRAGOMAN_LOCAL_THREADS"] = "2"
        self.env = env
        self.port = free_port()
        self.server: subprocess.Popen[bytes] | None = None

    def start_server(self) -> None:
        self.server = subprocess.Popen(
            ["dragoman", "serve", "--port", str(self.port)],
            cwd=self.cwd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("dragoman serve did not start for the docs check")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(30)

    def here(self, text: str) -> str:
        return text.replace(DOCS_PORT, f"127.0.0.1:{self.port}")

    def there(self, text: str) -> str:
        return text.replace(f"127.0.0.1:{self.port}", DOCS_PORT)

    def run_console(self, block: Block) -> list[str]:
        problems = []
        for command in commands(block):
            done = subprocess.run(
                ["bash", "-c", "set -o pipefail\n" + self.here(command.text)],
                cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, timeout=300,
            )  # fmt: skip
            where = f"{block.page}:{command.line}"
            if block.illustrative and done.returncode != 0:
                problems.append(f"{where}: `{command.text}` exited {done.returncode}")
            problem = compare(
                where, command.text, command.expected, self.there(done.stdout), block.illustrative
            )
            if problem:
                problems.append(problem)
        return problems

    def run_python(self, block: Block) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", self.here(block.body)],
            cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            return [f"{block.where}: the Python example failed:\n{done.stderr[-2000:]}"]
        expected = block.output.body.split("\n") if block.output else []
        problem = compare(
            block.where, "python", expected, self.there(done.stdout), block.illustrative
        )
        return [problem] if problem else []

    def run_js(self, block: Block, browser: Any) -> list[str]:
        page = browser.new_page()
        try:
            page.goto(f"http://127.0.0.1:{self.port}/")
            page.evaluate(f"async () => {{ {self.here(block.body)} }}")
        except Exception as exc:
            return [f"{block.where}: the browser example failed: {exc}"]
        finally:
            page.close()
        return []


def _browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        if os.environ.get("DRAGOMAN_REQUIRE_BROWSER") == "1":
            pytest.fail("the docs' browser examples need chromium")
        yield None
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield browser
        browser.close()


def run_page(page: str, text: str, workdir: Path, fake: FakeOpenAI | None) -> list[str]:
    blocks, problems = parse(page, text)
    runnable = [b for b in blocks if b.lang in _RUN and not b.skipped]
    if problems or not runnable:
        return problems
    reader = Reader(workdir, fake)
    browser_run = _browser()
    browser = None
    try:
        reader.start_server()
        for block in runnable:
            if block.lang == "console":
                problems += reader.run_console(block)
            elif block.lang == "python":
                problems += reader.run_python(block)
            else:
                browser = browser or next(browser_run)
                if browser is None:
                    pytest.skip("no chromium for the docs' browser examples")
                problems += reader.run_js(block, browser)
    finally:
        reader.stop()
        browser_run.close()
    return problems


@pytest.fixture
def upstream(request: pytest.FixtureRequest) -> FakeOpenAI | None:
    return None if EMBEDDED else request.getfixturevalue("fake")


@pytest.mark.parametrize("page", PAGES)
def test_the_examples_of_the_page_run_as_shown(
    page: str, tmp_path: Path, upstream: FakeOpenAI | None
) -> None:
    if os.environ.get("DRAGOMAN_TEST_DATABASE_URL"):
        pytest.skip("the pages use the default database (a file in the home directory)")
    problems = run_page(page, (ROOT / page).read_text(encoding="utf-8"), tmp_path, upstream)
    assert not problems, "\n\n".join(problems)


# The check itself can fail.


def test_a_wrong_output_or_a_failing_command_fails_the_check(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    page = "\n".join(
        [
            "```console",
            "$ dragoman --version",
            "dragoman 0.0.0-not-this-one",
            "$ dragoman translate 'Hi' --to xx-bad!",
            "$ dragoman history",
            "dragoman: database ~/.local/share/dragoman/dragoman.db",
            "No translations yet.",
            "```",
            "<!-- docs-check: illustrative -->",
            "```console",
            "$ dragoman export nothing-here --to fr",
            "Rien.",
            "```",
        ]
    )
    problems = run_page("synthetic.md", page, tmp_path, fake)
    text = "\n".join(problems)
    assert "synthetic.md:2: `dragoman --version`" in text  # a changed output
    assert "synthetic.md:4: `dragoman translate 'Hi' --to xx-bad!`" in text  # unshown output
    assert "synthetic.md:5" not in text  # as shown
    assert "synthetic.md:11: `dragoman export nothing-here --to fr` exited 1" in text
    # A block the check would not see: unmarked, or indented.
    _, problems = parse("other.md", "```ini\n[unmarked]\n```\n\nText:\n\n    dragoman serve\n")
    assert problems == [
        "other.md:7: an indented code block; use a fenced one, so that the docs check sees it",
        "other.md:1: a ```ini block is neither run nor marked <!-- docs-check: not run: "
        "<reason> -->",
    ]


def test_forms_and_wildcards() -> None:
    assert matches(["id: key_…", "…", "done"], ["id: key_12", "a", "b", "done"])
    assert not matches(["…", "done"], ["done"])  # `…` is at least one line
    assert not matches([], ["something"])  # shown without output: prints nothing
    assert matches(["│ 2025-06-01 09:00 │ a │"], ["│ 2026-12-04 16:54 │ a │"])
    assert not matches(["│ 2025-06-01 09:00 │ a │"], ["│ 2026-12-04 16:54 │ b │"])
    real = ["data: 감사합니다", "", "data: .", "", "data: [DONE]"]
    fake = ["data: T:", "", "data: Thank", "", "data:  you", "", "data: [DONE]"]
    assert form(real) == form(fake) == ["data: …", "data: [DONE]"]
    assert form(["data: 감사합니다"]) != form(["data: 감사합니다", "", "event: error"])
    assert form(["Merci.", "dragoman: database ~/x"]) != form(["Merci.", "dragoman: other"])
    assert form(["one line"]) != form(["one line", "two lines"])
    v1 = ['data: {"id": "a", "provider": "local"}']
    assert form(v1) == form(['data: {"id": "b", "provider": "openai"}'])
    assert form(v1) != form(['data: {"id": "b"}'])
