"""The transaction envelope: chain id, type, sender key, nonce, body, Ed25519 signature.

Wire form (canonical JSON)::

    {"body": {...}, "chain_id": "medledger-local", "nonce": 7,
     "sender": "<64 hex>", "signature": "<128 hex>", "type": "ledger.anchor"}

The signature covers ``Tag.TX_SIGN.prefix + encode(envelope without "signature")``; the
transaction id is ``tagged_hash(Tag.TX, canonical bytes of the whole envelope)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from medledger.codec import CodecError, Tag, decode, encode, tagged_hash
from medledger.crypto import SigningKey, verify
from medledger.ledger.errors import MalformedError
from medledger.ledger.fields import read_bytes, read_int, read_str, require_keys

__all__ = ["MAX_TX_BYTES", "Transaction", "tx_sign_bytes"]

MAX_TX_BYTES = 64 * 1024
_FIELDS = frozenset({"body", "chain_id", "nonce", "sender", "signature", "type"})
_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
CHAIN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SIGN_PREFIX = Tag.TX_SIGN.prefix


def tx_sign_bytes(chain_id: str, type_: str, sender: bytes, nonce: int, body: Any) -> bytes:
    """The bytes a sender signs: a domain tag, then the canonical unsigned envelope."""
    unsigned = {
        "body": body,
        "chain_id": chain_id,
        "nonce": nonce,
        "sender": sender.hex(),
        "type": type_,
    }
    return _SIGN_PREFIX + encode(unsigned)


@dataclass(frozen=True, slots=True)
class Transaction:
    """A signed transaction, decoded once; ``raw`` holds its canonical bytes."""

    chain_id: str
    type: str
    sender: bytes
    nonce: int
    body: dict[str, Any]
    signature: bytes
    raw: bytes
    tx_id: bytes

    @classmethod
    def create(
        cls, key: SigningKey, chain_id: str, type_: str, nonce: int, body: dict[str, Any]
    ) -> Transaction:
        """Sign a new transaction with ``key``."""
        message = tx_sign_bytes(chain_id, type_, key.public_key, nonce, body)
        envelope = {
            "body": body,
            "chain_id": chain_id,
            "nonce": nonce,
            "sender": key.public_key.hex(),
            "signature": key.sign(message).hex(),
            "type": type_,
        }
        return cls.from_dict(envelope)

    @classmethod
    def decode(cls, data: bytes) -> Transaction:
        """Parse wire bytes (need not be canonical) into a transaction."""
        if len(data) > MAX_TX_BYTES:
            raise MalformedError("transaction", f"larger than {MAX_TX_BYTES} bytes")
        try:
            value = decode(data)
        except CodecError as e:
            raise MalformedError("transaction", str(e)) from e
        return cls.from_dict(value, checked=True)

    @classmethod
    def from_dict(cls, data: Any, *, checked: bool = False, raw: bytes | None = None
                  ) -> Transaction:
        """Check the envelope's shape and build a transaction (the signature is not checked).

        ``checked=True`` says ``data`` came from :func:`medledger.codec.decode`, which
        already refused what has no canonical bytes; ``raw`` gives those bytes when the
        caller has them already (:func:`medledger.codec.decode_canonical_list`).
        """
        data = require_keys(data, "transaction", _FIELDS)
        chain_id = read_str(data, "chain_id", 64)
        if not CHAIN_ID.fullmatch(chain_id):
            raise MalformedError("chain_id", "must be 1-64 of A-Z a-z 0-9 . _ -")
        type_ = read_str(data, "type", 64)
        if not _TYPE.fullmatch(type_):
            raise MalformedError("type", "must look like 'app.action' in lower case")
        body = data["body"]
        if type(body) is not dict:
            raise MalformedError("body", "must be a JSON object")
        if raw is None:
            try:
                raw = encode(data, checked=checked)
            except CodecError as e:
                raise MalformedError("transaction", str(e)) from e
        if len(raw) > MAX_TX_BYTES:
            raise MalformedError("transaction", f"larger than {MAX_TX_BYTES} bytes")
        return cls(
            chain_id=chain_id,
            type=type_,
            sender=read_bytes(data, "sender", 32),
            nonce=read_int(data, "nonce", 1),
            body=body,
            signature=read_bytes(data, "signature", 64),
            raw=raw,
            tx_id=tagged_hash(Tag.TX, raw),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as a constructor call: about half the cost of the dataclass default, on
        # both sides of the worker boundary (see medledger.node.verifier).
        return (Transaction, (self.chain_id, self.type, self.sender, self.nonce, self.body,
                              self.signature, self.raw, self.tx_id))

    def to_dict(self) -> dict[str, Any]:
        """The envelope as a JSON-ready dict."""
        return {
            "body": self.body,
            "chain_id": self.chain_id,
            "nonce": self.nonce,
            "sender": self.sender.hex(),
            "signature": self.signature.hex(),
            "type": self.type,
        }

    def sign_bytes(self) -> bytes:
        """The bytes the signature covers.

        The canonical envelope ends with ``,"signature":"<hex>","type":"<type>"}`` (keys
        sort that way and neither value needs escaping), so the unsigned envelope is ``raw``
        with that signature member cut out: no second encoding.
        """
        kept = f',"type":"{self.type}"}}'.encode()
        cut = len(self.signature) * 2 + 15  # ,"signature":"<hex>"
        return _SIGN_PREFIX + self.raw[: -(len(kept) + cut)] + kept

    def signature_valid(self) -> bool:
        """Check the Ed25519 signature (costs ~50 us: callers remember the answer)."""
        return verify(self.sender, self.sign_bytes(), self.signature)
