"""medledger as an ABCI 2.0 application: CometBFT's requests mapped onto the chain.

- ``Info``: the last height the store committed and its state root (the app hash), so that
  CometBFT's handshake replays exactly the blocks the store lacks after a crash.
- ``InitChain``: checks that CometBFT's genesis carries this chain's medledger genesis (its
  ``app_state``) and validators; genesis state is written with block 1, as before.
- ``CheckTx``: decoding, signature and the app's stateless check, each transaction once
  (remembered by its bytes, so neither a recheck, a proposal nor the block verifies it
  again), then nonce and stateful checks against committed state and what the mempool
  already holds from the same sender; ``mempool_full`` once as many transactions wait as
  CometBFT's mempool holds (refused here, since CometBFT would drop it after a yes).
- ``PrepareProposal``: the mempool's order, capped in count and bytes, dropping any
  transaction that fails its stateless checks; each sender's transactions go in nonce
  order, and one whose nonce leaves a gap after its sender's last is held back for up to
  ``HOLD_HEIGHTS`` heights after this node first checked it, so that a predecessor still
  travelling by gossip can go first (see :meth:`LedgerApplication.prepare_proposal`).
  ``ProcessProposal``: a proposal carrying a transaction that fails its stateless checks
  is refused.
- ``FinalizeBlock``: the block executed at CometBFT's height and BFT time; each result's
  canonical bytes are the ``data`` of its ``ExecTxResult``, so CometBFT's results hash
  commits codes, messages and events; the validator updates governance scheduled two
  heights ahead; the state root as the app hash. ``Commit``: one store transaction.
- ``Query``: the peer filter (``/p2p/filter/id/<node id>``).
- ``ListSnapshots``, ``LoadSnapshotChunk``, ``OfferSnapshot``, ``ApplySnapshotChunk``: state
  sync, delegated to :mod:`medledger.node.abci.snapshots`.

The application never reads the clock and keeps nothing between FinalizeBlock and Commit
but the block it decided: a crash in between loses it, and CometBFT replays it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from medledger.apps import BlockContext, Misbehavior, Rejected
from medledger.apps.base import APP_FAULTS
from medledger.codec import decode, decode_canonical_list
from medledger.ledger import Block, LedgerError, Transaction, TxResult, ValidatorSet
from medledger.ledger.engine import exec_result_code
from medledger.node.abci.snapshots import NoStateSync, StateSync
from medledger.node.abci.wire import abci_types
from medledger.node.chain import Chain, nonce_key
from medledger.node.genesis import Genesis
from medledger.node.sets import set_changes
from medledger.store import BlockRecord

__all__ = ["LedgerApplication", "node_id", "validator_address"]

log = logging.getLogger("medledger.abci")

APP_VERSION = 1
FAILPOINT_ENV = "MEDLEDGER_FAILPOINT"
FAILPOINT_EXIT = 86
READY_LIMIT = 200_000  # transactions remembered as decoded and verified
#: a transaction whose nonce leaves a gap waits this many heights after its CheckTx
HOLD_HEIGHTS = 3


def validator_address(public_key: bytes) -> bytes:
    """CometBFT's address of an Ed25519 key: the first 20 bytes of its SHA-256."""
    return hashlib.sha256(public_key).digest()[:20]


def node_id(public_key: bytes) -> str:
    """CometBFT's node ID of a node key: its address in lowercase hex."""
    return validator_address(public_key).hex()


def _ms(timestamp: Any) -> int:
    return timestamp.seconds * 1000 + timestamp.nanos // 1_000_000


