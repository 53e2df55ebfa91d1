"""medledger: a permissioned, Byzantine-fault-tolerant ledger for a healthcare consortium.

Layers (imports point downward only; see docs/architecture.md):

    cli          command line
    api, client  REST API; SDK that checks proofs
    node         config, genesis, the chain, the ABCI application beside CometBFT
    apps         identity, anchor, governance (the contracts)
    state        authenticated key-value state
    ledger,store transactions, blocks, results; SQLite store
    merkle,crypto RFC 9162 log tree, sparse Merkle tree; Ed25519, HPKE, keystore
    codec        canonical bytes and domain-separated hashes
"""

__version__ = "0.1.0"
