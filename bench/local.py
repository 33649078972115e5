"""The embedded model through dragoman against llama-cpp-python called directly.

    python -m bench.local [--threads 2]

The same sentences (English → Korean, French, Spanish and Japanese from
bench/quality/pairs.tsv), the same few-shot prompts, greedy decoding and token cap, run first
by `llama_cpp.Llama` in this process, then through `dragoman serve` (a separate process,
`stream: false`), one request at a time. Reports generated tokens per second for both (wall
time of each request, prompt evaluation included) and their ratio.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from dragoman.providers.examples import few_shot_prompt
from dragoman.providers.local import LocalProvider, bundled_model_path
from tests.conftest import free_port
from tests.helpers import wait_until_answers

PAIRS = Path(__file__).parent / "quality" / "pairs.tsv"


def _cases() -> list[tuple[str, str]]:
    rows = list(csv.DictReader(PAIRS.open(encoding="utf-8"), delimiter="\t"))
    return [(row["lang"], row["en"]) for row in rows]


def direct(threads: int, cases: list[tuple[str, str]]) -> tuple[int, float]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(bundled_model_path()), n_ctx=4096, n_threads=threads,
                n_batch=512, verbose=False)  # fmt: skip
    tokens, seconds = 0, 0.0
    for i, (target, text) in enumerate([cases[0], *cases]):
        n_in = len(llm.tokenize(text.encode(), add_bos=False))
        started = time.perf_counter()
        for _ in llm.create_completion(
            few_shot_prompt("en", target, text),
            max_tokens=LocalProvider._max_tokens(n_in),
            temperature=0.0,
            stop=["\n"],
            stream=True,
        ):
            if i:
                tokens += 1
        if i:  # the first run warms up, untimed
            seconds += time.perf_counter() - started
    llm.close()
    return tokens, seconds


def through_dragoman(threads: int, cases: list[tuple[str, str]]) -> tuple[int, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "DRAGOMAN_PROVIDER": "local", "DRAGOMAN_LOCAL_THREADS": str(threads),
               "DRAGOMAN_LOG_LEVEL": "warning",
               "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/local.db"}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "dragoman", "serve", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            if not wait_until_answers(f"http://127.0.0.1:{port}/readyz", proc, 300):
                raise SystemExit("dragoman did not become ready")
            tokens, seconds = 0, 0.0
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
                # The first run warms up (and lets start-up work such as loading the language
                # detector finish), untimed, as on the direct side.
                for i, (target, text) in enumerate([cases[0], *cases]):
                    if i == 1:
                        time.sleep(3)
                    started = time.perf_counter()
                    record = client.post(
                        "/v1/translations",
                        json={"text": text, "source_lang": "en", "target_lang": target,
                              "stream": False},
                    ).json()  # fmt: skip
                    if i:
                        seconds += time.perf_counter() - started
                        tokens += record["usage"]["completion_tokens"]
        finally:
            proc.terminate()
            proc.wait(30)
    return tokens, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    cases = _cases()
    d_tokens, d_seconds = direct(args.threads, cases)
    g_tokens, g_seconds = through_dragoman(args.threads, cases)
    d_rate, g_rate = d_tokens / d_seconds, g_tokens / g_seconds
    print(f"{len(cases)} sentences, {args.threads} threads")
    print("| | tokens | seconds | tokens/s |")
    print("|---|---|---|---|")
    print(f"| llama-cpp-python directly | {d_tokens} | {d_seconds:.2f} | {d_rate:.1f} |")
    print(f"| through dragoman | {g_tokens} | {g_seconds:.2f} | {g_rate:.1f} |")
    print(f"| dragoman / direct | | | {g_rate / d_rate:.3f}× |")


if __name__ == "__main__":
    main()
