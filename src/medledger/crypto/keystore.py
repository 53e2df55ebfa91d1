"""A passphrase-protected file of named secrets: a member's or a node's private keys.

The file is canonical JSON (:func:`medledger.codec.encode`), bytes in lower-case hex::

    {"aead": {"name": "chacha20-poly1305", "nonce": HEX12},
     "check": HEX32,
     "ciphertext": HEX,
     "format": "medledger-keystore",
     "kdf": {"name": "argon2id", "iterations": 3, "lanes": 4, "memory_cost": 65536,
             "salt": HEX16},
     "version": 1}

The passphrase (NFC-normalised, UTF-8) and the salt go through the KDF to 64 bytes. The
first 32 are the ChaCha20-Poly1305 key; the last 32, hashed in the ``keystore`` domain,
are ``check``, which tells a wrong passphrase apart from a damaged file (it reveals no
more than the AEAD tag already does). The plaintext is ``{"secrets": {NAME: HEX}}`` and the
associated data is the canonical encoding of every field but ``ciphertext``, so that no
header field can be changed without the change being found.

KDF: Argon2id (RFC 9106's second recommended setting: t=3, p=4, m=64 MiB) when the
installed OpenSSL has it, else scrypt (n=2^15, r=8, p=1). The parameters are stored in the
file, so tests can write cheap files and a later version can raise the cost.

A wrong passphrase raises :class:`WrongPassphrase`; so does a file whose salt, KDF
parameters or ``check`` were altered, which no one can tell from a wrong passphrase. Every
other problem raises :class:`KeystoreError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import os
import re
import tempfile
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from medledger.codec import CodecError, Tag, decode, encode, tagged_hash
from medledger.crypto.hpke import DEFAULT_SUITE, EncryptionKey
from medledger.crypto.signing import CryptoError, SigningKey

__all__ = [
    "FORMAT",
    "VERSION",
    "Argon2idParams",
    "KdfParams",
    "Keystore",
    "KeystoreError",
    "ScryptParams",
    "WrongPassphrase",
    "default_kdf_params",
    "load_keystore",
    "save_keystore",
]

FORMAT = "medledger-keystore"
VERSION = 1
MAX_FILE_SIZE = 1 << 20
_AEAD_NAME = "chacha20-poly1305"
_NONCE_SIZE = 12
_SALT_SIZE = 16
_CHECK_SIZE = 32
_FIELDS = frozenset({"aead", "check", "ciphertext", "format", "kdf", "version"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_HEX = re.compile(r"(?:[0-9a-f]{2})*")


class KeystoreError(CryptoError):
    """A keystore file cannot be read or written; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(self._describe())

    def _describe(self) -> str:
        return f"keystore {self.path}: {self.reason}"


class WrongPassphrase(KeystoreError):
    """The passphrase does not open the keystore at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, "wrong passphrase")

    def _describe(self) -> str:
        return f"wrong passphrase for keystore {self.path}"


class _Bad(Exception):
    """A field of the file is wrong; turned into :class:`KeystoreError` with the path."""


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost parameters (RFC 7914): ``n`` a power of two, memory 128 * n * r bytes."""

    n: int = 2**15
    r: int = 8
    p: int = 1
    name: ClassVar[str] = "scrypt"

    def __post_init__(self) -> None:
        _in_range("n", self.n, 2, 2**20)
        if self.n & (self.n - 1):
            raise ValueError(f"scrypt n must be a power of two, got {self.n}")
        _in_range("r", self.r, 1, 32)
        _in_range("p", self.p, 1, 16)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as stored in the file (without the salt)."""
        return {"name": self.name, "n": self.n, "r": self.r, "p": self.p}

    def derive(self, secret: bytes, salt: bytes, length: int) -> bytes:
        """Stretch ``secret`` with ``salt`` to ``length`` bytes."""
        return Scrypt(salt=salt, length=length, n=self.n, r=self.r, p=self.p).derive(secret)


@dataclass(frozen=True, slots=True)
class Argon2idParams:
    """Argon2id cost parameters (RFC 9106); ``memory_cost`` is in KiB."""

    iterations: int = 3
    lanes: int = 4
    memory_cost: int = 64 * 1024
    name: ClassVar[str] = "argon2id"

    def __post_init__(self) -> None:
        _in_range("iterations", self.iterations, 1, 64)
        _in_range("lanes", self.lanes, 1, 64)
        _in_range("memory_cost", self.memory_cost, 8 * self.lanes, 4 * 1024 * 1024)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as stored in the file (without the salt)."""
        return {
            "name": self.name,
            "iterations": self.iterations,
            "lanes": self.lanes,
            "memory_cost": self.memory_cost,
        }

    def derive(self, secret: bytes, salt: bytes, length: int) -> bytes:
        """Stretch ``secret`` with ``salt`` to ``length`` bytes."""
        kdf = Argon2id(
            salt=salt,
            length=length,
            iterations=self.iterations,
            lanes=self.lanes,
            memory_cost=self.memory_cost,
        )
        return kdf.derive(secret)


