"""A light client: check what a node answers against the validators you trust.

Trust starts from a validator set (the genesis file's, which every member holds). A header
is believed when a certificate of precommits from more than 2/3 of that set's power signs
its hash and the header names that set; a transaction is believed when its inclusion proof
leads to the header's transaction root (and its result's proof to the results root); a
state entry (or its absence) when its sparse Merkle proof leads to the header's state root.
Nothing here trusts the node that answered.

Validator sets change by governance. A header whose set is not the trusted one is believed
after following the changes (:func:`follow_sets`): each change at height ``c`` is proven by
header ``c - 1``, certified by the set already believed, whose state root holds the set of
``c`` under the validator authority's pending key of ``c`` (:func:`verify_set_change`). A node that leaves out a
change cannot make a header believed: the set followed would not be the one the header
names. Like every light client that skips heights, this one assumes that a set it followed
kept more than 2/3 of its power honest (old validators could otherwise sign a history of
their own); ``medledger verify`` on a full copy of the chain needs no such assumption.

Errors::

    VerificationFailed     the answer does not check out; ``reason`` says which step failed
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from medledger.apps import default_registry
from medledger.codec import CodecError, encode
from medledger.ledger import (
    Certificate,
    Header,
    LedgerError,
    Transaction,
    TxResult,
    ValidatorSet,
)
from medledger.merkle import log
from medledger.merkle.sparse import SparseProof
from medledger.state import verify_state_proof

_SETS = default_registry().validators  # the app that keeps the validator set: its keys

__all__ = ["VerificationFailed", "VerifiedState", "VerifiedTx", "follow_sets",
           "verify_header", "verify_set_change", "verify_state_answer", "verify_tx_answer"]


class VerificationFailed(Exception):
    """A node's answer failed a check; ``reason`` is a sentence for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VerifiedTx:
    """A transaction proven to sit at ``index`` in the certified block ``header``."""

    tx: Transaction
    header: Header
    index: int
    result: TxResult


@dataclass(frozen=True, slots=True)
class VerifiedState:
    """A state entry (``value`` None: proven absent) at the certified ``header``."""

    key: str
    value: Any
    header: Header


def verify_header(answer: dict[str, Any], trusted: ValidatorSet) -> Header:
    """Check ``answer["header"]`` against ``answer["certificate"]`` and the trusted set."""
    try:
        header = Header.from_dict(answer["header"])
        cert = Certificate.from_dict(answer["certificate"])
    except (KeyError, TypeError, LedgerError) as e:
        raise VerificationFailed(f"the header or certificate is malformed: {e}") from e
    if header.validators_hash != trusted.hash():
        raise VerificationFailed("the header names a validator set other than the trusted one")
    if cert.block_hash != header.hash() or cert.height != header.height:
        raise VerificationFailed("the certificate signs another block than this header")
    try:
        cert.verify(header.chain_id, trusted)
    except LedgerError as e:
        raise VerificationFailed(f"the certificate does not check out: {e}") from e
    return header


def verify_tx_answer(answer: dict[str, Any], trusted: ValidatorSet, chain_id: str) -> VerifiedTx:
    """Check a ``GET /v1/txs/{id}`` answer end to end."""
    header = verify_header(answer, trusted)
    if header.chain_id != chain_id:
        raise VerificationFailed(f"the header is of chain {header.chain_id!r}, not {chain_id!r}")
    try:
        tx = Transaction.from_dict(answer["tx"])
        proof = answer["proof"]
        index, size = proof["leaf_index"], proof["tree_size"]
        path = [bytes.fromhex(h) for h in proof["audit_path"]]
        result_path = [bytes.fromhex(h) for h in proof["result_audit_path"]]
        result = TxResult.from_dict({k: answer[k] for k in ("code", "message", "events")
                                     if k in answer and (k != "events" or answer[k])})
        result_leaf = log.leaf_hash(encode(result.to_dict()))
    except (KeyError, TypeError, ValueError, CodecError, LedgerError) as e:
        raise VerificationFailed(f"the transaction or its proof is malformed: {e}") from e
    if answer.get("tx_id") != tx.tx_id.hex():
        raise VerificationFailed("the transaction's bytes do not hash to the id asked for")
    if not tx.signature_valid():
        raise VerificationFailed("the transaction's signature does not verify")
    if size != header.tx_count or not log.verify_inclusion(
            log.leaf_hash(tx.tx_id), index, size, path, header.tx_root):
        raise VerificationFailed("the inclusion proof does not lead to the header's tx root")
    if not log.verify_inclusion(result_leaf, index, size, result_path, header.results_root):
        raise VerificationFailed("the result's proof does not lead to the header's results root")
    return VerifiedTx(tx, header, index, result)


