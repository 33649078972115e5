"""A script's own renderings of its recurring terms: learned only on unambiguous evidence,
and put into the next segment's prompt (the fake upstream's request shows it)."""

from __future__ import annotations

import httpx

from dragoman.scripts.memory import learned_terms
from tests.fake_openai import FakeOpenAI
from tests.helpers import pieces_directive
from tests.test_script_glossary import put
from tests.test_script_segments import new_script, segment, upstream_request

HISTORY = [
    ("The city council met on Monday.", "Le conseil municipal s'est réuni lundi."),
    ("The evacuation starts now.", "L'évacuation commence maintenant."),
    ("The weather is fine in the morning.", "Le temps est beau le matin."),
    ("The city council asked for a map.", "Le conseil municipal a demandé une carte."),
    ("The bridge is closed to the traffic.", "Le pont est fermé à la circulation."),
    ("An evacuation takes time.", "Une évacuation prend du temps."),
    ("The bus leaves from the station.", "Le bus part de la gare."),
    ("The city council planned the evacuation.", "Le conseil municipal a planifié l'évacuation."),
    ("The river is high and the wind is strong.", "Le fleuve est haut et le vent est fort."),
]


def test_a_term_rendered_one_way_three_times_is_learned_as_the_texts_write_it() -> None:
    text = "After the evacuation, the City Council thanked everyone."
    # The best supported first, then in the order of the text; the longest term and
    # rendering ("conseil municipal", not "le conseil municipal" nor "conseil").
    assert learned_terms(HISTORY, text) == [
        ("evacuation", "évacuation"),
        ("City Council", "conseil municipal"),
    ]
    german = [
        ("Turn into Main Street.", "Biegen Sie in die Hauptstraße ein."),
        ("Main Street is closed.", "Die Hauptstraße ist gesperrt."),
        ("The bakery is on Main Street.", "Die Bäckerei ist in der Hauptstraße."),
        ("It rains today.", "Heute regnet es."),
        ("The children play in the park.", "Die Kinder spielen im Park."),
    ]
    assert learned_terms(german, "Main Street is open again.") == [("Main Street", "Hauptstraße")]


def test_weak_or_ambiguous_evidence_teaches_nothing() -> None:
    text = "The city council ordered an evacuation."
    # Seen twice only.
    assert learned_terms(HISTORY[:7], text) == []
    # A segment said three times is one piece of evidence.
    again = [*HISTORY[:7], *[HISTORY[3]] * 2]
    assert learned_terms(again, "The city council agreed.") == []
    # Once rendered another way.
    other = [*HISTORY[:7], ("The city council planned the evacuation.", "La mairie a évacué.")]
    assert learned_terms(other, "The evacuation began.") == []
    assert learned_terms(other, "The city council agreed.") == []
    # The rendering is also in a segment without the term: it is not the term's.
    elsewhere = [*HISTORY, ("The port is calm.", "Le port est calme, sans évacuation.")]
    assert learned_terms(elsewhere, "The evacuation began.") == []
    # A word of the rendering is used elsewhere in another sense: "municipal" alone would be a
    # fragment of it.
    advice = [*HISTORY, ("Take my advice.", "Suivez mon conseil.")]
    assert learned_terms(advice, "The city council agreed.") == []
    # Two terms always in the same segments: which rendering is whose?
    together = [
        *HISTORY,
        *[
            (f"Mayor Dupont {verb} the harbour.", f"Le maire Dupont {fr} le port de plaisance.")
            for verb, fr in [("opened", "a ouvert"), ("closed", "a fermé"), ("sold", "a vendu")]
        ],
    ]
    assert learned_terms(together, "Mayor Dupont visited the harbour.") == []
    # Function words are not terms, however regular: "with" is always "avec" here.
    pairs = [
        ("Coffee with milk.", "Café avec du lait."),
        ("Rice with beans.", "Riz avec des haricots."),
        ("Tea with lemon.", "Thé avec citron."),
    ]
    assert learned_terms([*HISTORY, *pairs], "Bread with butter.") == []


def test_the_glossary_wins_over_the_script_memory() -> None:
    text = "The city council ordered an evacuation."
    # Its source term covers "city council"; its target term claims "évacuation".
    known = [("council", "conseil de ville"), ("departure", "évacuation")]
    assert learned_terms(HISTORY, text, known) == []
    assert learned_terms(HISTORY, text) != []


def _script_with_history(client: httpx.Client) -> str:
    script = new_script()
    for text, translation in HISTORY:
        segment(client, script, f"{pieces_directive([translation])} {text}", to="fr")
    return script


def test_learned_terms_go_into_the_next_prompt_but_are_not_glossary_misses(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    script = _script_with_history(client)
    text = f"The evacuation is over ({script})."
    record = segment(client, script, text, to="fr")
    system = upstream_request(fake, text)["messages"][0]["content"]
    assert "earlier parts translated these terms this way" in system
    assert "- evacuation → évacuation" in system
    assert "conseil municipal" not in system.split("earlier parts")[1]  # not in this segment
    assert record["glossary_misses"] is None  # no glossary entry applied

    # The fake echoed that segment: "evacuation" is no longer always "évacuation".
    later = f"The evacuation went well ({script})."
    segment(client, script, later, to="fr")
    assert "earlier parts" not in upstream_request(fake, later)["messages"][0]["content"]


def test_the_glossary_for_the_language_replaces_the_learned_term(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    script = _script_with_history(client)
    # An entry for another language leaves the term to the script's memory.
    put(client, script, [{"source": "evacuation", "target": "Räumung", "target_lang": "de"}])
    text = f"The evacuation was calm ({script})."
    segment(client, script, text, to="fr")
    assert "- evacuation → évacuation" in upstream_request(fake, text)["messages"][0]["content"]

    script = _script_with_history(client)
    entry = {"source": "evacuation", "target": "évacuation d'urgence", "target_lang": "fr"}
    put(client, script, [entry])
    text = f"The evacuation went well ({script})."
    record = segment(client, script, text, to="fr")
    system = upstream_request(fake, text)["messages"][0]["content"]
    assert "- evacuation → évacuation d'urgence" in system
    assert "earlier parts translated" not in system
    assert record["glossary_misses"] == ["evacuation"]
