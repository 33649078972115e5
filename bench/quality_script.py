"""A script translated segment by segment: chrF, glossary adherence, term consistency, first token.

    python -m bench.quality_script [--langs ko,fr] [--modes context,no context]
        [--context-segments N] [--server URL] [--server-no-context URL] [--dump FILE]

The script is `bench/quality/script_lecture.tsv`: a lecture of 33 one-sentence segments (as
speech-to-text gives them) with Korean and French references, in which names and terms recur.
`script_glossary.tsv` is its glossary (source term, Korean, French); `script_terms.tsv` lists
recurring terms that are not in the glossary, with the target forms accepted for each
(`|`-separated).

Two modes. "context": a server with `DRAGOMAN_CONTEXT_SEGMENTS` as configured (default 3);
"no context": a server with `DRAGOMAN_CONTEXT_SEGMENTS=0`. Without `--server` each is started
here with the current environment (the configured provider: the embedded model by default);
`--server URL` measures a running server as the context mode and `--server-no-context URL` as
the other (a mode whose server is not given is skipped when the other one is given). For each
target language and mode a fresh script id gets the glossary, then the segments in order,
each streamed from `POST /v1/scripts/{id}/segments`.

Measures, per language and mode:

- chrF: sacrebleu's corpus chrF of the translations against the references.
- Glossary adherence: kept / applicable. An entry applies to a segment when its source term
  occurs in the segment, and is kept when its target term occurs in the translation (both
  ignoring case, as the service's `glossary_misses` decides). The records' `glossary_misses`
  are checked against this count.
- Term consistency: the share of recurring source terms (occurring in two segments or more)
  rendered the same way every time. The rendering of one occurrence is the first of the
  term's accepted target forms (the glossary's target term; the listed forms for the others)
  found in the translation, or none; a term is consistent when all its occurrences have the
  same rendering and it is not none. A rendering outside the accepted forms thus counts as
  inconsistent even when the model repeats it: this is a lower bound. Reported over all
  recurring terms and over the non-glossary ones alone (where only context can help).
- Terms after the end: of the kept entries, those written only after the translation's last
  full stop (where glossary steering of the embedded model puts a term the model would have
  left out; see docs/scripts.md).
- First token p50: from sending the request to the first `delta` event of its stream. The
  context makes the prompt longer, and this is its price.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse
from sacrebleu.metrics import CHRF

from bench.quality import start_server

DATA = Path(__file__).parent / "quality"
SCRIPT = DATA / "script_lecture.tsv"
GLOSSARY = DATA / "script_glossary.tsv"
TERMS = DATA / "script_terms.tsv"
MODES = ("context", "no context")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def occurs(term: str, text: str) -> bool:
    return term.casefold() in text.casefold()


def appended(term: str, translation: str) -> bool:
    """The term occurs only after the translation's last sentence end."""
    ends = [translation.rfind(mark) for mark in ".!?。"]
    last = max(ends)
    return last >= 0 and occurs(term, translation[last:]) and not occurs(term, translation[:last])


@dataclass
class Run:
    """One language in one mode: what the server answered for each segment."""

    lang: str
    mode: str
    translations: list[str] = field(default_factory=list)
    misses: list[list[str] | None] = field(default_factory=list)
    first_token_s: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)


def translate_script(client: httpx.Client, lang: str, mode: str) -> Run:
    script_id = f"bench-script-{lang}-{mode.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
    entries = [
        {"source": row["source"], "target": row[lang], "target_lang": lang}
        for row in _rows(GLOSSARY)
    ]
    client.put(f"/v1/scripts/{script_id}/glossary", json={"entries": entries}).raise_for_status()
    run = Run(lang, mode)
    for row in _rows(SCRIPT):
        body = {"text": row["en"], "source_lang": "en", "target_lang": lang, "stream": True}
        sent = time.perf_counter()
        first: float | None = None
        record: dict[str, Any] | None = None
        with connect_sse(client, "POST", f"/v1/scripts/{script_id}/segments", json=body) as sse:
            sse.response.raise_for_status()
            for event in sse.iter_sse():
                if event.event == "delta" and first is None:
                    first = time.perf_counter() - sent
                elif event.event == "done":
                    record = json.loads(event.data)
                elif event.event == "error":
                    raise SystemExit(f"segment failed: {event.data}")
        if record is None:
            raise SystemExit("a segment's stream ended without `done`")
        run.translations.append(str(record["translation"]).strip())
        run.misses.append(record.get("glossary_misses"))
        run.first_token_s.append(first if first is not None else time.perf_counter() - sent)
        usage = record.get("usage") or {}
        run.prompt_tokens.append(int(usage.get("prompt_tokens") or 0))
    return run


@dataclass(frozen=True)
class Scores:
    chrf: float
    kept: int
    applicable: int
    after_end: int
    misses_agree: bool
    consistent: int
    recurring: int
    other_consistent: int
    other_recurring: int
    first_token_p50_ms: float
    prompt_tokens_mean: float


