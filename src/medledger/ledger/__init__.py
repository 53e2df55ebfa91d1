"""Transactions, blocks, results and validator sets (the ledger layer).

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
from medledger.ledger.errors import IntegrityError, LedgerError, MalformedError
from medledger.ledger.tx import CHAIN_ID, MAX_TX_BYTES, Transaction, tx_sign_bytes
from medledger.ledger.validators import Validator, ValidatorSet

__all__ = [
    "CHAIN_ID", "MAX_TX_BYTES", "ZERO_HASH", "Block", "Event", "Header", "IntegrityError",
    "LedgerError", "MalformedError", "Transaction", "TxResult", "Validator", "ValidatorSet",
    "encode_events", "results_root", "tx_root", "tx_sign_bytes",
]
