"""A light client for CometBFT v0.38 signed headers: believe a block because validators signed it.

CometBFT's RPC answers ``/commit?height=H`` with a *signed header* (the header of block H and
its commit, the precommits of H's validators) and ``/validators?height=H`` with H's
*validator set*. :class:`SignedHeader` and :class:`ValidatorSet` parse those JSON objects and
refuse malformed ones (:class:`MalformedData`). Every byte hashed or signed is computed here
as CometBFT computes it (read in ``types/block.go``, ``types/canonical.go``,
``types/validator.go`` and ``crypto/merkle/``):

- :func:`header_hash`: the Merkle root over 14 leaves, the protobuf encoding of each header
  field in order -- ``Consensus`` version, chain id (``StringValue``), height
  (``Int64Value``), time (``Timestamp``), last ``BlockID``, then the nine hashes and the
  proposer address (``BytesValue`` each; an empty field is an empty leaf).
- :func:`validators_hash`: the same tree over each validator's ``SimpleValidator`` (public
  key and voting power), in the set's order.
- The tree is RFC 6962's (SHA-256, leaf prefix 0x00, inner prefix 0x01, split at the largest
  power of two below the size), which RFC 9162 kept unchanged: :func:`medledger.merkle.log.root`
  computes it.
- :func:`vote_sign_bytes`: what a validator signs for a precommit -- a protobuf
  ``CanonicalVote`` (type 2, height and round as ``sfixed64``, the canonical block id, the
  time of that validator's vote, the chain id) prefixed with its length as a uvarint.

Block id flags (:class:`BlockIdFlag`): ABSENT (no vote; no address, time or signature),
COMMIT (a precommit for the commit's block id, which it signs) and NIL (a precommit for no
block; it signs an empty block id and adds no power to the block).

Signatures are Ed25519, checked with libsodium (:func:`medledger.crypto.verify`), the verifier
used everywhere in the project. CometBFT checks votes with the ZIP-215 rules, which also
accept a few crafted signatures libsodium refuses (non-canonical point encodings, public keys
or R of small order, and the few that only the cofactored equation accepts). Honest signers
never produce those signatures, so an honest chain verifies the same under both rules; and
as ZIP-215 accepts every signature libsodium accepts, the difference can only make this
client refuse a commit CometBFT accepted, never the reverse.

Verification follows ``light/verifier.go``:

- :func:`verify_commit`: every non-absent signature checked, more than 2/3 of the set's power
  on COMMIT (CometBFT's ``VerifyCommit``).
- :func:`verify_signed_header`: a header believed against a set already trusted (a genesis
  set): its hash is the commit's block id, its ``validators_hash`` names the set, and the
  commit verifies.
- :func:`verify_adjacent`: header H+1 after a trusted H; its ``validators_hash`` must be H's
  ``next_validators_hash`` and more than 2/3 of its set must have signed.
- :func:`verify_skipping`: header H+n (n > 1) after a trusted H; more than ``trust_level``
  (default 1/3, at least one honest validator) of the trusted set's power and more than 2/3
  of its own set's power must have signed.
- Both refuse a trusted header older than the trusting period, a header of another chain, a
  height or time that does not increase, a time further ahead of ``now`` than the allowed
  clock drift, and a validator set other than the one the header names.
- :func:`verify_to_height` fetches from a CometBFT RPC URL what it needs to reach a height
  and verifies it: adjacent when the next height, skipping otherwise, bisecting when a skip
  lacks trust.

Errors::

    LightClientError                   root of everything raised here (.reason)
    ├── MalformedData (ValueError)     JSON that is not a well-formed header, commit or set
    │                                  (.where, e.g. "commit.signatures[2].signature")
    ├── FetchFailed                    the RPC could not be reached or answered an error (.url)
    ├── TrustExpired                   the trusted header is older than the trusting period
    │                                  (.height, .expired_at, .now)
    ├── InvalidHeader                  the new header contradicts itself or the trusted one
    │   │                              (.height, .field, .expected, .got)
    │   ├── WrongChain                 another chain id (.field "chain_id")
    │   ├── HashMismatch               the header's hash is not the block the commit signs
    │   └── ValidatorsMismatch         validators_hash / next_validators_hash is not the set's
    ├── InvalidCommit                  the commit does not fit the block or the set (.height)
    │   ├── BadSignature               a signature that counts does not verify (.index, .address)
    │   └── NotEnoughPower             2/3 or less of the set's power committed (.got, .needed,
    │                                  .total)
    └── NotEnoughTrust                 trust level or less of the trusted set's power signed
                                       (.height, .got, .needed, .total, .trust_level)
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from fractions import Fraction
from typing import Any, TypeVar

import httpx
from google.protobuf import timestamp_pb2, wrappers_pb2
from tendermint.crypto import keys_pb2
from tendermint.types import canonical_pb2, types_pb2, validator_pb2
from tendermint.version import types_pb2 as version_pb2

from medledger.crypto import verify as ed25519_verify
from medledger.merkle import log

__all__ = [
    "BLOCK_PROTOCOL", "DEFAULT_MAX_CLOCK_DRIFT", "DEFAULT_TRUST_LEVEL", "ZERO_TIME",
    "BadSignature", "BlockId", "BlockIdFlag", "Commit", "CommitSig", "FetchFailed",
    "HashMismatch", "Header", "InvalidCommit", "InvalidHeader", "LightBlock", "LightClientError",
    "MalformedData", "NotEnoughPower", "NotEnoughTrust", "SignedHeader", "Timestamp",
    "TrustExpired", "Validator", "ValidatorSet", "ValidatorsMismatch", "WrongChain",
    "address_of", "canonical_vote_bytes", "fetch_light_block", "header_hash", "header_leaves",
    "validators_hash", "verify_adjacent", "verify_commit", "verify_signed_header",
    "verify_skipping", "verify_to_height", "vote_sign_bytes",
]

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


# --- bytes, exactly as CometBFT computes them ------------------------------------------------
def _merkle_root(items: Sequence[bytes]) -> bytes:
    return log.root([log.leaf_hash(item) for item in items])


def _timestamp_pb(moment: Timestamp) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=moment.seconds, nanos=moment.nanos)


def _block_id_pb(block_id: BlockId) -> types_pb2.BlockID:
    message = types_pb2.BlockID(hash=block_id.hash)
    message.part_set_header.SetInParent()  # not nullable in Go: always encoded
    message.part_set_header.total = block_id.parts_total
    message.part_set_header.hash = block_id.parts_hash
    return message


def header_leaves(header: Header) -> list[bytes]:
    """The 14 leaves of the header's Merkle tree, in field order."""
    def wrap(value: bytes) -> bytes:
        return wrappers_pb2.BytesValue(value=value).SerializeToString()

    version = version_pb2.Consensus(block=header.version_block, app=header.version_app)
    return [
        version.SerializeToString(),
        wrappers_pb2.StringValue(value=header.chain_id).SerializeToString(),
        wrappers_pb2.Int64Value(value=header.height).SerializeToString(),
        _timestamp_pb(header.time).SerializeToString(),
        _block_id_pb(header.last_block_id).SerializeToString(),
        *(wrap(getattr(header, name)) for name in _HEADER_HASHES),
        wrap(header.proposer_address),
    ]


