"""Blocks: the recent ones, newest first, one with the signed headers that prove it, and
one proven by the log of blocks under a recent header (``/v1/blocks/{height}/proof``, see
:mod:`medledger.client.history`).

A node that started from a state snapshot holds no block below its base: the list ends
there, and a block below it is answered 404 ``pruned``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from medledger.api.errors import ApiError, error_responses
from medledger.api.host import NodeHost
from medledger.api.schemas import BLOCK, BLOCK_LIST, BLOCK_PROOF, json_content
from medledger.api.txs import ENGINE_HEADER_WAIT, MAX_HEIGHT, MAX_PAGE, certified
from medledger.codec import decode
from medledger.ledger.engine import HISTORY_KEY
from medledger.node import Node
from medledger.node.history import BlockLog, LogUnavailable

__all__ = ["blocks_router"]


def _first_height(node: Node) -> int:
    """The lowest height whose block the node holds: 1, or the base of a snapshot."""
    base = node.store.base()
    return 1 if base is None else base.height


def blocks_router(node: Node, host: NodeHost) -> APIRouter:
    """``/v1/blocks``: a page of recent blocks, one block in full, one block's proof by the
    log of blocks."""
    router = APIRouter(prefix="/v1/blocks", tags=["blocks"])
    block_log = BlockLog(node.store)

    @router.get("", responses={200: json_content(BLOCK_LIST, "newest first"),
                               **error_responses()},
                summary="Recent blocks, newest first")
    async def list_blocks(
        before: Annotated[int | None, Query(
            ge=1, le=MAX_HEIGHT,
            description="only blocks below this height (the previous page's `next`)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    ) -> Any:
        """Each item is ``{"height", "hash", "time", "tx_count", "proposer"}``. ``next``
        is the ``before`` of the next page, or null when this page reaches block 1 (or the
        first block of a node that started from a snapshot)."""
        top = None if before is None or before > node.chain.height else before
        stored = node.store.list_blocks(top, limit)
        items = []
        for block in stored:
            header = decode(block.header)
            items.append({"height": block.height, "hash": block.block_hash.hex(),
                          "time": header["time"], "tx_count": header["tx_count"],
                          "proposer": header["proposer"]})
        more = len(stored) == limit and stored[-1].height > _first_height(node)
        return {"blocks": items, "next": stored[-1].height if more else None}

    @router.get("/{height}", responses={200: json_content(BLOCK, "the block, proven"),
                                        **error_responses(404, 503)},
                summary="A block with the signed headers that prove it")
    async def block(height: Annotated[int, Path(ge=1, description="from 1")]) -> Any:
        """The app-level header, CometBFT's signed header that proves the state after it
        (``light``), the envelopes in block order and their results."""
        first = _first_height(node)
        if height < first:
            raise ApiError(404, "pruned", f"pruned: this node started from a snapshot at "
                                          f"height {first} and keeps no block below it")
        out = await certified(node, height)
        rows = node.store.get_block_txs(height)
        out["txs"] = [decode(r.raw) for r in rows]
        out["results"] = [{"code": r.code, "message": r.message} for r in rows]
        return out

    @router.get("/{height}/proof",
                responses={200: json_content(BLOCK_PROOF, "the block, proven by the log"),
                           **error_responses(404, 503)},
                summary="A block proven by the log of blocks under a recent header")
    async def block_proof(height: Annotated[int, Path(ge=1, le=MAX_HEIGHT,
                                                      description="from 1")]) -> Any:
        """Block ``height``'s entry in the log of blocks (its CometBFT block hash and
        results hash) with its audit path, the log's root and size in state with their
        proof under a recent signed header, and CometBFT's header of the block. A block
        that carried no transaction and changed nothing is not in the log: 404
        ``not_in_log``."""
        log_answer = await asyncio.to_thread(host.answer, HISTORY_KEY, prove=True)
        recorded = log_answer["value"]
        if recorded is None:
            raise ApiError(404, "not_in_log", "the log of blocks is empty")
        try:
            entry = await asyncio.to_thread(block_log.entry, height, recorded["size"])
        except LogUnavailable as e:
            raise ApiError(404, "not_in_log", str(e)) from e
        light = await node.light_headers(height, ENGINE_HEADER_WAIT)
        if not light:
            raise ApiError(503, "busy", f"the engine's header of block {height} is not at "
                                        "hand; ask again in a moment")
        return {"height": height, "entry": entry.to_dict(),
                "engine_header": light[0]["header"], "log": log_answer}

    return router
