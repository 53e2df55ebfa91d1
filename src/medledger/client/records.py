"""The client side of encrypted records: sealing, key wrapping, opening, key recovery.

This runs on a patient's or a clinician's device. Nothing here reaches the ledger in clear
but digests, sizes, categories, pseudonyms and wrapped keys.

Sealing a record::

    content key  32 random bytes, fresh for every record (and every version)
    ciphertext   nonce (12 random bytes) || AES-256-GCM(content key, nonce, plaintext, ad)
    ad           b"medledger:record-content\\x00" || RFC 8785 {"category", "patient"}
    digest       SHA-256(ciphertext), lower-case hex: the blob's name on every node
    wrapped key  HPKE seal of the content key to a reader's encryption key, with
                 info = b"medledger:record-key\\x00" || digest (32 bytes)

The associated data binds the ciphertext to its patient and category, so a ciphertext
filed under another patient or category does not open. The ``info`` binds each wrapped key
to one ciphertext, so a wrapped key cannot be replayed onto another record.

AES-256-GCM rather than the ChaCha20-Poly1305 inside HPKE: the portal opens records in the
browser, where WebCrypto has AES-GCM natively (and hardware-fast for large content such as
imaging) but no ChaCha20-Poly1305. Each content key encrypts exactly one message, so a
random nonce can never repeat under a key.

Key recovery splits a secret (a patient's private key, for example) k-of-n among guardians
with SLIP-39 (one group, ``threshold`` of ``n`` members); each mnemonic share is wrapped
with HPKE to its guardian under ``info = b"medledger:recovery-share\\x00"``. SLIP-39 shares
carry a checksum and the secret a digest, so a wrong, corrupted or missing share is
detected instead of yielding wrong bytes.

Errors::

    RecordError (ValueError)     root of everything raised here
    ├── DigestMismatch           a ciphertext is not the one named (.expected, .got)
    ├── KeyUnwrapError           a wrapped key does not open with this key for this
    │                            ciphertext (.digest, .suite)
    ├── ContentDecryptionError   the content key is right but the content does not decrypt
    │                            for this patient and category (.digest, .category)
    └── RecoveryError            shares do not recover a secret (.reason)

Errors from ``cryptography`` and ``shamir_mnemonic`` are wrapped; no message repeats
content, keys or shares.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import shamir_mnemonic
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medledger.codec import encode
from medledger.codec.b64 import b64url, from_b64url
from medledger.crypto import DecryptionError, EncryptionKey, seal
from medledger.standards import CATEGORIES

__all__ = [
    "CONTENT_KEY_SIZE",
    "NONCE_SIZE",
    "ContentDecryptionError",
    "DigestMismatch",
    "KeyUnwrapError",
    "RecordError",
    "RecoveryError",
    "SealedRecord",
    "WrappedKey",
    "content_digest",
    "open_record",
    "records_add_body",
    "recover_keys",
    "seal_record",
    "split_keys",
    "unwrap",
    "unwrap_share",
    "wrap_for",
]

CONTENT_KEY_SIZE = 32
NONCE_SIZE = 12
_TAG_SIZE = 16
_CONTENT_DOMAIN = b"medledger:record-content\x00"
_KEY_DOMAIN = b"medledger:record-key\x00"
_SHARE_DOMAIN = b"medledger:recovery-share\x00"
_HEX_KEY = re.compile(r"(?:[0-9a-f]{2})+")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_MAX_SHARES = 16  # SLIP-39's limit on the members of a group

#: A reader or guardian: its public encryption key and the HPKE suite of that key.
Recipient = tuple[bytes, str]


class RecordError(ValueError):
    """Root of the errors raised by :mod:`medledger.client.records`."""


class DigestMismatch(RecordError):
    """The ciphertext's SHA-256 is ``got``, not the ``expected`` digest it was named by."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"ciphertext digest is {got}, expected {expected}: "
                         "the content was altered or is another record's")
        self.expected = expected
        self.got = got


class KeyUnwrapError(RecordError):
    """A wrapped content key does not open with this encryption key for this ciphertext."""

    def __init__(self, digest: str, suite: str) -> None:
        super().__init__(f"the wrapped key for record {digest} does not open with this "
                         f"{suite} key: it was wrapped for another reader, for another "
                         "ciphertext, or it was altered")
        self.digest = digest
        self.suite = suite