def verify_state_answer(answer: dict[str, Any], trusted: ValidatorSet, chain_id: str
                        ) -> VerifiedState:
    """Check a ``GET /v1/state/{key}`` answer: the value (or its absence) and its proof."""
    header = verify_header(answer, trusted)
    if header.chain_id != chain_id:
        raise VerificationFailed(f"the header is of chain {header.chain_id!r}, not {chain_id!r}")
    try:
        key = answer["key"]
        if type(key) is not str:
            raise TypeError("the key must be a string")
        value = answer["value"]
        raw = None if value is None else encode(value)
        proof = SparseProof.from_dict(answer["proof"])
    except (KeyError, TypeError, ValueError, CodecError) as e:
        raise VerificationFailed(f"the state answer is malformed: {e}") from e
    if not verify_state_proof(header.state_root, key, raw, proof):
        what = "absence" if value is None else "value"
        raise VerificationFailed(f"the proof of the key's {what} does not lead to the state root")
    return VerifiedState(key, value, header)


def verify_set_change(answer: dict[str, Any], trusted: ValidatorSet, chain_id: str
                      ) -> ValidatorSet:
    """Check a ``GET /v1/validators/proof/{h}`` answer against ``trusted``, the set of
    ``h - 1``; return the set of ``h`` (``trusted`` itself when nothing changed at ``h``)."""
    try:
        height = answer["height"]
        if type(height) is not int or height < 2:
            raise TypeError("the height must be an integer of at least 2")
        key, value = answer["key"], answer["value"]
        raw = None if value is None else encode(value)
        proof = SparseProof.from_dict(answer["proof"])
    except (KeyError, TypeError, ValueError, CodecError) as e:
        raise VerificationFailed(f"the validator-set proof is malformed: {e}") from e
    header = verify_header(answer, trusted)
    if header.chain_id != chain_id:
        raise VerificationFailed(f"the header is of chain {header.chain_id!r}, not {chain_id!r}")
    if header.height != height - 1:
        raise VerificationFailed(f"the set of height {height} must be proven from header "
                                 f"{height - 1}, not {header.height}")
    if key != _SETS.pending_key(height):
        raise VerificationFailed("the proof is for another key than the set of that height")
    if not verify_state_proof(header.state_root, key, raw, proof):
        raise VerificationFailed(f"the proof of the set of height {height} does not lead to "
                                 "the state root")
    if value is None:
        return trusted
    try:
        return ValidatorSet.from_list(value)
    except (TypeError, ValueError, LedgerError) as e:
        raise VerificationFailed(f"the proven set of height {height} is malformed: {e}") from e


def follow_sets(trusted: ValidatorSet, chain_id: str, height: int, changes: Iterable[int],
                fetch: Callable[[int], dict[str, Any]]) -> ValidatorSet:
    """The set of ``height``, from ``trusted`` (the set of height 1) through the changes at
    or below ``height`` (``changes``: heights a node says a set changed at; ``fetch(c)``:
    its ``GET /v1/validators/proof/{c}`` answer). Each change is checked with
    :func:`verify_set_change`; the caller then checks the header of ``height`` against the
    result, which catches a change left out."""
    current = trusted
    for change in sorted({c for c in changes if 1 < c <= height}):
        current = verify_set_change(fetch(change), current, chain_id)
    return current
