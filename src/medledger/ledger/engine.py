"""What CometBFT commits of a block's transactions and results, as the ledger defines them.

- A transaction's leaf in the header's ``data_hash``: the SHA-256 of its bytes (CometBFT's
  ``Txs.Hash`` is an RFC 6962 tree over the transactions' hashes).
- A result's leaf in the next header's ``last_results_hash`` (:func:`results_hash`): the protobuf encoding of the
  deterministic fields of its ``ExecTxResult`` (code, data, gas wanted, gas used). medledger
  answers ``code`` 0 for an accepted transaction and 1 for a refused one, and puts the
  result's canonical bytes (code, message, events) in ``data``, so the header commits all
  of it. Gas is not used (0, so not encoded).

The encoding is two protobuf fields, written here so that a client checks a proof without
CometBFT's generated classes; a test checks it against them.
"""

from __future__ import annotations

import hashlib

from medledger.codec import encode
from medledger.ledger.block import TxResult
from medledger.merkle import log

__all__ = ["HISTORY_KEY", "exec_result_bytes", "exec_result_code", "history_leaf",
           "results_hash", "tx_leaf", "uvarint"]

HISTORY_KEY = "chain/history"
"""The state key of the log of blocks: ``{"size", "root", "frontier"}`` of an RFC 9162 log
whose leaves are :func:`history_leaf` of every block that carried transactions or changed
state, so one recent header's app hash proves any such block (its hash and results)."""


def exec_result_code(result: TxResult) -> int:
    """The ABCI code of a result: 0 accepted, 1 refused (the reason is in its data)."""
    return 0 if result.ok else 1


def uvarint(value: int) -> bytes:
    """``value`` (0 or more) as a protobuf unsigned varint (also CometBFT's length prefix)."""
    if value < 0x80:
        return bytes((value,))
    head = bytearray()
    while value >= 0x80:
        head.append((value & 0x7F) | 0x80)
        value >>= 7
    head.append(value)
    return bytes(head)


def exec_result_bytes(result: TxResult) -> bytes:
    """The deterministic ``ExecTxResult`` bytes of ``result`` that CometBFT hashes."""
    data = result.encode()
    code = exec_result_code(result)
    head = b"\x08" + uvarint(code) if code else b""
    return head + b"\x12" + uvarint(len(data)) + data


def tx_leaf(raw: bytes) -> bytes:
    """A transaction's data in CometBFT's ``data_hash`` tree: the SHA-256 of its bytes."""
    return hashlib.sha256(raw).digest()


def results_hash(results: list[TxResult]) -> bytes:
    """What the next header's ``last_results_hash`` is for a block with ``results``."""
    return log.root([log.leaf_hash(exec_result_bytes(r)) for r in results])


def history_leaf(height: int, block_hash: bytes, results: bytes) -> bytes:
    """A block's entry in the log of blocks: its height, CometBFT block hash and results
    hash, as canonical bytes."""
    return encode({"block": block_hash.hex(), "height": height, "results": results.hex()})
