"""The error tree shared by providers, the service and the API.

Every error a client can see is a `DragomanError` with a contract code, an HTTP status and a
message written for people. Messages never carry tracebacks, keys, paths or reprs: the detail
goes to the server log instead.
"""

from __future__ import annotations

from typing import Any


class DragomanError(Exception):
    code = "internal_error"
    status = 500
    default_message = "Something went wrong on the server."

    def __init__(
        self,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        details: Any = None,
    ) -> None:
        self.message = message or self.default_message
        self.headers = headers or {}
        self.details = details
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class InvalidRequest(DragomanError):
    code = "invalid_request"
    status = 422
    default_message = "The request is not valid."


class UnsupportedLanguage(DragomanError):
    code = "unsupported_language"
    status = 422
    default_message = "This language is not offered."


class TextTooLong(DragomanError):
    code = "text_too_long"
    status = 413


class NotFound(DragomanError):
    code = "not_found"
    status = 404
    default_message = "No such translation."


class UpstreamRateLimited(DragomanError):
    code = "upstream_rate_limited"
    status = 429
    default_message = "The translation model is rate limited; try again later."


class UpstreamError(DragomanError):
    code = "upstream_error"
    status = 502
    default_message = "The translation model failed."


class UpstreamTimeout(DragomanError):
    code = "upstream_timeout"
    status = 504
    default_message = "The translation model did not answer in time."


class QueueFull(DragomanError):
    code = "queue_full"
    status = 503
    default_message = "Too many requests are waiting for the model; try again later."


class DatabaseUnavailable(DragomanError):
    code = "database_unavailable"
    status = 503
    default_message = "The translation record could not be stored."


class NotReady(DragomanError):
    code = "not_ready"
    status = 503
    default_message = "The service is not ready yet."


class ShuttingDown(DragomanError):
    code = "shutting_down"
    status = 503
    default_message = "The server is shutting down."


class Interrupted(DragomanError):
    code = "interrupted"
    status = 500
    default_message = "The server stopped before this translation finished."


class Cancelled(DragomanError):
    """Recorded, never sent: the client went away."""

    code = "cancelled"
    status = 499
    default_message = "The client disconnected."


class Unauthorized(DragomanError):
    code = "unauthorized"
    status = 401
    default_message = "This server needs an API key: send Authorization: Bearer <key>."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class RateLimited(DragomanError):
    """This server's limit on the caller's key (not the upstream's: `UpstreamRateLimited`)."""

    code = "rate_limited"
    status = 429
    default_message = "This key's limit is reached; try again later."

    def __init__(self, message: str | None = None, *, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})


class RequestTooLarge(DragomanError):
    code = "request_too_large"
    status = 413
    default_message = "The request body is too large."


class Stopped(DragomanError):
    """Ended by `POST /v1/translations/{id}/cancel` (or a resumable run nobody listened to):
    in-band on a stream, 409 where no byte of the answer was sent yet."""

    code = "cancelled"
    status = 409
    default_message = "The translation was stopped by a cancel request."


class NotResumable(DragomanError):
    code = "not_resumable"
    status = 409
    default_message = "This translation was not started as resumable."


class ResumeExpired(DragomanError):
    code = "resume_expired"
    status = 410
    default_message = "This translation's events are no longer kept; its record still is."


class SessionClosed(DragomanError):
    code = "session_closed"
    status = 409
    default_message = "This live session is closed."


class TooManyLanguages(DragomanError):
    code = "too_many_languages"
    status = 409
    default_message = "This live session is translated into as many languages as it may be."


class AlreadyTranslated(DragomanError):
    """Internal: a live segment's translation into this language exists already (another
    process took it)."""

    code = "already_translated"
    status = 409
    default_message = "This segment is translated into this language already."
