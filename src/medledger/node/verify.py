"""Re-verify a store from genesis: every block, transaction, link, certificate and root.

:func:`verify_store` raises :class:`~medledger.ledger.IntegrityError` naming the first bad
height and what is wrong; the node runs it before it starts, ``medledger verify`` on demand.

Validator sets change by governance, and verification does not re-execute blocks, so the set
of each height comes from proofs: the set of height 1 is the genesis set; the set of ``h > 1``
is the one the state committed at ``h - 1`` scheduled for ``h``
(``validators/pending/<h>``, whose value hash the tree at that block's state root gives)
or, when none was scheduled, the set of ``h - 1``. A scheduled set's value is read from the
append-only key ``validators/at/<h>`` of the current state, and must hash to the scheduled
one. Each header must name its set's hash and each certificate be signed by its set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medledger.apps import default_registry
from medledger.codec import CodecError, decode
from medledger.ledger import (
    ZERO_HASH,
    Certificate,
    Header,
    IntegrityError,
    LedgerError,
    Transaction,
    ValidatorSet,
    results_root,
    tx_root,
)
from medledger.merkle.log import Frontier
from medledger.merkle.sparse import NodeRef, SparseMerkleError
from medledger.node.chain import check_store_genesis, engine_block_hash, result_of
from medledger.node.genesis import Genesis
from medledger.state import StateTree, value_hash
from medledger.store import Store, StoredBlock

__all__ = ["VerifyReport", "verify_store"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a clean verification covered."""

    height: int
    transactions: int
    state_entries: int


_SETS = default_registry().validators  # the app that keeps the validator set


def _decode(height: int, what: str, raw: bytes) -> object:
    try:
        return decode(raw)
    except CodecError as e:
        raise IntegrityError(height, f"{what} is not canonical JSON: {e}") from e


def _validators_of(store: Store, tree: StateTree, height: int, prev: StoredBlock | None,
                   prev_header: Header | None, prev_set: ValidatorSet) -> ValidatorSet:
    """The set of ``height``: the one the state of ``height - 1`` scheduled for it, else the
    set of ``height - 1`` (``prev_set``; the genesis set for height 1)."""
    if prev is None or prev_header is None:
        return prev_set
    root = NodeRef(prev.state_root_id, prev_header.state_root)
    try:
        scheduled = tree.get_hash(root, _SETS.pending_key(height))
    except SparseMerkleError as e:
        raise IntegrityError(prev.height, f"state tree node is damaged: {e}") from e
    if scheduled is None:
        return prev_set
    raw = store.get_value(_SETS.set_key(height))
    if raw is None:
        raise IntegrityError(height, "the validator set scheduled for this height is not "
                                     "in state")
    if value_hash(raw) != scheduled:
        raise IntegrityError(height, "the validator set in state is not the one scheduled "
                                     "for this height")
    try:
        return ValidatorSet.from_list(_decode(height, "validator set", raw))
    except LedgerError as e:
        raise IntegrityError(height, f"validator set is malformed: {e}") from e


def _check_header(stored: StoredBlock, genesis: Genesis, validators: ValidatorSet,
                  prev_hash: bytes, history: Frontier) -> Header:
    height = stored.height
    try:
        header = Header.from_dict(_decode(height, "header", stored.header))
    except LedgerError as e:
        raise IntegrityError(height, f"header is malformed: {e}") from e
    if header.hash() != stored.block_hash:
        raise IntegrityError(height, "block hash does not match the header",
                             stored.block_hash.hex(), header.hash().hex())
    if header.height != height or header.chain_id != genesis.chain_id:
        raise IntegrityError(height, "header names another height or chain")
    if header.prev_hash != prev_hash:
        raise IntegrityError(height, "previous-block link is broken", prev_hash.hex(),
                             header.prev_hash.hex())
    if header.history_root != history.root():
        raise IntegrityError(height, "history root does not match earlier blocks")
    if header.validators_hash != validators.hash():
        raise IntegrityError(height, "validator-set hash is not the hash of this height's set",
                             validators.hash().hex(), header.validators_hash.hex())
    return header


def _expected_time(genesis: Genesis, prev: Header | None, prev_cert: Certificate | None,
                   prev_set: ValidatorSet) -> int:
    """BFT time: genesis time for block 1, then the weighted median of the last commit,
    weighed by the previous height's set."""
    if prev is None or prev_cert is None:
        return genesis.genesis_time
    return max(prev_cert.bft_time(prev_set), prev.time + 1)


