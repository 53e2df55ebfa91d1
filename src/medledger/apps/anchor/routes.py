"""The anchor app's query, served under ``/v1/anchor``: ``GET /{digest}``, the anchor of a
32-byte digest (``{"label", "sender", "height", "time"}``).

With ``?prove=true`` the answer carries the sparse Merkle proof of the anchor, or of its
absence, and the certified header of the tip (``medledger.client.verify_state_answer``
checks it): proof that the digest was on the ledger by that block's BFT time, or that it is
not. Without ``prove``, a digest never anchored is a 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from medledger.apps.anchor import anchor_key
from medledger.apps.host import QueryError, QueryHost

__all__ = ["router"]

DIGEST_PATTERN = "^[0-9a-f]{64}$"

ANCHOR = {"type": "object", "required": ["label", "sender", "height", "time"],
          "properties": {"label": {"type": "string"},
                         "sender": {"type": "string", "pattern": DIGEST_PATTERN},
                         "height": {"type": "integer", "minimum": 1},
                         "time": {"type": "integer", "minimum": 0}}}
_ANSWER = {"allOf": [{"$ref": "#/components/schemas/Answer"},
                     {"properties": {"value": {"anyOf": [ANCHOR, {"type": "null"}]}}}]}
_ERROR = {"$ref": "#/components/schemas/Error"}


def router(host: QueryHost) -> APIRouter:
    """The anchor app's routes over ``host``."""
    api = APIRouter()

    @api.get("/{digest}", summary="The anchor of a digest",
             responses={
                 200: {"description": "the anchor (null: never anchored, proven)",
                       "content": {"application/json": {"schema": _ANSWER}}},
                 404: {"description": "not_found: never anchored (without `prove`), or no "
                                      "block committed yet",
                       "content": {"application/json": {"schema": _ERROR}}}})
    async def anchor(
        digest: Annotated[str, Path(pattern=DIGEST_PATTERN, description="64 hex")],
        prove: Annotated[bool, Query(description="answer with the proof and the certified "
                                                 "header")] = False,
    ) -> Any:
        """Who anchored the digest, under which label, in which block and at what BFT
        time: state key ``anchor/<digest>``."""
        answer = host.answer(anchor_key(bytes.fromhex(digest)), prove=prove)
        if not prove and answer["value"] is None:
            raise QueryError(404, "not_found", f"digest {digest} is not anchored")
        return answer

    return api
