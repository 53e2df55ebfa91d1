"""Re-verify a store from genesis (or from its base): every row of every table is either
committed (checked against the root that commits it), derived (checked against what it is
derived from) or bookkeeping (checked against the facts it records).

:func:`verify_store` raises :class:`~medledger.ledger.IntegrityError` naming the first bad
height and what is wrong; the node runs it before it starts, ``medledger verify`` on demand.

Validator sets change by governance, and verification does not re-execute blocks, so the set
of each height comes from proofs: the set of height 1 is the genesis set; the set of ``h > 1``
is the one the state committed at ``h - 1`` scheduled for ``h``
(``validators/pending/<h>``, whose value hash the tree at that block's state root gives)
or, when none was scheduled, the set of ``h - 1``. A scheduled set's value is read from the
append-only key ``validators/at/<h>`` of the current state, and must hash to the scheduled
one. Each header must name its set's hash. A block's commit and BFT time are CometBFT's: the
engine's signed headers (the light client) check them, not this store.

What each table must hold:

- ``blocks``: canonical bytes; the header hashes to the block hash and links to the previous
  one; CometBFT's block hash in its canonical form, which the log of blocks in state commits
  for every block that carried transactions or changed state; no carried commit; times that
  never run backwards;
  the stored history frontier of each height over the block hashes up to it;
- ``txs``: the rows of a height are its transactions 0..n-1, in canonical bytes hashing to
  their ids, with the header's tx root and results root; each one found by id and by sender;
  no row outside a block;
- ``smt_pages``: every version of the state tree (each block's root), each node read once
  and checked against the hash its parent commits to; every stored node in some version
  (only the nodes a snapshot restore replaced itself may be in none), and no stray byte;
- ``state``: every entry against the latest state root, and as many entries as it holds;
- ``block_events``: canonical lists of well-formed events, at stored heights only (block
  hooks' events are committed by nothing, as in CometBFT);
- ``events``, ``event_attrs``: the event index, rebuilt from ``txs`` and ``block_events``
  up to the height it records, and compared row by row;
- ``meta``: each entry known and checked (see :func:`_check_meta`);
- and SQLite's own check of its pages and indexes (``Store.storage_faults``).

A store that started from a state snapshot holds no blocks below its base. Its base block is
taken as the snapshot was (its state root is the app hash CometBFT's light client verified);
it is checked against the base record: its history root against the stored frontier of the
blocks below, its validator-set hash against the stored set, its transactions and results
against its roots. Every later block is checked as in a full store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from medledger.apps import default_registry
from medledger.codec import CodecError, decode, encode
from medledger.ledger import (
    ZERO_HASH,
    Event,
    Header,
    IntegrityError,
    LedgerError,
    MalformedError,
    Transaction,
    TxResult,
    ValidatorSet,
    results_root,
    tx_root,
)
from medledger.ledger.engine import HISTORY_KEY, history_leaf, results_hash
from medledger.merkle import log
from medledger.merkle.log import Frontier
from medledger.merkle.sparse import EMPTY_ROOT, NodeRef
from medledger.node.chain import (
    check_store_genesis,
    engine_block_hash,
    engine_reference,
    result_of,
)
from medledger.node.genesis import Genesis
from medledger.node.verify_tree import TreeVersions, check_state
from medledger.state import key_hash, value_hash
from medledger.store import Store, StoreBase, StoredBlock, StoredEvent, StoreError

__all__ = ["VerifyReport", "verify_store"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a clean verification covered."""

    height: int
    transactions: int
    state_entries: int
    tree_nodes: int = 0  # stored state-tree nodes, of every version


_SETS = default_registry().validators  # the app that keeps the validator set


def _decode(height: int, what: str, raw: bytes) -> object:
    try:
        return decode(raw)
    except CodecError as e:
        raise IntegrityError(height, f"{what} is not canonical JSON: {e}") from e


def _same_bytes(height: int, what: str, stored: bytes | None, canonical: bytes | None) -> None:
    """Stored bytes must be the canonical bytes of what they decode to: a hash or a
    signature covers the value, so bytes that decode alike must not pass for it."""
    if stored != canonical:
        raise IntegrityError(height, f"{what} is not in canonical bytes")


