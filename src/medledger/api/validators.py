"""The validator set (the node's word), and the proofs a light client follows its changes
with."""

from __future__ import annotations

import asyncio

from typing import Annotated, Any

from fastapi import APIRouter, Path

from medledger.api.errors import ApiError, error_responses
from medledger.api.schemas import SET_CHANGES, SET_PROOF, VALIDATORS, json_content
from medledger.node import Node
from medledger.node.sets import set_changes, set_proof

__all__ = ["validators_router"]


def validators_router(node: Node) -> APIRouter:
    """``/v1/validators``: the set, its changes, and the proof of the set of a height."""
    router = APIRouter(prefix="/v1/validators", tags=["validators"])

    @router.get("", responses={200: json_content(VALIDATORS, "the set of the next block"),
                               **error_responses()},
                summary="The current validator set")
    async def validators() -> Any:
        vs = node.chain.validators
        return {"validators": vs.to_list(), "hash": vs.hash().hex(),
                "total_power": vs.total_power}

    @router.get("/changes", responses={200: json_content(SET_CHANGES, "ascending"),
                                       **error_responses()},
                summary="The heights from which a set changed by governance was in force")
    async def validator_changes() -> Any:
        return {"heights": set_changes(node.chain)}

    @router.get("/proof/{height}",
                responses={200: json_content(SET_PROOF, "the set, proven"),
                           **error_responses(404, 500)},
                summary="The validator set of a height, proven from the state before it")
    async def validator_proof(height: Annotated[int, Path(ge=1)]) -> Any:
        """The proof of ``validators/pending/<height>`` in the state of ``height - 2`` (a
        change returned by a block takes effect two heights later), with header
        ``height - 2`` and the signed headers that prove its state: the set of ``height``,
        or its absence (the set of ``height - 1`` goes on). Heights 3 to the tip + 1."""
        try:
            answer = await asyncio.to_thread(set_proof, node.chain, height, fetch=True)
        except LookupError as e:  # a damaged store: `medledger verify` says more
            raise ApiError(500, "integrity", str(e)) from e
        if answer is None:
            raise ApiError(404, "not_found", f"no set proof for height {height} (heights 3 "
                                             f"to {node.chain.height + 1})")
        return answer

    return router
