"""Transactions: submit one or many, list a sender's, read one with its proofs."""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from medledger.api.errors import ApiError, error_responses
from medledger.api.schemas import (
    SUBMIT_BATCH,
    SUBMITTED,
    TX,
    TX_COMMITTED,
    TX_LIST,
    envelope,
    json_content,
    ref,
    tx_body,
)
from medledger.codec import CodecError, decode
from medledger.ledger import MAX_TX_BYTES
from medledger.ledger.engine import exec_result_bytes, tx_leaf
from medledger.merkle import log
from medledger.node import BatchRefused, Node, Submitted, result_of
from medledger.node.sets import certified as certified_block
from medledger.store import StoredTx

__all__ = ["MAX_BATCH", "MAX_BATCH_BYTES", "MAX_HEIGHT", "certified", "stored_tx_dict",
           "txs_router"]

MAX_BATCH = 10_000
MAX_BATCH_BYTES = 64 * 1024 * 1024
MAX_HEIGHT = 2**62
"""The largest height a query parameter may name (far above any chain's tip)."""
MAX_PAGE = 100
ENGINE_HEADER_WAIT = 10.0  # seconds a proof waits for the engine's next block

HEX32_PATTERN = "^[0-9a-f]{64}$"
CURSOR_PATTERN = "^[0-9]{1,18}:[0-9]{1,9}$"


def stored_tx_dict(stored: StoredTx) -> dict[str, Any]:
    return {"tx_id": stored.tx_id.hex(), "height": stored.height, "index": stored.index,
            "code": stored.code, "message": stored.message,
            "events": [] if not stored.events else decode(stored.events)}


async def certified(node: Node, height: int) -> dict[str, Any]:
    """Block ``height``'s header and the engine's signed headers that prove it (fetched if
    not kept); 404 when there is no such block."""
    answer = await asyncio.to_thread(certified_block, node.chain, height, fetch=True)
    if answer is None and node.chain.prover is None:
        raise ApiError(503, "unavailable", f"this node runs no consensus engine: no signed "
                                           f"header proves block {height}")
    if answer is None and 1 <= height <= node.chain.height:
        raise ApiError(503, "busy", f"block {height} is committed, but the engine's header "
                                    "that proves it is not final yet; ask again in a moment")
    if answer is None:
        raise ApiError(404, "not_found", f"no block at height {height} "
                                         f"(the chain is at {node.chain.height})")
    return answer


async def _wait_proven(node: Node, height: int, deadline: float) -> None:
    """Wait until a signed header proves the state after ``height`` (CometBFT makes the
    block that signs it a block interval later), or ``deadline`` (loop time) passes."""
    loop = asyncio.get_running_loop()
    while node.chain.prover is not None and not node.stopping:
        proven = node.chain.proven_height()
        if proven is not None and proven >= height:
            return
        left = deadline - loop.time()
        if left <= 0:
            return
        await node.wait_new_block(node.chain.height, min(left, 0.05))


async def _tx_answer(node: Node, stored: StoredTx, rows: list[StoredTx]) -> dict[str, Any]:
    """A transaction, proven by the engine's signed header of its block (its ``data_hash``)
    and of the next (``last_results_hash``), both under ``"light"``."""
    height = stored.height
    light = await node.light_headers(height, ENGINE_HEADER_WAIT)
    block = node.store.get_block(height)
    if light is None or block is None:
        raise ApiError(503, "busy", f"the block after {height} is not final yet; ask again "
                                    "in a moment")
    data_path = log.inclusion_proof([log.leaf_hash(tx_leaf(r.raw)) for r in rows],
                                    stored.index)
    result_path = log.inclusion_proof(
        [log.leaf_hash(exec_result_bytes(result_of(r))) for r in rows], stored.index)
    return {"height": height, "block_hash": block.block_hash.hex(),
            "header": decode(block.header), **stored_tx_dict(stored), "tx": decode(stored.raw),
            "light": light,
            "proof": {"leaf_index": stored.index, "tree_size": len(rows),
                      "data_audit_path": [h.hex() for h in data_path],
                      "result_audit_path": [h.hex() for h in result_path]}}


async def _read_json(request: Request, limit: int) -> Any:
    body = await request.body()
    if len(body) > limit:
        raise ApiError(413, "too_large", f"request body larger than {limit} bytes")
    try:
        return decode(body)
    except CodecError as e:
        raise ApiError(400, "malformed", f"request body: {e}") from e


