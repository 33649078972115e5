"""Runaway loops of the embedded model: how often a translation repeats itself, with the loop
guard and the languages' vocabulary against the shipped model without them.

    python -m bench.loops                      # the stress set and the quality set, into ko, fr
    python -m bench.loops --langs ko --limit 50   # a quick look

Translates, with two `dragoman serve` of the embedded model (`--concurrency` clients at once
each, one server after the other), a stress set of 336 English sentences made here from
templates (questions, negations, names, numbers, dates, lists, long and short ones, and 36
with repetition of their own: "very, very, very", "again and again") and the 40 English
sentences of
`bench/quality/pairs.tsv`, into each of `--langs`:

- before: `DRAGOMAN_LOCAL_VOCABULARY=full`, `DRAGOMAN_LOCAL_LOOP_GUARD=false` (the shipped file);
- after: the defaults (the languages' vocabulary, the guard on).

Reports per language and set: outputs with a runaway loop (a piece of 2 to 40 characters with a
letter, three or more times in a row, where the source has no word group three times in a
row), what the guard did (records' `repetition`: decoded again, cut: at the guard, or at the
token limit) and outputs that differ (with several clients at once, most differences come from
how the sequences share the engine's batches, not from either change). Speed is
`bench.local`'s.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import random
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.quality import PAIRS, start_server
from dragoman.engine.repetition import source_repeats

# A piece with a letter, three or more times in a row.
_LOOP = re.compile(r"(.{2,40}?)\1{2,}", re.DOTALL)


def looping(source: str, output: str) -> bool:
    """A runaway loop: a repeated piece that the source does not repeat itself."""
    if source_repeats(source) >= 3:
        return False
    return any(any(c.isalpha() for c in m.group(1)) for m in _LOOP.finditer(output))


_PEOPLE = ["my sister", "the doctor", "Mr. Kim", "our teacher", "the new manager", "Anna",
           "my grandfather", "the children", "the pilot", "Professor Tanaka", "his neighbour",
           "the students"]  # fmt: skip
_PLACES = ["in Paris", "at the station", "near the river", "in Seoul", "at the restaurant",
           "in the library", "at the airport", "in the garden", "at home", "in Osaka",
           "on the train", "at the hospital"]  # fmt: skip
_THINGS = ["umbrella", "passport", "laptop", "keys", "ticket", "wallet", "camera", "phone",
           "dictionary", "coat", "bicycle", "report"]  # fmt: skip
_VERBS = [("forget", "forgot", "forgotten"), ("find", "found", "found"),
          ("lose", "lost", "lost"), ("buy", "bought", "bought"), ("sell", "sold", "sold"),
          ("leave", "left", "left"), ("bring", "brought", "brought"),
          ("see", "saw", "seen")]  # fmt: skip
_TIMES = ["at 7 a.m.", "at half past three", "on Monday", "on 12 March 2024", "at 10:45",
          "every morning", "last night", "in two weeks", "before noon", "after 6 p.m."]  # fmt: skip
_NUMBERS = ["3", "12", "250", "1,500", "42", "7.5", "99", "2,000,000", "18", "64"]
_REPEATS = [
    "It was very, very, very cold this morning.",
    "We tried again and again, but the door stayed closed.",
    "No, no, no, that is not what I meant.",
    "Step by step, the children learned to swim.",
    "Day after day, the rain kept falling.",
    "Ha ha ha, that is a funny story.",
    "The crowd shouted: more, more, more!",
    "She said thank you, thank you, thank you.",
    "Bye bye, see you tomorrow.",
    "Knock knock, who is there?",
    "He walked round and round the square.",
    "Slowly, slowly, the boat reached the shore.",
    "Yes, yes, I will call you later.",
    "The clock went tick, tock, tick, tock all night.",
    "Little by little, the city grew.",
    "Again and again and again, he asked the same question.",
    "Go, go, go! The race has started.",
    "It is far, far away from here.",
]


def stress_sentences(seed: int = 23) -> list[str]:
    """336 English sentences from templates: 300 varied, 36 with repetition of their own."""
    rng = random.Random(seed)
    templates = [
        lambda: f"I {rng.choice(_VERBS)[1]} my {rng.choice(_THINGS)} {rng.choice(_PLACES)}.",
        lambda: f"Does {rng.choice(_PEOPLE)} still live {rng.choice(_PLACES)}?",
        lambda: (
            f"{rng.choice(_PEOPLE).capitalize()} has {rng.choice(_VERBS)[2]} "
            f"the {rng.choice(_THINGS)} {rng.choice(_TIMES)}."
        ),
        lambda: f"We will meet {rng.choice(_PEOPLE)} {rng.choice(_PLACES)} {rng.choice(_TIMES)}.",
        lambda: (
            f"Why didn't {rng.choice(_PEOPLE)} {rng.choice(_VERBS)[0]} the {rng.choice(_THINGS)}?"
        ),
        lambda: (
            f"The ticket costs {rng.choice(_NUMBERS)} euros, and the train leaves "
            f"{rng.choice(_TIMES)}."
        ),
        lambda: (
            f"Please don't {rng.choice(_VERBS)[0]} your {rng.choice(_THINGS)} "
            f"{rng.choice(_PLACES)}."
        ),
        lambda: f"There are {rng.choice(_NUMBERS)} people waiting {rng.choice(_PLACES)}.",
        lambda: (
            f"If it rains {rng.choice(_TIMES)}, {rng.choice(_PEOPLE)} will stay "
            f"{rng.choice(_PLACES)}."
        ),
        lambda: (
            f"I need a {rng.choice(_THINGS)}, a {rng.choice(_THINGS)} and a "
            f"{rng.choice(_THINGS)} for the trip."
        ),
        lambda: (
            f"{rng.choice(_PEOPLE).capitalize()} said that the {rng.choice(_THINGS)} "
            f"was {rng.choice(['broken', 'expensive', 'new', 'too small', 'missing'])}."
        ),
        lambda: f"Could you tell {rng.choice(_PEOPLE)} that I will be late {rng.choice(_TIMES)}?",
    ]
    sentences: list[str] = []
    seen: set[str] = set()
    while len(sentences) < 300:
        sentence = rng.choice(templates)()
        sentence = sentence[0].upper() + sentence[1:]
        if sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
    return sentences + _REPEATS + [f"{s} {s}" for s in _REPEATS[:18]]


def quality_sentences() -> list[str]:
    with PAIRS.open(encoding="utf-8") as f:
        return [row["en"] for row in csv.DictReader(f, delimiter="\t")]


def translate(client: httpx.Client, text: str, lang: str) -> dict[str, Any]:
    answer = client.post(
        "/v1/translations",
        json={"text": text, "target_lang": lang, "source_lang": "en", "stream": False},
    )
    answer.raise_for_status()
    record: dict[str, Any] = answer.json()
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langs", default="ko,fr")
    parser.add_argument("--limit", type=int, default=0, help="sentences per set (0: all)")
    parser.add_argument("--concurrency", type=int, default=4, help="clients at once")
    parser.add_argument("--dump", help="write every translation to this JSON file")
    args = parser.parse_args()
    sets = {"stress": stress_sentences(), "quality": quality_sentences()}
    if args.limit:
        sets = {name: sentences[: args.limit] for name, sentences in sets.items()}
    setups = {
        "before": {"DRAGOMAN_LOCAL_VOCABULARY": "full", "DRAGOMAN_LOCAL_LOOP_GUARD": "false"},
        "after": {},
    }
    rows: list[dict[str, Any]] = []
    dump: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as workdir:
        servers = {
            name: start_server(workdir, {"DRAGOMAN_PROVIDER": "local", **env}, name)
            for name, env in setups.items()
        }
        try:
            clients = {name: httpx.Client(base_url=url, timeout=300) for name, (_, url) in
                       servers.items()}  # fmt: skip
            for lang, (set_name, sentences) in itertools.product(
                args.langs.split(","), sets.items()
            ):
                got: dict[str, list[dict[str, Any]]] = {}
                for name, client in clients.items():
                    with ThreadPoolExecutor(args.concurrency) as pool:
                        got[name] = list(
                            pool.map(translate, [client] * len(sentences), sentences,
                                     [lang] * len(sentences))
                        )  # fmt: skip
                row: dict[str, Any] = {"lang": lang, "set": set_name, "sentences": len(sentences)}
                for name, records in got.items():
                    row[name] = summary(sentences, records)
                row["differ"] = sum(
                    a["translation"] != b["translation"]
                    for a, b in zip(got["before"], got["after"], strict=True)
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
                for i, text in enumerate(sentences):
                    outputs = {name: got[name][i]["translation"] for name in setups}
                    outputs |= {f"{name}_repetition": got[name][i].get("repetition")
                                for name in setups}  # fmt: skip
                    dump.append({"lang": lang, "set": set_name, "text": text, **outputs})
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(30)
    if args.dump:
        Path(args.dump).write_text(json.dumps(dump, ensure_ascii=False, indent=1))
    report(rows)


def summary(sentences: list[str], records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "loops": sum(looping(s, r["translation"]) for s, r in zip(sentences, records, strict=True)),
        "redecoded": sum(r.get("repetition") == "redecoded" for r in records),
        "cut": sum(r.get("repetition") == "cut" for r in records),
    }


def report(rows: list[dict[str, Any]]) -> None:
    print()
    print("| into | set | sentences | loops before | loops after | decoded again | cut | "
          "outputs that differ |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        before, after = row["before"], row["after"]
        print(
            f"| {row['lang']} | {row['set']} | {row['sentences']} | {before['loops']} | "
            f"{after['loops']} | {after['redecoded']} | {after['cut']} | {row['differ']} |"
        )


if __name__ == "__main__":
    main()
