"""Stores: the Store interface and its SQLite implementation."""

from medledger.store.base import (
    BlockRecord,
    EventQuery,
    Restoration,
    Store,
    StoreBase,
    StoredBlock,
    StoredEvent,
    StoredTx,
    StoreError,
    StoreMismatch,
)
from medledger.store.sqlite import SQLiteStore

__all__ = [
    "BlockRecord", "EventQuery", "Restoration", "SQLiteStore", "Store", "StoreBase",
    "StoreError", "StoreMismatch", "StoredBlock", "StoredEvent", "StoredTx",
]