# the blocks -----------------------------------------------------------------------------------
def _validators_of(store: Store, versions: TreeVersions, height: int, prev_root: NodeRef | None,
                   prev_set: ValidatorSet) -> ValidatorSet:
    """The set of ``height``: the one the state of ``height - 1`` (``prev_root``, walked)
    scheduled for it, else the set of ``height - 1`` (``prev_set``; the genesis set for
    height 1)."""
    if prev_root is None:
        return prev_set
    scheduled = versions.get(prev_root, key_hash(_SETS.pending_key(height)))
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
    raw = _decode(height, "header", stored.header)
    try:
        header = Header.from_dict(raw)
    except LedgerError as e:
        raise IntegrityError(height, f"header is malformed: {e}") from e
    if header.hash() != stored.block_hash:
        raise IntegrityError(height, "block hash does not match the header",
                             stored.block_hash.hex(), header.hash().hex())
    _same_bytes(height, "header", stored.header, header.encode())
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


def _engine_hash(stored: StoredBlock, header: Header) -> bytes:
    """CometBFT's block hash, which a stored block names where a certificate would be (and
    carries no commit of its own)."""
    try:
        engine_hash = engine_block_hash(_decode(stored.height, "certificate",
                                                stored.certificate))
    except (TypeError, ValueError) as e:
        raise IntegrityError(stored.height, f"the engine's block hash is not hex: {e}") from e
    if engine_hash is None:
        raise IntegrityError(stored.height, "the block names no CometBFT block hash")
    _same_bytes(stored.height, "the engine's block hash", stored.certificate,
                engine_reference(engine_hash))
    if stored.last_commit is not None or header.last_commit_hash != ZERO_HASH:
        raise IntegrityError(stored.height, "a block decided by the engine carries a commit")
    return engine_hash


def _check_txs(store: Store, header: Header, signatures: bool
               ) -> tuple[list[Transaction], list[TxResult]]:
    """The block's stored transactions, decoded and checked against the header, with their
    results."""
    height = header.height
    rows = store.get_block_txs(height)
    txs = []
    for index, row in enumerate(rows):
        if row.index != index:
            raise IntegrityError(height, f"stored transactions are numbered {row.index} "
                                         f"where {index} belongs")
        try:
            tx = Transaction.decode(row.raw)
        except LedgerError as e:
            raise IntegrityError(height, f"transaction {index} is malformed: {e}") from e
        if tx.tx_id != row.tx_id:
            raise IntegrityError(height, f"transaction {index} bytes do not match its id",
                                 row.tx_id.hex(), tx.tx_id.hex())
        _same_bytes(height, f"transaction {index}", row.raw, tx.raw)
        if signatures and not tx.signature_valid():
            raise IntegrityError(height, f"transaction {index} has a bad signature")
        txs.append(tx)
    if len(txs) != header.tx_count or tx_root([t.tx_id for t in txs]) != header.tx_root:
        raise IntegrityError(height, "transactions do not match the header's tx root")
    try:
        results = [result_of(r) for r in rows]
    except (LedgerError, CodecError) as e:
        raise IntegrityError(height, f"a stored result's events are damaged: {e}") from e
    for index, (row, result) in enumerate(zip(rows, results, strict=True)):
        _same_bytes(height, f"the events of transaction {index}", row.events,
                    result.events_bytes)
    if results_root(results) != header.results_root:
        raise IntegrityError(height, "results do not match the header's results root")
    faults = store.tx_lookup_faults(height, [(t.tx_id, t.sender) for t in txs])
    if faults:
        raise IntegrityError(height, f"transaction {faults[0]} is not found by its id or "
                                     "its sender (the lookup columns of table txs)")
    return txs, results


def _block_events(height: int, which: str, raw: bytes | None) -> tuple[Event, ...]:
    """A stored list of block-hook events, checked for form (nothing commits them)."""
    if raw is None:
        return ()
    try:
        items = _decode(height, f"{which} events", raw)
        if type(items) is not list or not items:
            raise MalformedError("events", "must be a list of one or more")
        events = tuple(Event.from_dict(item) for item in items)
    except LedgerError as e:
        raise IntegrityError(height, f"{which} events (table block_events): {e}") from e
    _same_bytes(height, f"{which} events (table block_events)", raw,
                b"[" + b",".join(e.encoded for e in events) + b"]")
    return events


