"""The anchor app's query, served under ``/v1/anchor``: ``GET /{digest}``, the anchor of a
32-byte digest (``{"label", "sender", "height", "time"}``).

With ``?prove=true`` the answer carries the sparse Merkle proof of the anchor, or of its
absence, and the certified header of the tip (``medledger.client.verify_state_answer``
checks it): proof that the digest was on the ledger by that block's BFT time, or that it is
not. Without ``prove``, a digest never anchored is a 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from medledger.apps.anchor import anchor_key
from medledger.apps.host import QueryHost
from medledger.apps.queries import (
    HEX32,
    HEX32_PATTERN,
    STR,
    Prove,
    answer_response,
    entry,
    not_found,
    obj,
)

__all__ = ["router"]

ANCHOR = obj(label=STR, sender=HEX32, height={"type": "integer", "minimum": 1},
             time={"type": "integer", "minimum": 0})


def router(host: QueryHost) -> APIRouter:
    """The anchor app's routes over ``host``."""
    api = APIRouter()

    @api.get("/{digest}", summary="The anchor of a digest",
             responses={200: answer_response(ANCHOR, "the anchor (null: never anchored, "
                                                     "proven)"),
                        **not_found("never anchored")})
    async def anchor(
        digest: Annotated[str, Path(pattern=HEX32_PATTERN, description="64 hex")],
        prove: Prove = False,
    ) -> Any:
        """Who anchored the digest, under which label, in which block and at what BFT
        time: state key ``anchor/<digest>``."""
        return entry(host, anchor_key(bytes.fromhex(digest)), prove,
                     f"digest {digest} is not anchored")

    return api
