"""The REST API (FastAPI): submit transactions; read status, blocks, transactions and state,
each with the proof and the certified header a client needs to check it alone; and each
registered app's own routes under ``/v1/<app>``.

:func:`create_app` only composes routers: the node's own (:mod:`.txs`, :mod:`.blocks`,
:mod:`.state`, :mod:`.validators`, :mod:`.status`, the events of :mod:`.events` and the
encrypted content of :mod:`.blobs`), then
one per app of the node's registry, handed a :class:`~medledger.api.host.NodeHost`. Nothing
here names an app.

Errors are JSON ``{"code": ..., "message": ...}`` with a 4xx status (:mod:`.errors`); a
refused transaction keeps its stable code, with the HTTP status the registry gives it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from medledger.api.blobs import blobs_router
from medledger.api.blocks import blocks_router
from medledger.api.docs import install_docs
from medledger.api.errors import (
    ApiError,
    PathHygiene,
    error_responses,
    install_error_handlers,
)
from medledger.api.events import events_router
from medledger.api.host import NodeHost
from medledger.api.schemas import COMPONENTS
from medledger.api.state import state_router
from medledger.api.status import status_router
from medledger.api.txs import MAX_BATCH, MAX_BATCH_BYTES, txs_router
from medledger.api.validators import validators_router
from medledger.apps import App, default_registry
from medledger.node import Node

__all__ = ["MAX_BATCH", "MAX_BATCH_BYTES", "STATUS_OF_CODE", "ApiError", "create_app"]

STATUS_OF_CODE: Mapping[str, int] = default_registry().codes
"""Refusal codes with their HTTP statuses, for the apps of this build (the node's own
``BASE_CODES`` and every app's). A node answers with its own registry's ``codes``."""


def _version() -> str:
    try:
        return version("medledger")
    except PackageNotFoundError:
        return "0+unknown"


def _app_description(app: App) -> str:
    codes = ", ".join(f"`{c}` ({s})" for c, s in sorted(app.codes.items()))
    return (f"{app.summary or app.name} Refusal codes of its own: {codes}." if codes
            else f"{app.summary or app.name} It refuses with the node's codes only.")


def _app_router(app: App, host: NodeHost) -> APIRouter | None:
    """``app``'s routes, each marked with the app's refusal codes (``x-refusal-codes``)
    and declaring the errors every route of this API may answer (400 and 422 for a bad
    request, as :mod:`.errors` answers them)."""
    router = app.routes(host)
    if router is None:
        return None
    for route in router.routes:
        if isinstance(route, APIRoute):
            route.responses = {**error_responses(), **route.responses}
            route.openapi_extra = {**(route.openapi_extra or {}),
                                   "x-refusal-codes": dict(app.codes)}
    return router


def create_app(node: Node, *, run_node: bool = True, close_node: bool = False) -> FastAPI:
    """Build the API over ``node``; with ``run_node`` its lifespan runs the node (on
    CometBFT: the ABCI server, the engine process and following it: ``Node.run``).

    ``close_node``: close the node (workers, store) when the server shuts down. The server
    re-raises SIGTERM/SIGINT once it has stopped, so code after it would never run.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(node.run()) if run_node else None
        try:
            yield
        finally:
            node.stop()
            if task is not None:
                # let a block being committed finish, then stop
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, 60)
            if close_node:
                node.close()

    registry = node.chain.registry
    apps = list(registry.apps)
    api = FastAPI(
        title="medledger", version=_version(), lifespan=lifespan,
        docs_url=None, redoc_url=None,
        description="Submit signed transactions; read blocks, transactions and state with "
                    "proofs that a client checks on its own. Refusal codes and their HTTP "
                    "statuses are listed in `x-refusal-codes` (all of them at the top, an "
                    "app's own on its tag and its operations).",
        openapi_tags=[
            {"name": "transactions", "description": "Submit signed transactions; read one "
                                                    "with its proofs"},
            {"name": "blocks", "description": "Blocks with the signed headers that prove them"},
            {"name": "state", "description": "State entries with their proofs"},
            {"name": "validators", "description": "The validator set and its changes"},
            {"name": "node", "description": "This node's status and genesis"},
            {"name": "events", "description": "What committed transactions did"},
            {"name": "blobs", "description": "Encrypted content by SHA-256, on signed "
                                             "requests (RFC 9421 HTTP Message Signatures, "
                                             "Ed25519, `keyid` = the signer's key hex)"},
            *({"name": a.name, "description": _app_description(a),
               "x-refusal-codes": dict(a.codes)} for a in apps),
        ])
    install_error_handlers(api)
    api.add_middleware(PathHygiene)

    host = NodeHost(node)
    for router in (txs_router(node), blocks_router(node, host), state_router(host),
                   validators_router(node), status_router(node), events_router(node),
                   blobs_router(node)):
        api.include_router(router)
    for app in apps:
        router = _app_router(app, host)
        if router is not None:
            api.include_router(router, prefix=f"/v1/{app.name}", tags=[app.name])
    install_docs(api, node.chain.chain_id)

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = get_openapi(title=api.title, version=api.version,
                                   description=api.description, routes=api.routes,
                                   tags=api.openapi_tags)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in COMPONENTS.items():
                schemas.setdefault(name, schema)
            document["x-refusal-codes"] = dict(sorted(registry.codes.items()))
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    return api
