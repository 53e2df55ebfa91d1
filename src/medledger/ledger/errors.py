"""Errors of the ledger layer.

    LedgerError                  a ledger object is malformed or does not check out
    ├── MalformedError           bytes or fields that can never be valid (field, reason)
    └── IntegrityError           a stored or received object fails a hash, root or signature
                                 check (height, what, expected, got)
"""

from __future__ import annotations

__all__ = ["IntegrityError", "LedgerError", "MalformedError"]


class LedgerError(Exception):
    """Base of the ledger layer's errors."""


class MalformedError(LedgerError):
    """An object's fields can never be valid; ``field`` names the first bad one."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class IntegrityError(LedgerError):
    """A hash, root, link or signature does not match what commits to it."""

    def __init__(self, height: int, what: str, expected: str = "", got: str = "") -> None:
        detail = f" (expected {expected}, got {got})" if expected or got else ""
        super().__init__(f"height {height}: {what}{detail}")
        self.height = height
        self.what = what
        self.expected = expected
        self.got = got
