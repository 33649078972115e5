"""Pure ASGI middleware: with keys on, a request needs `Authorization: Bearer <secret>` of a
live key, except on the public paths. The key goes to `request.state.api_key` (None when keys
are off), for the routes to file records under and for the limits."""

from __future__ import annotations

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from dragoman.api.deps import runtime_of
from dragoman.api.errors import error_response
from dragoman.errors import DatabaseUnavailable, Unauthorized

log = structlog.get_logger(__name__)

# The contract's public paths: what a page, a probe or a client needs before it has a key.
PUBLIC_GET = frozenset(
    {
        "/",
        "/present",
        "/healthz",
        "/readyz",
        "/docs",
        "/docs/oauth2-redirect",
        "/openapi.json",
        "/v1/languages",
        "/libretranslate/languages",
        "/libretranslate/frontend/settings",
    }
)
# `/metrics` has its own token (DRAGOMAN_METRICS_TOKEN).
PUBLIC_ANY = frozenset({"/metrics"})
# Swagger UI's own scripts and styles, which the public /docs page loads; and what live
# sessions' listeners read (their join code is their ticket).
PUBLIC_GET_PREFIXES = ("/docs-assets/", "/live/", "/v1/live/")
# The LibreTranslate API takes its key from the body too (`api_key`) and answers a missing one
# in its own shape (403): its routes check the key themselves.
OWN_KEY_CHECK_PREFIX = "/libretranslate/"


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token:
                return token
            return None
    return None


class RequireKey:
    def __init__(self, app: ASGIApp, *, required: bool) -> None:
        self.app = app
        self.required = required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["api_key"] = None
        path = scope["path"]
        if (
            not self.required
            or path in PUBLIC_ANY
            or (
                scope["method"] in ("GET", "HEAD")
                and (path in PUBLIC_GET or path.startswith(PUBLIC_GET_PREFIXES))
            )
            or path.startswith(OWN_KEY_CHECK_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        secret = bearer_token(scope)
        keys = runtime_of(scope["app"]).keys
        try:
            key = await keys.authenticate(secret) if secret is not None else None
        except Exception:
            log.exception("key_lookup_failed")
            await error_response(DatabaseUnavailable("The API keys cannot be read."))(
                scope, receive, send
            )
            return
        if key is None:
            message = None if secret is None else "This API key is unknown or revoked."
            await error_response(Unauthorized(message))(scope, receive, send)
            return
        state["api_key"] = key
        await self.app(scope, receive, send)
