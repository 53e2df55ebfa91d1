"""The genesis document: chain id, start time, first validator set, founding organisations.

Every node of a chain holds the same genesis file; its hash is written into the store on
first start, and a node refuses to run a store made from another genesis.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medledger.apps import AppRegistry, default_registry
from medledger.codec import CodecError, Tag, decode, encode, tagged_hash
from medledger.ledger import CHAIN_ID, LedgerError, ValidatorSet
from medledger.ledger.validators import MAX_TOTAL_POWER

__all__ = ["Genesis", "GenesisError"]

_FIELDS = {"chain_id", "genesis_time", "organisations", "validators"}


class GenesisError(ValueError):
    """The genesis file is missing, malformed or inconsistent; the message says where."""


@dataclass(frozen=True, slots=True)
class Genesis:
    """A parsed, checked genesis document."""

    chain_id: str
    genesis_time: int
    validators: ValidatorSet
    organisations: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "genesis_time": self.genesis_time,
            "organisations": list(self.organisations),
            "validators": self.validators.to_list(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Genesis:
        if type(data) is not dict or set(data) != _FIELDS:
            raise GenesisError(f"genesis needs exactly the fields {sorted(_FIELDS)}")
        chain_id = data["chain_id"]
        if type(chain_id) is not str or not CHAIN_ID.fullmatch(chain_id):
            raise GenesisError("chain_id must be 1-64 of A-Z a-z 0-9 . _ -")
        if type(data["genesis_time"]) is not int or data["genesis_time"] < 0:
            raise GenesisError("genesis_time must be milliseconds since the epoch")
        orgs = data["organisations"]
        if type(orgs) is not list:
            raise GenesisError("organisations must be a list")
        try:
            validators = ValidatorSet.from_list(data["validators"])
        except (LedgerError, ValueError) as e:
            raise GenesisError(str(e)) from e
        if validators.total_power > MAX_TOTAL_POWER:
            raise GenesisError(f"the validators' total power {validators.total_power} exceeds "
                               f"{MAX_TOTAL_POWER}")
        genesis = cls(chain_id, data["genesis_time"], validators, tuple(orgs))
        try:
            default_registry().check_genesis(genesis)
        except ValueError as e:
            raise GenesisError(str(e)) from e
        return genesis

    def encode(self) -> bytes:
        return encode(self.to_dict())

    def hash(self) -> bytes:
        return tagged_hash(Tag.GENESIS, self.encode())

    def state_writes(self, registry: AppRegistry | None = None) -> dict[str, bytes]:
        """The state entries genesis creates, as canonical bytes by key: each app's
        (``registry``'s, by default every app this build knows)."""
        return (registry or default_registry()).genesis_writes(self)

    @classmethod
    def load(cls, path: str | Path) -> Genesis:
        try:
            data = decode(Path(path).read_bytes())
        except OSError as e:
            raise GenesisError(f"cannot read genesis {path}: {e.strerror}") from e
        except CodecError as e:
            raise GenesisError(f"genesis {path} is not valid JSON: {e}") from e
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self.encode() + b"\n")
        os.replace(tmp, path)