# the state ------------------------------------------------------------------------------------


class _EngineLog:
    """The log of blocks CometBFT decided (``HISTORY_KEY`` in state), rebuilt from the
    blocks: each one that carried transactions or changed state appends its engine block
    hash and results hash, and the state of its height must hold the log so far. Checked
    from block 1 only: a store restored from a snapshot lacks the log's value at its base."""

    def __init__(self, versions: TreeVersions) -> None:
        self.versions = versions
        self.frontier = Frontier()

    def check(self, height: int, engine_hash: bytes, results: list[TxResult],
              root: NodeRef, changed: bool) -> None:
        if not (results or changed):
            return  # an empty block that changed nothing: it is in no log
        leaf = history_leaf(height, engine_hash, results_hash(results))
        frontier = self.frontier
        frontier.append(log.leaf_hash(leaf))
        entry = encode({"frontier": [h.hex() for h in frontier.to_list()],
                        "root": frontier.root().hex(), "size": frontier.size})
        if self.versions.get(root, key_hash(HISTORY_KEY)) != value_hash(entry):
            raise IntegrityError(height, "the engine's block hash or the results are not the "
                                         "ones the state's log of blocks commits")


# the event index ------------------------------------------------------------------------------
def _attrs_text(event: Event) -> bytes:
    """An event's attributes as the index keeps them (its canonical JSON object)."""
    return event.encoded[len(b'{"attrs":') : -len(b',"type":"' + event.type.encode() + b'"}')]


class _EventIndex:
    """The event index against the rows it is built from, streamed block by block: the
    events of each indexed height, numbered on (begin-block hooks', each transaction's,
    end-block hooks'), each with its attribute lookups, and nothing more."""

    def __init__(self, store: Store, indexed: int, seq: int) -> None:
        self.indexed = indexed
        self.seq = seq  # of the last event before the first indexed block
        self._events: Iterator[StoredEvent] = store.iter_indexed_events()
        self._attrs: Iterator[tuple[int, str]] = store.iter_event_attrs()

    def check(self, height: int, events: list[tuple[int | None, Event]]) -> None:
        if height > self.indexed:
            return
        for tx_index, event in events:
            self.seq += 1
            want = (self.seq, height, tx_index, event.type, _attrs_text(event))
            got = next(self._events, None)
            if got is None or (got.seq, got.height, got.tx_index, got.type, got.attrs) != want:
                raise IntegrityError(height, f"event {self.seq} of the index (table events) "
                                             "is not the one the block's rows give")
            for attr in sorted({f"{name}={value}" for name, value in event.attrs}):
                if next(self._attrs, None) != (self.seq, attr):
                    raise IntegrityError(height, f"the attributes of event {self.seq} (table "
                                                 "event_attrs) are not the event's")

    def finish(self, latest: int) -> None:
        extra = next(self._events, None)
        if extra is not None:
            raise IntegrityError(latest, f"table events holds event {extra.seq!r} (of height "
                                         f"{extra.height!r}), which no indexed block gives")
        extra_attr = next(self._attrs, None)
        if extra_attr is not None:
            raise IntegrityError(latest, f"table event_attrs holds {extra_attr!r}, which no "
                                         "indexed event gives")


# meta -----------------------------------------------------------------------------------------
_BASE_KEYS = frozenset({"base_height", "base_history", "base_validators", "base_txs",
                        "base_events"})
_META_KEYS = frozenset({"schema", "genesis_hash", "chain_id", "events_indexed"}) | _BASE_KEYS


def _count(value: bytes | None) -> int | None:
    """A count stored as decimal ASCII, in its one canonical form; None otherwise."""
    if value is None or not value.isdigit() or str(int(value)).encode() != value:
        return None
    return int(value)


