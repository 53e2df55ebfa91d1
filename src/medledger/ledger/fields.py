"""Small field readers shared by the ledger's ``from_dict`` functions."""

from __future__ import annotations

from typing import Any

from medledger.codec import MAX_SAFE_INT
from medledger.ledger.errors import MalformedError

__all__ = ["read_bytes", "read_int", "read_str", "require_keys"]


def require_keys(data: Any, where: str, keys: frozenset[str]) -> dict[str, Any]:
    """Return ``data`` if it is an object with exactly ``keys``; else raise MalformedError."""
    if type(data) is not dict:
        raise MalformedError(where, "must be a JSON object")
    if data.keys() != keys:
        missing = sorted(keys - data.keys())
        extra = sorted(data.keys() - keys)
        raise MalformedError(where, f"missing fields {missing}, unknown fields {extra}")
    return data


def read_bytes(data: dict[str, Any], name: str, size: int) -> bytes:
    """Read a lower-case hex field of exactly ``size`` bytes."""
    text = data[name]
    if type(text) is not str or len(text) != 2 * size:
        raise MalformedError(name, f"must be {2 * size} hex characters")
    try:
        raw = bytes.fromhex(text)
    except ValueError as e:
        raise MalformedError(name, "is not hex") from e
    if raw.hex() != text:
        raise MalformedError(name, "hex must be lower case")
    return raw


def read_int(data: dict[str, Any], name: str, low: int = 0, high: int = MAX_SAFE_INT) -> int:
    """Read an integer field within ``[low, high]``."""
    value = data[name]
    if type(value) is not int or not low <= value <= high:
        raise MalformedError(name, f"must be an integer in [{low}, {high}]")
    return value


def read_str(data: dict[str, Any], name: str, max_len: int = 256) -> str:
    """Read a string field of at most ``max_len`` characters."""
    value = data[name]
    if type(value) is not str or len(value) > max_len:
        raise MalformedError(name, f"must be a string of at most {max_len} characters")
    return value
