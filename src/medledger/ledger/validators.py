"""The validator set: public keys with voting power, and its hash."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medledger.codec import Tag, encode, tagged_hash
from medledger.ledger.errors import MalformedError
from medledger.ledger.fields import read_bytes, read_int, read_str, require_keys

__all__ = ["MAX_POWER", "MAX_TOTAL_POWER", "Validator", "ValidatorSet"]

_FIELDS = frozenset({"name", "power", "public_key"})
MAX_TOTAL_POWER = 1_000_000
"""The most voting power a validator set may hold in all. Consensus computes one full
period of the weighted round-robin proposer schedule, ``total_power`` steps long
(``consensus/proposer.py``); consortium sets hold tens to thousands."""
MAX_POWER = MAX_TOTAL_POWER
"""The most voting power one validator may hold."""


@dataclass(frozen=True, slots=True)
class Validator:
    """One validator: its Ed25519 public key, voting power and a display name."""

    public_key: bytes
    power: int
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "power": self.power, "public_key": self.public_key.hex()}

    @classmethod
    def from_dict(cls, data: Any) -> Validator:
        data = require_keys(data, "validator", _FIELDS)
        return cls(
            public_key=read_bytes(data, "public_key", 32),
            power=read_int(data, "power", 1, MAX_POWER),
            name=read_str(data, "name", 64),
        )


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """An ordered set of validators (sorted by public key, no duplicates)."""

    validators: tuple[Validator, ...]
    _hash: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = [v.public_key for v in self.validators]
        if not keys:
            raise MalformedError("validators", "the set is empty")
        if keys != sorted(set(keys)):
            raise MalformedError("validators", "must be sorted by public key, no duplicates")

    @classmethod
    def of(cls, validators: list[Validator]) -> ValidatorSet:
        return cls(tuple(sorted(validators, key=lambda v: v.public_key)))

    @classmethod
    def from_list(cls, data: Any) -> ValidatorSet:
        if type(data) is not list:
            raise MalformedError("validators", "must be a list")
        return cls.of([Validator.from_dict(item) for item in data])

    def to_list(self) -> list[dict[str, Any]]:
        return [v.to_dict() for v in self.validators]

    @property
    def total_power(self) -> int:
        return sum(v.power for v in self.validators)

    def power_of(self, public_key: bytes) -> int:
        for v in self.validators:
            if v.public_key == public_key:
                return v.power
        return 0

    def hash(self) -> bytes:
        """``tagged_hash(VALIDATORS, canonical list)``: what block headers commit to
        (computed once per set: the set is immutable)."""
        if self._hash is None:
            object.__setattr__(self, "_hash", tagged_hash(Tag.VALIDATORS, encode(self.to_list())))
        return self._hash  # type: ignore[return-value]
