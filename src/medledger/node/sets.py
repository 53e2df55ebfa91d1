"""What a node serves so that a light client can follow validator-set changes.

A light client trusts one set (the genesis set) and believes a header only when a
certificate of more than 2/3 of that header's set signs it. When governance changes the set,
the client learns the new set from a proof against a state root it already believes: the
set of height ``c`` is the value of ``validators/pending/<c>`` in the state committed at
``c - 1`` (every set scheduled below ``c`` was promoted by then), or, when that key is
absent there, the set of ``c - 1``. Header ``c - 1`` is certified by the set of ``c - 1``,
which the client knows already, so each change is proven by the set before it.

- :func:`set_changes`: the heights at which a set other than the genesis set came into
  force (the append-only keys ``validators/at/<h>``), ascending.
- :func:`set_proof`: for a height ``c > 1``, header ``c - 1`` with its certificate, and the
  sparse Merkle proof of ``validators/pending/<c>`` (value or absence) at its state root.
"""

from __future__ import annotations

from typing import Any

from medledger.codec import decode
from medledger.ledger import Header
from medledger.merkle.sparse import NodeRef
from medledger.node.chain import Chain

__all__ = ["SET_PREFIX", "set_changes", "set_proof"]

SET_PREFIX = "validators/at/"


def set_changes(chain: Chain) -> list[int]:
    """The heights (> 1) from which a set scheduled by governance was in force, ascending."""
    return [int(key[len(SET_PREFIX):]) for key, _ in chain.store.iter_prefix(SET_PREFIX)]


def certified(chain: Chain, height: int) -> dict[str, Any] | None:
    """Block ``height``'s header and certificate as a client checks them (None if absent)."""
    stored = chain.store.get_block(height) if 1 <= height <= chain.height else None
    if stored is None:
        return None
    return {"height": height, "block_hash": stored.block_hash.hex(),
            "header": decode(stored.header), "certificate": decode(stored.certificate),
            "last_commit": None if stored.last_commit is None else decode(stored.last_commit)}


def set_proof(chain: Chain, height: int) -> dict[str, Any] | None:
    """The proof of the set of ``height`` (2 .. tip + 1) from the state of ``height - 1``:
    ``{"height", "key", "value" (the set's list, None when unchanged), "proof",
    "header", "certificate"}`` (the last two of ``height - 1``). None outside that range."""
    if not 2 <= height <= chain.height + 1:
        return None
    stored = chain.store.get_block(height - 1)
    if stored is None:
        return None
    header = Header.from_dict(decode(stored.header))
    root = NodeRef(stored.state_root_id, header.state_root)
    sets = chain.registry.validators
    key = sets.pending_key(height)
    scheduled = chain.tree.get_hash(root, key)
    # a pending set leaves state when it comes into force; its value stays, append-only,
    # under validators/at/<height>
    raw = None if scheduled is None else chain.store.get_value(sets.set_key(height))
    if scheduled is not None and raw is None:
        raise LookupError(f"the set scheduled for height {height} is missing from state")
    proof = chain.tree.prove(root, key, raw)
    answer = certified(chain, height - 1)
    assert answer is not None
    return {**answer, "height": height, "key": key,
            "value": None if raw is None else decode(raw),
            "proof": proof.proof.to_dict()}
