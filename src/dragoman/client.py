"""A Python client for a running dragoman service.

    from dragoman.client import Client

    with Client("http://127.0.0.1:8000") as client:
        for piece in client.stream("The weather is nice today.", "ko"):
            print(piece, end="", flush=True)

`stream()` yields each piece of the translation as it arrives (their concatenation is the
record's `translation`, exactly); `translate()` returns the finished record; `history()` the
records of a script, newest first; `scripts()` the scripts, the last active first. Scripts:
`stream_segment()` / `translate_segment()` translate a script's next segment with its previous
segments and glossary as context;
`set_glossary()`, `glossary()`, `script()` and `export()` manage and read a script;
`subtitles()` / `stream_subtitles()` translate an SRT or WebVTT file. A server with keys on
needs `api_key="dgm_..."`. Every
error the service can answer is raised as the subclass of `DragomanClientError` named after its
code. Only httpx and httpx-sse are imported: no server, no model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, NamedTuple, TypedDict
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse

__all__ = [
    "AsyncClient",
    "Client",
    "ConnectionLost",
    "DatabaseUnavailable",
    "DragomanClientError",
    "GlossaryEntry",
    "InternalError",
    "InvalidRequest",
    "LiveEvent",
    "LiveSession",
    "NotFound",
    "NotReady",
    "QueueFull",
    "RateLimited",
    "RequestTooLarge",
    "ScriptInfo",
    "ServerUnreachable",
    "ShuttingDown",
    "SubtitlesResult",
    "TextTooLong",
    "TranslationRecord",
    "Unauthorized",
    "UnsupportedLanguage",
    "UpstreamError",
    "UpstreamRateLimited",
    "UpstreamTimeout",
]


class TranslationRecord(TypedDict):
    id: str
    script_id: str | None
    source_lang: str | None
    target_lang: str
    text: str
    translation: str
    status: str
    error: dict[str, str] | None
    provider: str
    model: str
    usage: dict[str, int] | None
    created_at: str
    first_token_ms: int | None
    total_ms: int | None
    key_id: str | None
    segment_index: int | None
    glossary_misses: list[str] | None
    revisions: int | None
    repetition: str | None
    # The upstream that answered (None when none did, or before upstreams were recorded) and
    # the attempts that failed before it: {"upstream", "error": {"code", "message"}, "ms"}.
    upstream: str | None
    attempts: list[dict[str, Any]] | None


class LiveSession(TypedDict):
    session_id: str
    join_code: str
    script_id: str
    viewer_url: str
    title: str | None
    source_lang: str | None
    target_langs: list[str]
    status: str
    created_at: str


class LiveEvent(NamedTuple):
    """One event of a live session in one language: `kind` is `segment`, `delta`,
    `revision`, `done`, `error` or `closed`; `id` its id in the session's stream."""

    id: int | None
    kind: str
    data: dict[str, Any]


class GlossaryEntry(TypedDict):
    source: str
    target: str
    target_lang: str


class ScriptInfo(TypedDict):
    script_id: str
    segments: int
    target_langs: list[str]
    created_at: str
    updated_at: str


class SubtitlesResult(TypedDict):
    script_id: str
    format: str
    content: str


# A subtitle stream's event: its name (`start`, `delta`, `cue`, `done`) and its data.
SubtitleEvent = tuple[str, dict[str, Any]]


class DragomanClientError(Exception):
    """An error answered by the service (or the failure to reach it)."""

    code = "internal_error"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class InvalidRequest(DragomanClientError):
    code = "invalid_request"


class UnsupportedLanguage(DragomanClientError):
    code = "unsupported_language"


class TextTooLong(DragomanClientError):
    code = "text_too_long"


class NotFound(DragomanClientError):
    code = "not_found"


class UpstreamRateLimited(DragomanClientError):
    code = "upstream_rate_limited"


class UpstreamError(DragomanClientError):
    code = "upstream_error"


class UpstreamTimeout(DragomanClientError):
    code = "upstream_timeout"


class QueueFull(DragomanClientError):
    code = "queue_full"


class DatabaseUnavailable(DragomanClientError):
    code = "database_unavailable"


