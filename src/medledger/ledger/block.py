"""Block headers and blocks.

A header commits to: chain id, height, BFT time (ms since epoch), previous block hash, the
RFC 9162 root of the block's transaction ids, the root of their results, the state root
after the block, the history root (RFC 9162 root over the hashes of blocks 1..height-1),
the validator-set hash, ``last_commit_hash`` (all zero: the commit that decides a block is
CometBFT's, in its own block store and signed headers), and the proposer. The block hash is
``tagged_hash(Tag.BLOCK, encode(header))``: the app's own record of a block, beside
CometBFT's block hash, which the log of blocks in state commits.
"""

from __future__ import annotations

import re
from json.encoder import encode_basestring as _json_string  # type: ignore[attr-defined]
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any, NamedTuple

from medledger.codec import Tag, encode, tagged_hash, utf8_ok
from medledger.ledger.errors import MalformedError
from medledger.ledger.fields import read_bytes, read_int, read_str, require_keys
from medledger.ledger.tx import Transaction
from medledger.merkle import log

__all__ = ["Block", "Event", "Header", "TxResult", "ZERO_HASH", "encode_events", "results_root",
           "tx_root"]

ZERO_HASH = bytes(32)
_HEADER_FIELDS = frozenset({
    "chain_id", "height", "history_root", "last_commit_hash", "prev_hash", "proposer",
    "results_root", "state_root", "time", "tx_count", "tx_root", "validators_hash",
})
_RESULT_FIELDS = frozenset({"code", "message"})
_RESULT_WITH_EVENTS = frozenset({"code", "message", "events"})
_EVENT_FIELDS = frozenset({"type", "attrs"})
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_ATTR_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_EVENTS = 64
MAX_ATTR_VALUE = 512
_OK_LEAF = log.leaf_hash(encode({"code": "ok", "message": ""}))


class _EventFields(NamedTuple):
    type: str
    attrs: tuple[tuple[str, str], ...]
    encoded: bytes


