"""The authenticated state: state values committed by a sparse Merkle tree.

A state key is a string such as ``identity/key/<hex>``; the tree is keyed by
``tagged_hash(STATE_KEY, key)`` and holds ``tagged_hash(STATE_VALUE, canonical value)``.
The values themselves live in the store; the tree proves them, and proves absence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medledger.codec import Tag, decode, tagged_hash
from medledger.merkle.sparse import (
    EMPTY_ROOT,
    NodeRef,
    NodeStore,
    SparseMerkleTree,
    SparseProof,
    verify_proof,
)

__all__ = ["StateProof", "StateTree", "key_hash", "value_hash", "verify_state_proof"]


def key_hash(key: str) -> bytes:
    """The sparse Merkle tree key of a state key: ``tagged_hash(STATE_KEY, key)``."""
    return tagged_hash(Tag.STATE_KEY, key.encode("utf-8"))


def value_hash(value: bytes) -> bytes:
    """What the tree holds for a value's canonical bytes: ``tagged_hash(STATE_VALUE, value)``."""
    return tagged_hash(Tag.STATE_VALUE, value)


@dataclass(frozen=True, slots=True)
class StateProof:
    """A key, its canonical value bytes (None if absent) and the tree proof."""

    key: str
    value: bytes | None
    proof: SparseProof

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": None if self.value is None else decode(self.value),
            "proof": self.proof.to_dict(),
        }


def verify_state_proof(state_root: bytes, key: str, value: bytes | None, proof: SparseProof) -> bool:
    """True when ``proof`` shows ``key`` holds ``value`` (or is absent, for None)."""
    vh = None if value is None else value_hash(value)
    return verify_proof(state_root, key_hash(key), vh, proof)


class StateTree:
    """Computes state roots and proofs over a store's tree nodes."""

    def __init__(self, nodes: NodeStore, cache_size: int = 200_000) -> None:
        self._tree = SparseMerkleTree(nodes, cache_size=cache_size)

    def update(
        self, root: NodeRef, writes: Mapping[str, bytes | None]
    ) -> tuple[NodeRef, list[tuple[int, bytes]]]:
        """Apply ``writes`` to the tree at ``root``; return the new root and the new nodes."""
        changes = {
            key_hash(k): (None if v is None else value_hash(v)) for k, v in writes.items()
        }
        result = self._tree.update(root, changes)
        return result.root, list(result.rows)

    def prove(self, root: NodeRef, key: str, value: bytes | None) -> StateProof:
        return StateProof(key, value, self._tree.prove(root, key_hash(key)))

    def get_hash(self, root: NodeRef, key: str) -> bytes | None:
        return self._tree.get(root, key_hash(key))

    def verify(self, root: NodeRef) -> int:
        """Walk the whole tree checking every node; return the number of leaves."""
        return self._tree.verify_tree(root)


EMPTY = EMPTY_ROOT
