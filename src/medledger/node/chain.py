"""The chain: executes the blocks the consensus engine decided and commits them to a store.

:class:`Chain` is the deterministic heart of a node. It knows the genesis, the app registry
and the store; it checks transactions against committed state, executes a list of them as
a block at the engine's height and BFT time (nonces, authorisation, each app's stateful
check and apply, each in its own overlay so a rejected transaction leaves nothing),
computes the roots, and commits the block as one store transaction. It has no clock and no
sockets.

Validator sets follow the registry's validator authority (the app that keeps the set): the
set of height ``h`` is ``validators_at(state committed at h - 1, h)``. :attr:`Chain.validators`
is the set of the next height and :attr:`Chain.tip_validators` the set of the tip; both are
recomputed at each commit.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from medledger.apps import AppRegistry, BlockContext, Rejected
from medledger.apps.base import APP_FAULTS
from medledger.codec import decode, encode
from medledger.ledger import (
    ZERO_HASH,
    Block,
    Event,
    Header,
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
from medledger.node.genesis import Genesis
from medledger.state import Overlay, ReadOnly, StateTree
from medledger.store import BlockRecord, Store, StoredTx, StoreMismatch

__all__ = ["BlockEvents", "Chain", "engine_block_hash", "engine_reference", "nonce_key",
           "result_of"]

logger = logging.getLogger(__name__)

CACHE_ENTRIES = 200_000


def nonce_key(sender: bytes) -> str:
    """The state key holding the last nonce a sender used."""
    return f"nonce/{sender.hex()}"


def check_store_genesis(store: Store, genesis: Genesis) -> None:
    """Raise StoreMismatch when ``store`` was made from another genesis."""
    stored = store.get_meta("genesis_hash")
    expected = genesis.hash()
    if stored is not None and stored != expected:
        raise StoreMismatch(
            f"the store was made from another genesis (hash {stored.hex()[:16]}..., "
            f"this genesis {expected.hex()[:16]}...)")


@dataclass(frozen=True, slots=True)
class BlockEvents:
    """The events of a block's begin- and end-block hooks (not committed by the header:
    as in CometBFT, only transaction results are)."""

    begin: tuple[Event, ...] = ()
    end: tuple[Event, ...] = ()


class Chain:
    """Committed state plus the rules to extend it by one block at a time."""

    def __init__(self, store: Store, genesis: Genesis, registry: AppRegistry) -> None:
        self.store = store
        self.genesis = genesis
        self.registry = registry
        self.chain_id = genesis.chain_id
        #: the validator set of the next height (tip + 1)
        self.validators: ValidatorSet = genesis.validators
        #: the validator set of the tip height (genesis set before block 1)
        self.tip_validators: ValidatorSet = genesis.validators
        self.tree = StateTree(store)
        self._genesis_writes = registry.genesis_writes(genesis)
        self._authority = registry.validators
        self._next_ctx: BlockContext | None = None
        self._cache: dict[str, bytes | None] = {}  # committed values, written through on commit
        # Admission reads from one thread while a block commits from another: a value read
        # before a commit must not be cached after it. Each commit bumps the generation, and
        # a read is cached only if no commit happened since it began.
        self._cache_lock = threading.Lock()
        self._generation = 0
        #: keep the values the last few blocks overwrote (see :meth:`value_at`); a chain on
        #: CometBFT needs them, since its headers sign the state of the height before theirs
        self.undo_depth = 0
        self._undo: dict[int, dict[str, bytes | None]] = {}
        #: on CometBFT, what proves the state of a height (see :mod:`medledger.node.headers`);
        #: None when the chain's own certificates do
        self.prover: Any = None
        self._check_genesis()
        self._load_tip()

    # opening ----------------------------------------------------------------------------
    def _check_genesis(self) -> None:
        check_store_genesis(self.store, self.genesis)
        if self.store.get_meta("genesis_hash") is None:
            self.store.put_meta("genesis_hash", self.genesis.hash())
            self.store.put_meta("chain_id", self.chain_id.encode())

    def reload(self) -> None:
        """Read the tip again from the store (after a snapshot was restored into it)."""
        self._cache.clear()
        self._undo.clear()
        self._load_tip()

    def _load_tip(self) -> None:
        self.height = self.store.latest_height()
        self.total_txs = self.store.count_txs()
        if self.height == 0:
            self.tip_hash = ZERO_HASH
            self.tip_header: Header | None = None
            self.state_root = EMPTY_ROOT
            self.tip_validators = self.validators = self.genesis.validators
            return
        stored = self.store.get_block(self.height)
        assert stored is not None
        self.tip_hash = stored.block_hash
        self.tip_header = Header.from_dict(decode(stored.header))
        self.state_root = NodeRef(stored.state_root_id, self.tip_header.state_root)
        # the tip's own execution made its set current (the authority's begin-block hook)
        self.tip_validators = self._authority.validators_at(self.view(), self.height)
        self.validators = self._next_validators()

    def _next_validators(self) -> ValidatorSet:
        """The set of height tip + 1, from the state committed at the tip."""
        return self._authority.validators_at(self.view(), self.height + 1)

    # reading committed state -------------------------------------------------------------
    def committed_value(self, key: str) -> bytes | None:
        """A state value's canonical bytes at the tip (genesis state before block 1)."""
        if self.height == 0:
            return self._genesis_writes.get(key)
        try:
            return self._cache[key]
        except KeyError:
            pass
        generation = self._generation
        value = self.store.get_value(key)
        self._remember({key: value}, generation)
        return value

    def prefetch(self, keys: list[str]) -> None:
        """Read the uncached ones among ``keys`` into the cache, in one store query."""
        if self.height == 0:
            return
        cache = self._cache
        wanted = list({key for key in keys if key not in cache})
        if not wanted:
            return
        generation = self._generation
        found = self.store.get_values(wanted)
        self._remember({key: found.get(key) for key in wanted}, generation)

    def _remember(self, values: dict[str, bytes | None], generation: int) -> None:
        with self._cache_lock:
            if generation != self._generation:
                return  # a block committed meanwhile: these reads may be older than it
            if len(self._cache) + len(values) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache.update(values)

    def view(self) -> ReadOnly:
        return ReadOnly(self.committed_value)

    def value_at(self, key: str, height: int) -> bytes | None:
        """A state value as it was after block ``height``, one of the last
        :attr:`undo_depth` heights (or the tip). Raises LookupError for an older height."""
        return self.values_at([key], height)[key]

    def keeps_values_of(self, height: int) -> bool:
        """True when :meth:`value_at` can read the state after ``height``."""
        tip = self.height
        return height == tip or (tip - self.undo_depth <= height < tip and all(
            h in self._undo for h in range(height + 1, tip + 1)))

    def proven_height(self) -> int | None:
        """The height whose state answers are proven at: the tip, or on CometBFT the
        highest height a signed header proves (None when none does yet)."""
        return self.height if self.prover is None else self.prover.height()

    def values_at(self, keys: list[str], height: int) -> dict[str, bytes | None]:
        """:meth:`value_at` for many keys at once (one store query for the rest)."""
        tip = self.height
        if not tip - self.undo_depth <= height <= tip or (height < tip and not self._undo):
            raise LookupError(f"values of height {height} are not kept (the tip is {tip})")
        out: dict[str, bytes | None] = {}
        for later in range(height + 1, tip + 1):
            undo = self._undo.get(later)
            if undo is None:
                raise LookupError(f"values of height {height} are not kept")
            for key in keys:
                if key not in out and key in undo:
                    out[key] = undo[key]
        rest = [key for key in keys if key not in out]
        if rest:
            found = self.store.get_values(rest)
            out.update({key: found.get(key) for key in rest})
        return out

    def _remember_undo(self, height: int, writes: dict[str, bytes | None]) -> None:
        """What block ``height``'s writes overwrite (the values at ``height - 1``)."""
        if not self.undo_depth:
            return
        if height == 1:
            undo: dict[str, bytes | None] = dict.fromkeys(writes)
        else:
            missing = [key for key in writes if key not in self._cache]
            found = self.store.get_values(missing) if missing else {}
            undo = {key: self._cache[key] if key in self._cache else found.get(key)
                    for key in writes}
        self._undo[height] = undo
        for old in [h for h in self._undo if h <= height - self.undo_depth]:
            del self._undo[old]

    def view_after(self, record: BlockRecord) -> Overlay:
        """Committed state with a built block's writes on top (for reading only)."""
        view = Overlay(self.view())
        view.writes.update(record.state_writes)
        return view

    def last_nonce(self, sender: bytes) -> int:
        raw = self.committed_value(nonce_key(sender))
        return 0 if raw is None else int(raw)

    def next_context(self) -> BlockContext:
        """The context of the block after the tip (computed once per tip)."""
        ctx = self._next_ctx
        if ctx is None or ctx.height != self.height + 1:
            ctx = self._next_ctx = BlockContext(self.chain_id, self.height + 1, self.next_time())
        return ctx

    def next_time(self) -> int:
        """What admission checks take for the next block's time: the tip's BFT time (the
        engine sets the block's own when it decides it), the genesis time before block 1."""
        return self.tip_header.time if self.tip_header is not None else self.genesis.genesis_time

    # checking ---------------------------------------------------------------------------
    def check(self, tx: Transaction, pending_nonce: int = 0, *,
              stateless_done: bool = False) -> None:
        """Admission check against committed state (signature already verified)."""
        if tx.chain_id != self.chain_id:
            raise Rejected("chain_id", f"signed for chain {tx.chain_id!r}, this is {self.chain_id!r}")
        if not stateless_done:
            self.registry.check_stateless(tx)
        last = max(self.last_nonce(tx.sender), pending_nonce)
        if tx.nonce <= last:
            raise Rejected("nonce", f"nonce {tx.nonce} already used; next must exceed {last}")
        self.registry.check_stateful(self.view(), tx, self.next_context())

    # executing --------------------------------------------------------------------------
    def execute(
        self, txs: list[Transaction], ctx: BlockContext
    ) -> tuple[list[TxResult], dict[str, bytes | None], BlockEvents]:
        """Run ``txs`` in order on top of committed state; return their results, the
        block's writes and its block-level events (of the begin- and end-block hooks).

        Each body decoded at admission is taken from the registry, the others decoded here
        (the stateless check). Each app's begin-block hook runs before the first transaction (the validator set
        due at ``ctx.height`` is promoted there) and its end-block hook after the last;
        their writes are part of the block's, so of its state root.
        """
        block_view = Overlay(self.view())
        if ctx.height == 1:
            block_view.writes.update(self._genesis_writes)
        begin = self.registry.begin_block(block_view, ctx)
        results = [self._execute_one(block_view, tx, ctx) for tx in txs]
        end = self.registry.end_block(block_view, ctx)
        return results, block_view.writes, BlockEvents(begin, end)

    def _execute_one(self, block_view: Overlay, tx: Transaction, ctx: BlockContext) -> TxResult:
        key = nonce_key(tx.sender)
        raw = block_view.get_raw(key)
        last = 0 if raw is None else int(raw)
        if tx.chain_id != self.chain_id:
            return TxResult("chain_id", f"signed for chain {tx.chain_id!r}")
        if tx.nonce <= last:
            return TxResult("nonce", f"nonce {tx.nonce} already used; next must exceed {last}")
        tx_view = block_view.child()
        try:
            events = self.registry.apply(tx_view, tx, ctx)
        except Rejected as e:
            block_view.writes[key] = b"%d" % tx.nonce
            return TxResult(e.code, e.message)
        except APP_FAULTS as e:
            # a flaw in an app's check or apply fails the transaction (nothing of it is
            # kept but its nonce), not the block: every node runs the same code on the same
            # state, so every node fails it alike, and the chain goes on
            logger.exception("an app failed on tx %s at height %d", tx.tx_id.hex(), ctx.height)
            block_view.writes[key] = b"%d" % tx.nonce
            return TxResult("internal", f"the app could not apply this transaction "
                                        f"({type(e).__name__}); nothing of it was kept")
        tx_view.writes[key] = b"%d" % tx.nonce  # canonical bytes of an integer
        tx_view.merge_into_parent()
        return TxResult("ok", "", events)

    def _next_history(self, height: int, engine_hash: bytes, results: list[TxResult]
                      ) -> bytes:
        """The log of blocks with block ``height`` appended (see ``HISTORY_KEY``)."""
        raw = self.committed_value(HISTORY_KEY) if self.height else None
        if raw is None:
            frontier = Frontier()
        else:
            entry = decode(raw)
            frontier = Frontier.from_list(entry["size"], [bytes.fromhex(h)
                                                          for h in entry["frontier"]])
        leaf = history_leaf(height, engine_hash, results_hash(results))
        frontier.append(log.leaf_hash(leaf))
        return encode({"frontier": [h.hex() for h in frontier.to_list()],
                       "root": frontier.root().hex(), "size": frontier.size})

    def build_decided(self, txs: list[Transaction], ctx: BlockContext, proposer: bytes,
                      engine_hash: bytes) -> tuple[Block, BlockRecord]:
        """Execute a block the consensus engine decided (CometBFT's FinalizeBlock): its
        height and BFT time are the engine's, and its commit lives in the engine's block
        store, so the record names the engine's block hash instead of a certificate."""
        results, writes, block_events = self.execute(txs, ctx)
        if txs or writes:
            writes[HISTORY_KEY] = self._next_history(ctx.height, engine_hash, results)
        new_root, nodes = self.tree.update(self.state_root, writes)
        history = Frontier.from_list(self.height, self.store.get_history())
        header = Header(
            chain_id=self.chain_id,
            height=ctx.height,
            time=ctx.time,
            prev_hash=self.tip_hash,
            tx_root=tx_root([t.tx_id for t in txs]),
            tx_count=len(txs),
            results_root=results_root(results),
            state_root=new_root.hash,
            history_root=history.root(),
            validators_hash=self.validators.hash(),
            last_commit_hash=ZERO_HASH,
            proposer=proposer,
        )
        block = Block(header, tuple(txs), tuple(results))
        block_hash = header.hash()
        history.append(block_hash)
        record = BlockRecord(
            height=ctx.height,
            block_hash=block_hash,
            header=header.encode(),
            last_commit=None,
            certificate=engine_reference(engine_hash),
            state_root_id=new_root.node_id,
            txs=[(t.tx_id, t.raw, r.code, r.message, t.sender, r.events_bytes)
                 for t, r in zip(txs, results, strict=True)],
            begin_events=[e.encoded for e in block_events.begin],
            end_events=[e.encoded for e in block_events.end],
            state_writes=writes,
            nodes=nodes,
            history=history.to_list(),
        )
        return block, record

    def commit_decided(self, block: Block, record: BlockRecord) -> None:
        """Write a block of :meth:`build_decided` atomically (the engine committed it)."""
        block_hash = record.block_hash
        self._remember_undo(record.height, record.state_writes)
        self.store.commit_block(record)
        with self._cache_lock:
            self._generation += 1
            if len(self._cache) + len(record.state_writes) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache.update(record.state_writes)
        self.height = record.height
        self.total_txs += len(record.txs)
        self.tip_hash = block_hash
        self.tip_header = block.header
        self.state_root = NodeRef(record.state_root_id, block.header.state_root)
        self.tip_validators = self.validators
        self.validators = self._next_validators()


def engine_reference(engine_hash: bytes) -> bytes:
    """What a block decided by the consensus engine stores where a certificate would be:
    the engine's block hash (its commit is in the engine's block store)."""
    return encode({"cometbft_block_hash": engine_hash.hex()})


def engine_block_hash(certificate: Any) -> bytes | None:
    """The engine's block hash named by a decoded stored certificate (None: it names
    none; a store damaged or made otherwise)."""
    if type(certificate) is dict and set(certificate) == {"cometbft_block_hash"}:
        return bytes.fromhex(certificate["cometbft_block_hash"])
    return None


def result_of(stored: StoredTx) -> TxResult:
    """The committed result of a stored transaction, events included. Raises LedgerError
    or CodecError when the stored events are not well formed (a damaged store)."""
    if not stored.events:
        return TxResult(stored.code, stored.message)
    return TxResult.from_dict({"code": stored.code, "message": stored.message,
                               "events": decode(stored.events)})
