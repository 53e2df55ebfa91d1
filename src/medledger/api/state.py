"""State: one entry at the tip with its membership or non-membership proof."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from medledger.api.errors import error_responses
from medledger.api.host import NodeHost
from medledger.api.schemas import STATE_ANSWER, json_content, ref

__all__ = ["KEY_PATTERN", "state_router"]

KEY_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
"""A state key: any characters but control characters (C0, DEL, C1)."""


def state_router(host: NodeHost) -> APIRouter:
    """``/v1/state/{key}``."""
    router = APIRouter(prefix="/v1/state", tags=["state"])

    @router.get("/{key:path}",
                responses={200: json_content(
                    {"anyOf": [STATE_ANSWER, ref("Answer")]},
                    "the entry or its absence, proven (with `prove=false`: the tip's value)"),
                           **error_responses(404, 503)},
                summary="A state entry with its membership or non-membership proof")
    async def state(key: Annotated[str, Path(
            min_length=1, max_length=512, pattern=KEY_PATTERN,
            description="the key; it may hold `/` (`anchor/<hex>`, `identity/org/<id>`)")],
        prove: Annotated[bool, Query(description="with the proof and the signed headers "
                                                 "(false: the tip's value, the node's word)")
                         ] = True,
    ) -> Any:
        """The value (``null`` when absent) at the last height a signed header proves (the
        tip, or one below while the next block is not final), the sparse Merkle proof of the key
        against the state root of the last height a signed header proves, that block's
        header and CometBFT's signed header that carries the root as its app hash
        (``medledger.client.verify_state_answer`` checks it). 404 before the first block.
        With ``prove=false``, ``{"key", "value", "height"}`` at the tip, proven by nothing:
        what a client that trusts this node reads, such as its next nonce."""
        return host.answer(key, prove=prove)

    return router
