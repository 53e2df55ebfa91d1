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


def certified(chain: Chain, height: int, *, fetch: bool = False, light: bool = True
              ) -> dict[str, Any] | None:
    """Block ``height``'s header and certificate as a client checks them (None if absent).

    On CometBFT, ``"light"`` holds the engine's signed headers that prove the state after
    ``height`` (see :mod:`medledger.node.headers`); ``fetch``: ask the engine for those not
    kept (blocking), else None when they are not kept."""
    stored = chain.store.get_block(height) if 1 <= height <= chain.height else None
    if stored is None:
        return None
    answer = {"height": height, "block_hash": stored.block_hash.hex(),
              "header": decode(stored.header), "certificate": decode(stored.certificate),
              "last_commit": None if stored.last_commit is None else decode(stored.last_commit)}
    if chain.prover is not None and light:  # on CometBFT: its signed headers prove it
        headers = chain.prover.light(height, fetch=fetch)
        if headers is None:
            return None
        answer["light"] = headers
    return answer


def set_proof(chain: Chain, height: int, *, fetch: bool = False) -> dict[str, Any] | None:
    """The proof of the set of ``height`` (2 .. tip + 1) from the state of ``height - 1``:
    ``{"height", "key", "value" (the set's list, None when unchanged), "proof",
    "header", "certificate"}`` (the last two of ``height - 1``). None outside that range.

    On CometBFT, the set of ``height`` is known from the state of ``height - 2`` (the
    engine applies a change two heights after the block that returns it), which the
    engine's header ``height - 1`` signs: the proof is against that state, and
    ``"light"`` carries header ``height - 1`` (``fetch`` as for :func:`certified`)."""
    if not 2 <= height <= chain.height + 1:
        return None
    at = height - 1 if chain.prover is None else height - 2
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
