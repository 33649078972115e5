"""Any OpenAI-compatible chat server: OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM, Azure.

The official SDK is the authority on how a request is addressed and authenticated and on what
an error answer means: a non-2xx answer is turned into the SDK's own typed exception by the
SDK itself. The streaming request is sent with aiohttp (a transport the SDK itself offers as an
option): building each request through the SDK's generic machinery cost about 1.6 ms before
the first token, more than everything else on that path together. Its address is still read
from the SDK client on every request (base URL, `default_query` such as Azure's
`api-version`, the key from an `api_key` provider, auth and default headers), a few
microseconds, so that a client whose credentials rotate or that a caller configured keeps
working. The body is parsed by `chat_stream.ChatStreamParser`, this module does the network.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import httpx2
import openai
import orjson
import structlog
import yarl

from dragoman.config import DEFAULT_OPENAI_MODEL, Settings
from dragoman.errors import DragomanError, UpstreamError, UpstreamRateLimited, UpstreamTimeout
from dragoman.events import Queued
from dragoman.languages import GENERAL_LANGUAGES, LanguageCatalog
from dragoman.prompts import TranslationTask, chat_messages
from dragoman.providers.base import StreamState
from dragoman.providers.chat_stream import ChatStreamParser, UpstreamReportedError

log = structlog.get_logger(__name__)

# An error answer's body is read for the log and the SDK's exception, not more.
_ERROR_BODY_LIMIT = 64 * 1024


class OpenAIProvider:
    name = "openai"
    needs_source_lang = False

    def __init__(self, settings: Settings, client: openai.AsyncOpenAI | None = None) -> None:
        """`client`: an SDK client configured by the caller (say an `AsyncAzureOpenAI`, or one
        with an `api_key` provider); by default one built from the settings.

        What of the client applies to the stream: its base URL, `default_query`, `api_key`
        (a key provider is called before every stream), `auth_headers` and `default_headers`.
        What does not: a custom `http_client` (the stream goes through this module's aiohttp
        session; only model listing and readiness probes use the SDK's transport), Azure AD
        token providers and `provider=` request transforms (both run inside the SDK's request
        preparation, which the stream skips). Such clients need the key in `api_key`."""
        self._settings = settings
        self._model = settings.model
        self.languages = LanguageCatalog(GENERAL_LANGUAGES)
        self._client = client or openai.AsyncOpenAI(
            api_key=settings.resolved_api_key(),
            base_url=settings.openai_base_url,
            max_retries=0,
        )
        # The first-token and idle timeouts are enforced by the caller; the socket read
        # timeout is only a backstop that must not cut either short.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=min(10.0, settings.first_token_timeout_s),
            sock_read=max(settings.first_token_timeout_s, settings.idle_timeout_s) + 5,
        )
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop it belongs to.
        if self._session is None:
            # limit=0 is aiohttp's "no limit": a thousand concurrent streams never wait on
            # each other for a connection. Kept-alive connections skip the TCP handshake.
            # HTTP(S)_PROXY and NO_PROXY apply, as they do to the SDK's own requests; read once
            # here (aiohttp's `trust_env` reads the environment and ~/.netrc on every request,
            # about 0.3 ms).
            proxy = _env_proxy(str(self._client.base_url))
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=15.0),
                timeout=self._timeout,
                proxy=proxy.with_user(None) if proxy else None,
                proxy_auth=aiohttp.BasicAuth.from_url(proxy) if proxy else None,
            )
        return self._session

    @property
    def model(self) -> str:
        return self._model or DEFAULT_OPENAI_MODEL

    async def start(self) -> None:
        if self._model is None and self._settings.openai_base_url:
            await self._discover_model()

    async def _discover_model(self) -> bool:
        """With a base URL and no model named: the first model the server lists."""
        try:
            page = await self._client.models.list(timeout=10.0)
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            log.warning("model_discovery_failed", error=type(exc).__name__)
            return False
        models = [m.id for m in page.data]
        if not models:
            log.warning("model_discovery_failed", error="the server lists no model")
            return False
        self._model = models[0]
        log.info("model_discovered", model=self._model)
        return True

    def is_ready(self) -> bool:
        return self._model is not None or not self._settings.openai_base_url

    def not_ready_reason(self) -> str | None:
        return None if self.is_ready() else "The translation server lists no model yet."

    async def check_ready(self) -> bool:
        if self._model is None and self._settings.openai_base_url:
            return await self._discover_model()
        try:
            await self._client.models.list(timeout=5.0)
        except openai.APIStatusError as exc:
            # It answers (some servers do not list models), unless to say it is unavailable.
            return exc.status_code < 500
        except (openai.OpenAIError, httpx2.HTTPError):
            return False
        return True

    async def stream(
        self, task: TranslationTask, state: StreamState
    ) -> AsyncIterator[list[str] | Queued]:
        if self._model is None and self._settings.openai_base_url:
            if not await self._discover_model():
                raise UpstreamError("The translation server lists no model.")
        sent_any = False
        body = {
            "model": self.model,
            "messages": chat_messages(task),
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0,
        }
        try:
            url, headers = await self._address()
            response = await self._http().post(
                url, data=orjson.dumps(body), headers=headers, allow_redirects=False
            )
            try:
                if response.status >= 300:
                    raise await self._status_error(response, url)
                parser = ChatStreamParser()
                # Every network read yields the pieces it completed, as one batch (the first
                # piece alone): under load a read carries many pieces and the layers above
                # handle them at once.
                chunks = response.content.iter_any()
                async for data in chunks:
                    for batch in parser.feed(data):
                        sent_any = True
                        yield batch
                    if parser.done:
                        await _read_to_end(chunks)
                        break
                if parser.usage is not None:
                    state.usage = parser.usage
                parser.end()
            finally:
                # A response read to its end gives its connection back for the next request;
                # an unfinished one is closed, which is what stops the upstream.
                if response.content.at_eof():
                    response.release()
                else:
                    response.close()
        except UpstreamReportedError as exc:
            log.warning("upstream_error_event", error=_short(exc.detail))
            raise
        except DragomanError:
            raise
        except openai.RateLimitError as exc:
            headers = {}
            retry_after = exc.response.headers.get("retry-after")
            if retry_after:
                headers["Retry-After"] = retry_after
            raise UpstreamRateLimited(headers=headers) from exc
        except openai.APIStatusError as exc:
            log.warning("upstream_status", status=exc.status_code, body=_short(exc.body))
            raise UpstreamError(
                f"The translation model answered with status {exc.status_code}."
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            # Refused, unresolvable or unreachable: an upstream error (502), not a timeout.
            log.warning("upstream_unreachable", error=type(exc).__name__)
            raise UpstreamError("The translation model could not be reached.") from exc
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            log.warning("upstream_timeout", error=type(exc).__name__, after_first_piece=sent_any)
            raise UpstreamTimeout() from exc
        except aiohttp.ClientError as exc:
            log.warning("upstream_failed", error=type(exc).__name__, detail=str(exc)[:200])
            raise UpstreamError("The translation model could not be reached or broke off.") from exc

    async def _address(self) -> tuple[str, dict[str, str]]:
        """The stream's URL and headers as the SDK would address them now."""
        client = self._client
        if client._api_key_provider is not None:  # rotating credentials: a fresh key
            await client._refresh_api_key()
        url = f"{client.base_url}chat/completions"
        query = client.default_query
        if query:
            url += "?" + client.qs.stringify(cast(Any, query))
        return url, _sdk_headers(client)

    async def _status_error(
        self, response: aiohttp.ClientResponse, url: str
    ) -> openai.APIStatusError:
        """The SDK's own exception for an error answer (its status-to-class mapping and its
        reading of the error body), as if the SDK had sent the request."""
        content = b""
        try:
            async with asyncio.timeout(5.0):
                while len(content) < _ERROR_BODY_LIMIT:
                    data = await response.content.read(_ERROR_BODY_LIMIT - len(content))
                    if not data:
                        break
                    content += data
        except (TimeoutError, aiohttp.ClientError):
            pass  # the status alone decides the class
        # aiohttp has already decoded the body: the encoding headers would have it decoded twice.
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in response.raw_headers
            if k.lower() not in (b"content-encoding", b"content-length", b"transfer-encoding")
        ]
        answer = httpx2.Response(
            response.status,
            headers=headers,
            content=content,
            request=httpx2.Request("POST", url),
        )
        return self._client._make_status_error_from_response(answer)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self._client.close()


async def _read_to_end(chunks: AsyncIterator[bytes]) -> None:
    """Read the body's end after [DONE], so that the connection goes back to the pool and the
    next request finds it open. A server that keeps the body open gets a second, not more:
    the translation is complete either way, and the response is closed after this."""
    try:
        async with asyncio.timeout(1.0):
            async for _ in chunks:
                pass
    except (TimeoutError, aiohttp.ClientError):
        pass


def _env_proxy(url: str) -> yarl.URL | None:
    """The proxy that HTTP_PROXY / HTTPS_PROXY name for `url`, unless NO_PROXY exempts it."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    return yarl.URL(proxy) if proxy else None


def _sdk_headers(client: openai.AsyncOpenAI) -> dict[str, str]:
    """The SDK's headers for a request: authentication first, then its default and custom
    headers, which win, case-insensitively; headers it marks with Omit are left out."""
    merged: dict[str, tuple[str, str]] = {}
    for mapping in (client.auth_headers, client.default_headers):
        for name, value in mapping.items():
            if isinstance(value, str):
                merged[name.lower()] = (name, value)
            else:
                merged.pop(name.lower(), None)
    return dict(merged.values())


def _short(value: object) -> str:
    return str(value)[:300]
