"""Ed25519 signatures (RFC 8032) through libsodium (PyNaCl).

Signing and verifying call ``nacl.bindings`` directly: it is the same libsodium code that
``nacl.signing`` wraps, without building a ``VerifyKey`` object per call, and libsodium
verifies about twice as fast as ``cryptography`` does. :func:`verify` is on the hot path of
every transaction and every vote, so it stays a thin function that never raises.

libsodium rejects small-order public keys and non-canonical encodings of R and S; such
signatures verify as ``False`` here even where another RFC 8032 implementation might
accept them. Every node runs this same code, so they all agree.

This module also holds the root of the crypto error tree (:class:`CryptoError`) and
:class:`InvalidKey`, so that the other crypto modules can share them.
"""

from __future__ import annotations

from collections.abc import Sequence

import os
import time

from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair

__all__ = [
    "PUBLIC_KEY_SIZE",
    "SEED_SIZE",
    "SIGNATURE_SIZE",
    "CryptoError",
    "InvalidKey",
    "SigningKey",
    "verify",
    "verify_many",
    "verify_rate",
]

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


class CryptoError(Exception):
    """Root of the errors raised by :mod:`medledger.crypto`."""


class InvalidKey(CryptoError, ValueError):
    """Key material that cannot be used: wrong type or length, or bytes that do not decode.

    ``kind`` names the key (``"Ed25519 seed"``, ``"x25519 public key"``) and ``reason``
    says what is wrong with it; ``expected`` and ``got`` are the lengths when the length is
    the problem (``got`` is ``None`` when the value was not bytes at all).
    """

    def __init__(
        self, kind: str, reason: str, *, expected: int | None = None, got: int | None = None
    ) -> None:
        super().__init__(f"invalid {kind}: {reason}")
        self.kind = kind
        self.reason = reason
        self.expected = expected
        self.got = got


def _key_bytes(kind: str, data: object, size: int) -> bytes:
    """Return ``data`` as ``bytes`` if it is a bytes-like value of ``size``; else raise."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        reason = f"expected {size} bytes, got {type(data).__name__}"
        raise InvalidKey(kind, reason, expected=size)
    raw = bytes(data)
    if len(raw) != size:
        raise InvalidKey(
            kind, f"expected {size} bytes, got {len(raw)}", expected=size, got=len(raw)
        )
    return raw


class SigningKey:
    """An Ed25519 private key, held as its 32-byte seed (RFC 8032 section 5.1.5).

    Immutable: the seed and the public key are read-only properties. ``repr`` never shows
    the seed. Two keys are equal when their seeds are.
    """

    __slots__ = ("_public_key", "_secret", "_seed")

    def __init__(self, seed: bytes) -> None:
        """Derive the key pair from ``seed`` (32 bytes); see also :meth:`from_seed`."""
        raw = _key_bytes("Ed25519 seed", seed, SEED_SIZE)
        public_key, secret = crypto_sign_seed_keypair(raw)
        self._seed = raw
        self._public_key: bytes = public_key
        self._secret: bytes = secret  # libsodium's 64-byte form: seed || public key

    @classmethod
    def generate(cls) -> SigningKey:
        """Return a new key from the operating system's random source."""
        return cls(os.urandom(SEED_SIZE))

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Return the key whose 32-byte seed is ``seed``; raise :class:`InvalidKey` if not 32."""
        return cls(seed)

    @property
    def seed(self) -> bytes:
        """The 32-byte seed: the whole secret. Keep it in a keystore, never on the ledger."""
        return self._seed

    @property
    def public_key(self) -> bytes:
        """The 32-byte public key (RFC 8032 encoding of A)."""
        return self._public_key

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte signature of ``message`` (deterministic, RFC 8032)."""
        return crypto_sign(message, self._secret)[:SIGNATURE_SIZE]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SigningKey):
            return NotImplemented
        return self._seed == other._seed

    def __hash__(self) -> int:
        return hash(self._public_key)

    def __repr__(self) -> str:
        return f"SigningKey(public_key={self._public_key.hex()})"


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``.

    Never raises: a wrong-length key or signature, an invalid point, a non-canonical
    encoding or any other failure gives ``False``.
    """
    try:
        if len(signature) != SIGNATURE_SIZE or len(public_key) != PUBLIC_KEY_SIZE:
            return False
        crypto_sign_open(signature + message, public_key)
    except Exception:  # BadSignatureError, TypeError for non-bytes: all mean False
        return False
    return True


def verify_many(items: Sequence[tuple[bytes, bytes, bytes]]) -> bytes:
    """Verify ``(public_key, message, signature)`` triples; one byte per item, 1 if valid.

    Made for a verification worker process: one call, one small answer.
    """
    return bytes(verify(pk, msg, sig) for pk, msg, sig in items)


def verify_rate(seconds: float = 1.0) -> float:
    """Measure how many :func:`verify` calls one core completes per second.

    Verifies one fixed 200-byte message (about the size of a transaction's signed bytes)
    for at least ``seconds`` and returns verifies per second. The benchmark reports the
    ledger's throughput as a fraction of this number.
    """
    key = SigningKey(bytes(range(SEED_SIZE)))
    message = bytes(200)
    signature = key.sign(message)
    public_key = key.public_key
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(64):
            if not verify(public_key, message, signature):
                raise RuntimeError("verify_rate: a known-good signature failed to verify")
        count += 64
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)