def header_hash(header: Header) -> bytes:
    """The block's hash: the Merkle root over :func:`header_leaves`."""
    return _merkle_root(header_leaves(header))


def validators_hash(validators: ValidatorSet) -> bytes:
    """The set's hash: the Merkle root over each validator's ``SimpleValidator`` encoding."""
    return _merkle_root([
        validator_pb2.SimpleValidator(
            pub_key=keys_pb2.PublicKey(ed25519=v.public_key), voting_power=v.voting_power,
        ).SerializeToString()
        for v in validators.validators
    ])


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def canonical_vote_bytes(chain_id: str, height: int, round: int, block_id: BlockId | None,
                         timestamp: Timestamp) -> bytes:
    """The sign bytes of a precommit: a length-delimited ``CanonicalVote``. A zero or absent
    ``block_id`` (a vote for nil) leaves the block id out, as CometBFT does."""
    vote = canonical_pb2.CanonicalVote(type=types_pb2.SIGNED_MSG_TYPE_PRECOMMIT, height=height,
                                       round=round, chain_id=chain_id)
    vote.timestamp.CopyFrom(_timestamp_pb(timestamp))  # not nullable: always encoded
    if block_id is not None and not block_id.is_zero():
        vote.block_id.hash = block_id.hash
        vote.block_id.part_set_header.SetInParent()
        vote.block_id.part_set_header.total = block_id.parts_total
        vote.block_id.part_set_header.hash = block_id.parts_hash
    body = vote.SerializeToString()
    return _uvarint(len(body)) + body


def vote_sign_bytes(chain_id: str, commit: Commit, index: int) -> bytes:
    """What validator ``index`` of ``commit`` signed: its flag decides the block id."""
    sig = commit.signatures[index]
    block_id = commit.block_id if sig.flag is BlockIdFlag.COMMIT else None
    return canonical_vote_bytes(chain_id, commit.height, commit.round, block_id, sig.timestamp)