def _check_meta(store: Store, genesis: Genesis, first: int, latest: int) -> int:
    """Check each meta entry; return the height the event index reaches.

    ``schema``: the layout the store writes. ``genesis_hash`` (compared before anything
    else, see :func:`check_store_genesis`) and ``chain_id``: this genesis's, both present
    once a block is. ``events_indexed``: a height from just below the first block to the
    tip (the index itself is checked against it, block by block). ``base_*``: present
    exactly when the store started from a snapshot; the counts in canonical decimal, the
    height the first stored block (the rest is checked against the base block).
    """
    meta = dict(store.iter_meta())
    unknown = sorted(set(meta) - _META_KEYS)
    if unknown:
        raise IntegrityError(latest, f"table meta holds entries no store writes: {unknown}")
    if meta.get("schema") != store.schema_version:
        raise IntegrityError(latest, "meta entry 'schema' is not this store's layout",
                             repr(store.schema_version), repr(meta.get("schema")))
    if latest and "genesis_hash" not in meta:
        raise IntegrityError(latest, "table meta lacks the genesis hash")
    if ("chain_id" in meta) != ("genesis_hash" in meta) or meta.get(
            "chain_id", genesis.chain_id.encode()) != genesis.chain_id.encode():
        raise IntegrityError(latest, "meta entry 'chain_id' is not the genesis chain id")
    indexed = _count(meta.get("events_indexed", str(first - 1).encode()))
    if indexed is None or not first - 1 <= indexed <= latest:
        raise IntegrityError(latest, "meta entry 'events_indexed' is not a height from just "
                                     "below the first block to the tip",
                             f"{first - 1}..{latest}", repr(meta.get("events_indexed")))
    base = store.base()
    present = _BASE_KEYS & set(meta)
    if present and (base is None or present != _BASE_KEYS):
        raise IntegrityError(latest, "table meta holds a partial base record")
    if base is not None:
        counts = [_count(meta[k]) for k in ("base_height", "base_txs", "base_events")]
        if None in counts or counts[0] != base.height or len(meta["base_history"]) % 32:
            raise IntegrityError(base.height, "the base record in table meta is malformed")
    return indexed


def _from_base(store: Store, base: StoreBase) -> tuple[Frontier, bytes, ValidatorSet]:
    """Where verifying a store that started from a snapshot begins: the frontier of the
    blocks below the base, the base block's own previous-block link (nothing below it to
    check it against) and the base block's validator set."""
    height = base.height
    stored = store.get_block(height)
    if stored is None:
        raise IntegrityError(height, "the store starts from a snapshot at this height, but "
                                     "holds no block there")
    if store.list_blocks(height, 1):
        raise IntegrityError(height, "the store starts from a snapshot at this height, but "
                                     "holds blocks below it")
    try:
        header = Header.from_dict(_decode(height, "header", stored.header))
        validators = ValidatorSet.from_list(_decode(height, "base validator set",
                                                    base.validators))
        history = Frontier.from_list(height - 1, base.history)
    except (MalformedError, ValueError) as e:
        raise IntegrityError(height, f"the store's base record is malformed: {e}") from e
    _same_bytes(height, "the base validator set", base.validators,
                encode(validators.to_list()))
    return history, header.prev_hash, validators


