"""Transactions, blocks and commit certificates (the ledger layer).

Error tree::

    LedgerError
    ├── MalformedError     fields that can never be valid
    └── IntegrityError     a hash, root, link or signature that does not check out
"""

from medledger.ledger.block import (
    ZERO_HASH,
    Block,
    Event,
    Header,
    TxResult,
    encode_events,
    results_root,
    tx_root,
)
from medledger.ledger.commit import Certificate, CommitSig, commit_sign_bytes
from medledger.ledger.errors import IntegrityError, LedgerError, MalformedError
from medledger.ledger.tx import CHAIN_ID, MAX_TX_BYTES, Transaction, tx_sign_bytes
from medledger.ledger.validators import Validator, ValidatorSet
from medledger.ledger.vote import (
    PRECOMMIT,
    PREVOTE,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    proposal_sign_bytes,
    vote_sign_bytes,
)

__all__ = [
    "CHAIN_ID", "MAX_TX_BYTES", "PRECOMMIT", "PREVOTE", "ZERO_HASH", "Block", "Certificate",
    "CommitSig", "DuplicateVoteEvidence", "Event", "Header", "IntegrityError", "LedgerError",
    "MalformedError", "Proposal", "Transaction", "TxResult", "Validator", "ValidatorSet", "Vote",
    "commit_sign_bytes", "encode_events", "proposal_sign_bytes", "results_root", "tx_root", "tx_sign_bytes",
    "vote_sign_bytes",
]