# --- commits ---------------------------------------------------------------------------------
def _check_commit_shape(validators: ValidatorSet, block_id: BlockId, height: int,
                        commit: Commit) -> None:
    if len(commit.signatures) != len(validators):
        raise InvalidCommit(commit.height, f"{len(commit.signatures)} signatures for a set of "
                                           f"{len(validators)} validators")
    if commit.height != height:
        raise InvalidCommit(commit.height, f"a commit for height {commit.height}, not {height}")
    if commit.block_id != block_id:
        raise InvalidCommit(height, f"signs block {commit.block_id.hash.hex().upper()}, "
                                    f"not {block_id.hash.hex().upper()}")


def _signer(validators: ValidatorSet, commit: Commit, index: int, by_index: bool,
            seen: set[bytes]) -> Validator | None:
    """The validator of entry ``index``: by position in the set's own commit (the address
    must agree), or by address in another set's view (strangers: None; twice: refused)."""
    address = commit.signatures[index].validator_address
    if by_index:
        validator = validators.validators[index]
        if validator.address != address:
            raise InvalidCommit(commit.height, f"signature {index} is from {address.hex().upper()}"
                                f", but validator {index} is {validator.address.hex().upper()}")
        return validator
    found = validators.by_address(address)
    if found is not None and address in seen:
        raise InvalidCommit(commit.height, f"validator {address.hex().upper()} signed twice")
    seen.add(address)
    return found


def _tally(chain_id: str, validators: ValidatorSet, commit: Commit, *, by_index: bool,
           checked: Callable[[CommitSig], bool]) -> int:
    """Verify every signature ``checked`` selects; return the power of those on COMMIT."""
    power, seen = 0, set[bytes]()
    for index, sig in enumerate(commit.signatures):
        validator = _signer(validators, commit, index, by_index, seen) if checked(sig) else None
        if validator is None:
            continue
        if not ed25519_verify(validator.public_key, vote_sign_bytes(chain_id, commit, index),
                              sig.signature):
            raise BadSignature(commit.height, index, sig.validator_address)
        if sig.flag is BlockIdFlag.COMMIT:
            power += validator.voting_power
    return power


def verify_commit(chain_id: str, validators: ValidatorSet, block_id: BlockId, height: int,
                  commit: Commit) -> None:
    """Check that more than 2/3 of ``validators``' power committed ``block_id`` at ``height``.

    Every signature that is not ABSENT is verified (NIL ones too), as CometBFT's
    ``VerifyCommit`` does; raises :class:`InvalidCommit` or a subclass.
    """
    _check_commit_shape(validators, block_id, height, commit)
    got = _tally(chain_id, validators, commit, by_index=True,
                 checked=lambda s: s.flag is not BlockIdFlag.ABSENT)
    _enough(height, got, validators.total_power)