KdfParams = ScryptParams | Argon2idParams
_KDFS: dict[str, type[ScryptParams] | type[Argon2idParams]] = {
    "scrypt": ScryptParams,
    "argon2id": Argon2idParams,
}


def _in_range(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")


@functools.cache
def _argon2id_available() -> bool:
    try:
        Argon2idParams(iterations=1, lanes=1, memory_cost=8).derive(b"", bytes(16), 32)
    except UnsupportedAlgorithm:
        return False
    return True


def default_kdf_params() -> KdfParams:
    """Argon2id (t=3, p=4, 64 MiB) if the installed OpenSSL has it, else scrypt (2^15, 8, 1)."""
    return Argon2idParams() if _argon2id_available() else ScryptParams()


def _derive(params: KdfParams, passphrase: str, salt: bytes) -> tuple[bytes, bytes]:
    """Return (AEAD key, check value) for ``passphrase``."""
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    stretched = params.derive(secret, salt, 64)
    return stretched[:32], tagged_hash(Tag.KEYSTORE, stretched[32:])


# -- writing -------------------------------------------------------------------------------


def _check_secrets(secrets: Mapping[str, bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in secrets.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"secret name {name!r} must match {_NAME.pattern}")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"secret {name!r} must be bytes, got {type(value).__name__}")
        out[name] = bytes(value).hex()
    return out


def _seal_document(secrets: Mapping[str, bytes], passphrase: str, params: KdfParams) -> bytes:
    plaintext = encode({"secrets": _check_secrets(secrets)})
    salt, nonce = os.urandom(_SALT_SIZE), os.urandom(_NONCE_SIZE)
    key, check = _derive(params, passphrase, salt)
    header: dict[str, Any] = {
        "aead": {"name": _AEAD_NAME, "nonce": nonce.hex()},
        "check": check.hex(),
        "format": FORMAT,
        "kdf": {**params.to_dict(), "salt": salt.hex()},
        "version": VERSION,
    }
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, plaintext, encode(header))
    return encode({**header, "ciphertext": ciphertext.hex()}) + b"\n"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 so that a reader sees old or new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_keystore(
    path: str | os.PathLike[str],
    secrets: Mapping[str, bytes],
    passphrase: str,
    *,
    kdf_params: KdfParams | None = None,
) -> None:
    """Encrypt ``secrets`` under ``passphrase`` and write them to ``path`` (mode 0600).

    Names are 1 to 64 characters from ``A-Za-z0-9._:-``. The write is atomic: a crash
    leaves the old file or the new one. ``kdf_params`` defaults to
    :func:`default_kdf_params`. Raise :class:`ValueError` for an empty passphrase or a bad
    name, and :class:`KeystoreError` if the file cannot be written.
    """
    if not isinstance(passphrase, str) or not passphrase:
        raise ValueError("the keystore passphrase must be a non-empty string")
    data = _seal_document(secrets, passphrase, kdf_params or default_kdf_params())
    if len(data) > MAX_FILE_SIZE:
        raise ValueError(f"keystore would be {len(data)} bytes, over {MAX_FILE_SIZE}")
    target = Path(path)
    try:
        _write_atomic(target, data)
    except OSError as e:
        raise KeystoreError(target, f"cannot write: {e.strerror or e}") from e