class NotReady(DragomanClientError):
    code = "not_ready"


class ShuttingDown(DragomanClientError):
    code = "shutting_down"


class InternalError(DragomanClientError):
    code = "internal_error"


class Unauthorized(DragomanClientError):
    """The server needs an API key (`api_key=`), or this one is unknown or revoked."""

    code = "unauthorized"


class RateLimited(DragomanClientError):
    """This key's own limit on the server; `retry_after` says when to try again."""

    code = "rate_limited"


class RequestTooLarge(DragomanClientError):
    code = "request_too_large"


class ServerUnreachable(DragomanClientError):
    """The service could not be reached at all (refused, DNS, timeout on connect)."""

    code = "server_unreachable"


class ConnectionLost(DragomanClientError):
    """The connection broke or timed out after the service had answered."""

    code = "connection_lost"


def _transport_error(base_url: object, exc: httpx.TransportError) -> DragomanClientError:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ServerUnreachable(f"cannot reach {base_url}: {exc}")
    return ConnectionLost(f"connection to {base_url} lost: {exc}")


_BY_CODE: dict[str, type[DragomanClientError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest, UnsupportedLanguage, TextTooLong, NotFound, UpstreamRateLimited,
        UpstreamError, UpstreamTimeout, QueueFull, DatabaseUnavailable, NotReady, ShuttingDown,
        InternalError, Unauthorized, RateLimited, RequestTooLarge,
    )
}  # fmt: skip


def _error(body: Any, status: int | None, retry_after: str | None = None) -> DragomanClientError:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return InternalError(f"unexpected answer (HTTP {status})", status=status)
    cls = _BY_CODE.get(str(error.get("code")), InternalError)
    seconds = None
    if retry_after:
        try:
            seconds = float(retry_after)
        except ValueError:
            seconds = None
    return cls(str(error.get("message", "")), status=status, retry_after=seconds)


def _status_error(response: httpx.Response) -> DragomanClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return _error(body, response.status_code, response.headers.get("retry-after"))


