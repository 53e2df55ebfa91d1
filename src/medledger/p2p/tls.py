"""Node certificates and TLS 1.3 contexts pinned to the members' keys.

Each node's certificate is self-signed by its Ed25519 node key and made only from that
key (:func:`node_certificate`), so the same key always gives the same DER bytes and
genesis can carry every validator's certificate next to its key. A connection is
accepted only if:

1. TLS 1.3 with a certificate on both sides (``CERT_REQUIRED`` for server and client);
2. the peer's certificate chains to a trust anchor, and the anchors are exactly the
   current members' certificates (``CA:FALSE``, so a member cannot issue certificates for
   other keys; ``VERIFY_X509_PARTIAL_CHAIN`` lets a self-signed leaf be its own anchor);
3. after the handshake, the peer's certificate is byte for byte the one registered for
   its key among the current members (:func:`peer_identity`). Its key is the peer's
   identity from then on. Host names play no part (``check_hostname = False``).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import secrets
import ssl
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from medledger.crypto import SigningKey
from medledger.p2p.errors import CertificateError, PeerRejected

__all__ = [
    "TlsIdentity",
    "certificate_key",
    "check_certificate",
    "node_certificate",
    "peer_identity",
    "tls_context",
]

_SERIAL_DOMAIN = b"medledger/p2p/certificate-serial/v1"
_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
# RFC 5280 section 4.1.2.5: 99991231235959Z means "no well-defined expiration date".
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)


def _private_key(key: SigningKey) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(key.seed)


def node_certificate(key: SigningKey) -> bytes:
    """The DER X.509 certificate of ``key``: self-signed, deterministic, cheap.

    Subject and issuer are ``CN=<public key hex>``; the serial is derived from a hash of
    the public key; validity runs from 2000-01-01 to 9999-12-31 (no expiry, RFC 5280);
    ``basicConstraints CA:FALSE`` and ``keyUsage digitalSignature``, both critical. Ed25519
    signatures are deterministic, so the bytes depend on the key alone.
    """
    public = key.public_key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, public.hex())])
    digest = hashlib.sha256(_SERIAL_DOMAIN + public).digest()
    serial = int.from_bytes(digest[:16], "big") >> 1 | 1  # positive, below 2**127
    private = _private_key(key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(serial)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_KEY_USAGE, critical=True)
    )
    return builder.sign(private, None).public_bytes(serialization.Encoding.DER)


def _load(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(bytes(der))
    except (ValueError, TypeError) as e:
        raise CertificateError(f"not a DER X.509 certificate ({e})") from e


def certificate_key(der: bytes) -> bytes:
    """The 32-byte Ed25519 public key of the certificate ``der``.

    Raises :class:`CertificateError` if ``der`` does not parse or its key is not Ed25519.
    """
    public = _load(der).public_key()
    if not isinstance(public, Ed25519PublicKey):
        raise CertificateError(f"key is {type(public).__name__}, not Ed25519")
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def check_certificate(der: bytes, public_key: bytes) -> None:
    """Raise :class:`CertificateError` unless ``der`` is a certificate for ``public_key``
    that is validly self-signed by it (what genesis and governance should check)."""
    if certificate_key(der) != bytes(public_key):
        raise CertificateError("its key is not the member's key")
    cert = _load(der)
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise CertificateError(f"not validly self-signed ({e or type(e).__name__})") from e


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None,
                  members: Mapping[bytes, bytes]) -> tuple[bytes, bytes]:
    """``(public key, certificate DER)`` of the peer of a finished TLS handshake.

    Raises :class:`PeerRejected` if there is no peer certificate, if it is not Ed25519, or
    if it is not exactly the certificate that ``members`` registers for its key.
    """
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise PeerRejected(None, "no certificate")
    try:
        key = certificate_key(der)
    except CertificateError as e:
        raise PeerRejected(None, e.reason) from e
    if members.get(key) != der:
        raise PeerRejected(key, "not a current member")
    return key, der


class TlsIdentity:
    """A node's certificate and private key, written to ``directory`` for :mod:`ssl`.

    :mod:`ssl` loads keys only from files. The key file is created with mode 0600 (in a
    0700 directory) and is itself encrypted under a random password that lives only in
    this object's memory, so the file alone reveals nothing. :meth:`remove` deletes both.
    """

    def __init__(self, key: SigningKey, directory: Path) -> None:
        """Write ``key``'s certificate and encrypted private key into ``directory``."""
        self.public_key = key.public_key
        self.certificate = node_certificate(key)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stem = f"node-{self.public_key.hex()[:16]}"
        self.cert_path = directory / f"{stem}.crt.pem"
        self.key_path = directory / f"{stem}.key.pem"
        self._password = secrets.token_hex(32).encode()
        pem = _private_key(key).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._password))
        cert_pem = x509.load_der_x509_certificate(self.certificate).public_bytes(
            serialization.Encoding.PEM)
        _write_private(self.key_path, pem)
        _write_private(self.cert_path, cert_pem)
        self._contexts: tuple[object, ssl.SSLContext, ssl.SSLContext] | None = None

    def load_into(self, context: ssl.SSLContext) -> None:
        """Load the certificate and key into ``context``."""
        context.load_cert_chain(self.cert_path, self.key_path, password=self._password)

    def context(self, members: Mapping[bytes, bytes], *, server_side: bool) -> ssl.SSLContext:
        """The :func:`tls_context` for ``members``, rebuilt only when the members change."""
        snapshot = tuple(sorted(members.items()))
        if self._contexts is None or self._contexts[0] != snapshot:
            self._contexts = (snapshot, tls_context(self, members, server_side=True),
                              tls_context(self, members, server_side=False))
        return self._contexts[1] if server_side else self._contexts[2]

    def remove(self) -> None:
        """Delete the files (missing files are fine)."""
        self.key_path.unlink(missing_ok=True)
        self.cert_path.unlink(missing_ok=True)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file was already there with a wider mode
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def tls_context(identity: TlsIdentity, members: Mapping[bytes, bytes], *,
                server_side: bool) -> ssl.SSLContext:
    """A TLS 1.3-only context presenting ``identity`` and trusting exactly ``members``'
    certificates (mapping public key -> certificate DER), peer certificate required."""
    if not members:
        raise ValueError("no members: a context trusting no one accepts no connection")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    identity.load_into(context)
    context.load_verify_locations(cadata=b"".join(members[k] for k in sorted(members)))
    return context
