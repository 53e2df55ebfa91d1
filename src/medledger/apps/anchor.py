"""``ledger.anchor``: anchor a 32-byte digest under a label, so anyone can later prove that
the digest was on the ledger at a given BFT time.

Body: ``{"digest": "<64 hex>", "label": "..."}``. State: ``anchor/<digest>`` ->
``{"label", "sender", "height", "time"}``. A digest is anchored once (code ``exists``).
"""

from __future__ import annotations

from medledger.apps.base import AppRegistry, BlockContext, Handler, Rejected
from medledger.apps.fields import body_keys, hex_field, str_field
from medledger.ledger import Transaction
from medledger.state import StateView

__all__ = ["TYPE", "anchor_key", "register"]

TYPE = "ledger.anchor"


def anchor_key(digest: bytes) -> str:
    return f"anchor/{digest.hex()}"


def _stateless(tx: Transaction) -> None:
    body_keys(tx.body, {"digest", "label"})
    hex_field(tx.body, "digest", 32)
    str_field(tx.body, "label", 200)


def _reads(tx: Transaction) -> tuple[str, ...]:
    return (f"anchor/{tx.body['digest']}",)


def _stateful(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    digest = tx.body["digest"]
    if view.get(f"anchor/{digest}") is not None:
        raise Rejected("exists", f"digest {digest} is already anchored")


def _apply(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    view.put(f"anchor/{tx.body['digest']}", {
        "height": ctx.height,
        "label": tx.body["label"],
        "sender": tx.sender.hex(),
        "time": ctx.time,
    })


def register(registry: AppRegistry) -> None:
    registry.register(TYPE, Handler(_stateless, _stateful, _apply, _reads))
