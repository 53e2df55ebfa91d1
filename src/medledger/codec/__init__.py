"""Canonical bytes (RFC 8785, restricted) and domain-separated SHA-256 hashes."""

from medledger.codec.canonical import (
    MAX_SAFE_INT,
    CodecError,
    decode,
    decode_canonical_list,
    decode_trusted,
    encode,
    is_canonical,
    utf8_ok,
    validate,
)
from medledger.codec.hashing import Tag, pseudonym, tagged_hash

__all__ = [
    "MAX_SAFE_INT", "CodecError", "Tag", "decode", "decode_canonical_list",
    "decode_trusted", "encode", "is_canonical", "pseudonym",
    "tagged_hash", "utf8_ok", "validate",
]
