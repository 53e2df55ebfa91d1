"""The API's front door: ``/`` (an index), ``/docs`` (Swagger UI) and ``/redoc``, served
without any request leaving the node.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, which a node on a hospital network
may not reach. The assets come from the ``fastapi-offline`` package instead (Swagger UI 5,
which reads OpenAPI 3.1, and ReDoc), mounted under ``/docs-assets``; the page turns off
Swagger UI's online validator badge. Without that package, ``/docs`` is a small page that
lists the operations of ``/openapi.json`` itself.
"""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from medledger.api.schemas import INDEX

__all__ = ["ASSETS_URL", "install_docs"]

ASSETS_URL = "/docs-assets"


def _assets() -> Path | None:
    """The folder of fastapi-offline's Swagger UI and ReDoc files, if it is installed."""
    try:
        folder = Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    if not (folder / "swagger-ui-bundle.js").is_file():
        return None
    return folder


_FALLBACK = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}code{{background:#eee}}
li{{margin:.3em 0}}</style></head>
<body><h1>{title}</h1>
<p>The operations of <a href="{openapi}">{openapi}</a> (the interactive page needs the
<code>fastapi-offline</code> package).</p><ul id="ops"></ul>
<script>
fetch("{openapi}").then(r => r.json()).then(doc => {{
  const ul = document.getElementById("ops");
  for (const [path, ops] of Object.entries(doc.paths)) {{
    for (const [method, op] of Object.entries(ops)) {{
      const li = document.createElement("li");
      li.textContent = method.toUpperCase() + " " + path + ": " + (op.summary || "");
      ul.appendChild(li);
    }}
  }}
}});
</script></body></html>
"""


def install_docs(app: FastAPI, chain_id: str) -> None:
    """Add ``/``, ``/docs`` and ``/redoc`` to ``app`` (built with ``docs_url=None`` and
    ``redoc_url=None``)."""
    openapi = app.openapi_url or "/openapi.json"
    title = html.escape(app.title)
    assets = _assets()
    if assets is not None:
        app.mount(ASSETS_URL, StaticFiles(directory=assets), name="docs-assets")

    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        if assets is None:
            return HTMLResponse(_FALLBACK.format(title=title, openapi=f"{root}{openapi}"))
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi}", title=f"{app.title} - API",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None})

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        if assets is None:
            return HTMLResponse(_FALLBACK.format(title=title, openapi=f"{root}{openapi}"))
        return get_redoc_html(
            openapi_url=f"{root}{openapi}", title=f"{app.title} - API",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False)

    app.add_route("/docs", swagger, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)

    def links(root: str) -> dict[str, str]:
        return {"docs": f"{root}/docs", "openapi": f"{root}{openapi}",
                "status": f"{root}/v1/status", "redoc": f"{root}/redoc"}

    @app.get("/", tags=["node"], summary="What this node is, with links",
             responses={200: {"description": "an index: JSON, or HTML for a browser",
                              "content": {"application/json": {"schema": INDEX},
                                          "text/html": {"schema": {"type": "string"}}}}})
    async def index(request: Request) -> Any:
        """The node's name, version and chain id, with links to ``/docs``,
        ``/openapi.json`` and ``/v1/status``: JSON, or HTML when the client asks for
        ``text/html`` (a browser)."""
        root = request.scope.get("root_path", "")
        answer = {"name": app.title, "version": app.version, "chain_id": chain_id,
                  "links": links(root)}
        if "text/html" not in request.headers.get("accept", ""):
            return JSONResponse(answer)
        items = "".join(f'<li><a href="{html.escape(url)}">{html.escape(url)}</a></li>'
                        for url in answer["links"].values())
        return HTMLResponse(
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}'
            f"</title></head><body><h1>{title} {html.escape(app.version)}</h1>"
            f"<p>chain <code>{html.escape(chain_id)}</code></p><ul>{items}</ul></body></html>")
