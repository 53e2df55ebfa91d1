"""Canonical bytes (RFC 8785, restricted) and domain-separated SHA-256 hashes."""

from medledger.codec.canonical import CodecError, decode, encode, is_canonical
from medledger.codec.hashing import Tag, tagged_hash

__all__ = ["CodecError", "Tag", "decode", "encode", "is_canonical", "tagged_hash"]
