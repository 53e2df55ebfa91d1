"""The client side of break-glass: a patient's emergency key, split among hospitals.

The patient's client makes an HPKE key pair, publishes the public key (every record added
afterwards is also sealed for it) and splits the private key k-of-n with SLIP-39
(:func:`medledger.client.records.split_keys`), one share per hospital, each wrapped for
the encryption key of the admin who holds it for the organisation. The private key then
leaves the patient's device only as shares. In an emergency, each holder that agrees
re-wraps its share for the emergency clinician's key (:func:`release_share`); with k of
them the clinician recovers the private key and opens the records (:func:`emergency_open`).

Bytes::

    org share     split_keys: HPKE seal of the SLIP-39 mnemonic to the holder's key,
                  info = b"medledger:recovery-share\\x00"
    released      HPKE seal of the same mnemonic to the clinician's key,
                  info = b"medledger:emergency-release\\x00" || emergency id (32 bytes)

Every error is a :class:`~medledger.client.records.RecordError` (``RecoveryError`` when
the released shares do not give the key); no message repeats a key or a share.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medledger.client.records import (
    RecordError,
    RecoveryError,
    open_record,
    recover_keys,
    split_keys,
    unwrap_share,
)
from medledger.codec.b64 import b64url, from_b64url
from medledger.crypto import DEFAULT_SUITE, DecryptionError, EncryptionKey, seal

__all__ = ["EmergencyKey", "Holder", "OrgShare", "create_emergency_key",
           "default_threshold", "emergency_open", "recover_emergency_key", "release_share"]

_RELEASE_DOMAIN = b"medledger:emergency-release\x00"
_ID = re.compile(r"[0-9a-f]{64}")

#: The admin who holds an organisation's share: (key hex, encryption public key, suite).
Holder = tuple[str, bytes, str]


def default_threshold(n: int) -> int:
    """k for n hospitals: 3, or all of them in a consortium of fewer than three."""
    return min(3, n)


@dataclass(frozen=True, slots=True)
class OrgShare:
    """An organisation's share, wrapped (base64url) for the admin ``holder`` (key hex)."""

    org: str
    holder: str
    wrapped: str


@dataclass(frozen=True, slots=True)
class EmergencyKey:
    """A new emergency key as the ledger takes it: the public key and its suite, the
    threshold, and one wrapped share per organisation (sorted by organisation). The
    private key is not kept."""

    enc_key: bytes
    enc_suite: str
    threshold: int
    shares: tuple[OrgShare, ...]

    def body(self, patient: str, keys: Sequence[Mapping[str, str]] = ()) -> dict[str, Any]:
        """The ``records.emergency_key`` body; ``keys``: ``[{"record", "wrapped"}]`` for
        the patient's existing records."""
        return {"patient": patient, "enc_key": self.enc_key.hex(), "enc_suite": self.enc_suite,
                "threshold": self.threshold,
                "shares": [{"org": s.org, "holder": s.holder, "wrapped": s.wrapped}
                           for s in self.shares],
                "keys": [dict(k) for k in keys]}


def create_emergency_key(holders: Mapping[str, Holder], threshold: int | None = None, *,
                         suite: str = DEFAULT_SUITE) -> EmergencyKey:
    """Make an emergency key pair of ``suite`` and split its private key among ``holders``
    (organisation id -> :data:`Holder`), ``threshold`` of them needed (default
    :func:`default_threshold`). Raise :class:`RecordError` for a bad threshold or holders
    (two organisations with one holder, more than 16)."""
    if not holders:
        raise RecordError("no organisation to hold a share")
    by_holder = {key: org for org, (key, _, _) in holders.items()}
    if len(by_holder) != len(holders):
        raise RecordError("two organisations name the same holder")
    k = default_threshold(len(holders)) if threshold is None else threshold
    pair = EncryptionKey.generate(suite)
    wrapped = split_keys(pair.private_bytes(),
                         {key: (public, s) for key, public, s in holders.values()}, k)
    shares = sorted((OrgShare(by_holder[w["guardian"]], w["guardian"], w["wrapped_share"])
                     for w in wrapped), key=lambda s: s.org)
    return EmergencyKey(pair.public_bytes(), pair.suite, k, tuple(shares))


def release_share(wrapped_share: str, holder_key: EncryptionKey, *, emergency_id: str,
                  clinician_key: bytes, clinician_suite: str) -> str:
    """The holding admin opens its organisation's share with its own encryption key and
    re-wraps it for the emergency clinician's public key, bound to ``emergency_id``;
    return it in unpadded base64url. Raise ``RecoveryError`` if the share is not this admin's."""
    share = unwrap_share(wrapped_share, holder_key)
    return b64url(seal(clinician_key, share, suite=clinician_suite,
                       info=_release_info(emergency_id)))


def recover_emergency_key(released: Sequence[str], clinician_key: EncryptionKey, *,
                          emergency_id: str, enc_key: bytes, enc_suite: str,
                          threshold: int) -> EncryptionKey:
    """The emergency private key from released shares (base64url, as ``records.release`` carries
    them), each opened with the clinician's key. Shares that do not open, or do not
    combine, are left out as long as ``threshold`` good ones remain; the key found must be
    the published ``enc_key``. Raise :class:`RecoveryError` otherwise."""
    opened = []
    for share in released:
        try:
            opened.append(clinician_key.open(from_b64url(share), _release_info(emergency_id)))
        except (ValueError, DecryptionError):
            continue  # another clinician's, another emergency's, or altered
    if len(opened) < threshold:
        raise RecoveryError(f"{threshold} released shares are needed, {len(opened)} open "
                            "with this key")
    for chosen in itertools.combinations(opened, threshold):
        try:
            secret = recover_keys(chosen)
            key = EncryptionKey.from_private_bytes(enc_suite, secret)
        except (RecordError, ValueError):
            continue
        if key.public_bytes() == enc_key:
            return key
    raise RecoveryError("the released shares do not combine to the patient's emergency key: "
                        "one of them is wrong")


def emergency_open(ciphertext: bytes, wrapped: str, released: Sequence[str],
                   clinician_key: EncryptionKey, *, emergency_id: str, enc_key: bytes,
                   enc_suite: str, threshold: int, patient_pseudonym: str, category: str,
                   digest: str | None = None) -> bytes:
    """Recover the emergency key from ``threshold`` released shares
    (:func:`recover_emergency_key`), unwrap the record's content key ``wrapped`` for it,
    and decrypt ``ciphertext``; its plaintext (errors as
    :func:`~medledger.client.records.open_record`)."""
    key = recover_emergency_key(released, clinician_key, emergency_id=emergency_id,
                                enc_key=enc_key, enc_suite=enc_suite, threshold=threshold)
    return open_record(ciphertext, wrapped, key, patient_pseudonym=patient_pseudonym,
                       category=category, digest=digest)


def _release_info(emergency_id: str) -> bytes:
    if not (isinstance(emergency_id, str) and _ID.fullmatch(emergency_id)):
        raise RecordError("an emergency id is 64 lower-case hex characters")
    return _RELEASE_DOMAIN + bytes.fromhex(emergency_id)
