"""HPKE (RFC 9180) base mode, single shot, through ``cryptography``'s ``hpke`` module.

Two suites, named by the strings stored next to every registered encryption key:

``"mlkem768-x25519"`` (the default)
    KEM MLKEM768-X25519 (0x647a, the X-Wing hybrid of ML-KEM-768 and X25519 in
    draft-ietf-hpke-pq), KDF HKDF-SHA256 (0x0001), AEAD ChaCha20-Poly1305 (0x0003).
    What is written to a ledger stays there for decades, so content keys are wrapped
    against a future quantum computer as well as today's attacks.
``"x25519"``
    KEM DHKEM(X25519, HKDF-SHA256) (0x0020), KDF HKDF-SHA256, AEAD ChaCha20-Poly1305:
    RFC 9180 as published, for peers that have no ML-KEM yet.

ChaCha20-Poly1305 rather than AES-256-GCM: it is constant-time in software on every CPU
(phones and browsers included, where the portal opens records), it has a 256-bit key, and
the one published vector for the hybrid KEM uses it, so our suite can be checked against it.

Byte formats:

- a sealed message is ``enc || AEAD ciphertext`` (``enc`` is 1120 bytes for the hybrid
  suite, 32 for x25519; the ciphertext is the plaintext plus a 16-byte tag);
- a public key is 1216 bytes (ML-KEM-768 encapsulation key || X25519 public key) or 32;
- a private key is the 32-byte X-Wing seed, expanded by SHAKE256 into the ML-KEM-768 seed
  (64 bytes) and the X25519 private key (32 bytes) as draft-ietf-hpke-pq specifies, or the
  32-byte X25519 private key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from medledger.crypto.signing import CryptoError, InvalidKey, _key_bytes

__all__ = [
    "DEFAULT_SUITE",
    "SUITES",
    "DecryptionError",
    "EncryptionKey",
    "UnknownSuite",
    "public_key_size",
    "seal",
]

DEFAULT_SUITE = "mlkem768-x25519"
_MLKEM768_PUBLIC_SIZE = 1184
_MLKEM768_SEED_SIZE = 64
_X25519_SIZE = 32
_TAG_SIZE = 16


class UnknownSuite(CryptoError, ValueError):
    """An HPKE suite name that this version does not know; ``known`` lists those it does."""

    def __init__(self, suite: object) -> None:
        super().__init__(f"unknown HPKE suite {suite!r}; known suites: {', '.join(SUITES)}")
        self.suite = suite
        self.known = SUITES


class DecryptionError(CryptoError):
    """A sealed message did not open: wrong key, wrong ``info``, or altered bytes.

    HPKE cannot tell these apart, by design. ``suite`` is the suite that was tried and
    ``size`` the length of the sealed message.
    """

    def __init__(self, suite: str, size: int, reason: str) -> None:
        super().__init__(f"cannot open {size}-byte HPKE message ({suite}): {reason}")
        self.suite = suite
        self.size = size
        self.reason = reason


_PrivateKey = x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey
_PublicKey = x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey


@dataclass(frozen=True, slots=True)
class _Suite:
    """How one named suite maps to ``cryptography`` objects and to bytes."""

    name: str
    hpke: hpke.Suite
    enc_size: int
    public_size: int
    private_size: int
    load_private: Callable[[bytes], tuple[_PrivateKey, bytes]]
    load_public: Callable[[bytes], _PublicKey]

    def open(self, ciphertext: bytes, key: _PrivateKey, info: bytes) -> bytes:
        """Open ``ciphertext``; raise :class:`DecryptionError` if it does not."""
        if len(ciphertext) < self.enc_size + _TAG_SIZE:
            reason = f"shorter than the {self.enc_size + _TAG_SIZE} bytes of enc and tag"
            raise DecryptionError(self.name, len(ciphertext), reason)
        try:
            return self.hpke.decrypt(ciphertext, key, info=info)
        except (InvalidTag, ValueError) as e:
            reason = "wrong key, wrong info, or the message was altered"
            raise DecryptionError(self.name, len(ciphertext), reason) from e


def _load_xwing_private(seed: bytes) -> tuple[_PrivateKey, bytes]:
    expanded = hashlib.shake_256(seed).digest(_MLKEM768_SEED_SIZE + _X25519_SIZE)
    pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:_MLKEM768_SEED_SIZE])
    classic = x25519.X25519PrivateKey.from_private_bytes(expanded[_MLKEM768_SEED_SIZE:])
    public = pq.public_key().public_bytes_raw() + classic.public_key().public_bytes_raw()
    return hpke.MLKEM768X25519PrivateKey(pq, classic), public


def _load_xwing_public(data: bytes) -> _PublicKey:
    pq = mlkem.MLKEM768PublicKey.from_public_bytes(data[:_MLKEM768_PUBLIC_SIZE])
    classic = x25519.X25519PublicKey.from_public_bytes(data[_MLKEM768_PUBLIC_SIZE:])
    return hpke.MLKEM768X25519PublicKey(pq, classic)


def _load_x25519_private(data: bytes) -> tuple[_PrivateKey, bytes]:
    key = x25519.X25519PrivateKey.from_private_bytes(data)
    return key, key.public_key().public_bytes_raw()


def _load_x25519_public(data: bytes) -> _PublicKey:
    return x25519.X25519PublicKey.from_public_bytes(data)


_AEAD = hpke.AEAD.CHACHA20_POLY1305
_SUITES: dict[str, _Suite] = {
    "mlkem768-x25519": _Suite(
        name="mlkem768-x25519",
        hpke=hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, _AEAD),
        enc_size=hpke.KEM.MLKEM768_X25519.enc_length(),
        public_size=_MLKEM768_PUBLIC_SIZE + _X25519_SIZE,
        private_size=32,
        load_private=_load_xwing_private,
        load_public=_load_xwing_public,
    ),
    "x25519": _Suite(
        name="x25519",
        hpke=hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, _AEAD),
        enc_size=hpke.KEM.X25519.enc_length(),
        public_size=_X25519_SIZE,
        private_size=_X25519_SIZE,
        load_private=_load_x25519_private,
        load_public=_load_x25519_public,
    ),
}
SUITES: tuple[str, ...] = tuple(_SUITES)
"""The names of the suites this version knows, the default first."""


def public_key_size(suite: str) -> int:
    """The length in bytes of a public key of ``suite``; raises UnknownSuite."""
    return _suite(suite).public_size


def _suite(name: str) -> _Suite:
    try:
        return _SUITES[name]
    except (KeyError, TypeError):
        raise UnknownSuite(name) from None


class EncryptionKey:
    """An HPKE private key of one suite: what a member or patient opens wrapped keys with.

    Immutable; ``repr`` never shows the private bytes. Two keys are equal when their suite
    and private bytes are.
    """

    __slots__ = ("_key", "_private", "_public", "_suite")

    def __init__(self, suite: str, private: bytes) -> None:
        """Load the key of ``suite`` from its private bytes; see :meth:`from_private_bytes`."""
        spec = _suite(suite)
        raw = _key_bytes(f"{suite} private key", private, spec.private_size)
        try:
            key, public = spec.load_private(raw)
        except ValueError as e:
            raise InvalidKey(f"{suite} private key", f"does not load ({e})") from e
        self._suite = spec
        self._private = raw
        self._key = key
        self._public = public

    @classmethod
    def generate(cls, suite: str = DEFAULT_SUITE) -> EncryptionKey:
        """Return a new key of ``suite`` from the operating system's random source."""
        return cls(suite, os.urandom(_suite(suite).private_size))

    @classmethod
    def from_private_bytes(cls, suite: str, data: bytes) -> EncryptionKey:
        """Return the key of ``suite`` whose private bytes are ``data`` (32 bytes)."""
        return cls(suite, data)

    @property
    def suite(self) -> str:
        """The suite name, one of :data:`SUITES`."""
        return self._suite.name

    def public_bytes(self) -> bytes:
        """The public key to register on the ledger (1216 bytes hybrid, 32 x25519)."""
        return self._public

    def private_bytes(self) -> bytes:
        """The 32 private bytes, for the keystore only."""
        return self._private

    def open(self, ciphertext: bytes, info: bytes = b"") -> bytes:
        """Open a message sealed to this key with the same ``info``.

        Raise :class:`DecryptionError` for a wrong key, a wrong ``info`` or altered bytes.
        """
        return self._suite.open(bytes(ciphertext), self._key, bytes(info))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EncryptionKey):
            return NotImplemented
        return self._suite is other._suite and self._private == other._private

    def __hash__(self) -> int:
        return hash((self._suite.name, self._public))

    def __repr__(self) -> str:
        return f"EncryptionKey(suite={self.suite!r}, public={self._public[:8].hex()}...)"


def seal(public_key: bytes, plaintext: bytes, *, suite: str, info: bytes = b"") -> bytes:
    """Encrypt ``plaintext`` to ``public_key`` of ``suite``; return ``enc || ciphertext``.

    ``info`` binds the message to its context (for example the record id and version); the
    reader must pass the same ``info`` to :meth:`EncryptionKey.open`. Raise
    :class:`UnknownSuite` or :class:`InvalidKey` for a key that cannot be used.
    """
    spec = _suite(suite)
    raw = _key_bytes(f"{suite} public key", public_key, spec.public_size)
    try:
        key = spec.load_public(raw)
    except ValueError as e:
        raise InvalidKey(f"{suite} public key", "does not decode to a public key") from e
    try:
        return spec.hpke.encrypt(bytes(plaintext), key, info=bytes(info))
    except ValueError as e:  # X25519 with a low-order point gives an all-zero secret
        raise InvalidKey(f"{suite} public key", f"unusable for key agreement ({e})") from e