def _check_certificates(stored: StoredBlock, genesis: Genesis, header: Header,
                        prev_cert: Certificate | None, prev_set: ValidatorSet,
                        validators: ValidatorSet) -> tuple[Certificate | None, Certificate]:
    """Check the carried certificate (of the previous block, against the previous height's
    set) and this block's own (against this height's); return both."""
    height = stored.height
    if stored.last_commit is None:
        carried = None
    else:
        carried = Certificate.from_dict(_decode(height, "carried commit", stored.last_commit))
    if (carried.hash() if carried else ZERO_HASH) != header.last_commit_hash:
        raise IntegrityError(height, "carried commit does not match the header")
    if prev_cert is not None:
        # validators may hold different (equally valid) certificates of one block: the
        # carried one must commit the previous block, not equal this store's own
        if carried is None or (carried.height, carried.block_hash) != (
                prev_cert.height, prev_cert.block_hash):
            raise IntegrityError(height, "carried commit is not for the previous block")
        carried.verify(genesis.chain_id, prev_set)
    cert = Certificate.from_dict(_decode(height, "certificate", stored.certificate))
    if cert.block_hash != stored.block_hash or cert.height != height:
        raise IntegrityError(height, "certificate is for another block")
    cert.verify(genesis.chain_id, validators)
    return carried, cert


def _decided_by_engine(stored: StoredBlock, header: Header) -> bool:
    """True for a block CometBFT decided (it names the engine's block hash, carries no
    certificate of its own)."""
    if engine_block_hash(_decode(stored.height, "certificate", stored.certificate)) is None:
        return False
    if stored.last_commit is not None or header.last_commit_hash != ZERO_HASH:
        raise IntegrityError(stored.height, "a block decided by the engine carries a commit")
    return True


def _check_txs(store: Store, header: Header, signatures: bool) -> int:
    height = header.height
    rows = store.get_block_txs(height)
    txs = []
    for row in rows:
        try:
            tx = Transaction.decode(row.raw)
        except LedgerError as e:
            raise IntegrityError(height, f"transaction {row.index} is malformed: {e}") from e
        if tx.tx_id != row.tx_id:
            raise IntegrityError(height, f"transaction {row.index} bytes do not match its id",
                                 row.tx_id.hex(), tx.tx_id.hex())
        if signatures and not tx.signature_valid():
            raise IntegrityError(height, f"transaction {row.index} has a bad signature")
        txs.append(tx)
    if len(txs) != header.tx_count or tx_root([t.tx_id for t in txs]) != header.tx_root:
        raise IntegrityError(height, "transactions do not match the header's tx root")
    try:
        results = [result_of(r) for r in rows]
    except (LedgerError, CodecError) as e:
        raise IntegrityError(height, f"a stored result's events are damaged: {e}") from e
    if results_root(results) != header.results_root:
        raise IntegrityError(height, "results do not match the header's results root")
    return len(txs)


def _check_state(store: Store, stored: StoredBlock, header: Header) -> int:
    tree = StateTree(store, cache_size=10_000)
    root = NodeRef(stored.state_root_id, header.state_root)
    try:
        leaves = tree.verify(root)
        count = 0
        for key, value in store.iter_values():
            if tree.get_hash(root, key) != value_hash(value):
                raise IntegrityError(stored.height, f"state value of {key!r} does not match "
                                                    "the state root")
            count += 1
    except SparseMerkleError as e:
        raise IntegrityError(stored.height, f"state tree node is damaged: {e}") from e
    if count != leaves:
        raise IntegrityError(stored.height, "state holds entries the state root does not",
                             str(leaves), str(count))
    return count


def verify_store(store: Store, genesis: Genesis, *, signatures: bool = True,
                 progress: Progress | None = None) -> VerifyReport:
    """Check the whole store against ``genesis``; raise IntegrityError at the first fault
    (StoreMismatch first, if the store was made from another genesis)."""
    check_store_genesis(store, genesis)
    latest = store.latest_height()
    history = Frontier()
    prev_header: Header | None = None
    prev_hash, prev_cert = ZERO_HASH, None
    prev_set = genesis.validators
    tree = StateTree(store, cache_size=10_000)
    n_txs = 0
    stored = prev_stored = None
    for height in range(1, latest + 1):
        stored = store.get_block(height)
        if stored is None:
            raise IntegrityError(height, "block is missing")
        try:
            validators = _validators_of(store, tree, height, prev_stored, prev_header, prev_set)
            header = _check_header(stored, genesis, validators, prev_hash, history)
            if _decided_by_engine(stored, header):
                # CometBFT decided it: its commit and BFT time are checked against the
                # engine's signed headers (the light client), not kept here
                if prev_header is not None and header.time < prev_header.time:
                    raise IntegrityError(height, "block time runs backwards")
            else:
                carried, own = _check_certificates(stored, genesis, header, prev_cert,
                                                   prev_set, validators)
                expected_time = _expected_time(genesis, prev_header, carried, prev_set)
                if header.time != expected_time:
                    raise IntegrityError(height, "block time is not the BFT time of the "
                                                 "last commit", str(expected_time),
                                         str(header.time))
                prev_cert = own
            n_txs += _check_txs(store, header, signatures)
        except LedgerError as e:
            if isinstance(e, IntegrityError):
                raise
            raise IntegrityError(height, str(e)) from e
        history.append(stored.block_hash)
        prev_header, prev_hash = header, stored.block_hash
        prev_stored, prev_set = stored, validators
        if progress is not None:
            progress(height, latest)
    if store.get_history() != history.to_list():
        raise IntegrityError(latest, "stored history frontier does not match the blocks")
    entries = _check_state(store, stored, prev_header) if stored and prev_header else 0
    return VerifyReport(latest, n_txs, entries)
