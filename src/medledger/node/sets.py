"""What a node serves so that a light client can believe a block and follow validator-set
changes.

A light client trusts one set (the genesis set) and believes a block when CometBFT's signed
headers carry it (see :mod:`medledger.node.headers`). When governance changes the set, the
client learns the new set from a proof against a state root it already believes. CometBFT
applies a change two heights after the block that returned it, so the set of height ``c``
is the value of ``validators/pending/<c>`` in the state committed at ``c - 2`` (every set
scheduled below ``c`` was promoted by then), or, when that key is absent there, the set of
``c - 1``; CometBFT's header ``c - 1`` signs that state (its app hash), and the set of
``c - 1`` that signed it is known to the client already, so each change is proven by the set
before it.

- :func:`certified`: block ``h``'s app-level header with the signed headers that prove it.
- :func:`set_changes`: the heights at which a set other than the genesis set came into
  force (the append-only keys ``validators/at/<h>``), ascending.
- :func:`set_proof`: for a height ``c > 1``, the sparse Merkle proof of
  ``validators/pending/<c>`` (value or absence) in the state of ``c - 2``, with the signed
  headers that prove that state.
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


def certified(chain: Chain, height: int, *, fetch: bool = False) -> dict[str, Any] | None:
    """Block ``height``'s header, with CometBFT's signed headers that prove the state after
    it under ``"light"`` (None when there is no such block, or when the headers are not kept
    and ``fetch`` is False, or not final yet)."""
    stored = chain.store.get_block(height) if 1 <= height <= chain.height else None
    if stored is None or chain.prover is None:
        return None
    headers = chain.prover.light(height, fetch=fetch)
    if headers is None:
        return None
    return {"height": height, "block_hash": stored.block_hash.hex(),
            "header": decode(stored.header), "light": headers}


def set_proof(chain: Chain, height: int, *, fetch: bool = False) -> dict[str, Any] | None:
    """The proof of the set of ``height`` (3 .. tip + 1) from the state of ``height - 2``:
    ``{"height", "key", "value" (the set's list, None when unchanged), "proof", "header",
    "light"}`` (the header of ``height - 2`` and the signed headers proving its state;
    ``fetch`` as for :func:`certified`). None outside that range: the sets of heights 1
    and 2 are the genesis set."""
    if not 3 <= height <= chain.height + 1:
        return None
    at = height - 2
    stored = chain.store.get_block(at) if at >= 1 else None
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
    answer = certified(chain, at, fetch=fetch)
    if answer is None:
        return None
    return {**answer, "height": height, "key": key,
            "value": None if raw is None else decode(raw),
            "proof": proof.proof.to_dict()}