class LedgerApplication:
    """The ABCI application over a :class:`Chain`.

    ``peers_allowed(node_id)`` answers the peer filter; ``on_commit(block)`` is called after
    each committed block (the node wakes its waiters there); ``on_checked(raw, response)``
    after each first CheckTx of a transaction (the node answers submissions from there);
    ``state_sync`` keeps, serves and restores snapshots (none without it).
    """

    def __init__(self, chain: Chain, *, max_block_txs: int = 10_000,
                 mempool_size: int | None = None,
                 peers_allowed: Callable[[str], bool] | None = None,
                 on_commit: Callable[[Block], None] | None = None,
                 on_checked: Callable[[bytes, Any], None] | None = None,
                 state_sync: StateSync | None = None) -> None:
        self.chain = chain
        self.state_sync: StateSync | NoStateSync = state_sync or NoStateSync()
        self.max_block_txs = max_block_txs
        self.peers_allowed = peers_allowed or (lambda _id: True)
        self.on_commit = on_commit
        self.on_checked = on_checked
        self.types = abci_types()
        self._ready: dict[bytes, Transaction] = {}  # decoded, verified, stateless-checked
        self._pending: dict[bytes, set[int]] = {}  # sender -> its nonces in the mempool
        self._seen: dict[bytes, int] = {}  # tx bytes -> committed height at its CheckTx
        #: the ids of the transactions CheckTx admitted that no committed block held yet:
        #: what CometBFT's mempool holds (it drops one only in a block, without rechecks)
        self._waiting: set[bytes] = set()
        self.mempool_size = mempool_size
        self._rechecking = False  # a recheck pass of the mempool began since the last Commit
        self._decided: tuple[Block, BlockRecord] | None = None

    # connection: info and genesis ------------------------------------------------------
    def info(self, request: Any) -> Any:
        chain = self.chain
        return self.types.ResponseInfo(
            data="medledger", version="1", app_version=APP_VERSION,
            last_block_height=chain.height,
            last_block_app_hash=chain.state_root.hash if chain.height else b"")

    def init_chain(self, request: Any) -> Any:
        genesis = self.chain.genesis
        if request.chain_id != genesis.chain_id:
            raise ValueError(f"CometBFT's genesis is for chain {request.chain_id!r}, "
                             f"this node's for {genesis.chain_id!r}")
        if request.app_state_bytes:
            carried = Genesis.from_dict(decode(request.app_state_bytes))
            if carried.hash() != genesis.hash():
                raise ValueError("CometBFT's genesis app_state is not this node's genesis")
        ours = _updates(self.types, None, genesis.validators)
        theirs = sorted((v.pub_key.ed25519, v.power) for v in request.validators)
        if theirs and theirs != sorted((v.pub_key.ed25519, v.power) for v in ours):
            raise ValueError("CometBFT's genesis validators differ from the medledger "
                             "genesis validators")
        return self.types.ResponseInitChain(validators=ours)

    # mempool ----------------------------------------------------------------------------
    def check_tx(self, request: Any) -> Any:
        raw = request.tx
        if request.type == self.types.NEW:
            answer = self._check(raw)
            if self.on_checked is not None:
                self.on_checked(raw, answer)
            return answer
        if not self._rechecking:  # CometBFT rechecks its mempool in order: start over
            self._rechecking = True
            self._pending.clear()
            self._waiting.clear()
        return self._check(raw)

    def check_txs(self, requests: list[Any]) -> list[Any]:
        """CheckTx for a run of requests, answered in order as :meth:`check_tx` answers
        each; the transactions not seen before are decoded together first, and the state
        all of them read is fetched in one query (the server hands runs of CheckTx here)."""
        self._prepare_many([request.tx for request in requests])
        return [self.check_tx(request) for request in requests]

    def _prepare_many(self, raws: list[bytes]) -> None:
        """Remember those of ``raws`` that decode (in one parse), verify and pass their
        stateless checks, as :meth:`_prepared` would one by one (which still answers the
        others, with their refusals); then prefetch the state their checks read."""
        ready = self._ready
        fresh = [raw for raw in raws if raw not in ready]
        if fresh:
            decoded = decode_canonical_list(b"[" + b",".join(fresh) + b"]")
            if decoded is not None and len(decoded) == len(fresh):
                for (item, raw), wanted in zip(decoded, fresh, strict=True):
                    if raw != wanted:
                        break
                    try:
                        tx = Transaction.from_dict(item, checked=True, raw=raw)
                    except LedgerError:
                        continue
                    self.remember(tx)
        registry, keys = self.chain.registry, []
        for raw in raws:
            tx = ready.get(raw)
            if tx is not None:
                keys.append(nonce_key(tx.sender))
                keys.extend(registry.reads(tx))
        self.chain.prefetch(keys)

    def _prepare_fresh(self, raws: Iterable[bytes]) -> None:
        """:meth:`_prepare_many` for those of a block's transactions not seen before (none
        usually: CheckTx saw them; all of them in a block replayed after a restart)."""
        ready = self._ready
        fresh = [raw for raw in raws if raw not in ready]
        if fresh:
            self._prepare_many(fresh)

    def _check(self, raw: bytes) -> Any:
        types = self.types
        tx = self._prepared(raw)
        if isinstance(tx, Rejected):
            return types.ResponseCheckTx(code=1, codespace=tx.code, log=tx.message)
        waiting = self._pending.get(tx.sender)
        if waiting is not None and tx.nonce in waiting:
            return types.ResponseCheckTx(
                code=1, codespace="nonce",
                log=f"nonce {tx.nonce} is already used by a transaction waiting in the mempool")
        if self.mempool_size is not None and len(self._waiting) >= self.mempool_size:
            # refused here, not dropped after: CometBFT checks its size again once CheckTx
            # has said yes, and then drops the transaction without a word
            return types.ResponseCheckTx(code=1, codespace="mempool_full",
                                         log="the mempool is full; retry later")
        try:
            self.chain.check(tx, 0, stateless_done=True)
        except Rejected as e:
            return types.ResponseCheckTx(code=1, codespace=e.code, log=e.message)
        except APP_FAULTS as e:
            # a flaw in an app's check must refuse the transaction, not stop the node
            log.exception("CheckTx: an app's check failed on tx %s", tx.tx_id.hex())
            return types.ResponseCheckTx(code=1, codespace="internal",
                                         log=f"the node could not check this transaction "
                                             f"({type(e).__name__}); it was not admitted")
        self._pending.setdefault(tx.sender, set()).add(tx.nonce)
        self._waiting.add(tx.tx_id)
        seen = self._seen
        if len(seen) >= READY_LIMIT:
            seen.clear()
        seen.setdefault(raw, self.chain.height)
        return types.ResponseCheckTx(code=0)

    def _prepared(self, raw: bytes) -> Transaction | Rejected:
        """``raw`` decoded, its signature verified and its body checked (once per bytes)."""
        tx = self._ready.get(raw)
        if tx is not None:
            return tx
        try:
            tx = Transaction.decode(raw)
        except LedgerError as e:
            return Rejected("malformed", str(e))
        if tx.raw != raw:
            return Rejected("malformed", "a transaction travels in its canonical bytes")
        refused = self.remember(tx)
        return tx if refused is None else refused

    def remember(self, tx: Transaction, *, verified: bool = False) -> Rejected | None:
        """Check ``tx``'s signature and its body, unless ``verified`` says both are done
        already; remember it as ready so that no later request checks it again. Returns
        the refusal, if any.

        The node calls this for what its API verified, before handing it to the engine."""
        if not verified:
            if not tx.signature_valid():
                return Rejected("signature", "the signature does not verify for the sender key")
            try:
                self.chain.registry.check_stateless(tx)
            except Rejected as e:
                return e
        ready = self._ready
        if len(ready) >= READY_LIMIT:
            ready.clear()
        ready[tx.raw] = tx
        return None

    # proposals --------------------------------------------------------------------------
    def prepare_proposal(self, request: Any) -> Any:
        """The mempool's transactions that pass their stateless checks, each sender's in
        nonce order, capped in count and bytes.

        Gossip may bring a sender's nonce n+1 here before n (each went to another node
        first). Once n+1 commits, n fails (nonces only rise), so a transaction whose nonce
        is not its sender's next (after committed state and what the block already holds)
        waits for up to ``HOLD_HEIGHTS`` heights after its CheckTx here, and so do that
        sender's later ones; after that it goes in, so a sender who skips a nonce waits a
        few blocks, not for ever. A proposer-local choice: validators do not check it."""
        chosen: list[bytes] = []
        room = request.max_tx_bytes
        last: dict[bytes, int] = {}  # sender -> highest nonce committed or chosen
        held: set[bytes] = set()  # senders with a transaction held back
        for raw, tx in _nonce_ordered(self._valid(request.txs)):
            if len(chosen) >= self.max_block_txs:
                break
            cost = len(raw) + 8  # CometBFT's per-transaction overhead in a block's data
            if cost > room:
                break
            sender = tx.sender
            if sender in held:
                continue
            before = last.get(sender)
            if before is None:
                before = self.chain.last_nonce(sender)
            if tx.nonce > before + 1 and self._held(raw, request.height):
                held.add(sender)
                continue
            last[sender] = max(before, tx.nonce)
            chosen.append(raw)
            room -= cost
        return self.types.ResponsePrepareProposal(txs=chosen)

    def _valid(self, raws: Iterable[bytes]) -> list[tuple[bytes, Transaction]]:
        """Those of ``raws`` that decode and pass their stateless checks, in order."""
        valid = []
        for raw in raws:
            tx = self._prepared(raw)
            if not isinstance(tx, Rejected):
                valid.append((raw, tx))
        return valid

    def _held(self, raw: bytes, height: int) -> bool:
        """True while a transaction checked here may still wait for a predecessor."""
        seen = self._seen.get(raw)
        return seen is not None and height <= seen + HOLD_HEIGHTS

    def process_proposal(self, request: Any) -> Any:
        status = self.types.ResponseProcessProposal.ProposalStatus
        self._prepare_fresh(request.txs)
        for index, raw in enumerate(request.txs):
            refused = self._prepared(raw)
            if isinstance(refused, Rejected):
                log.warning("refusing the proposal for height %d: transaction %d: %s: %s",
                            request.height, index, refused.code, refused.message)
                return self.types.ResponseProcessProposal(status=status.REJECT)
        return self.types.ResponseProcessProposal(status=status.ACCEPT)

    # blocks -----------------------------------------------------------------------------
    def finalize_block(self, request: Any) -> Any:
        types, chain = self.types, self.chain
        if request.height != chain.height + 1:
            raise ValueError(f"CometBFT finalizes height {request.height}, the store's next "
                             f"is {chain.height + 1}")
        txs: list[Transaction] = []
        answers: list[Any] = []
        self._prepare_fresh(request.txs)
        for raw in request.txs:
            tx = self._prepared(raw)
            if isinstance(tx, Rejected):  # only in a block that >1/3 faulty power accepted
                answers.append(types.ExecTxResult(code=1, codespace=tx.code, log=tx.message))
            else:
                txs.append(tx)
                answers.append(None)
        ctx = BlockContext(chain.chain_id, request.height, _ms(request.time),
                           self._misbehavior(request.misbehavior))
        proposer = self._proposer_key(request.proposer_address)
        block, record = chain.build_decided(txs, ctx, proposer, request.hash)
        results = iter(block.results)
        tx_results = [answer if answer is not None else _exec_result(types, next(results))
                      for answer in answers]
        self._decided = (block, record)
        return types.ResponseFinalizeBlock(
            tx_results=tx_results, app_hash=block.header.state_root,
            validator_updates=self._validator_updates(record, ctx.height))

    def _misbehavior(self, reported: Iterable[Any]) -> tuple[Misbehavior, ...]:
        """CometBFT's reports as the apps see them: the offender by its public key (looked
        up in the set of the offence's height; a report naming no validator is dropped)."""
        kinds = {self.types.DUPLICATE_VOTE: "duplicate_vote",
                 self.types.LIGHT_CLIENT_ATTACK: "light_client_attack"}
        out = []
        for item in reported:
            validators = self._set_of(item.height)
            key = next((v.public_key for v in validators.validators
                        if validator_address(v.public_key) == item.validator.address), None)
            if key is None or item.type not in kinds:
                log.warning("misbehavior at height %d by %s: not a validator of that height",
                            item.height, item.validator.address.hex())
                continue
            out.append(Misbehavior(kinds[item.type], key, item.height, _ms(item.time),
                                   item.total_voting_power))
        return tuple(out)

    def _set_of(self, height: int) -> ValidatorSet:
        """The validator set in force at ``height``: for a height already committed, the
        last set governance brought into force at or below it (``validators/at/<h>``,
        append-only) or else the genesis set; for a later one, the set scheduled for it."""
        chain = self.chain
        authority = chain.registry.validators
        if height > chain.height:
            return authority.validators_at(chain.view(), height)
        changes = [h for h in set_changes(chain) if h <= height]
        if not changes:
            return chain.genesis.validators
        return ValidatorSet.from_list(decode(chain.store.get_value(
            authority.set_key(changes[-1]))))

    def _proposer_key(self, address: bytes) -> bytes:
        for validator in self.chain.validators.validators:
            if validator_address(validator.public_key) == address:
                return validator.public_key
        raise ValueError(f"the proposer {address.hex()} is not in this height's validator set")

    def _validator_updates(self, record: BlockRecord, height: int) -> list[Any]:
        """Governance's set for ``height + 2`` against the one for ``height + 1``, as
        CometBFT's updates (returned at H, they take effect at H + 2)."""
        view = self.chain.view_after(record)
        authority = self.chain.registry.validators
        return _updates(self.types, authority.validators_at(view, height + 1),
                        authority.validators_at(view, height + 2))

    def commit(self, request: Any) -> Any:
        if self._decided is None:
            raise ValueError("Commit without a finalized block")
        block, record = self._decided
        if _failpoint("before-commit") == record.height:
            log.error("failpoint before-commit at height %d: exiting", record.height)
            os._exit(FAILPOINT_EXIT)
        self._decided = None
        self.chain.commit_decided(block, record)
        self._forget_pending(block)
        if self.on_commit is not None:
            self.on_commit(block)
        return self.types.ResponseCommit(retain_height=0)

    def _forget_pending(self, block: Block) -> None:
        """After a commit: forget each sender's nonces up to the highest the block used
        (a transaction still waiting with one of them can only fail now). When CometBFT
        rechecks its mempool (its ``[mempool] recheck``), the first recheck starts the
        senders' nonces over; without rechecks a transaction leaves the mempool only in a
        block, so what is remembered stays right."""
        pending, seen, waiting_ids = self._pending, self._seen, self._waiting
        highest: dict[bytes, int] = {}
        for tx in block.txs:
            seen.pop(tx.raw, None)
            waiting_ids.discard(tx.tx_id)
            if tx.nonce > highest.get(tx.sender, -1):
                highest[tx.sender] = tx.nonce
        for sender, nonce in highest.items():  # once a sender, not once a transaction
            waiting = pending.get(sender)
            if waiting is None:
                continue
            waiting.difference_update([n for n in waiting if n <= nonce])
            if not waiting:
                del pending[sender]
        if len(pending) >= READY_LIMIT:
            pending.clear()
        if len(waiting_ids) >= READY_LIMIT:
            waiting_ids.clear()
        self._rechecking = False

    # queries ----------------------------------------------------------------------------
    def query(self, request: Any) -> Any:
        path = request.path
        if path.startswith("/p2p/filter/id/"):
            peer = path.removeprefix("/p2p/filter/id/")
            if self.peers_allowed(peer):
                return self.types.ResponseQuery(code=0)
            return self.types.ResponseQuery(code=1, log=f"node {peer} is not a member's node")
        if path.startswith("/p2p/filter/addr/"):
            return self.types.ResponseQuery(code=0)  # members are known by ID, not address
        return self.types.ResponseQuery(code=1, log=f"unknown query path {path!r}: use the "
                                                     "REST API")

    # state sync -------------------------------------------------------------------------
    def list_snapshots(self, request: Any) -> Any:
        return self.state_sync.list_snapshots(request)

    def load_snapshot_chunk(self, request: Any) -> Any:
        return self.state_sync.load_snapshot_chunk(request)

    def offer_snapshot(self, request: Any) -> Any:
        return self.state_sync.offer_snapshot(request)

    def apply_snapshot_chunk(self, request: Any) -> Any:
        return self.state_sync.apply_snapshot_chunk(request)


