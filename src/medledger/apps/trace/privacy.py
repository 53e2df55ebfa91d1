"""The patient's commitment on a dispensing: how a recall reaches the patients who received
a pack of the lot, and no one else learns who they are.

At dispensing the patient's device gives the pharmacy a commitment to (pseudonym, pack),
salted with a salt only the device can make::

    salt       = HMAC-SHA256(secret, "salt" || pack key)
    commitment = SHA-256("medledger:dispense-commitment\\x00" || salt || pseudonym ||
                         pack key)

where ``secret`` is derived from the patient's signing key (:func:`patient_secret`). The
ledger stores the commitment with the dispensing and, when the lot is recalled, emits a
``trace.recall_notice`` with it. The patient's device recomputes the commitment of every
pack of a recalled lot (the lot's packs are a provable list) and finds its own; to anyone
without the secret the commitments are random. Revealing ``salt`` and the pseudonym opens a
commitment (to the claims app, with the patient's consent): :func:`opens`.
"""

from __future__ import annotations

import hashlib
import hmac

from medledger.standards.gs1 import SGTIN

__all__ = ["commitment", "opens", "patient_secret", "salt"]

_DOMAIN = b"medledger:dispense-commitment\x00"
_SECRET_INFO = b"medledger:dispense-secret\x00"


def patient_secret(signing_seed: bytes) -> bytes:
    """The device's secret for commitments, from the patient's signing seed (a rotation to
    new keys makes a new secret: commitments made before stay openable with the old
    keystore)."""
    return hmac.new(signing_seed, _SECRET_INFO, hashlib.sha256).digest()


def salt(secret: bytes, pack: SGTIN) -> bytes:
    return hmac.new(secret, b"salt" + pack.key.encode("ascii"), hashlib.sha256).digest()


def commitment(secret: bytes, pseudonym: str, pack: SGTIN) -> str:
    """The commitment (64 hex) the pharmacy records when it dispenses ``pack`` to the
    patient ``pseudonym``."""
    return _commit(salt(secret, pack), pseudonym, pack)


def opens(value: str, salt_: bytes, pseudonym: str, pack: SGTIN) -> bool:
    """Whether ``salt_`` and ``pseudonym`` open the commitment ``value`` for ``pack``."""
    return hmac.compare_digest(_commit(salt_, pseudonym, pack), value)


def _commit(salt_: bytes, pseudonym: str, pack: SGTIN) -> str:
    return hashlib.sha256(_DOMAIN + salt_ + pseudonym.encode("ascii")
                          + pack.key.encode("ascii")).hexdigest()
