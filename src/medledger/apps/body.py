"""Typed transaction bodies: a frozen dataclass per transaction type, decoded from the
canonical body. Decoding is the stateless check: a missing field, an unknown field or a
value of the wrong type or shape is refused with ``Rejected("malformed", ...)`` naming the
field.

Field types::

    str, int, bool                       exactly that JSON type (``bool`` is not an ``int``)
    Annotated[str, Hex(32)]              lower-case hex of 32 bytes (``Hex()``: any length)
    Annotated[str, B64(4096)]            unpadded base64url of 1-4096 bytes
    Annotated[str, Text(200)]            1-200 printable characters
    Annotated[str, OneOf(("a", "b"))]    one of the choices
    Annotated[int, Range(1, 10)]         an integer in [1, 10]
    list[T]                              a JSON array of T (``Annotated[list[T], Items(1, 8)]``
                                         bounds its length)
    dict[str, Any]                       any JSON object (the type's ``validate`` checks it)
    T | None = None                      an optional field: absent is None (null is refused)

A body class may define ``validate(self) -> None`` for rules across fields; it raises
``Rejected``. Plans are compiled once per class.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from medledger.apps.base import Rejected
from medledger.codec.b64 import from_b64url

__all__ = ["B64", "Hex", "Items", "OneOf", "Range", "Text", "decode_body"]

B = TypeVar("B")
_HEX = re.compile(r"[0-9a-f]*")
MAX_SAFE_INT = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Hex:
    """Lower-case hex of ``size`` bytes, or of at most ``max_size`` when ``size`` is None."""

    size: int | None = None
    max_size: int = 4096


@dataclass(frozen=True, slots=True)
class B64:
    """Unpadded base64url (:mod:`medledger.codec.b64`) of 1 to ``max_size`` bytes."""

    max_size: int = 4096


@dataclass(frozen=True, slots=True)
class Text:
    """A printable string of ``min_len`` to ``max_len`` characters."""

    max_len: int = 128
    min_len: int = 1


@dataclass(frozen=True, slots=True)
class OneOf:
    choices: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Range:
    low: int = 0
    high: int = MAX_SAFE_INT


@dataclass(frozen=True, slots=True)
class Items:
    """Bounds on a list's length."""

    low: int = 0
    high: int = 1000


Check = Callable[[str, Any], Any]


def _bad(name: str, what: str) -> Rejected:
    return Rejected("malformed", f"{name} must be {what}")


def _exact(kind: type, what: str) -> Check:
    def check(name: str, value: Any) -> Any:
        if type(value) is not kind:
            raise _bad(name, what)
        return value
    return check


def _hex(rule: Hex) -> Check:
    def check(name: str, value: Any) -> Any:
        if type(value) is not str or len(value) % 2 or not _HEX.fullmatch(value):
            raise _bad(name, "lower-case hex")
        size = len(value) // 2
        if rule.size is not None and size != rule.size:
            raise _bad(name, f"{rule.size} bytes")
        if size > rule.max_size:
            raise _bad(name, f"at most {rule.max_size} bytes")
        return value
    return check


def _b64(rule: B64) -> Check:
    def check(name: str, value: Any) -> Any:
        try:
            size = len(from_b64url(value))
        except ValueError:
            raise _bad(name, "unpadded base64url") from None
        if not 1 <= size <= rule.max_size:
            raise _bad(name, f"1-{rule.max_size} bytes")
        return value
    return check


def _text(rule: Text) -> Check:
    def check(name: str, value: Any) -> Any:
        if (type(value) is not str or not rule.min_len <= len(value) <= rule.max_len
                or not value.isprintable()):
            raise _bad(name, f"{rule.min_len}-{rule.max_len} printable characters")
        return value
    return check


def _one_of(rule: OneOf) -> Check:
    def check(name: str, value: Any) -> Any:
        if type(value) is not str or value not in rule.choices:
            raise _bad(name, f"one of {', '.join(rule.choices)}")
        return value
    return check


def _range(rule: Range) -> Check:
    def check(name: str, value: Any) -> Any:
        if type(value) is not int or not rule.low <= value <= rule.high:
            raise _bad(name, f"an integer from {rule.low} to {rule.high}")
        return value
    return check


def _list(item: Check, bounds: Items) -> Check:
    def check(name: str, value: Any) -> Any:
        if type(value) is not list or not bounds.low <= len(value) <= bounds.high:
            raise _bad(name, f"a list of {bounds.low}-{bounds.high} items")
        return tuple(item(f"{name}[{i}]", v) for i, v in enumerate(value))
    return check


