"""State: one entry at the tip with its membership or non-membership proof."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from medledger.api.errors import error_responses
from medledger.api.host import NodeHost
from medledger.api.schemas import STATE_ANSWER, json_content

__all__ = ["KEY_PATTERN", "state_router"]

KEY_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
"""A state key: any characters but control characters (C0, DEL, C1)."""


def state_router(host: NodeHost) -> APIRouter:
    """``/v1/state/{key}``."""
    router = APIRouter(prefix="/v1/state", tags=["state"])

    @router.get("/{key:path}",
                responses={200: json_content(STATE_ANSWER, "the entry or its absence, proven"),
                           **error_responses(404, 503)},
                summary="A state entry with its membership or non-membership proof")
    async def state(key: Annotated[str, Path(
            min_length=1, max_length=512, pattern=KEY_PATTERN,
            description="the key; it may hold `/` (`anchor/<hex>`, `identity/org/<id>`)")],
    ) -> Any:
        """The value at the tip (``null`` when absent), the sparse Merkle proof of the key
        against the tip header's ``state_root``, and that header with its certificate
        (``medledger.client.verify_state_answer`` checks it). 404 before the first block."""
        return host.answer(key, prove=True)

    return router
