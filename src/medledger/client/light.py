"""A light client: check what a node answers against the validators you trust.

Trust starts from a validator set (the genesis file's, which every member holds). A block
is believed when CometBFT's signed headers carry it: the header of its height (its time,
its transactions' data hash) and of the next (the app hash of the state after it, the
results hash of its transactions), each hashed as CometBFT hashes it and signed by more
than 2/3 of the power of the set of its height, over CometBFT's canonical vote sign bytes
(:mod:`medledger.client.comet`). A transaction is believed when its inclusion proof leads to
the data hash (and its result's proof to the results hash); a state entry (or its absence)
when its sparse Merkle proof leads to the app hash. Nothing here trusts the node that
answered.

The app-level header an answer carries (``"header"``) is the node's summary of the block:
of it, the light client believes the chain id, height, time and state root, which the
signed headers bind; its other fields are the node's word.

Validator sets change by governance. The signed headers of a height after a change are
checked against the set of that height, learnt by following the changes
(:func:`sets_through`): CometBFT applies a change two heights after the block that returned
it, so the set of ``c`` is proven by the state of ``c - 2``, which signed header ``c - 1``
(signed by the set of ``c - 1``, already believed) carries (:func:`verify_set_change`). A
node that leaves out a change cannot make a header believed: the set followed would not be
the one that signed it. Like every light client that skips heights, this one assumes that a
set it followed kept more than 2/3 of its power honest (old validators could otherwise sign
a history of their own); ``medledger verify`` on a full copy of the chain needs no such
assumption.

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
    Header,
    LedgerError,
    Transaction,
    TxResult,
    ValidatorSet,
)
from medledger.client import comet
from medledger.ledger.engine import exec_result_bytes, tx_leaf
from medledger.merkle import log
from medledger.merkle.sparse import SparseProof
from medledger.state import verify_state_proof

_SETS = default_registry().validators  # the app that keeps the validator set: its keys

__all__ = ["Trusted", "VerificationFailed", "VerifiedState", "VerifiedTx", "comet_set",
           "sets_through", "verify_header", "verify_light", "verify_set_change",
           "verify_state_answer", "verify_tx_answer"]


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


Trusted = ValidatorSet | Callable[[int], ValidatorSet]
"""The set to check headers against: one set, or the set of each height (:func:`sets_through`)."""


def _set_of(trusted: Trusted, height: int) -> ValidatorSet:
    return trusted(height) if callable(trusted) else trusted


def comet_set(validators: ValidatorSet) -> comet.ValidatorSet:
    """A set as CometBFT orders and hashes it: by power, highest first, then by address."""
    ordered = sorted(validators.validators,
                     key=lambda v: (-v.power, comet.address_of(v.public_key)))
    return comet.ValidatorSet(tuple(comet.Validator(v.public_key, v.power) for v in ordered))


def verify_light(answer: dict[str, Any], trusted: Trusted, chain_id: str
                 ) -> list[comet.SignedHeader]:
    """Check the engine's signed headers an answer carries (``"light"``: CometBFT's
    ``/commit`` form, consecutive heights), each against the trusted set of its height."""
    items = answer.get("light")
    if type(items) is not list or not 1 <= len(items) <= 2:
        raise VerificationFailed("the answer carries no signed headers of the engine")
    signed: list[comet.SignedHeader] = []
    for item in items:
        try:
            header = comet.SignedHeader.from_json(item)
            comet.verify_signed_header(chain_id, header,
                                       comet_set(_set_of(trusted, header.height)))
        except comet.LightClientError as e:
            raise VerificationFailed(f"the engine's signed header does not check out: "
                                     f"{e}") from e
        if signed and header.height != signed[-1].height + 1:
            raise VerificationFailed("the engine's headers are not of consecutive heights")
        signed.append(header)
    return signed


def _ms(moment: comet.Timestamp) -> int:
    return moment.seconds * 1000 + moment.nanos // 1_000_000


def verify_header(answer: dict[str, Any], trusted: Trusted) -> Header:
    """The block summary of an answer from a node on CometBFT, believed for what the
    engine's signed headers carry of it: its height and time (header ``height``) and its
    state root (the app hash of header ``height + 1``, or of ``height`` when that block
    changed nothing)."""
    try:
        header = Header.from_dict(answer["header"])
    except (KeyError, TypeError, LedgerError) as e:
        raise VerificationFailed(f"the header is malformed: {e}") from e
    signed = verify_light(answer, trusted, header.chain_id)
    own, prover = signed[0].header, signed[-1].header
    if own.height != header.height or _ms(own.time) != header.time:
        raise VerificationFailed("the block's height or time is not the engine's")
    if prover.app_hash != header.state_root:
        raise VerificationFailed("the state root is not the app hash the engine's header "
                                 "signs")
    return header


def _tx_parts(answer: dict[str, Any]) -> tuple[Transaction, TxResult, int, int, dict[str, Any]]:
    """The transaction, its result, index, block size and proof of a tx answer."""
    try:
        tx = Transaction.from_dict(answer["tx"])
        proof = answer["proof"]
        index, size = proof["leaf_index"], proof["tree_size"]
        if type(index) is not int or type(size) is not int:
            raise TypeError("leaf_index and tree_size must be integers")
        result = TxResult.from_dict({k: answer[k] for k in ("code", "message", "events")
                                     if k in answer and (k != "events" or answer[k])})
    except (KeyError, TypeError, ValueError, CodecError, LedgerError) as e:
        raise VerificationFailed(f"the transaction or its proof is malformed: {e}") from e
    if answer.get("tx_id") != tx.tx_id.hex():
        raise VerificationFailed("the transaction's bytes do not hash to the id asked for")
    if not tx.signature_valid():
        raise VerificationFailed("the transaction's signature does not verify")
    return tx, result, index, size, proof


def _path(proof: dict[str, Any], name: str) -> list[bytes]:
    try:
        return [bytes.fromhex(h) for h in proof[name]]
    except (KeyError, TypeError, ValueError) as e:
        raise VerificationFailed(f"the proof's {name} is malformed: {e}") from e


def verify_tx_answer(answer: dict[str, Any], trusted: Trusted, chain_id: str) -> VerifiedTx:
    """Check a ``GET /v1/txs/{id}`` answer end to end: the transaction in the ``data_hash``
    of its block's signed header, its result in the ``last_results_hash`` of the next.

    Of the answer's own block header, the engine's signed headers bind the height, the time,
    the proposer (its address), the state root (the next header's app hash) and the count
    of transactions (the size of the tree the inclusion proof checks against
    ``data_hash``); the rest of it (``tx_root``, ``results_root``, ``prev_hash``,
    ``history_root``, ``validators_hash``) is the app's own record of the block, which no
    signed header covers, and is not checked here."""
    tx, result, index, size, proof = _tx_parts(answer)
    try:
        header = Header.from_dict(answer["header"])
    except (KeyError, TypeError, LedgerError) as e:
        raise VerificationFailed(f"the header is malformed: {e}") from e
    if header.chain_id != chain_id:
        raise VerificationFailed(f"the header is of chain {header.chain_id!r}, not {chain_id!r}")
    signed = verify_light(answer, trusted, chain_id)
    if len(signed) != 2 or signed[0].height != header.height:
        raise VerificationFailed("a transaction needs the engine's headers of its block and "
                                 "of the next")
    block, following = signed[0].header, signed[1].header
    if _ms(block.time) != header.time:
        raise VerificationFailed("the block's time is not the engine's")
    if comet.address_of(header.proposer) != block.proposer_address:
        raise VerificationFailed("the block's proposer is not the engine's")
    if following.app_hash != header.state_root:
        raise VerificationFailed("the state root is not the app hash the next header signs")
    if not log.verify_inclusion(log.leaf_hash(tx_leaf(tx.raw)), index, size,
                                _path(proof, "data_audit_path"), block.data_hash):
        raise VerificationFailed("the inclusion proof does not lead to the block's data hash")
    if not log.verify_inclusion(log.leaf_hash(exec_result_bytes(result)), index, size,
                                _path(proof, "result_audit_path"), following.last_results_hash):
        raise VerificationFailed("the result's proof does not lead to the next header's "
                                 "results hash")
    if size != header.tx_count:
        raise VerificationFailed("the block's transaction count is not the size of the tree "
                                 "the inclusion proof checks")
    return VerifiedTx(tx, header, index, result)


def verify_state_answer(answer: dict[str, Any], trusted: Trusted, chain_id: str
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


def verify_set_change(answer: dict[str, Any], trusted: Trusted, chain_id: str
                      ) -> ValidatorSet:
    """Check a ``GET /v1/validators/proof/{h}`` answer against ``trusted`` (the sets of
    the heights below ``h``); return the set of ``h`` (the set of ``h - 1`` when nothing
    changed at ``h``)."""
    try:
        height = answer["height"]
        if type(height) is not int or height < 3:
            raise TypeError("the height must be an integer of at least 3")
        key, value = answer["key"], answer["value"]
        raw = None if value is None else encode(value)
        proof = SparseProof.from_dict(answer["proof"])
    except (KeyError, TypeError, ValueError, CodecError) as e:
        raise VerificationFailed(f"the validator-set proof is malformed: {e}") from e
    header = verify_header(answer, trusted)
    if header.chain_id != chain_id:
        raise VerificationFailed(f"the header is of chain {header.chain_id!r}, not {chain_id!r}")
    at = height - 2  # CometBFT applies a change returned by block h at h + 2
    if header.height != at:
        raise VerificationFailed(f"the set of height {height} must be proven from the "
                                 f"state of {at}, not {header.height}")
    if key != _SETS.pending_key(height):
        raise VerificationFailed("the proof is for another key than the set of that height")
    if not verify_state_proof(header.state_root, key, raw, proof):
        raise VerificationFailed(f"the proof of the set of height {height} does not lead to "
                                 "the state root")
    if value is None:
        return _set_of(trusted, height - 1)
    try:
        return ValidatorSet.from_list(value)
    except (TypeError, ValueError, LedgerError) as e:
        raise VerificationFailed(f"the proven set of height {height} is malformed: {e}") from e


def sets_through(trusted: ValidatorSet, chain_id: str, height: int, changes: Iterable[int],
                 fetch: Callable[[int], dict[str, Any]]) -> Callable[[int], ValidatorSet]:
    """The set of every height up to ``height``, from ``trusted`` (the set of height 1)
    through the changes at or below ``height`` (``changes``: heights a node says a set
    changed at; ``fetch(c)``: its ``GET /v1/validators/proof/{c}`` answer), each checked
    with :func:`verify_set_change`: a function of the height. A change left out makes the
    signed headers of its heights fail against the set followed."""
    known: list[tuple[int, ValidatorSet]] = [(1, trusted)]

    def set_at(h: int) -> ValidatorSet:
        return next(s for start, s in reversed(known) if start <= h)

    for change in sorted({c for c in changes if 1 < c <= height}):
        known.append((change, verify_set_change(fetch(change), set_at, chain_id)))
    return set_at
