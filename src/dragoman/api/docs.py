"""/docs without a CDN: Swagger UI's assets are served from the installed `fastapi-offline`
package, so the page works on a machine with no internet, where dragoman is meant to run."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_ASSETS = "/docs-assets"


def _assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install_offline_docs(app: FastAPI) -> None:
    """Needs the app built with `docs_url=None, redoc_url=None`."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=_assets_dir()), name="docs-assets")

    # The page reads the app from its request: a closure over `app` would keep every app ever
    # built alive in FastAPI's cache of endpoint functions (one per test server, say).
    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        current: FastAPI = request.app
        return get_swagger_ui_html(
            openapi_url=f"{root}{current.openapi_url}",
            title=f"{current.title} API",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )
