"""CometBFT's headers, commits and validator sets as its RPC returns them, with the light
client's errors (see :mod:`medledger.client.comet`)."""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from fractions import Fraction
from typing import Any, TypeVar

BLOCK_PROTOCOL = 11  # version.block of CometBFT v0.38 headers
DEFAULT_TRUST_LEVEL = Fraction(1, 3)
DEFAULT_MAX_CLOCK_DRIFT = timedelta(seconds=10)
ED25519_KEY_TYPE = "tendermint/PubKeyEd25519"
MAX_CHAIN_ID_LEN = 50
MAX_TOTAL_VOTING_POWER = (2**63 - 1) // 8
_HASH, _ADDRESS, _KEY, _SIG = 32, 20, 32, 64
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31 UTC
_T = TypeVar("_T")




# --- errors ----------------------------------------------------------------------------------
class LightClientError(Exception):
    """Root of every error of the light client; ``reason`` is a sentence for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedData(LightClientError, ValueError):
    """JSON (or a value) that is not a well-formed header, commit or validator set."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.where, self.problem = where, reason


class FetchFailed(LightClientError):
    """The CometBFT RPC could not be reached, or answered an error or nonsense."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url


class TrustExpired(LightClientError):
    """The trusted header is older than the trusting period: its set may have left."""

    def __init__(self, height: int, expired_at: Timestamp, now: Timestamp) -> None:
        super().__init__(f"trusted header {height} expired at {expired_at} (now {now}); "
                         f"start again from a header trusted recently")
        self.height, self.expired_at, self.now = height, expired_at, now


class InvalidHeader(LightClientError):
    """The new header contradicts itself, its commit, its set or the trusted header."""

    def __init__(self, height: int, field: str, reason: str,
                 expected: object = None, got: object = None) -> None:
        super().__init__(f"header {height}: {field}: {reason}")
        self.height, self.field, self.expected, self.got = height, field, expected, got


class WrongChain(InvalidHeader):
    """The header or the commit belongs to another chain."""


class HashMismatch(InvalidHeader):
    """The header's hash is not the block id the commit signs."""


class ValidatorsMismatch(InvalidHeader):
    """``validators_hash`` or ``next_validators_hash`` does not name the set given."""


class InvalidCommit(LightClientError):
    """The commit does not fit the block, the height or the validator set."""

    def __init__(self, height: int, reason: str) -> None:
        super().__init__(f"commit {height}: {reason}")
        self.height = height


class BadSignature(InvalidCommit):
    """A signature that counts does not verify under its validator's key."""

    def __init__(self, height: int, index: int, address: bytes) -> None:
        super().__init__(height, f"signature {index} (validator {address.hex().upper()}) "
                                 f"does not verify")
        self.index, self.address = index, address


class NotEnoughPower(InvalidCommit):
    """Not more than 2/3 of the set's voting power committed to the block."""

    def __init__(self, height: int, got: int, needed: int, total: int) -> None:
        super().__init__(height, f"{got} of {total} voting power committed; more than "
                                 f"{needed} needed")
        self.got, self.needed, self.total = got, needed, total


class NotEnoughTrust(LightClientError):
    """Not more than ``trust_level`` of the trusted set's power signed the new commit."""

    def __init__(self, height: int, got: int, needed: int, total: int,
                 trust_level: Fraction) -> None:
        super().__init__(f"header {height}: {got} of the trusted set's {total} voting power "
                         f"signed; more than {needed} ({trust_level}) needed")
        self.height, self.got, self.needed, self.total = height, got, needed, total
        self.trust_level = trust_level


# --- time ------------------------------------------------------------------------------------
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z", re.ASCII)


@dataclass(frozen=True, slots=True, order=True)
class Timestamp:
    """A protobuf ``Timestamp``: seconds since the Unix epoch and nanoseconds (CometBFT's
    times carry nanoseconds, which ``datetime`` cannot hold)."""

    seconds: int
    nanos: int

    def __post_init__(self) -> None:
        if not (_MIN_SECONDS <= self.seconds <= _MAX_SECONDS and 0 <= self.nanos < 10**9):
            raise MalformedData("", f"{self.seconds}s {self.nanos}ns is out of range")

    @classmethod
    def parse(cls, text: str) -> Timestamp:
        """Parse RFC 3339 (``2026-01-02T03:04:05.123456789Z``); ``ValueError`` if it is not."""
        match = _RFC3339.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not an RFC 3339 time")
        y, mo, d, h, mi, s = (int(g) for g in match.groups()[:6])
        datetime(y, mo, d, h, mi, s)  # raises ValueError for a date that does not exist
        seconds = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
        zone = match[8]
        if zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
        return cls(seconds, int((match[7] or "").ljust(9, "0")))

    @classmethod
    def from_datetime(cls, moment: datetime) -> Timestamp:
        if moment.tzinfo is None:
            raise ValueError("a naive datetime has no time zone; give an aware one")
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return cls.from_nanos(delta // timedelta(microseconds=1) * 1000)

    @classmethod
    def from_nanos(cls, nanos: int) -> Timestamp:
        return cls(*divmod(nanos, 10**9))

    @property
    def total_nanos(self) -> int:
        return self.seconds * 10**9 + self.nanos

    def plus(self, delta: timedelta) -> Timestamp:
        return Timestamp.from_nanos(self.total_nanos + delta // timedelta(microseconds=1) * 1000)

    def __str__(self) -> str:  # Go's RFC3339Nano: trailing zeros of the fraction dropped
        m = datetime(1970, 1, 1) + timedelta(seconds=self.seconds)
        fraction = f"{self.nanos:09d}".rstrip("0")
        return (f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:"
                f"{m.second:02d}{'.' + fraction if fraction else ''}Z")


ZERO_TIME = Timestamp(_MIN_SECONDS, 0)  # Go's time.Time{}: the time of an absent vote


def _as_timestamp(moment: Timestamp | datetime) -> Timestamp:
    return moment if isinstance(moment, Timestamp) else Timestamp.from_datetime(moment)


# --- JSON fields -----------------------------------------------------------------------------
def _get(data: object, key: str, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise MalformedData(where, f"expected an object, got {type(data).__name__}")
    if key not in data:
        raise MalformedData(f"{where}.{key}", "missing")
    return data[key]


def _int(data: object, key: str, where: str, low: int, high: int = 2**63 - 1) -> int:
    """An integer: a decimal string (Go's int64 in JSON) or a JSON number (int32, uint32)."""
    value = _get(data, key, where)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,20}", value):
        value = int(value)
    if type(value) is not int or not low <= value <= high:
        raise MalformedData(f"{where}.{key}", f"expected an integer in {low}..{high}, "
                                              f"got {value!r}")
    return value


def _str(data: object, key: str, where: str) -> str:
    value = _get(data, key, where)
    if not isinstance(value, str):
        raise MalformedData(f"{where}.{key}", f"expected a string, got {value!r}")
    return value


def _hex(data: object, key: str, where: str, sizes: tuple[int, ...] | None) -> bytes:
    text = _str(data, key, where)
    if not re.fullmatch(r"(?:[0-9A-Fa-f]{2})*", text):
        raise MalformedData(f"{where}.{key}", f"not hex: {text[:80]!r}")
    value = bytes.fromhex(text)
    if sizes is not None and len(value) not in sizes:
        raise MalformedData(f"{where}.{key}", f"expected {' or '.join(map(str, sizes))} bytes, "
                                              f"got {len(value)}")
    return value


def _b64(data: object, key: str, where: str) -> bytes:
    text = _str(data, key, where)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedData(f"{where}.{key}", f"not base64: {text[:80]!r}") from None


def _time(data: object, key: str, where: str) -> Timestamp:
    text = _str(data, key, where)
    try:
        return Timestamp.parse(text)
    except ValueError as e:
        raise MalformedData(f"{where}.{key}", str(e)) from None


def _require(ok: bool, where: str, reason: str) -> None:
    if not ok:
        raise MalformedData(where, reason)


def _build(cls: Callable[..., _T], where: str, *args: Any) -> _T:
    """``cls(*args)``, its own checks' complaints placed at ``where`` in the JSON."""
    try:
        return cls(*args)
    except MalformedData as e:
        raise MalformedData(f"{where}.{e.where}" if e.where else where, e.problem) from None


# --- what CometBFT's RPC returns -------------------------------------------------------------
class BlockIdFlag(IntEnum):
    """What a commit signature is for (``types.BlockIDFlag``)."""

    ABSENT = 1  # no vote received: nothing signed, nothing counted
    COMMIT = 2  # a precommit for the commit's block id: signed and counted
    NIL = 3     # a precommit for no block: signed (over an empty block id), not counted


@dataclass(frozen=True, slots=True)
class BlockId:
    """A block's hash and its part-set header (the zero value: no block)."""

    hash: bytes
    parts_total: int
    parts_hash: bytes

    def __post_init__(self) -> None:
        _require(len(self.hash) in (0, _HASH), "hash", f"{len(self.hash)} bytes")
        _require(len(self.parts_hash) in (0, _HASH), "parts.hash", f"{len(self.parts_hash)} bytes")
        _require(0 <= self.parts_total < 2**32, "parts.total", "out of range")

    @classmethod
    def from_json(cls, data: object, where: str = "block_id") -> BlockId:
        parts = _get(data, "parts", where)
        return _build(cls, where, _hex(data, "hash", where, (0, _HASH)),
                      _int(parts, "total", f"{where}.parts", 0, 2**32 - 1),
                      _hex(parts, "hash", f"{where}.parts", (0, _HASH)))

    def is_zero(self) -> bool:
        return not self.hash and not self.parts_total and not self.parts_hash


_HEADER_HASHES = ("last_commit_hash", "data_hash", "validators_hash", "next_validators_hash",
                  "consensus_hash", "app_hash", "last_results_hash", "evidence_hash")


@dataclass(frozen=True, slots=True)
class Header:
    """A block header (``types.Header``), its 14 fields in hashing order."""

    version_block: int
    version_app: int
    chain_id: str
    height: int
    time: Timestamp
    last_block_id: BlockId
    last_commit_hash: bytes
    data_hash: bytes
    validators_hash: bytes
    next_validators_hash: bytes
    consensus_hash: bytes
    app_hash: bytes
    last_results_hash: bytes
    evidence_hash: bytes
    proposer_address: bytes

    def __post_init__(self) -> None:  # CometBFT's Header.ValidateBasic, less the protocol
        _require(0 <= self.version_block < 2**64, "version.block", "out of range")
        _require(0 <= self.version_app < 2**64, "version.app", "out of range")
        _require(len(self.chain_id.encode()) <= MAX_CHAIN_ID_LEN, "chain_id",
                 f"longer than {MAX_CHAIN_ID_LEN} bytes")
        _require(0 < self.height < 2**63, "height", f"{self.height} is not positive")
        for name in _HEADER_HASHES:
            if name != "app_hash":  # the app hash is the app's: any length
                size = len(getattr(self, name))
                _require(size in (0, _HASH), name, f"{size} bytes, not 0 or 32")
        _require(len(self.validators_hash) == _HASH, "validators_hash",
                 "missing (a header without one has no hash)")
        _require(len(self.proposer_address) == _ADDRESS, "proposer_address",
                 f"{len(self.proposer_address)} bytes, not {_ADDRESS}")

    @classmethod
    def from_json(cls, data: object, where: str = "header") -> Header:
        version = _get(data, "version", where)
        hashes = {name: _hex(data, name, where, None if name == "app_hash" else (0, _HASH))
                  for name in _HEADER_HASHES}
        return _build(
            cls, where,
            _int(version, "block", f"{where}.version", 0, 2**64 - 1),
            _int(version, "app", f"{where}.version", 0, 2**64 - 1),
            _str(data, "chain_id", where),
            _int(data, "height", where, 1),
            _time(data, "time", where),
            BlockId.from_json(_get(data, "last_block_id", where), f"{where}.last_block_id"),
            *hashes.values(),
            _hex(data, "proposer_address", where, (_ADDRESS,)),
        )


@dataclass(frozen=True, slots=True)
class CommitSig:
    """One validator's entry in a commit (``types.CommitSig``)."""

    flag: BlockIdFlag
    validator_address: bytes
    timestamp: Timestamp
    signature: bytes

    def __post_init__(self) -> None:  # CometBFT's CommitSig.ValidateBasic
        if self.flag is BlockIdFlag.ABSENT:
            _require(not self.validator_address and not self.signature
                     and self.timestamp == ZERO_TIME, "block_id_flag",
                     "an absent vote carries an address, a time or a signature")
        else:
            _require(len(self.validator_address) == _ADDRESS, "validator_address",
                     f"{len(self.validator_address)} bytes, not {_ADDRESS}")
            _require(0 < len(self.signature) <= _SIG, "signature",
                     f"{len(self.signature)} bytes")

    @classmethod
    def from_json(cls, data: object, where: str) -> CommitSig:
        flag = BlockIdFlag(_int(data, "block_id_flag", where, 1, 3))
        signature = b"" if _get(data, "signature", where) is None else _b64(data, "signature",
                                                                            where)
        return _build(cls, where, flag, _hex(data, "validator_address", where, (0, _ADDRESS)),
                      _time(data, "timestamp", where), signature)


@dataclass(frozen=True, slots=True)
class Commit:
    """The precommits that decided a block (``types.Commit``), one entry per validator."""

    height: int
    round: int
    block_id: BlockId
    signatures: tuple[CommitSig, ...]

    def __post_init__(self) -> None:  # CometBFT's Commit.ValidateBasic
        _require(0 < self.height < 2**63, "height", f"{self.height} is not positive")
        _require(0 <= self.round < 2**31, "round", f"{self.round} out of range")
        _require(not self.block_id.is_zero(), "block_id", "a commit for no block")
        _require(len(self.block_id.hash) == _HASH, "block_id.hash", "missing")
        _require(bool(self.signatures), "signatures", "no signatures")

    @classmethod
    def from_json(cls, data: object, where: str = "commit") -> Commit:
        signatures = _get(data, "signatures", where)
        _require(isinstance(signatures, list), f"{where}.signatures", "expected a list")
        entries = tuple(CommitSig.from_json(s, f"{where}.signatures[{i}]")
                        for i, s in enumerate(signatures))
        return _build(cls, where, _int(data, "height", where, 1),
                      _int(data, "round", where, 0, 2**31 - 1),
                      BlockId.from_json(_get(data, "block_id", where), f"{where}.block_id"),
                      entries)


@dataclass(frozen=True, slots=True)
class SignedHeader:
    """A header and the commit for it: ``result.signed_header`` of ``/commit``."""

    header: Header
    commit: Commit

    @classmethod
    def from_json(cls, data: object, where: str = "signed_header") -> SignedHeader:
        return cls(Header.from_json(_get(data, "header", where), f"{where}.header"),
                   Commit.from_json(_get(data, "commit", where), f"{where}.commit"))

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def chain_id(self) -> str:
        return self.header.chain_id


def address_of(public_key: bytes) -> bytes:
    """A validator's address: the first 20 bytes of SHA-256 of its Ed25519 public key."""
    return hashlib.sha256(public_key).digest()[:_ADDRESS]


@dataclass(frozen=True, slots=True)
class Validator:
    """A validator: its Ed25519 key, its voting power, its proposer priority."""

    public_key: bytes
    voting_power: int
    proposer_priority: int = 0

    def __post_init__(self) -> None:
        _require(len(self.public_key) == _KEY, "pub_key", "not 32 bytes")
        _require(0 < self.voting_power <= MAX_TOTAL_VOTING_POWER, "voting_power",
                 f"{self.voting_power} out of range")

    @property
    def address(self) -> bytes:
        return address_of(self.public_key)

    @classmethod
    def from_json(cls, data: object, where: str) -> Validator:
        key = _get(data, "pub_key", where)
        key_type = _str(key, "type", f"{where}.pub_key")
        _require(key_type == ED25519_KEY_TYPE, f"{where}.pub_key.type",
                 f"{key_type!r}: only {ED25519_KEY_TYPE} keys are supported")
        public_key = _b64(key, "value", f"{where}.pub_key")
        _require(len(public_key) == _KEY, f"{where}.pub_key.value", "not 32 bytes")
        if isinstance(data, Mapping) and "address" in data:
            _require(_hex(data, "address", where, (_ADDRESS,)) == address_of(public_key),
                     f"{where}.address", "not the address of the public key")
        return _build(cls, where, public_key,
                      _int(data, "voting_power", where, 1, MAX_TOTAL_VOTING_POWER),
                      _int(data, "proposer_priority", where, -(2**63)))


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """The validators of a height, in the set's order: ``result.validators`` of
    ``/validators`` (all pages)."""

    validators: tuple[Validator, ...]
    _index: dict[bytes, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        _require(bool(self.validators), "", "an empty set")
        index = {v.address: i for i, v in enumerate(self.validators)}
        _require(len(index) == len(self.validators), "", "a validator twice")
        _require(self.total_power <= MAX_TOTAL_VOTING_POWER, "", "too much power")
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_json(cls, data: object, where: str = "validators") -> ValidatorSet:
        if not isinstance(data, list):
            raise MalformedData(where, "expected a list")
        return _build(cls, where, tuple(Validator.from_json(v, f"{where}[{i}]")
                                        for i, v in enumerate(data)))

    @property
    def total_power(self) -> int:
        return sum(v.voting_power for v in self.validators)

    def by_address(self, address: bytes) -> Validator | None:
        index = self._index.get(address)
        return None if index is None else self.validators[index]

    def __len__(self) -> int:
        return len(self.validators)


@dataclass(frozen=True, slots=True)
class LightBlock:
    """A signed header and the validator set of its height."""

    signed_header: SignedHeader
    validators: ValidatorSet

    @property
    def height(self) -> int:
        return self.signed_header.height


