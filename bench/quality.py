"""Translation quality of a provider, scored with chrF (sacrebleu) per direction.

    python -m bench.quality [--server URL] [--concurrency N] [--dump FILE]

Without --server it starts `dragoman serve` with the current environment (the configured
provider: the embedded model by default) on a free port. Each of the 40 pairs in
bench/quality/pairs.tsv is translated in both directions (English to the other language and
back) with `stream: false`. `--concurrency N` sends them from N clients at once, so that the
embedded engine decodes them together in one batch: its scores show what batching does to
quality. `--dump FILE` writes every translation, with its source and reference, as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sacrebleu.metrics import CHRF

from tests.conftest import free_port
from tests.helpers import wait_until_answers

PAIRS = Path(__file__).parent / "quality" / "pairs.tsv"


def start_server(
    workdir: str, extra_env: dict[str, str] | None = None, name: str = "quality"
) -> tuple[subprocess.Popen[bytes], str]:
    """`dragoman serve` with the current environment (plus `extra_env`) on a free port, its
    database `name`.db in `workdir`; waits until it is ready."""
    port = free_port()
    env = {
        **os.environ,
        "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/{name}.db",
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dragoman", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    if not wait_until_answers(f"{url}/readyz", proc, 300):
        proc.kill()
        raise SystemExit("dragoman did not become ready")
    return proc, url


def evaluate(
    url: str, concurrency: int = 1, dump: str | None = None
) -> dict[str, tuple[float, int]]:
    rows = list(csv.DictReader(PAIRS.open(encoding="utf-8"), delimiter="\t"))
    jobs = []
    for row in rows:
        lang = row["lang"]
        jobs.append(("en", lang, row["en"], row["other"]))
        jobs.append((lang, "en", row["other"], row["en"]))
    with httpx.Client(base_url=url, timeout=300) as client:
        info = client.get("/readyz").json()
        print(f"provider={info.get('provider')} model={info.get('model')}", file=sys.stderr)

        def translate(job: tuple[str, str, str, str]) -> str:
            source, target, text, _ = job
            response = client.post(
                "/v1/translations",
                json={
                    "text": text,
                    "source_lang": source,
                    "target_lang": target,
                    "script_id": "bench-quality",
                    "stream": False,
                },
            )
            response.raise_for_status()
            return str(response.json()["translation"]).strip()

        with ThreadPoolExecutor(concurrency) as pool:
            outputs = list(pool.map(translate, jobs))
    if dump:
        rows_out = [
            {"source_lang": s, "target_lang": t, "text": text, "reference": ref, "output": out}
            for (s, t, text, ref), out in zip(jobs, outputs, strict=True)
        ]
        Path(dump).write_text(json.dumps(rows_out, ensure_ascii=False, indent=1), "utf-8")
    hyps: dict[str, list[str]] = defaultdict(list)
    refs: dict[str, list[str]] = defaultdict(list)
    for (source, target, _, ref), output in zip(jobs, outputs, strict=True):
        direction = f"{source}→{target}"
        hyps[direction].append(output)
        refs[direction].append(ref)
    chrf = CHRF()
    return {d: (chrf.corpus_score(hyps[d], [refs[d]]).score, len(hyps[d])) for d in sorted(hyps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="a running dragoman; default: start one")
    parser.add_argument("--concurrency", type=int, default=1, help="clients at once")
    parser.add_argument("--dump", help="write every translation to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        proc = None
        url = args.server
        if url is None:
            proc, url = start_server(workdir)
        try:
            scores = evaluate(url, args.concurrency, args.dump)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    print("| direction | sentences | chrF |")
    print("|---|---|---|")
    for direction, (score, n) in scores.items():
        print(f"| {direction} | {n} | {score:.1f} |")


if __name__ == "__main__":
    main()
