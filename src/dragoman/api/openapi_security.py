"""The API keys in /openapi.json: a Bearer scheme on every operation except the public ones,
so that /docs offers "Authorize" and clients generated from the schema send the key."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from dragoman.api.require_key import PUBLIC_ANY, PUBLIC_GET

SCHEME = "apiKey"


def document_bearer_keys(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `dragoman keys create` (when keys are on).",
                }
            }
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    public = path in PUBLIC_ANY or (method == "get" and path in PUBLIC_GET)
                    operation["security"] = [] if public else [{SCHEME: []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