def _enough(height: int, got: int, total: int) -> None:
    if got <= total * 2 // 3:
        raise NotEnoughPower(height, got, total * 2 // 3, total)


def _verify_commit_light(chain_id: str, validators: ValidatorSet, signed: SignedHeader) -> None:
    """``VerifyCommitLight`` with every counted signature checked: only COMMIT entries."""
    commit = signed.commit
    _check_commit_shape(validators, commit.block_id, signed.height, commit)
    got = _tally(chain_id, validators, commit, by_index=True,
                 checked=lambda s: s.flag is BlockIdFlag.COMMIT)
    _enough(signed.height, got, validators.total_power)


def _verify_commit_trusting(chain_id: str, trusted: ValidatorSet, signed: SignedHeader,
                            trust_level: Fraction) -> None:
    got = _tally(chain_id, trusted, signed.commit, by_index=False,
                 checked=lambda s: s.flag is BlockIdFlag.COMMIT)
    total = trusted.total_power
    needed = total * trust_level.numerator // trust_level.denominator
    if got <= needed:
        raise NotEnoughTrust(signed.height, got, needed, total, trust_level)


# --- headers ---------------------------------------------------------------------------------
def _check_self_consistent(chain_id: str, signed: SignedHeader,
                           validators: ValidatorSet) -> None:
    """The signed header belongs to ``chain_id``, its commit signs it, ``validators`` is the
    set it names."""
    header, height = signed.header, signed.height
    if header.chain_id != chain_id:
        raise WrongChain(height, "chain_id", "another chain", chain_id, header.chain_id)
    if signed.commit.height != height:
        raise InvalidHeader(height, "commit.height", "the commit is for another height",
                            height, signed.commit.height)
    if header_hash(header) != signed.commit.block_id.hash:
        raise HashMismatch(height, "hash", "the commit signs another block",
                           signed.commit.block_id.hash, header_hash(header))
    if header.version_block != BLOCK_PROTOCOL:
        raise InvalidHeader(height, "version.block", "another block protocol", BLOCK_PROTOCOL,
                            header.version_block)
    if header.validators_hash != validators_hash(validators):
        raise ValidatorsMismatch(height, "validators_hash", "not the hash of the set given",
                                 header.validators_hash, validators_hash(validators))


def verify_signed_header(chain_id: str, signed: SignedHeader, validators: ValidatorSet) -> None:
    """Believe ``signed`` against ``validators``, a set trusted already (a genesis set):
    its hash is the block the commit signs, it names the set, and the commit verifies."""
    _check_self_consistent(chain_id, signed, validators)
    verify_commit(chain_id, validators, signed.commit.block_id, signed.height, signed.commit)


def _check_new_header(trusted: SignedHeader, untrusted: SignedHeader,
                      untrusted_validators: ValidatorSet, trusting_period: timedelta,
                      now: Timestamp, max_clock_drift: timedelta) -> None:
    expires = trusted.header.time.plus(trusting_period)
    if not expires > now:
        raise TrustExpired(trusted.height, expires, now)
    _check_self_consistent(trusted.chain_id, untrusted, untrusted_validators)
    height, time = untrusted.height, untrusted.header.time
    if height <= trusted.height:
        raise InvalidHeader(height, "height", "not above the trusted header's",
                            f"> {trusted.height}", height)
    if not time > trusted.header.time:
        raise InvalidHeader(height, "time", "not after the trusted header's",
                            f"> {trusted.header.time}", str(time))
    if not time < now.plus(max_clock_drift):
        raise InvalidHeader(height, "time", f"in the future (now {now}, drift "
                            f"{max_clock_drift})", f"< {now.plus(max_clock_drift)}", str(time))


def verify_adjacent(trusted: SignedHeader, untrusted: SignedHeader,
                    untrusted_validators: ValidatorSet, *, trusting_period: timedelta,
                    now: Timestamp | datetime,
                    max_clock_drift: timedelta = DEFAULT_MAX_CLOCK_DRIFT) -> None:
    """Believe header H+1 after a trusted H (``light.VerifyAdjacent``): its set is the one H
    announced as next, and more than 2/3 of it signed."""
    now = _as_timestamp(now)
    if untrusted.height != trusted.height + 1:
        raise InvalidHeader(untrusted.height, "height", "not adjacent to the trusted header",
                            trusted.height + 1, untrusted.height)
    _check_new_header(trusted, untrusted, untrusted_validators, trusting_period, now,
                      max_clock_drift)
    if untrusted.header.validators_hash != trusted.header.next_validators_hash:
        raise ValidatorsMismatch(untrusted.height, "validators_hash", "not the next "
                                 "validators the trusted header announced",
                                 trusted.header.next_validators_hash,
                                 untrusted.header.validators_hash)
    _verify_commit_light(trusted.chain_id, untrusted_validators, untrusted)


def verify_skipping(trusted: SignedHeader, trusted_next_validators: ValidatorSet,
                    untrusted: SignedHeader, untrusted_validators: ValidatorSet, *,
                    trusting_period: timedelta, now: Timestamp | datetime,
                    trust_level: Fraction = DEFAULT_TRUST_LEVEL,
                    max_clock_drift: timedelta = DEFAULT_MAX_CLOCK_DRIFT) -> None:
    """Believe header H+n (n > 1) after a trusted H (``light.VerifyNonAdjacent``).

    ``trusted_next_validators`` must be a set the trusted header names: its
    ``next_validators_hash`` (the spec's choice) or its ``validators_hash`` (what CometBFT's
    client passes). More than ``trust_level`` of it must have signed the new commit
    (:class:`NotEnoughTrust` otherwise: bisect), then more than 2/3 of the new set.
    """
    now = _as_timestamp(now)
    if not Fraction(1, 3) <= trust_level <= 1:
        raise ValueError(f"trust level {trust_level} is outside [1/3, 1]")
    if untrusted.height == trusted.height + 1:
        raise InvalidHeader(untrusted.height, "height", "adjacent to the trusted header: "
                            "use verify_adjacent", f"> {trusted.height + 1}", untrusted.height)
    _check_new_header(trusted, untrusted, untrusted_validators, trusting_period, now,
                      max_clock_drift)
    named = (trusted.header.next_validators_hash, trusted.header.validators_hash)
    if validators_hash(trusted_next_validators) not in named:
        raise ValidatorsMismatch(trusted.height, "next_validators_hash", "the trusted set "
                                 "given is not one the trusted header names",
                                 trusted.header.next_validators_hash,
                                 validators_hash(trusted_next_validators))
    _verify_commit_trusting(trusted.chain_id, trusted_next_validators, untrusted, trust_level)
    _verify_commit_light(trusted.chain_id, untrusted_validators, untrusted)


# --- the RPC ---------------------------------------------------------------------------------
_MAX_PAGES = 100


def _rpc(client: httpx.Client, path: str, params: dict[str, int]) -> Any:
    url = f"{client.base_url}{path}"
    try:
        body = client.get(path, params=params).json()
    except (httpx.HTTPError, ValueError) as e:
        raise FetchFailed(url, f"{type(e).__name__}: {e}") from e
    if not isinstance(body, dict) or "result" not in body:
        error = body.get("error") if isinstance(body, dict) else body
        raise FetchFailed(url, f"no result: {str(error)[:300]}")
    return body["result"]


def fetch_light_block(client: httpx.Client, height: int, per_page: int = 100) -> LightBlock:
    """The signed header and the whole validator set of ``height`` from the RPC behind
    ``client`` (an ``httpx.Client`` with the RPC as ``base_url``). Nothing is verified."""
    signed = SignedHeader.from_json(_get(_rpc(client, "/commit", {"height": height}),
                                         "signed_header", "result"))
    if signed.height != height:
        raise FetchFailed(f"{client.base_url}/commit", f"asked for {height}, got {signed.height}")
    validators: list[Any] = []
    for page in range(1, _MAX_PAGES + 1):
        result = _rpc(client, "/validators",
                      {"height": height, "page": page, "per_page": per_page})
        batch = _get(result, "validators", "result")
        total = _int(result, "total", "result", 1)
        _require(isinstance(batch, list) and bool(batch), "result.validators", "an empty page")
        validators += batch
        if len(validators) >= total:
            break
    return LightBlock(signed, ValidatorSet.from_json(validators))


def verify_to_height(rpc: str | httpx.Client, trusted: LightBlock, height: int, *,
                     trusting_period: timedelta, now: Timestamp | datetime | None = None,
                     trust_level: Fraction = DEFAULT_TRUST_LEVEL,
                     max_clock_drift: timedelta = DEFAULT_MAX_CLOCK_DRIFT,
                     max_fetches: int = 64) -> LightBlock:
    """Fetch header ``height`` (and whatever lies between) from a CometBFT RPC and verify it
    from ``trusted``: adjacent for the next height, skipping otherwise, and bisecting (as
    CometBFT's client does: halfway, then on) whenever a skip lacks trust. Returns the
    verified light block; raises a :class:`LightClientError` for the first check that fails.
    """
    if isinstance(rpc, str):
        with httpx.Client(base_url=rpc, timeout=10) as client:
            return verify_to_height(client, trusted, height, trusting_period=trusting_period,
                                    now=now, trust_level=trust_level,
                                    max_clock_drift=max_clock_drift, max_fetches=max_fetches)
    if height <= trusted.height:
        raise ValueError(f"height {height} is not above the trusted {trusted.height}")
    moment = _as_timestamp(now if now is not None else datetime.now(UTC))
    if trusted.signed_header.header.validators_hash != validators_hash(trusted.validators):
        raise ValidatorsMismatch(trusted.height, "validators_hash", "the trusted set is not "
                                 "the trusted header's")
    verified, pending, fetches = trusted, [fetch_light_block(rpc, height)], 1
    while pending:
        block = pending[-1]
        try:
            _verify_step(verified, block, trusting_period, moment, trust_level, max_clock_drift)
        except NotEnoughTrust:
            if fetches >= max_fetches:
                raise
            pivot = verified.height + (block.height - verified.height) // 2
            pending.append(fetch_light_block(rpc, pivot))
            fetches += 1
            continue
        verified = pending.pop()
    return verified


def _verify_step(trusted: LightBlock, block: LightBlock, trusting_period: timedelta,
                 now: Timestamp, trust_level: Fraction, max_clock_drift: timedelta) -> None:
    if block.height == trusted.height + 1:
        verify_adjacent(trusted.signed_header, block.signed_header, block.validators,
                        trusting_period=trusting_period, now=now,
                        max_clock_drift=max_clock_drift)
    else:
        verify_skipping(trusted.signed_header, trusted.validators, block.signed_header,
                        block.validators, trusting_period=trusting_period, now=now,
                        trust_level=trust_level, max_clock_drift=max_clock_drift)