class Event(_EventFields):
    """Something a transaction (or a block hook) did, for clients to find and follow.

    ``type`` is ``<app>.<what>`` (``identity.member_registered``); ``attrs`` are string
    attributes (``(("member", ...), ("org", "st-mary"))``), kept sorted by name as
    canonical bytes order them. Names are ``[a-z][a-z0-9_]*``, at most 32 characters;
    values at most 512. An event checks itself when made (MalformedError) and encodes
    itself once: ``encoded`` is the canonical bytes of :meth:`to_dict`.

    Immutable (a tuple underneath, made in one step: events are made for every
    transaction of every block).
    """

    __slots__ = ()

    def __new__(cls, type: str, attrs: Iterable[tuple[str, str]] = ()) -> Event:  # noqa: A002
        pairs = tuple(sorted(attrs))
        _check_event(type, pairs)
        # names need no escaping (checked); values take JSON's string escaping, which is
        # RFC 8785's (see medledger.codec.canonical); the type is [a-z0-9_.]
        text = ",".join([f'"{name}":{_json_string(value)}' for name, value in pairs])
        encoded = f'{{"attrs":{{{text}}},"type":"{type}"}}'.encode()
        return tuple.__new__(cls, (type, pairs, encoded))

    def __getnewargs__(self) -> tuple[str, tuple[tuple[str, str], ...]]:  # type: ignore[override]
        return self.type, self.attrs

    def __repr__(self) -> str:
        return f"Event({self.type!r}, {self.attrs!r})"

    @classmethod
    def of(cls, type_: str, **attrs: str) -> Event:
        """``Event.of("anchor.anchored", digest=..., sender=...)``."""
        return cls(type_, attrs.items())

    def attr(self, name: str) -> str | None:
        return next((v for k, v in self.attrs if k == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "attrs": dict(self.attrs)}

    def encode(self) -> bytes:
        """Canonical bytes of :meth:`to_dict`."""
        return self.encoded

    @classmethod
    def from_dict(cls, data: Any) -> Event:
        data = require_keys(data, "event", _EVENT_FIELDS)
        attrs = data["attrs"]
        if type(attrs) is not dict:
            raise MalformedError("event", "attrs must be an object")
        return cls(read_str(data, "type", 128), attrs.items())


def _check_event(type_: str, attrs: tuple[tuple[str, str], ...]) -> None:
    """Raise MalformedError unless the type and every attribute are well formed."""
    if type_ not in _GOOD_NAMES:
        if type(type_) is not str or not _EVENT_TYPE.fullmatch(type_):
            raise MalformedError("event", f"type {type_!r} must be <app>.<name>")
        _remember(type_)
    previous = None
    for name, value in attrs:
        if name not in _GOOD_NAMES:
            if type(name) is not str or not _ATTR_NAME.fullmatch(name):
                raise MalformedError("event", f"{type_}: attribute name {name!r}")
            _remember(name)
        if name == previous:
            raise MalformedError("event", f"{type_}: attribute {name} appears twice")
        previous = name
        if (type(value) is not str or len(value) > MAX_ATTR_VALUE
                or not (value.isascii() or utf8_ok(value))):
            raise MalformedError("event", f"{type_}.{name}: value must be a string "
                                          f"of at most {MAX_ATTR_VALUE} characters")


_GOOD_NAMES: set[str] = set()  # event types and attribute names already checked


def _remember(name: str) -> None:
    if len(_GOOD_NAMES) >= 10_000:
        _GOOD_NAMES.clear()
    _GOOD_NAMES.add(name)


def encode_events(events: tuple[Event, ...]) -> bytes:
    """Canonical bytes of a list of events (``b"[]"`` for none)."""
    if len(events) == 1:
        return b"[" + events[0].encoded + b"]"
    return b"[" + b",".join([e.encoded for e in events]) + b"]"


@dataclass(frozen=True, slots=True)
class TxResult:
    """The outcome of one transaction in a block: ``code`` is ``"ok"`` or a stable error
    code; ``events`` are what an accepted transaction did (none for a refused one)."""

    code: str
    message: str
    events: tuple[Event, ...] = ()
    events_bytes: bytes = field(default=b"", init=False, repr=False, compare=False)
    """Canonical bytes of the events' list (b"" when there are none), made once."""

    def __post_init__(self) -> None:
        if self.events:
            object.__setattr__(self, "events_bytes", encode_events(self.events))

    def to_dict(self) -> dict[str, Any]:
        """Canonical form; ``events`` appears only when there are some, so that a result
        without events has the same bytes as before events existed."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.events:
            out["events"] = [e.to_dict() for e in self.events]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> TxResult:
        keys = _RESULT_WITH_EVENTS if type(data) is dict and "events" in data else _RESULT_FIELDS
        data = require_keys(data, "result", keys)
        events: tuple[Event, ...] = ()
        if "events" in data:
            raw = data["events"]
            if type(raw) is not list or not 1 <= len(raw) <= MAX_EVENTS:
                raise MalformedError("result", f"events must be a list of 1-{MAX_EVENTS}")
            events = tuple(Event.from_dict(e) for e in raw)
        return cls(read_str(data, "code", 64), read_str(data, "message", 1024), events)

    @property
    def ok(self) -> bool:
        return self.code == "ok"

    def encode(self) -> bytes:
        """Canonical bytes of :meth:`to_dict` (what the results root commits)."""
        if not self.events:
            return encode(self.to_dict())
        if self.code == "ok" and not self.message:
            return b'{"code":"ok","events":' + self.events_bytes + b',"message":""}'
        return (b'{"code":' + encode(self.code) + b',"events":' + self.events_bytes
                + b',"message":' + encode(self.message) + b"}")


def tx_root(tx_ids: list[bytes]) -> bytes:
    """RFC 9162 root over the transaction ids, in block order."""
    return log.root([log.leaf_hash(t) for t in tx_ids])


def _result_leaf(result: TxResult) -> bytes:
    if result.code == "ok" and not result.message and not result.events:
        return _OK_LEAF
    return log.leaf_hash(result.encode())


def results_root(results: list[TxResult]) -> bytes:
    """RFC 9162 root over the canonical bytes of each result."""
    return log.root([_result_leaf(r) for r in results])


@dataclass(frozen=True, slots=True)
class Header:
    """A block header; see the module docstring for what each field commits to."""

    chain_id: str
    height: int
    time: int
    prev_hash: bytes
    tx_root: bytes
    tx_count: int
    results_root: bytes
    state_root: bytes
    history_root: bytes
    validators_hash: bytes
    last_commit_hash: bytes
    proposer: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "height": self.height,
            "history_root": self.history_root.hex(),
            "last_commit_hash": self.last_commit_hash.hex(),
            "prev_hash": self.prev_hash.hex(),
            "proposer": self.proposer.hex(),
            "results_root": self.results_root.hex(),
            "state_root": self.state_root.hex(),
            "time": self.time,
            "tx_count": self.tx_count,
            "tx_root": self.tx_root.hex(),
            "validators_hash": self.validators_hash.hex(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Header:
        data = require_keys(data, "header", _HEADER_FIELDS)
        return cls(
            chain_id=read_str(data, "chain_id", 64),
            height=read_int(data, "height", 1),
            time=read_int(data, "time"),
            prev_hash=read_bytes(data, "prev_hash", 32),
            tx_root=read_bytes(data, "tx_root", 32),
            tx_count=read_int(data, "tx_count"),
            results_root=read_bytes(data, "results_root", 32),
            state_root=read_bytes(data, "state_root", 32),
            history_root=read_bytes(data, "history_root", 32),
            validators_hash=read_bytes(data, "validators_hash", 32),
            last_commit_hash=read_bytes(data, "last_commit_hash", 32),
            proposer=read_bytes(data, "proposer", 32),
        )

    def encode(self) -> bytes:
        return encode(self.to_dict())

    def hash(self) -> bytes:
        return tagged_hash(Tag.BLOCK, self.encode())


@dataclass(frozen=True, slots=True)
class Block:
    """A header with its transactions and their results."""

    header: Header
    txs: tuple[Transaction, ...]
    results: tuple[TxResult, ...]
