"""Stores: the Store interface and its SQLite implementation."""

from medledger.store.base import (
    BlockRecord,
    EventQuery,
    Store,
    StoredBlock,
    StoredEvent,
    StoredTx,
    StoreError,
    StoreMismatch,
)
from medledger.store.sqlite import SQLiteStore

__all__ = [
    "BlockRecord", "EventQuery", "SQLiteStore", "Store", "StoreError", "StoreMismatch",
    "StoredBlock", "StoredEvent", "StoredTx",
]
