"""Translation quality of a provider, scored with chrF (sacrebleu) per direction.

    python -m bench.quality [--server URL]

Without --server it starts `dragoman serve` with the current environment (the configured
provider: the embedded model by default) on a free port. Each of the 40 pairs in
bench/quality/pairs.tsv is translated in both directions (English to the other language and
back) with `stream: false`.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import httpx
from sacrebleu.metrics import CHRF

from tests.conftest import free_port
from tests.helpers import wait_until_answers

PAIRS = Path(__file__).parent / "quality" / "pairs.tsv"


def _start_server(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "DRAGOMAN_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/quality.db"}
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


def evaluate(url: str) -> dict[str, tuple[float, int]]:
    rows = list(csv.DictReader(PAIRS.open(encoding="utf-8"), delimiter="\t"))
    hyps: dict[str, list[str]] = defaultdict(list)
    refs: dict[str, list[str]] = defaultdict(list)
    with httpx.Client(base_url=url, timeout=300) as client:
        info = client.get("/readyz").json()
        print(f"provider={info.get('provider')} model={info.get('model')}", file=sys.stderr)
        for row in rows:
            lang = row["lang"]
            for source, target, text, ref in (
                ("en", lang, row["en"], row["other"]),
                (lang, "en", row["other"], row["en"]),
            ):
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
                direction = f"{source}→{target}"
                hyps[direction].append(response.json()["translation"].strip())
                refs[direction].append(ref)
    chrf = CHRF()
    return {d: (chrf.corpus_score(hyps[d], [refs[d]]).score, len(hyps[d])) for d in sorted(hyps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="a running dragoman; default: start one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        proc = None
        url = args.server
        if url is None:
            proc, url = _start_server(workdir)
        try:
            scores = evaluate(url)
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
