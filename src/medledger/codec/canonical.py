"""Canonical JSON per RFC 8785 (JCS), restricted to the value types medledger signs.

Allowed values: ``dict`` with ASCII ``str`` keys, ``list``/``tuple``, ``str``, ``bool``,
``None`` and ``int`` with ``|n| <= 2**53 - 1``. Floats, non-ASCII keys, larger integers,
duplicate keys, lone surrogates and non-UTF-8 input are refused with :class:`CodecError`.

With keys restricted to ASCII, RFC 8785's UTF-16 key order equals plain code-point order,
and its string escaping is what :func:`json.dumps` writes with ``ensure_ascii=False``
(short escapes for ``\\b \\t \\n \\f \\r``, ``\\u00xx`` in lower case for other controls,
everything else as raw UTF-8). Integers are written in decimal, which is what the
ECMAScript number serialisation gives for every integer within 2^53.
"""

from __future__ import annotations

import json
from typing import Any

MAX_SAFE_INT = 2**53 - 1
_MAX_INT_DIGITS = len(str(MAX_SAFE_INT))
MAX_DEPTH = 64

__all__ = ["CodecError", "MAX_SAFE_INT", "decode", "decode_canonical_list", "decode_trusted",
           "encode", "is_canonical", "utf8_ok", "validate"]


class CodecError(ValueError):
    """A value or a byte string is not canonical medledger JSON.

    ``path`` names where in the value the problem is (``$.body.items[3]``).
    """

    def __init__(self, reason: str, path: str = "$") -> None:
        super().__init__(f"{reason} at {path}")
        self.reason = reason
        self.path = path


def _valid(value: Any, depth: int = 0) -> bool:
    """Fast check with no error reporting; :func:`_check` explains a failure."""
    kind = type(value)
    if kind is str:
        return value.isascii() or utf8_ok(value)
    if kind is int:
        return -MAX_SAFE_INT <= value <= MAX_SAFE_INT
    if kind is dict:
        if depth >= MAX_DEPTH:
            return False
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return False
            kind = type(item)
            if kind is str:
                if not item.isascii() and not utf8_ok(item):
                    return False
            elif kind is int:
                if not -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
                    return False
            elif not (kind is bool or item is None or _valid(item, depth + 1)):
                return False
        return True
    if kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            return False
        return all(_valid(item, depth + 1) for item in value)
    return kind is bool or value is None


def utf8_ok(text: str) -> bool:
    """Whether ``text`` has UTF-8 bytes (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CodecError(f"nesting deeper than {MAX_DEPTH}", path)
    kind = type(value)
    if kind is str:
        if not utf8_ok(value):
            raise CodecError("string holds a lone surrogate", path)
    elif kind is bool or value is None:
        return
    elif kind is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise CodecError("integer outside +/-(2^53-1)", path)
    elif kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise CodecError(f"object key {key!r} is not a string", path)
            if not key.isascii():
                raise CodecError(f"object key {key!r} is not ASCII", path)
            _check(item, f"{path}.{key}", depth + 1)
    elif kind is list or kind is tuple:
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
    elif kind is float:
        raise CodecError("floats are not allowed; use integers (e.g. minor units)", path)
    else:
        raise CodecError(f"type {kind.__name__} cannot be encoded", path)


def validate(value: Any) -> None:
    """Raise :class:`CodecError` (naming where) unless ``value`` has canonical bytes."""
    if not _valid(value):
        _check(value, "$", 0)
        raise CodecError("value cannot be encoded")


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def encode(value: Any, *, checked: bool = False) -> bytes:
    """Return the canonical bytes of ``value``; raise :class:`CodecError` if it has none.

    ``checked=True`` skips validation for a value that just came out of :func:`decode`.
    """
    if not checked and not _valid(value):
        validate(value)
    return _dumps(value).encode("utf-8")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise CodecError(f"duplicate object key {key!r}")
            seen.add(key)
    return out


def _float(text: str) -> Any:
    raise CodecError(f"number {text} is not an integer; floats are not allowed")


def _int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > _MAX_INT_DIGITS or abs(int(text)) > MAX_SAFE_INT:
        raise CodecError(f"integer {text[:24]} is outside +/-(2^53-1)")
    return int(text)


def _constant(text: str) -> Any:
    raise CodecError(f"{text} is not JSON")


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Parse JSON bytes strictly; the input need not be canonical (see :func:`is_canonical`)."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise CodecError(f"input is not UTF-8 (byte {e.start})") from e
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_float=_float,
            parse_int=_int,
            parse_constant=_constant,
        )
    except CodecError:
        raise
    except RecursionError as e:
        raise CodecError("nesting too deep") from e
    except json.JSONDecodeError as e:
        raise CodecError(f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from e
    if not _valid(value):
        validate(value)
    return value


def decode_canonical_list(data: bytes) -> list[tuple[Any, bytes]] | None:
    """For a JSON list whose bytes are exactly ``[`` + the items' canonical bytes joined by
    ``,`` + ``]``: each item with its canonical bytes. None for anything else, which
    :func:`decode` then parses strictly (and explains, if it must refuse).

    The byte-for-byte match is what makes the fast parse strict: a duplicate key, a float,
    an escape that need not be there or any whitespace would re-encode differently.
    """
    try:
        items = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if type(items) is not list or not _valid(items):
        return None
    raws = [_dumps(item).encode("utf-8") for item in items]
    if b"[" + b",".join(raws) + b"]" != data:
        return None
    return list(zip(items, raws, strict=True))


def decode_trusted(data: bytes) -> Any:
    """Parse bytes that this process encoded itself, or that were verified against a root
    (state values, stored records): no strictness checks, C speed."""
    return json.loads(data.decode("utf-8"))


def is_canonical(data: bytes) -> bool:
    """True when ``data`` parses and is byte-for-byte its own canonical form."""
    try:
        return encode(decode(data)) == bytes(data)
    except CodecError:
        return False
