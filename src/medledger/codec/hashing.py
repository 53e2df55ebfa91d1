"""SHA-256 with a domain tag per kind of object.

``tagged_hash(tag, data) = SHA-256(b"medledger:" + tag + b"\\x00" + data)``. The tag is a
short ASCII name and can never contain the separator, so a transaction hash can never be
taken for a block hash, a vote or a state-tree node. The RFC 9162 log tree keeps the plain
0x00/0x01 prefixes of its standard (see :mod:`medledger.merkle.log`).
"""

from __future__ import annotations

import hashlib
from enum import Enum

__all__ = ["Tag", "pseudonym", "tagged_hash"]


class Tag(str, Enum):
    """The domain of a hash. Adding a member is a format change: write an ADR. (The domains
    of medledger's own consensus messages, ``commit-sign``, ``commit``, ``vote`` and
    ``proposal``, were retired with that engine: ADR 0010. Do not reuse them.)"""

    TX = "tx"
    TX_SIGN = "tx-sign"
    BLOCK = "block"
    VALIDATORS = "validators"
    STATE_KEY = "state-key"
    STATE_VALUE = "state-value"
    SMT_LEAF = "smt-leaf"
    SMT_NODE = "smt-node"
    PSEUDONYM = "pseudonym"
    KEYSTORE = "keystore"
    GENESIS = "genesis"
    EVIDENCE = "evidence"

    @property
    def prefix(self) -> bytes:
        return b"medledger:" + self.value.encode("ascii") + b"\x00"


_PREFIX = {tag: tag.prefix for tag in Tag}


def tagged_hash(tag: Tag, data: bytes) -> bytes:
    """Return the 32-byte SHA-256 of ``data`` in the domain ``tag``."""
    return hashlib.sha256(_PREFIX[tag] + data).digest()


def pseudonym(public_key: bytes) -> str:
    """A patient's pseudonym: 16 bytes of the tagged hash of their first signing key, in
    hex (the identity app registers patients under it; clients derive it alike)."""
    return tagged_hash(Tag.PSEUDONYM, public_key)[:16].hex()
