"""What CometBFT commits of a block's transactions and results, as the ledger defines them.

- A transaction's leaf in the header's ``data_hash``: the SHA-256 of its bytes (CometBFT's
  ``Txs.Hash`` is an RFC 6962 tree over the transactions' hashes).
- A result's leaf in the next header's ``last_results_hash``: the protobuf encoding of the
  deterministic fields of its ``ExecTxResult`` (code, data, gas wanted, gas used). medledger
  answers ``code`` 0 for an accepted transaction and 1 for a refused one, and puts the
  result's canonical bytes (code, message, events) in ``data``, so the header commits all
  of it. Gas is not used (0, so not encoded).

The encoding is two protobuf fields, written here so that a client checks a proof without
CometBFT's generated classes; a test checks it against them.
"""

from __future__ import annotations

import hashlib

from medledger.ledger.block import TxResult

__all__ = ["exec_result_bytes", "exec_result_code", "tx_leaf"]


def exec_result_code(result: TxResult) -> int:
    """The ABCI code of a result: 0 accepted, 1 refused (the reason is in its data)."""
    return 0 if result.ok else 1


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def exec_result_bytes(result: TxResult) -> bytes:
    """The deterministic ``ExecTxResult`` bytes of ``result`` that CometBFT hashes."""
    data = result.encode()
    code = exec_result_code(result)
    head = b"\x08" + _uvarint(code) if code else b""
    return head + b"\x12" + _uvarint(len(data)) + data


def tx_leaf(raw: bytes) -> bytes:
    """A transaction's data in CometBFT's ``data_hash`` tree: the SHA-256 of its bytes."""
    return hashlib.sha256(raw).digest()