def score(run: Run) -> Scores:
    rows = _rows(SCRIPT)
    sources = [row["en"] for row in rows]
    refs = [row[run.lang] for row in rows]
    glossary = [(g["source"], g[run.lang]) for g in _rows(GLOSSARY)]
    others = [(t["source"], t[run.lang].split("|")) for t in _rows(TERMS)]

    kept = applicable = after_end = 0
    misses_agree = True
    for source, translation, recorded in zip(sources, run.translations, run.misses, strict=True):
        applied = [(s, t) for s, t in glossary if occurs(s, source)]
        missed = [s for s, t in applied if not occurs(t, translation)]
        applicable += len(applied)
        after_end += sum(1 for s, t in applied if appended(t, translation))
        kept += len(applied) - len(missed)
        expected = missed if applied else None
        if (sorted(recorded) if recorded is not None else None) != (
            sorted(expected) if expected is not None else None
        ):
            misses_agree = False

    def consistent(term: str, forms: list[str]) -> bool | None:
        """None when the term does not recur."""
        seen = [i for i, source in enumerate(sources) if occurs(term, source)]
        if len(seen) < 2:
            return None
        renderings = {
            next((f for f in forms if occurs(f, run.translations[i])), None) for i in seen
        }
        return len(renderings) == 1 and None not in renderings

    glossary_results = [consistent(s, [t]) for s, t in glossary]
    other_results = [consistent(s, forms) for s, forms in others]
    results = [r for r in glossary_results + other_results if r is not None]
    other = [r for r in other_results if r is not None]
    return Scores(
        chrf=CHRF().corpus_score(run.translations, [refs]).score,
        kept=kept,
        applicable=applicable,
        after_end=after_end,
        misses_agree=misses_agree,
        consistent=sum(results),
        recurring=len(results),
        other_consistent=sum(other),
        other_recurring=len(other),
        first_token_p50_ms=1000 * statistics.median(run.first_token_s),
        prompt_tokens_mean=statistics.fmean(run.prompt_tokens),
    )


def table(results: list[tuple[Run, Scores]]) -> str:
    lines = [
        "| target | mode | chrF | glossary adherence | terms after the end | term consistency "
        "| of which not in glossary | first token p50 | prompt tokens (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run, s in results:
        check = "" if s.misses_agree else " (≠ glossary_misses)"
        lines.append(
            f"| en→{run.lang} | {run.mode} | {s.chrf:.1f} "
            f"| {100 * s.kept / s.applicable:.0f}% ({s.kept}/{s.applicable}){check} "
            f"| {s.after_end} "
            f"| {100 * s.consistent / s.recurring:.0f}% ({s.consistent}/{s.recurring}) "
            f"| {s.other_consistent}/{s.other_recurring} "
            f"| {s.first_token_p50_ms:.0f} ms | {s.prompt_tokens_mean:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langs", default="ko,fr", help="target languages (default ko,fr)")
    parser.add_argument("--server", help="a running dragoman, measured as the context mode")
    parser.add_argument("--server-no-context", help="one with DRAGOMAN_CONTEXT_SEGMENTS=0")
    parser.add_argument("--modes", default="context,no context", help="which modes (default: both)")
    parser.add_argument(
        "--context-segments",
        type=int,
        help="DRAGOMAN_CONTEXT_SEGMENTS of the context server started here (default: as set)",
    )
    parser.add_argument("--dump", help="write every translation to this JSON file")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip() in MODES]
    langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
    given = {"context": args.server, "no context": args.server_no_context}
    start_here = not any(given.values())
    results: list[tuple[Run, Scores]] = []
    providers: set[str] = set()
    with tempfile.TemporaryDirectory() as workdir:
        for mode in modes:
            proc = None
            url = given[mode]
            if url is None:
                if not start_here:
                    continue
                extra = {"DRAGOMAN_CONTEXT_SEGMENTS": "0"} if mode == "no context" else {}
                if mode == "context" and args.context_segments is not None:
                    extra = {"DRAGOMAN_CONTEXT_SEGMENTS": str(args.context_segments)}
                proc, url = start_server(workdir, extra, name=mode.replace(" ", "-"))
            try:
                with httpx.Client(base_url=url, timeout=300) as client:
                    info = client.get("/readyz").json()
                    providers.add(f"{info.get('provider')} {info.get('model')}")
                    for lang in langs:
                        run = translate_script(client, lang, mode)
                        results.append((run, score(run)))
                        print(f"{mode} {lang}: done", file=sys.stderr)
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait(30)
    if args.dump:
        dump = [
            {
                "lang": r.lang,
                "mode": r.mode,
                "translations": r.translations,
                "misses": r.misses,
                "first_token_s": r.first_token_s,
                "prompt_tokens": r.prompt_tokens,
            }
            for r, _ in results
        ]
        Path(args.dump).write_text(json.dumps(dump, ensure_ascii=False, indent=1))
    results.sort(key=lambda pair: (pair[0].lang, MODES.index(pair[0].mode)))
    print(f"provider: {', '.join(sorted(providers))}\n")
    print(table(results))


if __name__ == "__main__":
    main()
