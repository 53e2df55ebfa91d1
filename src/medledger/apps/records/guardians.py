"""Guardian share files: a patient's keystore split k-of-n among guardians (ADR 0011).

Each of the keystore's two secrets (the signing seed and the encryption key, 32 bytes
each) is split with SLIP-39 and every share wrapped (HPKE) to its guardian's registered
encryption key (:meth:`RecordSealing.split_keys`). Nothing goes on the ledger: the patient
hands each guardian their file, which opens only with that guardian's key::

    {"format": "medledger-guardian-share", "version": 1,
     "patient": <pseudonym>, "signing_key": <the patient's key hex>,
     "encryption_suite": <suite>, "threshold": k, "guardians": n,
     "guardian": <the guardian's key hex>,
     "shares": {"signing.seed": <wrapped, base64url>, "encryption.key": <wrapped, base64url>}}

The public fields say whose keys a file recovers and how many files are needed; the
secrets are only in the wrapped shares.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medledger.apps.host import RecordSealing
from medledger.crypto import EncryptionKey, Keystore

__all__ = ["FORMAT", "SECRETS", "ShareFile", "recover", "split"]

FORMAT = "medledger-guardian-share"
VERSION = 1
SECRETS = (Keystore.SIGNING_SEED, Keystore.ENCRYPTION_KEY)
_FIELDS = ("format", "version", "patient", "signing_key", "encryption_suite", "threshold",
           "guardians", "guardian", "shares")


@dataclass(frozen=True, slots=True)
class ShareFile:
    """One guardian's file (see the module docstring)."""

    patient: str
    signing_key: str
    encryption_suite: str
    threshold: int
    guardians: int
    guardian: str
    shares: Mapping[str, str]

    def encode(self) -> bytes:
        """The file's bytes: JSON, keys sorted."""
        return json.dumps({"format": FORMAT, "version": VERSION, "patient": self.patient,
                           "signing_key": self.signing_key,
                           "encryption_suite": self.encryption_suite,
                           "threshold": self.threshold, "guardians": self.guardians,
                           "guardian": self.guardian, "shares": dict(self.shares)},
                          indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> ShareFile:
        """A share file from its bytes; ValueError saying what is wrong."""
        try:
            raw: Any = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError("not a guardian share file (not JSON)") from e
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError(f"not a guardian share file (format is not {FORMAT!r})")
        if raw.get("version") != VERSION or sorted(raw) != sorted(_FIELDS):
            raise ValueError(f"a guardian share file of version {VERSION} has exactly the "
                             f"fields {', '.join(_FIELDS)}")
        shares = raw["shares"]
        if not isinstance(shares, dict) or sorted(shares) != sorted(SECRETS) or not all(
                isinstance(v, str) for v in shares.values()):
            raise ValueError(f"shares must hold {' and '.join(SECRETS)}")
        return cls(str(raw["patient"]), str(raw["signing_key"]), str(raw["encryption_suite"]),
                   int(raw["threshold"]), int(raw["guardians"]), str(raw["guardian"]),
                   dict(shares))


def split(sealing: RecordSealing, keys: Keystore, pseudonym: str,
          guardians: Mapping[str, tuple[bytes, str]], threshold: int) -> list[ShareFile]:
    """One share file per guardian, sorted by guardian key (ValueError for a bad threshold
    or guardian set)."""
    secrets = keys.to_secrets()
    wrapped = {name: {s["guardian"]: s["wrapped_share"]
                      for s in sealing.split_keys(secrets[name], guardians, threshold)}
               for name in SECRETS}
    return [ShareFile(pseudonym, keys.signing.public_key.hex(), keys.encryption.suite,
                      threshold, len(guardians), guardian,
                      {name: wrapped[name][guardian] for name in SECRETS})
            for guardian in sorted(guardians)]


def recover(sealing: RecordSealing, files: Sequence[ShareFile],
            openers: Mapping[str, EncryptionKey]) -> Keystore:
    """The patient's keys from share files, each opened with its guardian's encryption key
    (``openers``: guardian key hex -> key). ValueError saying what is missing or wrong."""
    if not files:
        raise ValueError("no share files given")
    first = files[0]
    if any((f.signing_key, f.threshold) != (first.signing_key, first.threshold)
           for f in files):
        raise ValueError("the share files come from different splits (another patient or "
                         "another `guardians set`)")
    if len({f.guardian for f in files}) != len(files):
        raise ValueError("two share files are the same guardian's")
    if len(files) < first.threshold:
        raise ValueError(f"{first.threshold} of the {first.guardians} guardians' files are "
                         f"needed, {len(files)} given")
    lacking = [f.guardian for f in files if f.guardian not in openers]
    if lacking:
        raise ValueError(f"no --guardian-key for guardian {lacking[0]}: each file opens only "
                         "with its guardian's keystore")
    secrets = {name: sealing.recover_keys([sealing.unwrap_share(f.shares[name],
                                                                openers[f.guardian])
                                           for f in files])
               for name in SECRETS}
    secrets[Keystore.ENCRYPTION_SUITE] = first.encryption_suite.encode("ascii")
    keys = Keystore.from_secrets(secrets)
    if keys.signing.public_key.hex() != first.signing_key:
        raise ValueError("the recovered key is not the one the files name: a file is wrong")
    return keys
