"""The anchor app: anchor a 32-byte digest under a label, so that anyone can later prove
that the digest was on the ledger at a given BFT time.

Transaction ``ledger.anchor``, body :class:`AnchorBody` (``{"digest": "<64 hex>", "label":
"..."}``), sent by any active registered key. State: :func:`anchor_key` ``anchor/<digest>``
-> ``{"label", "sender", "height", "time"}``. A digest is anchored once (code ``exists``).
Event: ``anchor.anchored {digest, sender}`` (the label is in state, under the digest).

This module is the worked example of docs/apps.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from medledger.apps import identity
from medledger.apps.base import App, BlockContext, DemoTx, Event, Rejected, TxType
from medledger.apps.body import Hex, Text
from medledger.ledger import Transaction
from medledger.state import StateView

__all__ = ["TYPE", "AnchorApp", "AnchorBody", "anchor_key", "anchored"]

TYPE = "ledger.anchor"
PREFIX = "anchor/"
DEMO_TEXT = b"medledger demo"  # its SHA-256 is the demo data's anchor


def anchor_key(digest: bytes) -> str:
    """The state key of an anchored digest."""
    return f"{PREFIX}{digest.hex()}"


def anchored(view: StateView, digest: bytes) -> dict[str, Any] | None:
    """The anchor of ``digest`` (``label``, ``sender``, ``height``, ``time``), or None."""
    return view.get(anchor_key(digest))  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class AnchorBody:
    digest: Annotated[str, Hex(32)]
    label: Annotated[str, Text(200)]


def _reads(tx: Transaction, body: AnchorBody) -> tuple[str, ...]:
    return (PREFIX + body.digest,)


def _check(view: StateView, tx: Transaction, body: AnchorBody, ctx: BlockContext) -> None:
    if view.get_raw(PREFIX + body.digest) is not None:
        raise Rejected("exists", f"digest {body.digest} is already anchored")


def _apply(view: StateView, tx: Transaction, body: AnchorBody,
           ctx: BlockContext) -> tuple[Event, ...]:
    sender = tx.sender.hex()
    view.put(PREFIX + body.digest, {
        "height": ctx.height, "label": body.label, "sender": sender, "time": ctx.time,
    })
    return (Event("anchor.anchored", (("digest", body.digest), ("sender", sender))),)


class AnchorApp(App):
    """Digests anchored under a label, provable with their BFT time."""

    name: ClassVar[str] = "anchor"
    prefixes: ClassVar[tuple[str, ...]] = (PREFIX,)
    summary: ClassVar[str] = "Anchor digests on the chain."

    def transactions(self) -> Sequence[TxType[Any]]:
        return (TxType(TYPE, AnchorBody, identity.active_sender, _check, _apply, _reads,
                       "Anchor a digest under a label"),)

    def sample_tx(self, index: int) -> tuple[str, dict[str, Any]]:
        digest = index.to_bytes(32, "big").hex()
        return TYPE, {"digest": digest, "label": f"bench {index}"}

    def demo(self, orgs: Sequence[str]) -> Sequence[DemoTx]:
        """The SHA-256 of ``medledger demo``, anchored by the first organisation's admin."""
        if not orgs:
            return ()
        digest = hashlib.sha256(DEMO_TEXT).hexdigest()
        return (DemoTx(orgs[0], TYPE, {"digest": digest, "label": "demo document"}),)
