"""Stores: the Store interface and its SQLite implementation."""

from medledger.store.base import (
    BlockRecord,
    Store,
    StoredBlock,
    StoredTx,
    StoreError,
    StoreMismatch,
)
from medledger.store.sqlite import SQLiteStore

__all__ = [
    "BlockRecord", "SQLiteStore", "Store", "StoreError", "StoreMismatch", "StoredBlock",
    "StoredTx",
]
