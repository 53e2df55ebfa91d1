"""Commit certificates: validator signatures (precommits) over a block hash.

A certificate commits block ``height`` when signatures from validators holding more than
2/3 of the voting power verify. Each signature covers ``Tag.COMMIT_SIGN.prefix +
encode({"block_hash", "chain_id", "height", "round", "time", "type": "precommit"})``; the
``time`` each validator signs feeds the BFT time of the next block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medledger.codec import Tag, encode, tagged_hash
from medledger.crypto import SigningKey, verify
from medledger.ledger.errors import IntegrityError, MalformedError
from medledger.ledger.fields import read_bytes, read_int, require_keys
from medledger.ledger.validators import ValidatorSet

__all__ = ["Certificate", "CommitSig", "commit_sign_bytes"]

_SIG_FIELDS = frozenset({"signature", "time", "validator"})
_CERT_FIELDS = frozenset({"block_hash", "height", "round", "signatures"})


def commit_sign_bytes(chain_id: str, height: int, round_: int, block_hash: bytes, time: int) -> bytes:
    """The bytes a validator signs to commit a block (a precommit)."""
    body = {
        "block_hash": block_hash.hex(),
        "chain_id": chain_id,
        "height": height,
        "round": round_,
        "time": time,
        "type": "precommit",
    }
    return Tag.COMMIT_SIGN.prefix + encode(body)


@dataclass(frozen=True, slots=True)
class CommitSig:
    """One validator's precommit signature, with the time it signed (ms since epoch)."""

    validator: bytes
    time: int
    signature: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature": self.signature.hex(),
            "time": self.time,
            "validator": self.validator.hex(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> CommitSig:
        data = require_keys(data, "commit signature", _SIG_FIELDS)
        return cls(
            validator=read_bytes(data, "validator", 32),
            time=read_int(data, "time"),
            signature=read_bytes(data, "signature", 64),
        )


@dataclass(frozen=True, slots=True)
class Certificate:
    """The precommits that commit one block; carried in the next block and served to clients."""

    height: int
    round: int
    block_hash: bytes
    signatures: tuple[CommitSig, ...]

    @classmethod
    def sign(
        cls, keys: list[SigningKey], chain_id: str, height: int, block_hash: bytes, time: int,
        round_: int = 0,
    ) -> Certificate:
        """Build a certificate signed by ``keys`` (each signing the same time)."""
        message = commit_sign_bytes(chain_id, height, round_, block_hash, time)
        sigs = [CommitSig(k.public_key, time, k.sign(message)) for k in keys]
        sigs.sort(key=lambda s: s.validator)
        return cls(height, round_, block_hash, tuple(sigs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "block_hash": self.block_hash.hex(),
            "height": self.height,
            "round": self.round,
            "signatures": [s.to_dict() for s in self.signatures],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Certificate:
        data = require_keys(data, "certificate", _CERT_FIELDS)
        sigs = data["signatures"]
        if type(sigs) is not list:
            raise MalformedError("signatures", "must be a list")
        return cls(
            height=read_int(data, "height", 1),
            round=read_int(data, "round"),
            block_hash=read_bytes(data, "block_hash", 32),
            signatures=tuple(CommitSig.from_dict(s) for s in sigs),
        )

    def hash(self) -> bytes:
        return tagged_hash(Tag.COMMIT, encode(self.to_dict()))

    def verify(self, chain_id: str, validators: ValidatorSet) -> None:
        """Raise IntegrityError unless >2/3 of ``validators``' power signed this block."""
        seen: set[bytes] = set()
        power = 0
        for sig in self.signatures:
            if sig.validator in seen:
                raise IntegrityError(self.height, "certificate lists a validator twice")
            seen.add(sig.validator)
            weight = validators.power_of(sig.validator)
            if weight == 0:
                raise IntegrityError(self.height, "certificate signed by a non-validator",
                                     got=sig.validator.hex())
            message = commit_sign_bytes(chain_id, self.height, self.round, self.block_hash, sig.time)
            if not verify(sig.validator, message, sig.signature):
                raise IntegrityError(self.height, "bad commit signature", got=sig.validator.hex())
            power += weight
        if 3 * power <= 2 * validators.total_power:
            raise IntegrityError(self.height, "certificate lacks 2/3 of voting power",
                                 expected=f">{2 * validators.total_power // 3}", got=str(power))

    def bft_time(self, validators: ValidatorSet) -> int:
        """The voting-power-weighted median of the signed times."""
        weighted = sorted((s.time, validators.power_of(s.validator)) for s in self.signatures)
        total = sum(w for _, w in weighted)
        acc = 0
        for time, weight in weighted:
            acc += weight
            if 2 * acc >= total:
                return time
        raise IntegrityError(self.height, "certificate has no signatures")