def _nested(cls: type) -> Check:
    def check(name: str, value: Any) -> Any:
        if type(value) is not dict:
            raise _bad(name, "an object")
        try:
            return decode_body(cls, value)
        except Rejected as e:
            raise Rejected("malformed", f"{name}.{e.message}") from None
    return check


def _any(name: str, value: Any) -> Any:
    return value


_RULES: dict[type, Callable[[Any], Check]] = {
    Hex: _hex, B64: _b64, Text: _text, OneOf: _one_of, Range: _range,
}
_PLAIN: dict[Any, Check] = {
    str: _exact(str, "a string"), int: _range(Range(-MAX_SAFE_INT, MAX_SAFE_INT)),
    bool: _exact(bool, "true or false"), Any: _any,
}


def _compile(hint: Any) -> Check:
    """The check of one field type (see the module docstring)."""
    rules: tuple[Any, ...] = ()
    if typing.get_origin(hint) is Annotated:
        hint, *extra = typing.get_args(hint)
        rules = tuple(extra)
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        bounds = next((r for r in rules if isinstance(r, Items)), Items())
        return _list(_compile(item), bounds)
    if origin is dict:
        return _exact(dict, "an object")
    for rule in rules:
        if type(rule) in _RULES:
            return _RULES[type(rule)](rule)
    if dataclasses.is_dataclass(hint):
        return _nested(hint)  # type: ignore[arg-type]
    if hint in _PLAIN:
        return _PLAIN[hint]
    raise TypeError(f"no body check for field type {hint!r}")


def _optional_of(hint: Any) -> Any | None:
    """``T`` when ``hint`` is ``T | None`` (keeping an Annotated ``T``), else None."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


@dataclass(frozen=True, slots=True)
class _Plan:
    required: frozenset[str]
    allowed: frozenset[str]
    checks: tuple[tuple[str, Check], ...]
    validates: bool  # the class has a validate() method
    fast: Callable[[dict[str, Any]], Any]  # decodes a body holding exactly the required


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    hints = typing.get_type_hints(cls, include_extras=True)
    required, checks = set(), []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        inner = _optional_of(hint)
        if inner is None:
            required.add(f.name)
        checks.append((f.name, _compile(hint if inner is None else inner)))
    plan = _PLANS[cls] = _Plan(frozenset(required), frozenset(n for n, _ in checks),
                               tuple(checks), callable(getattr(cls, "validate", None)),
                               _fast_decoder(cls, checks, required))
    return plan


def _fast_decoder(cls: type, checks: list[tuple[str, Check]],
                  required: set[str]) -> Callable[[dict[str, Any]], Any]:
    """The decoder of a body holding exactly the required fields (optional ones absent),
    built once per class: each field checked and set straight into its slot (the frozen
    class's ``__init__`` and ``__setattr__`` are skipped, as ``dataclasses.replace`` would
    not be)."""
    names = [name for name, _ in checks]
    slotted = not hasattr(cls, "__post_init__") and all(
        isinstance(getattr(cls, name, None), types.MemberDescriptorType) for name in names)
    scope: dict[str, Any] = {"cls": cls, "new": object.__new__}
    scope |= {f"c{i}": check for i, (_, check) in enumerate(checks)}
    if slotted:
        scope |= {f"s{i}": getattr(cls, name).__set__ for i, name in enumerate(names)}
        lines = [f"    s{i}(o, c{i}({name!r}, body[{name!r}]))" if name in required
                 else f"    s{i}(o, None)" for i, name in enumerate(names)]
        text = "def fast(body):\n    o = new(cls)\n" + "\n".join(lines) + "\n    return o\n"
    else:
        args = ", ".join(f"c{i}({name!r}, body[{name!r}])" if name in required else "None"
                         for i, name in enumerate(names))
        text = f"def fast(body):\n    return cls({args})\n"
    exec(text, scope)  # noqa: S102 (our own text, from the class's field names)
    return scope["fast"]  # type: ignore[no-any-return]


def decode_body(cls: type[B], body: Any) -> B:
    """Decode ``body`` (a JSON object) into ``cls``; Rejected("malformed") naming the field."""
    plan = _PLANS.get(cls) or _plan(cls)
    if type(body) is not dict:
        raise Rejected("malformed", "body must be an object")
    keys = body.keys()
    if keys == plan.required:  # every required field, and nothing more
        decoded = plan.fast(body)
    else:
        missing = plan.required - keys
        if missing:
            raise Rejected("malformed", f"body lacks {', '.join(sorted(missing))}")
        extra = keys - plan.allowed
        if extra:
            raise Rejected("malformed", f"body has unknown fields {', '.join(sorted(extra))}")
        decoded = cls(**{name: check(name, body[name]) for name, check in plan.checks
                         if name in body})
    if plan.validates:
        decoded.validate()  # type: ignore[attr-defined]
    return decoded
