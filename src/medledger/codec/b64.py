"""Base64url without padding (RFC 4648, section 5), the one text form of a wrapped key.

A byte string has exactly one form here: the alphabet ``A-Z a-z 0-9 - _``, no ``=``, and the
unused low bits of the last character zero. Anything else is refused, so that two
different strings never carry the same bytes in a signed body.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["b64url", "from_b64url", "is_b64url"]

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64url(data: bytes) -> str:
    """``data`` in base64url, unpadded."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes:
    """The bytes of ``text``; ValueError unless it is the one base64url form of them."""
    if type(text) is not str or len(text) % 4 == 1 or not _ALPHABET.fullmatch(text):
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as e:
        raise ValueError("not unpadded base64url") from e
    if b64url(data) != text:
        raise ValueError("not the canonical base64url of its bytes (unused bits set)")
    return data


def is_b64url(text: object) -> bool:
    """True when ``text`` is the one base64url form of some bytes."""
    try:
        from_b64url(text)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True
