"""The REST API (FastAPI): submit transactions; read status, blocks, transactions and state,
each with the proof and the certified header a client needs to check it alone.

Errors are JSON ``{"code": ..., "message": ...}`` with a 4xx status; a rejected transaction
keeps its stable code (``nonce``, ``chain_id``, ``signature``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from importlib.metadata import PackageNotFoundError, version
from medledger.api.schemas import ENVELOPE, ERROR, tx_body
from medledger.codec import CodecError, decode, encode
from medledger.ledger import MAX_TX_BYTES
from medledger.merkle import log
from medledger.node import BatchRefused, Node, Submitted, result_of
from medledger.node.sets import certified as certified_block
from medledger.node.sets import set_changes, set_proof
from medledger.store import StoredTx

__all__ = ["STATUS_OF_CODE", "ApiError", "create_app"]

STATUS_OF_CODE = {
    "malformed": 400, "chain_id": 400, "signature": 400, "unknown_type": 400,
    "too_large": 413, "nonce": 409, "duplicate": 409, "exists": 409,
    "unknown_sender": 403, "key_suspended": 403, "key_rotated": 403, "unauthorized": 403,
    "mempool_full": 429,
}
MAX_BATCH = 10_000
MAX_BATCH_BYTES = 64 * 1024 * 1024
_ERRORS = {str(s): {"description": "refused", "content": {"application/json": {"schema": ERROR}}}
           for s in (400, 403, 404, 409, 413, 422, 429)}


class ApiError(Exception):
    """An error answer: HTTP ``status`` with a stable ``code`` and a ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _parse_hex(text: str, size: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise ApiError(400, "malformed", f"{what} must be {2 * size} hex characters")
    return raw


def _stored_tx_dict(stored: StoredTx) -> dict[str, Any]:
    return {"tx_id": stored.tx_id.hex(), "height": stored.height, "index": stored.index,
            "code": stored.code, "message": stored.message,
            "events": [] if not stored.events else decode(stored.events)}


def _version() -> str:
    try:
        return version("medledger")
    except PackageNotFoundError:
        return "0+unknown"


def create_app(node: Node, *, run_producer: bool = True, close_node: bool = False) -> FastAPI:
    """Build the API over ``node``; with ``run_producer`` its lifespan runs block production.

    ``close_node``: close the node (workers, store) when the server shuts down. The server
    re-raises SIGTERM/SIGINT once it has stopped, so code after it would never run.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(node.run()) if run_producer else None
        if node.driver is not None and run_producer:
            await node.driver.start()
        try:
            yield
        finally:
            if node.driver is not None and run_producer:
                await node.driver.stop()
            node.stop()
            if task is not None:
                # let a block being committed finish, then stop
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, 60)
            if close_node:
                node.close()

    app = FastAPI(title="medledger", version=_version(), lifespan=lifespan,
                  description="Submit signed transactions; read blocks, transactions and "
                              "state with proofs that a client checks on its own.")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, "malformed", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "not_found" if exc.status_code == 404 else "http",
                      str(exc.detail))

    async def read_json(request: Request, limit: int) -> Any:
        body = await request.body()
        if len(body) > limit:
            raise ApiError(413, "too_large", f"request body larger than {limit} bytes")
        try:
            return decode(body)
        except CodecError as e:
            raise ApiError(400, "malformed", f"request body: {e}") from e

    def refused(result: Submitted) -> ApiError:
        return ApiError(STATUS_OF_CODE.get(result.code, 422), result.code, result.message)

    @app.post("/v1/txs", status_code=202, responses=_ERRORS, openapi_extra=tx_body(ENVELOPE),
              summary="Submit one signed transaction")
    async def submit(request: Request, wait: bool = False, timeout: float = 30.0) -> Any:
        """Admit a transaction to the mempool and return its id. With ``wait=true``, answer
        once it is committed (its height and result), or 202 if ``timeout`` passes first."""
        result = node.submit_dict(await read_json(request, MAX_TX_BYTES), checked=True)
        if not result.accepted or result.tx_id is None:
            raise refused(result)
        if wait:
            seconds = min(max(timeout, 0.0), 120.0) if not math.isnan(timeout) else 0.0
            stored = await node.wait_committed(result.tx_id, seconds)
            if stored is not None:
                return JSONResponse({**_stored_tx_dict(stored), "status": "committed"})
        return JSONResponse({"tx_id": result.tx_id.hex(), "status": "pending"}, status_code=202)

    @app.post("/v1/txs/batch", responses=_ERRORS,
              openapi_extra=tx_body({"type": "array", "items": ENVELOPE, "maxItems": MAX_BATCH}),
              summary="Submit many signed transactions at once")
    async def submit_batch(request: Request) -> Any:
        """Each item is checked on its own; the answer lists a result per item, in order."""
        body = await request.body()
        if len(body) > MAX_BATCH_BYTES:
            raise ApiError(413, "too_large", f"request body larger than {MAX_BATCH_BYTES} bytes")
        try:
            results = await node.submit_batch_bytes(body, MAX_BATCH)
        except BatchRefused as e:
            raise ApiError(400, "malformed", str(e)) from e
        # JSONResponse directly: the framework's generic encoder walks 500 items in Python
        return JSONResponse({"accepted": sum(r.accepted for r in results),
                             "results": [r.to_dict() for r in results]})

    @app.get("/v1/status", summary="Chain id, height, latest block hash, state root")
    async def status() -> Any:
        return node.status()

    @app.get("/v1/genesis", summary="The genesis document")
    async def genesis() -> Any:
        return node.chain.genesis.to_dict()

    @app.get("/v1/validators", summary="The current validator set")
    async def validators() -> Any:
        vs = node.chain.validators
        return {"validators": vs.to_list(), "hash": vs.hash().hex(),
                "total_power": vs.total_power}

    @app.get("/v1/validators/changes",
             summary="The heights from which a set changed by governance was in force")
    async def validator_changes() -> Any:
        return {"heights": set_changes(node.chain)}

    @app.get("/v1/validators/proof/{height}", responses=_ERRORS,
             summary="The validator set of a height, proven from the state before it")
    async def validator_proof(height: int) -> Any:
        """Header ``height - 1`` with its certificate and the proof of
        ``validators/pending/<height>`` at its state root: the set of ``height``, or its
        absence (the set of ``height - 1`` goes on). Heights 2 to the tip + 1."""
        try:
            answer = set_proof(node.chain, height)
        except LookupError as e:  # a damaged store: `medledger verify` says more
            raise ApiError(500, "integrity", str(e)) from e
        if answer is None:
            raise ApiError(404, "not_found", f"no set proof for height {height} (heights 2 "
                                             f"to {node.chain.height + 1})")
        return answer

    def certified(height: int) -> dict[str, Any]:
        answer = certified_block(node.chain, height)
        if answer is None:
            raise ApiError(404, "not_found", f"no block at height {height} "
                                             f"(the chain is at {node.chain.height})")
        return answer

    @app.get("/v1/blocks/{height}", responses=_ERRORS, summary="A block with its certificate")
    async def block(height: int) -> Any:
        if height < 1:
            raise ApiError(400, "malformed", "height starts at 1")
        out = certified(height)
        rows = node.store.get_block_txs(height)
        out["txs"] = [decode(r.raw) for r in rows]
        out["results"] = [{"code": r.code, "message": r.message} for r in rows]
        return out

    @app.get("/v1/txs/{tx_id}", responses=_ERRORS,
             summary="A transaction with its inclusion proof and the header that commits it")
    async def tx(tx_id: str) -> Any:
        stored = node.store.get_tx(_parse_hex(tx_id, 32, "tx_id"))
        if stored is None:
            raise ApiError(404, "not_found", f"no committed transaction {tx_id}")
        rows = node.store.get_block_txs(stored.height)
        path = log.inclusion_proof([log.leaf_hash(r.tx_id) for r in rows], stored.index)
        result_path = log.inclusion_proof(
            [log.leaf_hash(encode(result_of(r).to_dict())) for r in rows],
            stored.index)
        return {**certified(stored.height), **_stored_tx_dict(stored),
                "tx": decode(stored.raw),
                "proof": {"leaf_index": stored.index, "tree_size": len(rows),
                          "audit_path": [h.hex() for h in path],
                          "result_audit_path": [h.hex() for h in result_path]}}

    @app.get("/v1/state/{key:path}", responses=_ERRORS,
             summary="A state entry with its membership or non-membership proof")
    async def state(key: str) -> Any:
        if not key or len(key) > 512:
            raise ApiError(400, "malformed", "state keys are 1-512 characters")
        chain = node.chain
        if chain.height == 0:
            raise ApiError(404, "not_found", "no block committed yet")
        value = node.store.get_value(key)
        proof = chain.tree.prove(chain.state_root, key, value)
        return {**certified(chain.height), **proof.to_dict()}

    return app