def _nonce_ordered(txs: list[tuple[bytes, Transaction]]) -> list[tuple[bytes, Transaction]]:
    """``txs`` with each sender's transactions sorted by nonce within the places they
    hold (other senders' stay where they are)."""
    places: dict[bytes, list[int]] = {}
    for index, (_raw, tx) in enumerate(txs):
        places.setdefault(tx.sender, []).append(index)
    ordered = list(txs)
    for indexes in places.values():
        if len(indexes) > 1:
            mine = sorted((txs[i] for i in indexes), key=lambda item: item[1].nonce)
            for index, item in zip(indexes, mine, strict=True):
                ordered[index] = item
    return ordered


def _failpoint(name: str) -> int | None:
    """The height at which fault tests asked this process to stop at ``name``
    (``MEDLEDGER_FAILPOINT=before-commit:<height>``: exit after FinalizeBlock answered and
    before the block is written), or None."""
    spec = os.environ.get(FAILPOINT_ENV, "")
    point, _, height = spec.partition(":")
    return int(height) if point == name and height.isdigit() else None


def _exec_result(types: Any, result: TxResult) -> Any:
    return types.ExecTxResult(code=exec_result_code(result), data=result.encode(),
                              codespace="" if result.ok else result.code, log=result.message)


def _updates(types: Any, old: ValidatorSet | None, new: ValidatorSet) -> list[Any]:
    """CometBFT validator updates turning ``old`` (None: no set) into ``new`` (power 0
    removes)."""
    before = {v.public_key: v.power for v in old.validators} if old else {}
    after = {v.public_key: v.power for v in new.validators}
    changed: Iterable[bytes] = sorted(set(before) | set(after))
    out = []
    for key in changed:
        power = after.get(key, 0)
        if before.get(key) != power:
            out.append(types.ValidatorUpdate(power=power, pub_key=_public_key(key)))
    return out


def _public_key(key: bytes) -> Any:
    from tendermint.crypto import keys_pb2

    return keys_pb2.PublicKey(ed25519=key)
