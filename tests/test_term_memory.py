"""A script's own renderings of its recurring terms: learned only on unambiguous evidence,
and put into the next segment's prompt (the fake upstream's request shows it)."""

from __future__ import annotations

import httpx

from dragoman.term_memory import learned_terms
from tests.fake_openai import FakeOpenAI
from tests.helpers import pieces_directive
from tests.test_script_glossary import put
from tests.test_script_segments import new_script, segment, upstream_request

HISTORY = [
    ("The city council met on Monday.", "Le conseil municipal s'est réuni lundi."),
    ("The evacuation starts now.", "L'évacuation commence maintenant."),
    ("The city council asked for a map.", "Le conseil municipal a demandé une carte."),
    ("The bridge is closed.", "Le pont est fermé."),
    ("An evacuation takes time.", "Une évacuation prend du temps."),
    ("The city council planned the evacuation.", "Le conseil municipal a planifié l'évacuation."),
]


def test_a_term_rendered_one_way_three_times_is_learned_as_the_text_writes_it() -> None:
    text = "After the evacuation, the City Council thanked everyone."
    assert sorted(learned_terms(HISTORY, text)) == [
        # The longest term and rendering, written as the texts write them.
        ("City Council", "conseil municipal"),
        ("evacuation", "évacuation"),
    ]


def test_weak_or_ambiguous_evidence_teaches_nothing() -> None:
    text = "The city council ordered an evacuation."
    # Seen twice only.
    assert learned_terms(HISTORY[:5], text) == []
    # Once rendered another way.
    other = [*HISTORY[:5], ("The city council planned the evacuation.", "La mairie a évacué.")]
    assert learned_terms(other, "The evacuation began.") == []
    assert learned_terms(other, "The city council agreed.") == []
    # The rendering is also in a segment without the term: it is not the term's.
    elsewhere = [*HISTORY, ("The port is calm.", "Le port est calme, sans évacuation.")]
    assert learned_terms(elsewhere, "The evacuation began.") == []
    # Function words are not terms, however regular ("the" → "le").
    assert learned_terms(HISTORY, "The bridge.") == []


def test_the_glossary_wins_over_the_script_memory() -> None:
    text = "The city council ordered an evacuation."
    # Its source term covers "city council"; its target term claims "évacuation".
    known = [("council", "conseil de ville"), ("departure", "évacuation")]
    assert learned_terms(HISTORY, text, known) == []


def test_learned_terms_go_into_the_next_prompt_but_are_not_glossary_misses(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    script = new_script()
    for text, translation in HISTORY:
        segment(client, script, f"{pieces_directive([translation])} {text}", to="fr")
    text = f"The evacuation is over ({script})."
    record = segment(client, script, text, to="fr")
    system = upstream_request(fake, text)["messages"][0]["content"]
    assert "earlier parts translated these terms this way" in system
    assert "- evacuation → évacuation" in system
    assert "conseil municipal" not in system.split("earlier parts")[1]  # not in this segment
    assert record["glossary_misses"] is None  # the fake echoed the text: no glossary entry

    # A glossary entry for the term replaces what the script learned.
    put(
        client,
        script,
        [{"source": "evacuation", "target": "évacuation d'urgence", "target_lang": "fr"}],
    )
    again = f"The evacuation went well ({script})."
    record = segment(client, script, again, to="fr")
    system = upstream_request(fake, again)["messages"][0]["content"]
    assert "- evacuation → évacuation d'urgence" in system
    assert "earlier parts translated" not in system
    assert record["glossary_misses"] == ["evacuation"]