def _auth(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _body(
    text: str, to: str, source: str | None, script_id: str | None, stream: bool
) -> dict[str, Any]:
    return {
        "text": text,
        "target_lang": to,
        "source_lang": source,
        "script_id": script_id,
        "stream": stream,
    }


def _segment_body(text: str, to: str, source: str | None, stream: bool) -> dict[str, Any]:
    return {"text": text, "target_lang": to, "source_lang": source, "stream": stream}


def _subtitles_body(
    content: str,
    to: str,
    source: str | None,
    script_id: str | None,
    format: str | None,
    stream: bool,
) -> dict[str, Any]:
    body = {"content": content, "target_lang": to, "source_lang": source, "stream": stream}
    if script_id is not None:
        body["script_id"] = script_id
    if format is not None:
        body["format"] = format
    return body


def _segments_url(script_id: str) -> str:
    return f"/v1/scripts/{quote(script_id, safe='')}/segments"


def _script_url(script_id: str, tail: str = "") -> str:
    return f"/v1/scripts/{quote(script_id, safe='')}{tail}"


def _subtitle_event(event: ServerSentEvent) -> SubtitleEvent:
    data = json.loads(event.data)
    if event.event == "error":
        raise _error(data, 200)
    return event.event, data


def _history_params(
    script_id: str | None, limit: int | None, have: int, cursor: str | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": 200 if limit is None else min(200, limit - have)}
    if script_id is not None:
        params["script_id"] = script_id
    if cursor:
        params["cursor"] = cursor
    return params


def _scripts_params(limit: int | None, have: int, cursor: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": 200 if limit is None else min(200, limit - have)}
    if cursor:
        params["cursor"] = cursor
    return params


def _history_complete(cursor: str | None, limit: int | None, have: int) -> bool:
    return not cursor or (limit is not None and have >= limit)


# A live listener that loses its connection (or falls behind) resumes from its last event id:
# at once, then after longer and longer waits, and gives up after this many tries in a row.
_LIVE_RESUMES = 10


def _live_url(session_or_code: str, tail: str = "") -> str:
    return f"/v1/live/{quote(session_or_code, safe='')}{tail}"


def _live_start_body(
    target_langs: list[str], title: str | None, script_id: str | None, source_lang: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"target_langs": target_langs}
    for name, value in (("title", title), ("script_id", script_id), ("source_lang", source_lang)):
        if value is not None:
            body[name] = value
    return body


def _live_event(event: ServerSentEvent) -> LiveEvent:
    return LiveEvent(int(event.id) if event.id else None, event.event, json.loads(event.data))


def _live_resumable(event: LiveEvent) -> bool:
    """The stream ended for this listener only: it resumes with its last id."""
    return event.kind == "error" and "index" not in event.data


def _live_params(lang: str, last_id: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"lang": lang}
    if last_id is not None:
        params["last_event_id"] = last_id
    return params


class _Events:
    """Turns the v1 events into pieces; keeps the final record."""

    def __init__(self) -> None:
        self.record: TranslationRecord | None = None

    def handle(self, event: ServerSentEvent) -> str | None:
        if event.event == "delta":
            text: str = json.loads(event.data)["text"]
            return text
        if event.event == "done":
            self.record = json.loads(event.data)
        elif event.event == "error":
            raise _error(json.loads(event.data), 200)
        return None

    def finished(self) -> TranslationRecord:
        if self.record is None:  # the stream ended without `done` or `error`: it was cut
            raise ConnectionLost("the stream ended before the translation was finished")
        return self.record


class Client:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float = 60,
        api_key: str | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout, headers=_auth(api_key))
        self.last_record: TranslationRecord | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def stream(
        self, text: str, to: str, *, source: str | None = None, script_id: str | None = None
    ) -> Iterator[str]:
        """Each piece of the translation as it arrives; the record then is `last_record`."""
        yield from self._pieces("/v1/translations", _body(text, to, source, script_id, True))

    def stream_segment(
        self, script_id: str, text: str, to: str, *, source: str | None = None
    ) -> Iterator[str]:
        """A script's next segment, piece by piece (with the script's previous segments and
        glossary as context); its record then is `last_record`."""
        yield from self._pieces(_segments_url(script_id), _segment_body(text, to, source, True))

    def translate_segment(
        self, script_id: str, text: str, to: str, *, source: str | None = None
    ) -> TranslationRecord:
        record: TranslationRecord = self._request(
            "POST", _segments_url(script_id), json=_segment_body(text, to, source, False)
        )
        return record

    def set_glossary(self, script_id: str, entries: list[GlossaryEntry]) -> list[GlossaryEntry]:
        """Replace the script's glossary; the stored entries."""
        answer = self._request(
            "PUT", _script_url(script_id, "/glossary"), json={"entries": entries}
        )
        stored: list[GlossaryEntry] = answer["entries"]
        return stored

    def glossary(self, script_id: str) -> list[GlossaryEntry]:
        entries: list[GlossaryEntry] = self._request("GET", _script_url(script_id, "/glossary"))[
            "entries"
        ]
        return entries

    def script(self, script_id: str) -> ScriptInfo:
        info: ScriptInfo = self._request("GET", _script_url(script_id))
        return info

    def export(self, script_id: str, to: str, format: str = "txt") -> str:
        """The script's succeeded segments in `to`: txt, jsonl, or (subtitle scripts) srt, vtt."""
        params = {"target_lang": to, "format": format}
        response = self._send("GET", _script_url(script_id, "/export"), params=params)
        return response.text

    def subtitles(
        self,
        content: str,
        to: str,
        *,
        source: str | None = None,
        script_id: str | None = None,
        format: str | None = None,
    ) -> SubtitlesResult:
        """The translated file (`content`), its `format` and the `script_id` of its cues."""
        body = _subtitles_body(content, to, source, script_id, format, False)
        result: SubtitlesResult = self._request("POST", "/v1/subtitles", json=body)
        return result

    def stream_subtitles(
        self,
        content: str,
        to: str,
        *,
        source: str | None = None,
        script_id: str | None = None,
        format: str | None = None,
    ) -> Iterator[SubtitleEvent]:
        """The events of a subtitle translation: `("start", {...})`, `("delta", {"text",
        "cue"})`, `("cue", {"index", "start", "end", "text"})`, and last `("done", {...})`."""
        body = _subtitles_body(content, to, source, script_id, format, True)
        done = False
        try:
            with connect_sse(self._http, "POST", "/v1/subtitles", json=body) as source_events:
                if source_events.response.status_code != 200:
                    source_events.response.read()
                    raise _status_error(source_events.response)
                for event in source_events.iter_sse():
                    item = _subtitle_event(event)
                    done = item[0] == "done"
                    yield item
        except httpx.TransportError as exc:
            raise _transport_error(self._http.base_url, exc) from exc
        if not done:
            raise ConnectionLost("the stream ended before the subtitles were finished")

    def _pieces(self, url: str, body: dict[str, Any]) -> Iterator[str]:
        events = _Events()
        try:
            with connect_sse(self._http, "POST", url, json=body) as source_events:
                if source_events.response.status_code != 200:
                    source_events.response.read()
                    raise _status_error(source_events.response)
                for event in source_events.iter_sse():
                    piece = events.handle(event)
                    if piece is not None:
                        yield piece
        except httpx.TransportError as exc:
            raise _transport_error(self._http.base_url, exc) from exc
        self.last_record = events.finished()

    def translate(
        self, text: str, to: str, *, source: str | None = None, script_id: str | None = None
    ) -> TranslationRecord:
        record: TranslationRecord = self._request(
            "POST", "/v1/translations", json=_body(text, to, source, script_id, False)
        )
        return record

    def get(self, translation_id: str) -> TranslationRecord:
        record: TranslationRecord = self._request("GET", f"/v1/translations/{translation_id}")
        return record

    def history(
        self, script_id: str | None = None, *, limit: int | None = None
    ) -> list[TranslationRecord]:
        """Records of a script (all scripts when None), newest first: all, or the newest `limit`."""
        records: list[TranslationRecord] = []
        cursor = None
        while True:
            params = _history_params(script_id, limit, len(records), cursor)
            page = self._request("GET", "/v1/translations", params=params)
            records += page["items"]
            cursor = page["next_cursor"]
            if _history_complete(cursor, limit, len(records)):
                return records

    def scripts(self, *, limit: int | None = None) -> list[ScriptInfo]:
        """The scripts (this key's, with keys on), the last active first: all, or the first
        `limit`."""
        scripts: list[ScriptInfo] = []
        cursor = None
        while True:
            params = _scripts_params(limit, len(scripts), cursor)
            page = self._request("GET", "/v1/scripts", params=params)
            scripts += page["items"]
            cursor = page["next_cursor"]
            if _history_complete(cursor, limit, len(scripts)):
                return scripts

    def languages(self) -> list[dict[str, str]]:
        languages: list[dict[str, str]] = self._request("GET", "/v1/languages")["languages"]
        return languages

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._send(method, url, **kwargs).json()

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise _transport_error(self._http.base_url, exc) from exc
        if not response.is_success:
            raise _status_error(response)
        return response

    # Live sessions.

    def live_start(
        self,
        target_langs: list[str] | None = None,
        *,
        title: str | None = None,
        script_id: str | None = None,
        source_lang: str | None = None,
    ) -> LiveSession:
        """Open a live session: its `join_code` and `viewer_url` are for listeners; its
        `session_id` is the speaker's (keep it private)."""
        body = _live_start_body(target_langs or [], title, script_id, source_lang)
        session: LiveSession = self._request("POST", "/v1/live", json=body)
        return session

    def live_say(self, session_id: str, text: str, *, final: bool = True) -> dict[str, Any]:
        """The speaker's next segment (`final=False`: a guess of the one being spoken)."""
        answer: dict[str, Any] = self._request(
            "POST", _live_url(session_id, "/segments"), json={"text": text, "final": final}
        )
        return answer

    def live_close(self, session_id: str) -> LiveSession:
        session: LiveSession = self._request("POST", _live_url(session_id, "/close"))
        return session

    def live_info(self, join_code: str) -> dict[str, Any]:
        info: dict[str, Any] = self._request("GET", _live_url(join_code))
        return info

    def live_events(
        self, join_code: str, lang: str, *, last_event_id: int | None = None
    ) -> Iterator[LiveEvent]:
        """A session in one language as it is given, until it closes; a dropped connection
        (or a listener that fell behind) resumes from its last event, missing nothing."""
        import time

        last_id, failures = last_event_id, 0
        while True:
            params = _live_params(lang, last_id)
            try:
                with connect_sse(self._http, "GET", _live_url(join_code, "/events"),
                                 params=params) as source:  # fmt: skip
                    if source.response.status_code != 200:
                        source.response.read()
                        raise _status_error(source.response)
                    failures = 0
                    for sse in source.iter_sse():
                        if sse.event == "message":
                            continue  # a keep-alive comment
                        event = _live_event(sse)
                        if event.id is not None:
                            last_id = event.id
                        if _live_resumable(event):
                            break
                        yield event
                        if event.kind == "closed":
                            return
            except httpx.TransportError as exc:
                failures += 1
                if failures > _LIVE_RESUMES:
                    raise _transport_error(self._http.base_url, exc) from exc
                time.sleep(min(0.25 * 2**failures, 8.0))


class AsyncClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float = 60,
        api_key: str | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, headers=_auth(api_key))
        self.last_record: TranslationRecord | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def stream(
        self, text: str, to: str, *, source: str | None = None, script_id: str | None = None
    ) -> AsyncIterator[str]:
        async for piece in self._pieces(
            "/v1/translations", _body(text, to, source, script_id, True)
        ):
            yield piece

    async def stream_segment(
        self, script_id: str, text: str, to: str, *, source: str | None = None
    ) -> AsyncIterator[str]:
        async for piece in self._pieces(
            _segments_url(script_id), _segment_body(text, to, source, True)
        ):
            yield piece

    async def translate_segment(
        self, script_id: str, text: str, to: str, *, source: str | None = None
    ) -> TranslationRecord:
        record: TranslationRecord = await self._request(
            "POST", _segments_url(script_id), json=_segment_body(text, to, source, False)
        )
        return record

    async def set_glossary(
        self, script_id: str, entries: list[GlossaryEntry]
    ) -> list[GlossaryEntry]:
        answer = await self._request(
            "PUT", _script_url(script_id, "/glossary"), json={"entries": entries}
        )
        stored: list[GlossaryEntry] = answer["entries"]
        return stored

    async def glossary(self, script_id: str) -> list[GlossaryEntry]:
        answer = await self._request("GET", _script_url(script_id, "/glossary"))
        entries: list[GlossaryEntry] = answer["entries"]
        return entries

    async def script(self, script_id: str) -> ScriptInfo:
        info: ScriptInfo = await self._request("GET", _script_url(script_id))
        return info

    async def export(self, script_id: str, to: str, format: str = "txt") -> str:
        params = {"target_lang": to, "format": format}
        response = await self._send("GET", _script_url(script_id, "/export"), params=params)
        return response.text

    async def subtitles(
        self,
        content: str,
        to: str,
        *,
        source: str | None = None,
        script_id: str | None = None,
        format: str | None = None,
    ) -> SubtitlesResult:
        body = _subtitles_body(content, to, source, script_id, format, False)
        result: SubtitlesResult = await self._request("POST", "/v1/subtitles", json=body)
        return result

    async def stream_subtitles(
        self,
        content: str,
        to: str,
        *,
        source: str | None = None,
        script_id: str | None = None,
        format: str | None = None,
    ) -> AsyncIterator[SubtitleEvent]:
        body = _subtitles_body(content, to, source, script_id, format, True)
        done = False
        try:
            async with aconnect_sse(
                self._http, "POST", "/v1/subtitles", json=body
            ) as source_events:
                if source_events.response.status_code != 200:
                    await source_events.response.aread()
                    raise _status_error(source_events.response)
                async for event in source_events.aiter_sse():
                    item = _subtitle_event(event)
                    done = item[0] == "done"
                    yield item
        except httpx.TransportError as exc:
            raise _transport_error(self._http.base_url, exc) from exc
        if not done:
            raise ConnectionLost("the stream ended before the subtitles were finished")

    async def scripts(self, *, limit: int | None = None) -> list[ScriptInfo]:
        scripts: list[ScriptInfo] = []
        cursor = None
        while True:
            params = _scripts_params(limit, len(scripts), cursor)
            page = await self._request("GET", "/v1/scripts", params=params)
            scripts += page["items"]
            cursor = page["next_cursor"]
            if _history_complete(cursor, limit, len(scripts)):
                return scripts

    async def languages(self) -> list[dict[str, str]]:
        languages: list[dict[str, str]] = (await self._request("GET", "/v1/languages"))["languages"]
        return languages

    async def _pieces(self, url: str, body: dict[str, Any]) -> AsyncIterator[str]:
        events = _Events()
        try:
            async with aconnect_sse(self._http, "POST", url, json=body) as source_events:
                if source_events.response.status_code != 200:
                    await source_events.response.aread()
                    raise _status_error(source_events.response)
                async for event in source_events.aiter_sse():
                    piece = events.handle(event)
                    if piece is not None:
                        yield piece
        except httpx.TransportError as exc:
            raise _transport_error(self._http.base_url, exc) from exc
        self.last_record = events.finished()

    async def translate(
        self, text: str, to: str, *, source: str | None = None, script_id: str | None = None
    ) -> TranslationRecord:
        record: TranslationRecord = await self._request(
            "POST", "/v1/translations", json=_body(text, to, source, script_id, False)
        )
        return record

    async def get(self, translation_id: str) -> TranslationRecord:
        record: TranslationRecord = await self._request("GET", f"/v1/translations/{translation_id}")
        return record

    async def history(
        self, script_id: str | None = None, *, limit: int | None = None
    ) -> list[TranslationRecord]:
        records: list[TranslationRecord] = []
        cursor = None
        while True:
            params = _history_params(script_id, limit, len(records), cursor)
            page = await self._request("GET", "/v1/translations", params=params)
            records += page["items"]
            cursor = page["next_cursor"]
            if _history_complete(cursor, limit, len(records)):
                return records

    async def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        return (await self._send(method, url, **kwargs)).json()

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise _transport_error(self._http.base_url, exc) from exc
        if not response.is_success:
            raise _status_error(response)
        return response

    # Live sessions.

    async def live_start(
        self,
        target_langs: list[str] | None = None,
        *,
        title: str | None = None,
        script_id: str | None = None,
        source_lang: str | None = None,
    ) -> LiveSession:
        body = _live_start_body(target_langs or [], title, script_id, source_lang)
        session: LiveSession = await self._request("POST", "/v1/live", json=body)
        return session

    async def live_say(self, session_id: str, text: str, *, final: bool = True) -> dict[str, Any]:
        answer: dict[str, Any] = await self._request(
            "POST", _live_url(session_id, "/segments"), json={"text": text, "final": final}
        )
        return answer

    async def live_close(self, session_id: str) -> LiveSession:
        session: LiveSession = await self._request("POST", _live_url(session_id, "/close"))
        return session

    async def live_info(self, join_code: str) -> dict[str, Any]:
        info: dict[str, Any] = await self._request("GET", _live_url(join_code))
        return info

    async def live_events(
        self, join_code: str, lang: str, *, last_event_id: int | None = None
    ) -> AsyncIterator[LiveEvent]:
        import asyncio

        last_id, failures = last_event_id, 0
        while True:
            params = _live_params(lang, last_id)
            try:
                async with aconnect_sse(self._http, "GET", _live_url(join_code, "/events"),
                                        params=params) as source:  # fmt: skip
                    if source.response.status_code != 200:
                        await source.response.aread()
                        raise _status_error(source.response)
                    failures = 0
                    async for sse in source.aiter_sse():
                        if sse.event == "message":
                            continue
                        event = _live_event(sse)
                        if event.id is not None:
                            last_id = event.id
                        if _live_resumable(event):
                            break
                        yield event
                        if event.kind == "closed":
                            return
            except httpx.TransportError as exc:
                failures += 1
                if failures > _LIVE_RESUMES:
                    raise _transport_error(self._http.base_url, exc) from exc
                await asyncio.sleep(min(0.25 * 2**failures, 8.0))
