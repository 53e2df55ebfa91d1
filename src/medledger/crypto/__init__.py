"""Signatures, public-key encryption and the keystore: medledger's crypto layer.

- :mod:`~medledger.crypto.signing`: Ed25519 (RFC 8032) through libsodium; :func:`verify`
  never raises.
- :mod:`~medledger.crypto.hpke`: HPKE (RFC 9180), hybrid ML-KEM-768 + X25519 by default,
  to wrap content keys for each reader.
- :mod:`~medledger.crypto.keystore`: private keys in a passphrase-protected file.

The layer sits just above :mod:`medledger.codec` and imports nothing else from medledger.

Errors::

    CryptoError                      root of everything raised here
    ├── InvalidKey (ValueError)      key bytes of the wrong type or length, or that do not
    │                                decode (.kind, .reason, .expected, .got)
    ├── UnknownSuite (ValueError)    an HPKE suite name not in SUITES (.suite, .known)
    ├── DecryptionError              a sealed message did not open: wrong key, wrong info
    │                                or altered bytes (.suite, .size, .reason)
    └── KeystoreError                a keystore file cannot be read or written, or is
        │                            truncated or altered (.path, .reason)
        └── WrongPassphrase          the passphrase does not open the file (.path)

:func:`verify` returns ``False`` instead of raising. Exceptions from ``cryptography``,
PyNaCl and the JSON decoder are wrapped at this boundary (``raise ... from e``).
"""

from medledger.crypto.hpke import (
    DEFAULT_SUITE,
    SUITES,
    DecryptionError,
    EncryptionKey,
    UnknownSuite,
    public_key_size,
    seal,
)
from medledger.crypto.keystore import (
    Argon2idParams,
    KdfParams,
    Keystore,
    KeystoreError,
    ScryptParams,
    WrongPassphrase,
    default_kdf_params,
    load_keystore,
    save_keystore,
)
from medledger.crypto.signing import (
    PUBLIC_KEY_SIZE,
    SEED_SIZE,
    SIGNATURE_SIZE,
    CryptoError,
    InvalidKey,
    SigningKey,
    verify,
    verify_many,
    verify_rate,
)

__all__ = [
    "DEFAULT_SUITE",
    "PUBLIC_KEY_SIZE",
    "SEED_SIZE",
    "SIGNATURE_SIZE",
    "SUITES",
    "Argon2idParams",
    "CryptoError",
    "DecryptionError",
    "EncryptionKey",
    "InvalidKey",
    "KdfParams",
    "Keystore",
    "KeystoreError",
    "ScryptParams",
    "SigningKey",
    "UnknownSuite",
    "WrongPassphrase",
    "default_kdf_params",
    "load_keystore",
    "public_key_size",
    "save_keystore",
    "seal",
    "verify",
    "verify_many",
    "verify_rate",
]
