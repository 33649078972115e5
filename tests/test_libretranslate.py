"""The LibreTranslate-compatible API: the real `libretranslatepy` client, the request Mastodon
sends, form and JSON bodies, keys in the body, and LibreTranslate's error shape."""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from libretranslatepy import LibreTranslateAPI

from tests.conftest import ServerThread
from tests.helpers import pieces_directive
from tests.test_keys import bearer, create_key


def error_body(error: urllib.error.HTTPError) -> Any:
    """The JSON body of an error answer (the client leaves its connection to us to close)."""
    with error:
        return json.loads(error.read())


def records(server: ServerThread, **headers: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = httpx.get(
        f"{server.url}/v1/translations", headers=headers, params={"limit": 200}
    ).json()["items"]
    return items


def test_the_libretranslatepy_client_works_against_dragoman(server: ServerThread) -> None:
    lt = LibreTranslateAPI(f"{server.url}/libretranslate")
    assert lt.translate("Hello big world", "en", "ko") == "T:Hello big world"
    [detected] = lt.detect("The weather is lovely today, and we are going for a long walk.")
    assert detected["language"] == "en" and 50 <= detected["confidence"] <= 100
    languages = lt.languages()
    korean = next(lang for lang in languages if lang["code"] == "ko")
    assert korean["name"] == "Korean" and "en" in korean["targets"]
    [record] = records(server)
    assert (record["text"], record["source_lang"], record["target_lang"]) == (
        "Hello big world",
        "en",
        "ko",
    )
    with pytest.raises(urllib.error.HTTPError) as failed:
        lt.translate("Hello", "en", "tlh")
    assert (failed.value.code, set(error_body(failed.value))) == (400, {"error"})


def test_the_request_mastodon_sends(client: httpx.Client, server: ServerThread) -> None:
    status = (
        '<p>Hello <a href="https://social.example/@bob" class="u-url mention">@<span>bob'
        "</span></a>, how are you?</p><p>Fish &amp; chips<br />tonight</p>"
    )
    body = {"q": [status], "source": "auto", "target": "de", "format": "html", "api_key": ""}
    response = client.post("/libretranslate/translate", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    [translated] = answer["translatedText"]
    assert answer["detectedLanguage"][0]["language"] == "en"
    # Markup exactly as sent; only the text nodes changed (the fake prefixes "T:").
    assert markup(translated) == markup(status)
    assert translated == status.replace("<p>Hello", "<p>T:Hello")
    [record] = records(server)
    assert record["text"] == "Hello\nbob\n, how are you?\nFish & chips\ntonight"
    assert record["target_lang"] == "de" and record["status"] == "succeeded"


def test_html_keeps_markup_when_the_model_merges_lines(client: httpx.Client) -> None:
    merged = pieces_directive(["Bonjour tout le monde"])
    status = f'<p class="x">{merged} <b>hello</b> <code>x = 1</code></p>'
    body = {"q": status, "source": "en", "target": "fr", "format": "html"}
    translated = client.post("/libretranslate/translate", json=body).json()["translatedText"]
    assert markup(translated) == markup(status)
    assert translated == '<p class="x">Bonjour tout le monde <b></b> <code>x = 1</code></p>'


def test_lists_forms_and_one_record_per_item(client: httpx.Client, server: ServerThread) -> None:
    answer = client.post(
        "/libretranslate/translate",
        json={"q": ["one two", "three", " "], "source": "en", "target": "ja"},
    ).json()
    assert answer == {"translatedText": ["T:one two", "T:three", " "]}
    form = client.post(
        "/libretranslate/translate", data={"q": "from a form", "source": "auto", "target": "fr"}
    ).json()
    assert form["translatedText"] == "T:from a form"
    assert set(form["detectedLanguage"]) == {"confidence", "language"}
    assert sorted(r["text"] for r in records(server)) == ["from a form", "one two", "three"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"source": "en", "target": "ko"}, 400),
        ({"q": "hi", "source": "en"}, 400),
        ({"q": "hi", "source": "xx-!", "target": "ko"}, 400),
        ({"q": "hi", "source": "en", "target": "ko", "format": "pdf"}, 400),
        ({"q": ["hi", 3], "source": "en", "target": "ko"}, 400),
        ({"q": "x [[error:429]]", "source": "en", "target": "ko"}, 429),
        ({"q": "x [[error:500]]", "source": "en", "target": "ko"}, 500),
    ],
)
def test_errors_have_libretranslates_shape(
    client: httpx.Client, body: dict[str, Any], status: int
) -> None:
    response = client.post("/libretranslate/translate", json=body)
    assert response.status_code == status
    error = response.json()
    assert list(error) == ["error"] and isinstance(error["error"], str) and error["error"]


def test_keys_in_the_body_or_header_and_public_pages(
    make_server: Callable[..., ServerThread], db_url: str
) -> None:
    server = make_server(auth="keys")
    key_id, secret = create_key(db_url, "mastodon")
    url = f"{server.url}/libretranslate"
    assert httpx.get(f"{url}/languages").status_code == 200
    settings = httpx.get(f"{url}/frontend/settings").json()
    assert settings["keyRequired"] is True and settings["charLimit"] == 10_000
    assert settings["language"]["source"] == {"code": "auto", "name": "Auto Detect"}

    assert LibreTranslateAPI(url, api_key=secret).translate("Hi there", "en", "ko") == "T:Hi there"
    by_header = httpx.post(
        f"{url}/translate",
        json={"q": "By header", "source": "en", "target": "ko"},
        headers=bearer(secret),
    )
    assert by_header.json() == {"translatedText": "T:By header"}
    for lt in (LibreTranslateAPI(url), LibreTranslateAPI(url, api_key="dgm_wrong")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            lt.translate("Hi", "en", "ko")
        assert refused.value.code == 403
        assert error_body(refused.value) == {"error": "Invalid API key"}
        with pytest.raises(urllib.error.HTTPError) as refused:
            lt.detect("Hi")
        assert refused.value.code == 403
        error_body(refused.value)
    mine = records(server, **bearer(secret))
    assert {r["key_id"] for r in mine} == {key_id} and len(mine) == 2


def markup(document: str) -> list[str]:
    """The tags of a document as written, in order."""

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(self.get_starttag_text() or "")

        def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(self.get_starttag_text() or "")

        def handle_endtag(self, tag: str) -> None:
            self.tags.append(f"</{tag}>")

    parser = Tags()
    parser.feed(document)
    parser.close()
    return parser.tags
