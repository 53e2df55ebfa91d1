"""A validator's signer that remembers, across crashes, what it last signed.

:class:`FileSigner` applies the double-sign rules of
:mod:`medledger.consensus.signer` and persists the last signed message (height, round,
step, block hash, signature and the rest of the message) to a small JSON file *before* it
returns a signature: the file is written to a temporary name, fsynced, renamed over the
old one, and the directory fsynced. A node restarted after a crash loads the file, so it
never signs a vote that conflicts with one it may already have sent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medledger.consensus.events import PROPOSE_STEP
from medledger.consensus.signer import LastSigned, check_sign
from medledger.crypto import SigningKey
from medledger.ledger import Proposal, Vote

__all__ = ["FileSigner"]


class FileSigner:
    """A :class:`~medledger.consensus.signer.Signer` whose last signature survives a crash."""

    def __init__(self, key: SigningKey, chain_id: str, path: Path) -> None:
        self._key = key
        self._chain_id = chain_id
        self.path = Path(path)
        self.last = self._load()

    @property
    def public_key(self) -> bytes:
        return self._key.public_key

    def sign_vote(self, type_: str, height: int, round_: int, block_hash: bytes | None,
                  time: int) -> Vote | None:
        fresh, earlier = check_sign(self.last, height, round_, type_, (block_hash, -1))
        if not fresh:
            return earlier if isinstance(earlier, Vote) else None
        vote = Vote.sign(self._key, self._chain_id, type_, height, round_, block_hash, time)
        self._save(LastSigned(height, round_, type_, vote))
        return vote

    def sign_proposal(self, height: int, round_: int, pol_round: int,
                      block_hash: bytes) -> Proposal | None:
        fresh, earlier = check_sign(self.last, height, round_, PROPOSE_STEP,
                                    (block_hash, pol_round))
        if not fresh:
            return earlier if isinstance(earlier, Proposal) else None
        proposal = Proposal.sign(self._key, self._chain_id, height, round_, pol_round,
                                 block_hash)
        self._save(LastSigned(height, round_, PROPOSE_STEP, proposal))
        return proposal

    # --- persistence -----------------------------------------------------------------------
    def _save(self, last: LastSigned) -> None:
        """Write ``last`` durably, then adopt it (only then may the signature leave)."""
        kind = "proposal" if isinstance(last.message, Proposal) else "vote"
        record: dict[str, Any] = {
            "block_hash": None if last.message.block_hash is None
            else last.message.block_hash.hex(),
            "height": last.height, "round": last.round, "step": last.step,
            "signature": last.message.signature.hex(),
            "kind": kind, "message": last.message.to_dict(),
        }
        temp = self.path.with_name(self.path.name + ".tmp")
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(record, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self.last = last

    def _load(self) -> LastSigned | None:
        if not self.path.exists():
            return None
        record = json.loads(self.path.read_text(encoding="utf-8"))
        message: Vote | Proposal
        if record["kind"] == "proposal":
            message = Proposal.from_dict(record["message"])
        else:
            message = Vote.from_dict(record["message"])
        if message.signature.hex() != record["signature"]:
            raise ValueError(f"{self.path}: the record does not match its message")
        return LastSigned(int(record["height"]), int(record["round"]), str(record["step"]),
                          message)