# the whole store ------------------------------------------------------------------------------
class _Verifier:
    """One run of :func:`verify_store`: the blocks from the first, then what spans them."""

    def __init__(self, store: Store, genesis: Genesis, signatures: bool,
                 progress: Progress | None) -> None:
        self.store, self.genesis = store, genesis
        self.signatures, self.progress = signatures, progress
        self.base = store.base()
        self.first = self.base.height if self.base else 1
        self.latest = store.latest_height()
        self.at = self.first  # the height being checked, for a store that fails to read
        self.versions = TreeVersions(store)
        self.engine_log = None if self.base else _EngineLog(self.versions)
        self.history = Frontier()
        self.prev_header: Header | None = None
        self.prev_hash = ZERO_HASH
        self.prev_set = genesis.validators
        self.prev_root: NodeRef | None = None  # the state root of the previous height
        self.n_txs = 0

    def run(self) -> VerifyReport:
        store, latest = self.store, self.latest
        faults = store.storage_faults()
        if faults:
            raise IntegrityError(latest, f"the store's own check finds it damaged: "
                                         f"{faults[0]}")
        indexed = _check_meta(store, self.genesis, self.first, latest)
        if self.base is not None:
            self.history, self.prev_hash, self.prev_set = _from_base(store, self.base)
        index = _EventIndex(store, indexed, self.base.events if self.base else 0)
        steps = latest - self.first + 2  # each block, then what spans them
        for height in range(self.first, latest + 1):
            self.at = height
            self._block(height, index)
            if self.progress is not None:
                self.progress(height - self.first + 1, steps)
        self.at = latest
        index.finish(latest)
        self._check_rest()
        entries = 0
        if self.prev_root is not None:
            entries = check_state(store, self.versions, latest, self.prev_root)
        elif next(store.iter_values(), None) is not None:
            raise IntegrityError(0, "table state holds entries, but the store holds no block")
        if self.progress is not None:
            self.progress(steps, steps)
        return VerifyReport(latest, self.n_txs, entries, self.versions.nodes)

    def _block(self, height: int, index: _EventIndex) -> None:
        store = self.store
        stored = store.get_block(height)
        if stored is None:
            raise IntegrityError(height, "block is missing")
        try:
            validators = _validators_of(store, self.versions, height, self.prev_root,
                                        self.prev_set)
            header = _check_header(stored, self.genesis, validators, self.prev_hash,
                                   self.history)
            engine_hash = _engine_hash(stored, header)
            if self.prev_header is not None and header.time < self.prev_header.time:
                raise IntegrityError(height, "block time runs backwards")
            txs, results = _check_txs(store, header, self.signatures)
        except LedgerError as e:
            if isinstance(e, IntegrityError):
                raise
            raise IntegrityError(height, str(e)) from e
        self.n_txs += len(txs)
        self.history.append(stored.block_hash)
        if store.get_history(height) != self.history.to_list():
            raise IntegrityError(height, "the stored history frontier (table blocks) does not "
                                         "match the blocks")
        root = NodeRef(stored.state_root_id, header.state_root)
        self.versions.walk(height, root)
        if self.engine_log is not None:
            previous = self.prev_root.hash if self.prev_root else EMPTY_ROOT.hash
            self.engine_log.check(height, engine_hash, results, root, root.hash != previous)
        begin, end = store.get_block_events(height)
        events = [(None, e) for e in _block_events(height, "begin-block", begin)]
        events += [(i, e) for i, r in enumerate(results) for e in r.events]
        events += [(None, e) for e in _block_events(height, "end-block", end)]
        index.check(height, events)
        self.prev_header, self.prev_hash, self.prev_root = header, stored.block_hash, root
        self.prev_set = validators

    def _check_rest(self) -> None:
        """What spans the blocks: no stray row, every stored tree node in some version."""
        store, latest = self.store, self.latest
        below = self.base.txs if self.base else 0
        if store.count_txs() != self.n_txs + below:
            raise IntegrityError(latest, "table txs holds rows outside the blocks",
                                 str(self.n_txs + below), str(store.count_txs()))
        for height, _, _ in store.iter_block_events():
            if not self.first <= height <= latest:
                raise IntegrityError(latest, f"table block_events holds a row of height "
                                             f"{height!r}, which the store has no block of")
        restored = 0
        if self.base is not None:
            base_block = store.get_block(self.base.height)
            restored = base_block.state_root_id if base_block else 0
        self.versions.check_stored(latest, restored)


def verify_store(store: Store, genesis: Genesis, *, signatures: bool = True,
                 progress: Progress | None = None) -> VerifyReport:
    """Check the whole store against ``genesis`` (from its base, for a store that started
    from a snapshot); raise IntegrityError at the first fault (StoreMismatch first, if the
    store was made from another genesis). ``progress(done, total)`` is called as the work
    goes on."""
    check_store_genesis(store, genesis)
    verifier = _Verifier(store, genesis, signatures, progress)
    try:
        return verifier.run()
    except StoreError as e:
        raise IntegrityError(verifier.at, f"the store cannot be read: {e}") from e