class ContentDecryptionError(RecordError):
    """The content key opened but the content does not decrypt as this patient's
    ``category`` record: the ciphertext was sealed for another patient or category."""

    def __init__(self, digest: str, category: str) -> None:
        super().__init__(f"record {digest} does not decrypt as a {category!r} record of this "
                         "patient: it was sealed for another patient or category, or altered")
        self.digest = digest
        self.category = category


class RecoveryError(RecordError):
    """The shares given do not recover a secret; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot recover the key: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A content key wrapped (HPKE) for one reader: ``reader`` key hex, ``wrapped`` base64url."""

    reader: str
    wrapped: str

    def to_dict(self) -> dict[str, str]:
        """``{"reader": ..., "wrapped": ...}`` as the ledger stores it."""
        return {"reader": self.reader, "wrapped": self.wrapped}


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """A record sealed on the client.

    ``ciphertext`` goes to the blob store, ``digest`` (hex SHA-256 of it), ``size`` and
    ``keys`` (one :class:`WrappedKey` per reader, sorted by reader) to the ledger.
    ``content_key`` stays with the caller: it is what :func:`wrap_for` re-wraps for a new
    grant. ``repr`` shows neither the key nor the ciphertext.
    """

    ciphertext: bytes = field(repr=False)
    digest: str
    size: int
    content_key: bytes = field(repr=False)
    keys: tuple[WrappedKey, ...]

    def key_list(self) -> list[dict[str, str]]:
        """``keys`` as ``[{"reader", "wrapped"}]``, as the ledger stores them."""
        return [k.to_dict() for k in self.keys]


# -- sealing and opening -------------------------------------------------------------------


def content_digest(ciphertext: bytes) -> str:
    """The digest that names a ciphertext: SHA-256, lower-case hex."""
    return hashlib.sha256(ciphertext).hexdigest()


