"""Blocks: the recent ones, newest first, and one with its certificate.

A node that started from a state snapshot holds no block below its base: the list ends
there, and a block below it is answered 404 ``pruned``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from medledger.api.errors import ApiError, error_responses
from medledger.api.schemas import BLOCK, BLOCK_LIST, json_content
from medledger.api.txs import MAX_HEIGHT, MAX_PAGE, certified
from medledger.codec import decode
from medledger.node import Node

__all__ = ["blocks_router"]


def _first_height(node: Node) -> int:
    """The lowest height whose block the node holds: 1, or the base of a snapshot."""
    base = node.store.base()
    return 1 if base is None else base.height


def blocks_router(node: Node) -> APIRouter:
    """``/v1/blocks``: a page of recent blocks, and one block in full."""
    router = APIRouter(prefix="/v1/blocks", tags=["blocks"])

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

    @router.get("/{height}", responses={200: json_content(BLOCK, "the block, certified"),
                                        **error_responses(404, 503)},
                summary="A block with its certificate")
    async def block(height: Annotated[int, Path(ge=1, description="from 1")]) -> Any:
        """The header, this block's certificate, the previous block's (``last_commit``),
        the envelopes in block order and their results."""
        first = _first_height(node)
        if height < first:
            raise ApiError(404, "pruned", f"pruned: this node started from a snapshot at "
                                          f"height {first} and keeps no block below it")
        out = await certified(node, height)
        rows = node.store.get_block_txs(height)
        out["txs"] = [decode(r.raw) for r in rows]
        out["results"] = [{"code": r.code, "message": r.message} for r in rows]
        return out

    return router
