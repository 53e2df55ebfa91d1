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

from medledger.consensus.signer import LastSigned, MemorySigner
from medledger.crypto import SigningKey
from medledger.ledger import Proposal, Vote

__all__ = ["FileSigner"]


class FileSigner(MemorySigner):
    """A :class:`~medledger.consensus.signer.Signer` whose last signature survives a crash:
    the rules of :class:`~medledger.consensus.signer.MemorySigner`, with the last signed
    message written durably before the signature is returned."""

    def __init__(self, key: SigningKey, chain_id: str, path: Path) -> None:
        super().__init__(key, chain_id)
        self.path = Path(path)
        self.last = self._load()

    # --- persistence -----------------------------------------------------------------------
    def _remember(self, last: LastSigned) -> None:
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
