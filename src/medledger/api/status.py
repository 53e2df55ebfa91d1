"""The node's status and its genesis (the node's word, without proofs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from medledger.api.errors import error_responses
from medledger.api.schemas import GENESIS, STATUS, json_content
from medledger.node import Node

__all__ = ["status_router"]


def status_router(node: Node) -> APIRouter:
    """``/v1/status`` and ``/v1/genesis``."""
    router = APIRouter(prefix="/v1", tags=["node"])

    @router.get("/status", responses={200: json_content(STATUS, "the node's tip"),
                                      **error_responses()},
                summary="Chain id, height, latest block hash, state root")
    async def status() -> Any:
        return node.status()

    @router.get("/genesis", responses={200: json_content(GENESIS, "the genesis document"),
                                       **error_responses()},
                summary="The genesis document")
    async def genesis() -> Any:
        """The node's own word: use the genesis file you hold as a trust root."""
        return node.chain.genesis.to_dict()

    return router
