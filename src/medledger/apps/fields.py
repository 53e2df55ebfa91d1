"""Body field checks shared by apps: each failure is a ``Rejected("malformed", ...)``."""

from __future__ import annotations

import re
from typing import Any

from medledger.apps.base import Rejected

__all__ = ["body_keys", "hex_field", "str_field"]

_HEX = re.compile(r"[0-9a-f]*")


def body_keys(body: dict[str, Any], required: set[str], optional: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Refuse a body that lacks a required field or has an unknown one."""
    missing = required - body.keys()
    if missing:
        raise Rejected("malformed", f"body lacks {', '.join(sorted(missing))}")
    extra = body.keys() - required - optional
    if extra:
        raise Rejected("malformed", f"body has unknown fields {', '.join(sorted(extra))}")


def hex_field(body: dict[str, Any], name: str, size: int | None = None, max_size: int = 4096) -> bytes:
    """A lower-case hex field of ``size`` bytes (or up to ``max_size``)."""
    text = body.get(name)
    if type(text) is not str or len(text) % 2 or not _HEX.fullmatch(text):
        raise Rejected("malformed", f"{name} must be lower-case hex")
    raw = bytes.fromhex(text)
    if size is not None and len(raw) != size:
        raise Rejected("malformed", f"{name} must be {size} bytes")
    if len(raw) > max_size:
        raise Rejected("malformed", f"{name} must be at most {max_size} bytes")
    return raw


def str_field(body: dict[str, Any], name: str, max_len: int = 128, min_len: int = 1) -> str:
    """A printable string field of ``min_len``..``max_len`` characters."""
    text = body.get(name)
    if type(text) is not str or not min_len <= len(text) <= max_len or not text.isprintable():
        raise Rejected("malformed", f"{name} must be {min_len}-{max_len} printable characters")
    return text
