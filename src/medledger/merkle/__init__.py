"""Merkle trees: the RFC 9162 log tree (:mod:`.log`) and the sparse state tree (:mod:`.sparse`).

Functions that exist in both modules (``leaf_hash``, ``node_hash``) are reached through
their module: ``merkle.log.leaf_hash``, ``merkle.sparse.leaf_hash``.
"""

from medledger.merkle import log, sparse
from medledger.merkle.log import (
    Frontier,
    LogTree,
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from medledger.merkle.sparse import (
    MemoryNodeStore,
    NodeRef,
    NodeStore,
    ProofLeaf,
    SparseMerkleError,
    SparseMerkleTree,
    SparseProof,
    TamperedNode,
    UpdateResult,
    verify_proof,
)

__all__ = [
    "Frontier",
    "LogTree",
    "MemoryNodeStore",
    "NodeRef",
    "NodeStore",
    "ProofLeaf",
    "SparseMerkleError",
    "SparseMerkleTree",
    "SparseProof",
    "TamperedNode",
    "UpdateResult",
    "consistency_proof",
    "inclusion_proof",
    "log",
    "sparse",
    "verify_consistency",
    "verify_inclusion",
    "verify_proof",
]
