"""Authenticated key-value state: views for apps, and the sparse Merkle tree over values."""

from medledger.state.tree import StateProof, StateTree, key_hash, value_hash, verify_state_proof
from medledger.state.view import Overlay, PrefixViolation, ReadOnly, StateView

__all__ = [
    "Overlay", "PrefixViolation", "ReadOnly", "StateProof", "StateTree", "StateView", "key_hash", "value_hash",
    "verify_state_proof",
]