def txs_router(node: Node) -> APIRouter:
    """``/v1/txs``: submit, list by sender, read one with its inclusion proofs."""
    codes = node.chain.registry.codes
    accepted = envelope(node.chain.chain_id, node.chain.registry.types)
    router = APIRouter(prefix="/v1/txs", tags=["transactions"])

    def refused(result: Submitted) -> ApiError:
        return ApiError(codes.get(result.code, 422), result.code, result.message)

    submit_responses: dict[int | str, Any] = {
        202: json_content(SUBMITTED, "admitted to the mempool (with `wait=true`: not "
                                     "committed before `timeout`)"),
        200: json_content(TX_COMMITTED, "with `wait=true`: committed; `code` is `ok` or why "
                                        "it failed in its block"),
        **error_responses(*sorted(set(codes.values())), codes=codes),
    }

    @router.post("", status_code=202, responses=submit_responses,
                 openapi_extra={**tx_body(accepted), "x-refusal-codes": dict(codes)},
                 summary="Submit one signed transaction")
    async def submit(
        request: Request,
        wait: Annotated[bool, Query(description="answer once committed")] = False,
        timeout: Annotated[float, Query(description="seconds `wait` waits (0 to 120)")] = 30.0,
        proven: Annotated[bool, Query(description="with `wait=true`: also wait for the "
                                                  "signed header that proves the state "
                                                  "after the block")] = True,
    ) -> Any:
        """Admit a transaction to the mempool and return its id. With ``wait=true``, answer
        once it is committed (its height and result) and, unless ``proven=false``, a signed
        header proves the state after its block (so that a proven read made next sees it),
        or 202 if ``timeout`` passes before it is committed.
        A refusal carries one of the codes in ``x-refusal-codes``, with its status."""
        result = await node.submit_async(await _read_json(request, MAX_TX_BYTES), checked=True)
        if not result.accepted or result.tx_id is None:
            raise refused(result)
        if wait:
            seconds = min(max(timeout, 0.0), 120.0) if not math.isnan(timeout) else 0.0
            deadline = asyncio.get_running_loop().time() + seconds
            stored = await node.wait_committed(result.tx_id, seconds)
            if stored is not None:
                if proven:
                    await _wait_proven(node, stored.height, deadline)
                return JSONResponse({**stored_tx_dict(stored), "status": "committed"})
        return JSONResponse({"tx_id": result.tx_id.hex(), "status": "pending"},
                            status_code=202)

    @router.post("/batch",
                 responses={200: json_content(SUBMIT_BATCH, "a result per item, in order"),
                            **error_responses(413)},
                 openapi_extra={**tx_body({
                     "type": "array", "maxItems": MAX_BATCH,
                     "items": {"description": "a signed transaction, as `POST /v1/txs` takes "
                                              "it; an item that is not one is refused on "
                                              "its own (`malformed`)",
                               "anyOf": [accepted, ref("CanonicalValue")]}}),
                                "x-refusal-codes": dict(codes)},
                 summary="Submit many signed transactions at once")
    async def submit_batch(request: Request) -> Any:
        """Each item is checked on its own; the answer lists a result per item, in order,
        with one of the codes in ``x-refusal-codes`` for each item refused."""
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

    @router.get("", responses={200: json_content(TX_LIST, "newest first"),
                               **error_responses()},
                summary="A sender's committed transactions, newest first")
    async def list_txs(
        sender: Annotated[str, Query(pattern=HEX32_PATTERN, description="the sender's key")],
        before: Annotated[str | None, Query(
            pattern=CURSOR_PATTERN,
            description="`<height>:<index>`: only transactions before this position (the "
                        "previous page's `next`)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    ) -> Any:
        """Each item is ``{"tx_id", "height", "index", "type", "nonce", "code",
        "message"}``; ``GET /v1/txs/{tx_id}`` gives one with its proofs. ``next`` is the
        ``before`` of the next page, or null when this page is the last."""
        position: tuple[int, int] | None = None
        if before is not None:
            height, index = (int(part) for part in before.split(":"))
            position = (min(height, node.chain.height + 1), index)
        rows = node.store.txs_by_sender(bytes.fromhex(sender), position, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        items = []
        for row in rows:
            envelope = decode(row.raw)
            items.append({"tx_id": row.tx_id.hex(), "height": row.height, "index": row.index,
                          "type": envelope["type"], "nonce": envelope["nonce"],
                          "code": row.code, "message": row.message})
        last = rows[-1] if rows and more else None
        return {"txs": items, "next": None if last is None else f"{last.height}:{last.index}"}

    @router.get("/{tx_id}", responses={200: json_content(TX, "the transaction, proven"),
                                       **error_responses(404, 503)},
                summary="A transaction with its inclusion proof and the header that commits it")
    async def tx(tx_id: Annotated[str, Path(pattern=HEX32_PATTERN)]) -> Any:
        """The envelope, its result, its block's header, the engine's signed headers of its
        block and of the next, and the RFC 9162 inclusion proofs of its bytes (the block's
        ``data_hash``) and of its result (the next header's ``last_results_hash``)."""
        stored = node.store.get_tx(bytes.fromhex(tx_id))
        if stored is None:
            raise ApiError(404, "not_found", f"no committed transaction {tx_id}")
        return await _tx_answer(node, stored, node.store.get_block_txs(stored.height))

    return router