def seal_record(resource_bytes: bytes, *, patient_pseudonym: str, category: str,
                readers: Mapping[str, Recipient]) -> SealedRecord:
    """Encrypt ``resource_bytes`` under a fresh content key and wrap that key for each reader.

    ``readers`` maps each reader's key (hex) to ``(encryption public key, suite)``, as
    registered on the ledger; the ledger wants the patient's and the author's among them
    (and at most 32). Raise :class:`RecordError` for a bad argument, and the
    crypto layer's ``InvalidKey`` or ``UnknownSuite`` for a reader key that cannot be used.
    """
    _check_binding(patient_pseudonym, category)
    if not isinstance(resource_bytes, (bytes, bytearray, memoryview)):
        raise RecordError(f"resource_bytes must be bytes, got {type(resource_bytes).__name__}")
    if not readers:
        raise RecordError("no readers: nobody could ever open the record")
    content_key = os.urandom(CONTENT_KEY_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    ad = _associated_data(patient_pseudonym, category)
    ciphertext = nonce + AESGCM(content_key).encrypt(nonce, bytes(resource_bytes), ad)
    digest = content_digest(ciphertext)
    keys = tuple(
        WrappedKey(reader, wrap_for(content_key, digest, public, suite))
        for reader, (public, suite) in sorted(_recipients(readers, "reader").items())
    )
    return SealedRecord(ciphertext, digest, len(ciphertext), content_key, keys)


def wrap_for(content_key: bytes, digest: str, enc_public_key: bytes, suite: str) -> str:
    """Wrap ``content_key`` of the record named ``digest`` for one reader; return it in
    unpadded base64url (:mod:`medledger.codec.b64`), as the ledger carries wrapped keys.

    The patient's client calls this to give a new grantee the key of an existing record.
    """
    if len(content_key) != CONTENT_KEY_SIZE:
        raise RecordError(f"a content key is {CONTENT_KEY_SIZE} bytes, got {len(content_key)}")
    return b64url(seal(enc_public_key, content_key, suite=suite, info=_key_info(digest)))


def unwrap(wrapped: str, digest: str, encryption_key: EncryptionKey) -> bytes:
    """Open a wrapped content key of the record named ``digest`` with ``encryption_key``.

    Raise :class:`KeyUnwrapError` if it was wrapped for another key or another record.
    """
    info = _key_info(digest)
    try:
        sealed = from_b64url(wrapped)
    except ValueError as e:
        raise RecordError("a wrapped key must be unpadded base64url") from e
    try:
        content_key = encryption_key.open(sealed, info)
    except DecryptionError as e:
        raise KeyUnwrapError(digest, encryption_key.suite) from e
    if len(content_key) != CONTENT_KEY_SIZE:
        raise KeyUnwrapError(digest, encryption_key.suite)
    return content_key


def open_record(ciphertext: bytes, wrapped: str, encryption_key: EncryptionKey, *,
                patient_pseudonym: str, category: str, digest: str | None = None) -> bytes:
    """Check, unwrap and decrypt a record; return its plaintext.

    The wrapped key is bound to the ciphertext's digest, so a ciphertext altered in any
    byte fails to unwrap; pass ``digest`` (the one on the ledger) to be told so directly
    with :class:`DigestMismatch`. Raise :class:`KeyUnwrapError` for a key that is not
    this reader's and :class:`ContentDecryptionError` for a ciphertext sealed for another
    patient or category.
    """
    _check_binding(patient_pseudonym, category)
    ciphertext = bytes(ciphertext)
    actual = content_digest(ciphertext)
    if digest is not None and digest != actual:
        raise DigestMismatch(digest, actual)
    content_key = unwrap(wrapped, actual, encryption_key)
    if len(ciphertext) < NONCE_SIZE + _TAG_SIZE:
        raise ContentDecryptionError(actual, category)
    nonce, body = ciphertext[:NONCE_SIZE], ciphertext[NONCE_SIZE:]
    try:
        return AESGCM(content_key).decrypt(nonce, body, _associated_data(patient_pseudonym,
                                                                         category))
    except InvalidTag as e:
        raise ContentDecryptionError(actual, category) from e


def records_add_body(sealed: SealedRecord, *, patient: str, category: str,
                     previous: str | None = None) -> dict[str, Any]:
    """The body of a ``records.add`` transaction for ``sealed``.

    Exactly ``{"patient", "category", "digest", "size", "previous", "keys"}``;
    ``previous`` is the record id (64 hex) of the version this one amends, or None.
    """
    _check_binding(patient, category)
    if previous is not None and not (isinstance(previous, str) and _DIGEST.fullmatch(previous)):
        raise RecordError("previous must be the record id (64 hex) of the earlier version")
    return {
        "patient": patient,
        "category": category,
        "digest": sealed.digest,
        "size": sealed.size,
        "previous": previous,
        "keys": sealed.key_list(),
    }


def _associated_data(patient_pseudonym: str, category: str) -> bytes:
    return _CONTENT_DOMAIN + encode({"category": category, "patient": patient_pseudonym})


def _key_info(digest: str) -> bytes:
    if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
        raise RecordError("a record digest is 64 lower-case hex characters")
    return _KEY_DOMAIN + bytes.fromhex(digest)


def _check_binding(patient: object, category: object) -> None:
    if not (isinstance(patient, str) and patient.isascii() and patient.isprintable()
            and 0 < len(patient) <= 128):
        raise RecordError("a patient pseudonym is 1 to 128 printable ASCII characters")
    if category not in CATEGORIES:
        raise RecordError(f"unknown record category {category!r}; "
                          f"known: {', '.join(CATEGORIES)}")


def _recipients(given: Mapping[str, Recipient], role: str) -> dict[str, Recipient]:
    out: dict[str, Recipient] = {}
    for key, value in given.items():
        if not (isinstance(key, str) and _HEX_KEY.fullmatch(key)):
            raise RecordError(f"a {role} is named by its key in lower-case hex")
        try:
            public, suite = value
        except (TypeError, ValueError) as e:
            raise RecordError(f"{role} {key}: expected (encryption public key, suite)") from e
        out[key] = (public, suite)
    return out


# -- key recovery --------------------------------------------------------------------------


def split_keys(secret: bytes, guardians: Mapping[str, Recipient],
               threshold: int) -> list[dict[str, str]]:
    """Split ``secret`` ``threshold``-of-n with SLIP-39 and wrap one share per guardian.

    ``guardians`` maps each guardian's key (hex) to ``(encryption public key, suite)``.
    Return ``[{"guardian": key hex, "wrapped_share": base64url}]`` sorted by guardian. The
    secret is 16 to 32 bytes (an even number, as SLIP-39 wants; a 32-byte private key).
    """
    recipients = sorted(_recipients(guardians, "guardian").items())
    n = len(recipients)
    if not (isinstance(secret, (bytes, bytearray)) and 16 <= len(secret) <= 32
            and len(secret) % 2 == 0):
        raise RecordError("the secret must be an even number of bytes from 16 to 32")
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise RecordError("the threshold must be an integer")
    if not 1 <= n <= _MAX_SHARES:
        raise RecordError(f"1 to {_MAX_SHARES} guardians, got {n}")
    if not (2 <= threshold <= n or threshold == n == 1):
        raise RecordError(f"the threshold must be from 2 to the {n} guardians, got {threshold}")
    try:
        (mnemonics,) = shamir_mnemonic.generate_mnemonics(1, [(threshold, n)], bytes(secret))
    except (shamir_mnemonic.MnemonicError, ValueError) as e:
        raise RecordError(f"cannot split the secret ({e})") from e
    return [
        {"guardian": key, "wrapped_share":
            b64url(seal(public, mnemonic.encode("ascii"), suite=suite, info=_SHARE_DOMAIN))}
        for (key, (public, suite)), mnemonic in zip(recipients, mnemonics, strict=True)
    ]


def unwrap_share(wrapped_share: str, encryption_key: EncryptionKey) -> bytes:
    """A guardian opens its wrapped share with its encryption key; return the share.

    Raise :class:`RecoveryError` if it is not this guardian's share or was altered.
    """
    try:
        return encryption_key.open(from_b64url(wrapped_share), _SHARE_DOMAIN)
    except ValueError as e:
        raise RecoveryError("a wrapped share must be unpadded base64url") from e
    except DecryptionError as e:
        raise RecoveryError("the wrapped share does not open with this guardian's key") from e


def recover_keys(shares: Sequence[bytes]) -> bytes:
    """Recover the secret from at least ``threshold`` shares (as :func:`unwrap_share`
    returns them; more than ``threshold`` are fine). Raise :class:`RecoveryError` if there
    are too few, if one is corrupted or from another split, or if they do not combine to
    the secret's digest."""
    try:
        mnemonics = [bytes(s).decode("ascii") for s in shares]
    except (TypeError, UnicodeDecodeError) as e:
        raise RecoveryError("a share is not a SLIP-39 mnemonic") from e
    if not mnemonics:
        raise RecoveryError("no shares given")
    try:
        groups = shamir_mnemonic.decode_mnemonics(mnemonics)  # checks every share
        if len(groups) == 1:  # one group: the library wants exactly the threshold
            groups = {i: g.get_minimal_group() for i, g in groups.items()}
        return shamir_mnemonic.recover_ems(groups).decrypt(b"")
    except shamir_mnemonic.MnemonicError as e:
        raise RecoveryError(_recovery_reason(str(e))) from None
    except ValueError as e:
        raise RecoveryError("a share is not a SLIP-39 mnemonic") from e


def _recovery_reason(message: str) -> str:
    """A sentence for shamir_mnemonic's error that repeats no word of any share."""
    lowered = message.lower()
    if found := re.search(r"expected (\d+) mnemonics.*but (\d+) were", lowered):
        return f"{found.group(1)} distinct shares are needed, {found.group(2)} were given"
    if "checksum" in lowered:
        return "a share is corrupted (its checksum does not match)"
    if "digest" in lowered:
        return "the shares do not combine to the secret: one of them is wrong"
    if "indices must be unique" in lowered:
        return "two different shares claim the same index: one of them is wrong"
    if "parameters don't match" in lowered or "must begin with the same" in lowered:
        return "the shares come from different splits"
    if "mnemonic word" in lowered or "length" in lowered or "padding" in lowered:
        return "a share is not a valid SLIP-39 mnemonic"
    return "the shares do not recover a secret"