# -- reading -------------------------------------------------------------------------------


def _field(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise _Bad(f"missing field {where}{key}")
    value = obj[key]
    if type(value) is not kind:
        raise _Bad(f"field {where}{key} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _hex(obj: Mapping[str, Any], key: str, where: str, low: int, high: int) -> bytes:
    text = _field(obj, key, str, where)
    if not _HEX.fullmatch(text):
        raise _Bad(f"field {where}{key} is not lower-case hex of whole bytes")
    data = bytes.fromhex(text)
    if not low <= len(data) <= high:
        size = str(low) if low == high else f"{low} to {high}"
        raise _Bad(f"field {where}{key} must be {size} bytes, got {len(data)}")
    return data


def _exact_keys(obj: Mapping[str, Any], expected: set[str] | frozenset[str], where: str) -> None:
    missing, unknown = sorted(expected - obj.keys()), sorted(obj.keys() - expected)
    if missing:
        raise _Bad(f"missing field {where}{missing[0]}")
    if unknown:
        raise _Bad(f"unknown field {where}{unknown[0]}")


def _read_kdf(doc: Mapping[str, Any]) -> tuple[KdfParams, bytes]:
    kdf = _field(doc, "kdf", dict, "")
    name = _field(kdf, "name", str, "kdf.")
    if name not in _KDFS:
        raise _Bad(f"unsupported kdf {name!r} (known: {', '.join(_KDFS)})")
    cls = _KDFS[name]
    names = {f.name for f in fields(cls)}
    _exact_keys(kdf, names | {"name", "salt"}, "kdf.")
    values = {key: _field(kdf, key, int, "kdf.") for key in names}
    try:
        params = cls(**values)
    except ValueError as e:
        raise _Bad(f"kdf parameters out of range: {e}") from e
    return params, _hex(kdf, "salt", "kdf.", _SALT_SIZE, 64)


def _read_header(doc: Any) -> tuple[dict[str, Any], KdfParams, bytes, bytes]:
    """Check the file's shape; return (header, kdf params, salt, nonce)."""
    if type(doc) is not dict:
        raise _Bad(f"top level is a JSON {type(doc).__name__}, not an object")
    if doc.get("format") != FORMAT:
        raise _Bad(f"not a medledger keystore (format {doc.get('format')!r})")
    version = _field(doc, "version", int, "")
    if version != VERSION:
        raise _Bad(f"unsupported keystore version {version} (this medledger reads {VERSION})")
    _exact_keys(doc, _FIELDS, "")
    params, salt = _read_kdf(doc)
    aead = _field(doc, "aead", dict, "")
    _exact_keys(aead, {"name", "nonce"}, "aead.")
    if _field(aead, "name", str, "aead.") != _AEAD_NAME:
        raise _Bad(f"unsupported aead {aead['name']!r} (known: {_AEAD_NAME})")
    nonce = _hex(aead, "nonce", "aead.", _NONCE_SIZE, _NONCE_SIZE)
    header = {key: value for key, value in doc.items() if key != "ciphertext"}
    return header, params, salt, nonce


def _read_secrets(plaintext: bytes) -> dict[str, bytes]:
    try:
        body = decode(plaintext)
    except CodecError as e:
        raise _Bad(f"decrypted content is not JSON ({e})") from e
    if type(body) is not dict or body.keys() != {"secrets"} or type(body["secrets"]) is not dict:
        raise _Bad('decrypted content is not {"secrets": {...}}')
    table = body["secrets"]
    return {name: _hex(table, name, "secrets.", 0, MAX_FILE_SIZE) for name in table}


def _open_document(data: bytes, passphrase: str, path: Path) -> dict[str, bytes]:
    try:
        doc = decode(data)
    except CodecError as e:
        raise _Bad(f"not valid JSON, the file is truncated or corrupt ({e})") from e
    header, params, salt, nonce = _read_header(doc)
    check = _hex(doc, "check", "", _CHECK_SIZE, _CHECK_SIZE)
    ciphertext = _hex(doc, "ciphertext", "", 16, MAX_FILE_SIZE)
    key, expected = _derive(params, passphrase, salt)
    if not hmac.compare_digest(check, expected):
        raise WrongPassphrase(path)
    try:
        plaintext = ChaCha20Poly1305(key).decrypt(nonce, ciphertext, encode(header))
    except InvalidTag as e:
        raise _Bad("authentication failed: the file was altered or corrupted") from e
    return _read_secrets(plaintext)


def load_keystore(path: str | os.PathLike[str], passphrase: str) -> dict[str, bytes]:
    """Read and decrypt the keystore at ``path``; return its secrets by name.

    Raise :class:`WrongPassphrase` if ``passphrase`` does not open it and
    :class:`KeystoreError` if the file is missing, unreadable, truncated or altered.
    """
    target = Path(path)
    try:
        with open(target, "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        raise KeystoreError(target, f"cannot read: {e.strerror or e}") from e
    if len(data) > MAX_FILE_SIZE:
        raise KeystoreError(target, f"larger than {MAX_FILE_SIZE} bytes, not a keystore")
    try:
        return _open_document(data, passphrase, target)
    except _Bad as e:
        raise KeystoreError(target, str(e)) from e.__cause__


# -- the keys of one member or node --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Keystore:
    """The private keys of one member or node: an Ed25519 key and an HPKE key.

    Stored as the secrets ``signing.seed``, ``encryption.key`` and ``encryption.suite``
    (the suite name in ASCII), beside any ``extra`` secrets the caller keeps there.
    """

    signing: SigningKey
    encryption: EncryptionKey
    extra: Mapping[str, bytes] = field(default_factory=dict)

    SIGNING_SEED: ClassVar[str] = "signing.seed"
    ENCRYPTION_KEY: ClassVar[str] = "encryption.key"
    ENCRYPTION_SUITE: ClassVar[str] = "encryption.suite"

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", dict(self.extra))
        reserved = self._reserved() & self.extra.keys()
        if reserved:
            raise ValueError(f"extra secrets use reserved names: {sorted(reserved)}")

    @classmethod
    def _reserved(cls) -> set[str]:
        return {cls.SIGNING_SEED, cls.ENCRYPTION_KEY, cls.ENCRYPTION_SUITE}

    @classmethod
    def generate(cls, suite: str = DEFAULT_SUITE) -> Keystore:
        """Return fresh keys: a new Ed25519 key and a new HPKE key of ``suite``."""
        return cls(SigningKey.generate(), EncryptionKey.generate(suite))

    def to_secrets(self) -> dict[str, bytes]:
        """The named secrets as :func:`save_keystore` takes them."""
        return {
            **self.extra,
            self.SIGNING_SEED: self.signing.seed,
            self.ENCRYPTION_KEY: self.encryption.private_bytes(),
            self.ENCRYPTION_SUITE: self.encryption.suite.encode("ascii"),
        }

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, bytes]) -> Keystore:
        """Rebuild the keys from named secrets; raise :class:`ValueError` if they do not fit."""
        missing = sorted(cls._reserved() - secrets.keys())
        if missing:
            raise ValueError(f"missing secrets {missing}")
        suite = secrets[cls.ENCRYPTION_SUITE].decode("ascii", "replace")
        return cls(
            signing=SigningKey.from_seed(secrets[cls.SIGNING_SEED]),
            encryption=EncryptionKey.from_private_bytes(suite, secrets[cls.ENCRYPTION_KEY]),
            extra={k: v for k, v in secrets.items() if k not in cls._reserved()},
        )

    def save(
        self, path: str | os.PathLike[str], passphrase: str, *, kdf_params: KdfParams | None = None
    ) -> None:
        """Write the keys to ``path`` with :func:`save_keystore`."""
        save_keystore(path, self.to_secrets(), passphrase, kdf_params=kdf_params)

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: str) -> Keystore:
        """Read the keys from ``path``; raise :class:`KeystoreError` if they are not there."""
        secrets = load_keystore(path, passphrase)
        try:
            return cls.from_secrets(secrets)
        except ValueError as e:  # InvalidKey and UnknownSuite are ValueErrors too
            raise KeystoreError(path, f"does not hold a member's keys: {e}") from e
