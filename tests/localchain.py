"""An in-process stand-in for CometBFT, for unit tests of the API, the CLI and the light client.

It drives a node's real :class:`~medledger.node.abci.LedgerApplication` through the ABCI calls
CometBFT makes, with requests built from CometBFT's generated protobuf classes: ``Info`` and
``InitChain`` at start, ``CheckTx`` for each submitted transaction, then for each block
``PrepareProposal``, ``ProcessProposal``, ``FinalizeBlock`` (height, BFT time, block hash,
proposer, decided last commit, misbehavior) and ``Commit``. It keeps what CometBFT's block
store keeps: CometBFT-format headers (the app hash of the previous block, the data hash of
the transactions, the results hash of the previous block's ``ExecTxResult`` s, the validator
sets that ``InitChain`` and the validator updates made, ...) and commits signed with the
validators' Ed25519 keys over CometBFT's canonical vote sign bytes. Its RPC (``/commit``,
``/validators``) answers as CometBFT's does, so ``medledger.node.headers.SignedHeaders`` and
``medledger.client.comet`` read it as they read a real node.

Public names (other test modules import them; keep them stable):

- :class:`LocalChain` ``(app, keys, *, genesis_time_ms, block_ms=1000, proof_blocks=True)``:
  ``start()``, ``check_tx(raw)``, ``commit_block(*, absent=(), misbehavior=())``,
  ``produce()``, ``height``, ``mempool``, ``blocks``, ``signed_header(h)`` (the RPC's JSON),
  ``light_block(h)``, ``validators(h)``, ``rpc_transport()``.
- :class:`LocalBlock`: one committed block (height, CometBFT block hash, signed header,
  transactions, ``ExecTxResult`` s, the app hash FinalizeBlock returned; ``tx_ids``).
- :class:`LocalMempool`: the transactions waiting, in order (``in`` takes a tx id or bytes).
- :data:`DUPLICATE`: what :meth:`LocalChain.check_tx` returns for a transaction its cache
  holds (CometBFT's "tx already exists in cache").
- :func:`signed_header_json`, :func:`validators_json`: CometBFT's RPC JSON of those values.
- :func:`local_headers` ``(chain, local)``: the ``SignedHeaders`` of a chain, read from a
  local chain's RPC, as ``EngineNode`` reads them from CometBFT's (a chain's ``prover``).
- :class:`LocalNode` ``(store, genesis, key, config, *, keys=(), proof_blocks=True)`` and
  :func:`open_local` ``(home)``: a :class:`~medledger.node.Node` over a local chain, serving
  its signed headers to the API as ``EngineNode`` does; ``produce_block()`` commits what
  waits (None when nothing does), ``commit_block()`` a block even if empty.

Where it differs from CometBFT (none of it is read by the light client): one validator
proposes each height in turn (not CometBFT's weighted priorities); the block id's part-set
hash is the hash of one part holding the header's leaves and the transactions; every
validator with a key signs (``absent`` keeps some out) at round 0; vote times come from a
fake clock (``block_ms`` after the block's time, a few microseconds apart), so runs repeat
exactly; the first block is made when asked for, not at start; the evidence hash covers the
ABCI ``Misbehavior`` messages. After a block whose app hash differs from its header's, it
commits an empty block (``proof_blocks``), as CometBFT does to sign the new app hash.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from medledger.client import comet
from medledger.client.light import comet_set
from medledger.codec import encode
from medledger.crypto import SigningKey
from medledger.ledger import Block, Transaction
from medledger.merkle import log
from medledger.node import Chain, Genesis, Home, Node, NodeConfig, Submitted
from medledger.node.abci import LedgerApplication
from medledger.node.engine_node import UNDO_DEPTH
from medledger.node.headers import SignedHeaders
from medledger.store import SQLiteStore, Store

__all__ = ["DUPLICATE", "LocalBlock", "LocalChain", "LocalMempool", "LocalNode", "local_headers",
           "open_local", "signed_header_json", "validators_json"]

BLOCK_MAX_BYTES = 22_020_096  # CometBFT's default consensus parameters
BLOCK_MAX_GAS = -1
MAX_DATA_BYTES = BLOCK_MAX_BYTES - 2_000  # what PrepareProposal may fill, less the overhead
EMPTY_HASH = hashlib.sha256(b"").digest()  # CometBFT's hash of an empty list
DUPLICATE = "tx already exists in cache"
_ED25519 = "tendermint/PubKeyEd25519"
RPC_HOST = "cometbft.local"


def _pb() -> tuple[Any, Any, Any, Any, Any]:
    """CometBFT's generated protobuf modules: abci, types, params, keys, timestamp."""
    from google.protobuf import timestamp_pb2
    from tendermint.abci import types_pb2 as abci
    from tendermint.crypto import keys_pb2
    from tendermint.types import params_pb2, types_pb2

    return abci, types_pb2, params_pb2, keys_pb2, timestamp_pb2


ABCI, TYPES, PARAMS, KEYS, TIMESTAMP = _pb()


def _root(items: Iterable[bytes]) -> bytes:
    """CometBFT's ``merkle.HashFromByteSlices`` (RFC 6962)."""
    return log.root([log.leaf_hash(item) for item in items])


def _stamp(moment: comet.Timestamp) -> Any:
    return TIMESTAMP.Timestamp(seconds=moment.seconds, nanos=moment.nanos)


def consensus_hash() -> bytes:
    """The header's ``consensus_hash`` under CometBFT's default block parameters."""
    params = PARAMS.HashedParams(block_max_bytes=BLOCK_MAX_BYTES, block_max_gas=BLOCK_MAX_GAS)
    return hashlib.sha256(params.SerializeToString()).digest()


def commit_hash(commit: comet.Commit | None) -> bytes:
    """A header's ``last_commit_hash``: the tree over the commit's ``CommitSig`` encodings."""
    if commit is None:
        return EMPTY_HASH
    return _root(TYPES.CommitSig(block_id_flag=int(s.flag), validator_address=s.validator_address,
                                 timestamp=_stamp(s.timestamp),
                                 signature=s.signature).SerializeToString()
                 for s in commit.signatures)


def results_hash(results: Iterable[Any]) -> bytes:
    """A header's ``last_results_hash``: the tree over each ``ExecTxResult``'s deterministic
    fields (code, data, gas wanted, gas used), as CometBFT's ``ABCIResults.Hash``."""
    return _root(ABCI.ExecTxResult(code=r.code, data=r.data, gas_wanted=r.gas_wanted,
                                   gas_used=r.gas_used).SerializeToString() for r in results)


def weighted_median(commit: comet.Commit, validators: comet.ValidatorSet) -> comet.Timestamp:
    """CometBFT's BFT time of the next block: the power-weighted median of the vote times."""
    votes = sorted((s.timestamp, validators.by_address(s.validator_address).voting_power)  # type: ignore[union-attr]
                   for s in commit.signatures if s.flag is not comet.BlockIdFlag.ABSENT)
    median = sum(power for _, power in votes) // 2
    for moment, power in votes:
        if median <= power:
            return moment
        median -= power
    raise ValueError("a commit without votes")


# --- CometBFT's RPC JSON -----------------------------------------------------------------------
def _hex(value: bytes) -> str:
    return value.hex().upper()


def _block_id_json(block_id: comet.BlockId) -> dict[str, Any]:
    return {"hash": _hex(block_id.hash),
            "parts": {"total": block_id.parts_total, "hash": _hex(block_id.parts_hash)}}


def _header_json(h: comet.Header) -> dict[str, Any]:
    return {"version": {"block": str(h.version_block), "app": str(h.version_app)},
            "chain_id": h.chain_id, "height": str(h.height), "time": str(h.time),
            "last_block_id": _block_id_json(h.last_block_id),
            **{name: _hex(getattr(h, name)) for name in (
                "last_commit_hash", "data_hash", "validators_hash", "next_validators_hash",
                "consensus_hash", "app_hash", "last_results_hash", "evidence_hash",
                "proposer_address")}}


def _sig_json(s: comet.CommitSig) -> dict[str, Any]:
    return {"block_id_flag": int(s.flag), "validator_address": _hex(s.validator_address),
            "timestamp": str(s.timestamp),
            "signature": base64.b64encode(s.signature).decode() if s.signature else None}


def signed_header_json(signed: comet.SignedHeader) -> dict[str, Any]:
    """``result.signed_header`` of CometBFT's ``/commit``."""
    c = signed.commit
    return {"header": _header_json(signed.header),
            "commit": {"height": str(c.height), "round": c.round,
                       "block_id": _block_id_json(c.block_id),
                       "signatures": [_sig_json(s) for s in c.signatures]}}


def validators_json(validators: comet.ValidatorSet) -> list[dict[str, Any]]:
    """``result.validators`` of CometBFT's ``/validators`` (all of them)."""
    return [{"address": _hex(v.address),
             "pub_key": {"type": _ED25519, "value": base64.b64encode(v.public_key).decode()},
             "voting_power": str(v.voting_power), "proposer_priority": "0"}
            for v in validators.validators]


# --- the mempool and the blocks ---------------------------------------------------------------
class LocalMempool:
    """The transactions CheckTx admitted, in arrival order (``in``: a tx id or its bytes)."""

    def __init__(self) -> None:
        self.raws: list[bytes] = []

    def __len__(self) -> int:
        return len(self.raws)

    def __contains__(self, item: object) -> bool:
        return item in self.raws or any(Transaction.decode(raw).tx_id == item
                                        for raw in self.raws)

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self.raws))


@dataclass(frozen=True, slots=True)
class LocalBlock:
    """A block the local chain committed, as CometBFT's block store holds it."""

    height: int
    block_hash: bytes
    signed: comet.SignedHeader
    txs: tuple[bytes, ...]
    results: tuple[Any, ...]
    app_hash: bytes

    @property
    def tx_ids(self) -> list[bytes]:
        return [Transaction.decode(raw).tx_id for raw in self.txs]


class LocalChain:
    """CometBFT in one process: a mempool, one validator set per height, blocks on demand."""

    def __init__(self, app: LedgerApplication, keys: Iterable[SigningKey], *,
                 genesis_time_ms: int, block_ms: int = 1000, proof_blocks: bool = True) -> None:
        self.app = app
        self.chain_id = app.chain.chain_id
        self.keys = {comet.address_of(k.public_key): k for k in keys}
        self.genesis_time = comet.Timestamp.from_nanos(genesis_time_ms * 10**6)
        self.block_ms = block_ms
        self.proof_blocks = proof_blocks
        self.mempool = LocalMempool()
        self.blocks: dict[int, LocalBlock] = {}
        self._cache: set[bytes] = set()
        self._sets: dict[int, comet.ValidatorSet] = {}
        self._app_hash = b""  # the app hash the next header carries
        self._app_version = 0

    @property
    def height(self) -> int:
        return max(self.blocks, default=0)

    def validators(self, height: int) -> comet.ValidatorSet:
        """CometBFT's validator set of ``height`` (known up to the tip + 2)."""
        return self._sets[height]

    # start ------------------------------------------------------------------------------------
    def start(self) -> None:
        """``Info``, then ``InitChain`` with the genesis the app holds."""
        info = self.app.info(ABCI.RequestInfo(version="0.38.26", block_version=11, p2p_version=8,
                                              abci_version="2.0.0"))
        if info.last_block_height:
            raise RuntimeError(f"the store is at height {info.last_block_height}: a local chain "
                               "keeps its blocks in memory and starts from genesis only")
        self._app_version = info.app_version
        genesis = self.app.chain.genesis
        request = ABCI.RequestInitChain(
            time=_stamp(self.genesis_time), chain_id=self.chain_id, initial_height=1,
            validators=[ABCI.ValidatorUpdate(pub_key=KEYS.PublicKey(ed25519=v.public_key),
                                             power=v.power)
                        for v in genesis.validators.validators],
            app_state_bytes=encode(genesis.to_dict()))
        answer = self.app.init_chain(request)
        self._app_hash = answer.app_hash
        first = (self._updated(None, answer.validators) if answer.validators
                 else comet_set(genesis.validators))
        self._sets[1] = self._sets[2] = first

    def _updated(self, current: comet.ValidatorSet | None, updates: Iterable[Any]
                 ) -> comet.ValidatorSet:
        """``current`` with CometBFT validator updates applied (power 0 removes)."""
        powers = {} if current is None else {v.public_key: v.voting_power
                                             for v in current.validators}
        for update in updates:
            if update.power:
                powers[update.pub_key.ed25519] = update.power
            else:
                powers.pop(update.pub_key.ed25519, None)
        ordered = sorted(powers.items(), key=lambda kv: (-kv[1], comet.address_of(kv[0])))
        return comet.ValidatorSet(tuple(comet.Validator(k, p) for k, p in ordered))

    # the mempool ------------------------------------------------------------------------------
    def check_tx(self, raw: bytes) -> Any:
        """CheckTx of a new transaction: the app's ``ResponseCheckTx``, or :data:`DUPLICATE`
        when the cache holds it (in the mempool, or committed). A refused one leaves the
        cache, as in CometBFT (``keep-invalid-txs-in-cache`` off)."""
        if raw in self._cache:
            return DUPLICATE
        self._cache.add(raw)
        answer = self.app.check_tx(ABCI.RequestCheckTx(tx=raw, type=ABCI.NEW))
        if answer.code == 0:
            self.mempool.raws.append(raw)
        else:
            self._cache.discard(raw)
        return answer

    # blocks -----------------------------------------------------------------------------------
    def produce(self, **options: Any) -> LocalBlock:
        """:meth:`commit_block`, then the empty blocks that sign its new app hash."""
        first = block = self.commit_block(**options)
        while self.proof_blocks and block.app_hash != block.signed.header.app_hash:
            block = self.commit_block()
        return first

    def commit_block(self, *, absent: Iterable[bytes] = (),
                     misbehavior: Iterable[Any] = ()) -> LocalBlock:
        """Decide and commit the next block from what the mempool holds (it may be empty).

        ``absent``: public keys of validators whose precommit is missing from its commit;
        ``misbehavior``: ABCI ``Misbehavior`` messages reported to FinalizeBlock."""
        height = self.height + 1
        validators = self._sets[height]
        proposer = validators.validators[(height - 1) % len(validators)].address
        reported = list(misbehavior)
        fields = {"height": height, "time": _stamp(self._time(height)),
                  "next_validators_hash": comet.validators_hash(self._sets[height + 1]),
                  "proposer_address": proposer, "misbehavior": reported}
        prepared = self.app.prepare_proposal(ABCI.RequestPrepareProposal(
            max_tx_bytes=MAX_DATA_BYTES, txs=list(self.mempool),
            local_last_commit=ABCI.ExtendedCommitInfo(round=0), **fields))
        txs = list(prepared.txs)
        header = self._header(height, txs, proposer, reported)
        block_hash = comet.header_hash(header)
        last = self._last_commit_info()
        status = self.app.process_proposal(ABCI.RequestProcessProposal(
            txs=txs, proposed_last_commit=last, hash=block_hash, **fields))
        if status.status != ABCI.ResponseProcessProposal.ProposalStatus.ACCEPT:
            raise AssertionError(f"the app refused the proposal for height {height}")
        signed = self._sign(header, block_hash, txs, validators, set(absent))
        finalized = self.app.finalize_block(ABCI.RequestFinalizeBlock(
            txs=txs, decided_last_commit=last, hash=block_hash, **fields))
        self._sets[height + 2] = self._updated(self._sets[height + 1],
                                               finalized.validator_updates)
        block = LocalBlock(height, block_hash, signed, tuple(txs),
                           tuple(finalized.tx_results), finalized.app_hash)
        self.blocks[height] = block
        self.app.commit(ABCI.RequestCommit())
        self._app_hash = finalized.app_hash
        self._forget(block)
        return block

    def _forget(self, block: LocalBlock) -> None:
        """After a commit: the block's transactions leave the mempool; those its execution
        refused leave the cache too."""
        included = set(block.txs)
        self.mempool.raws = [raw for raw in self.mempool.raws if raw not in included]
        for raw, result in zip(block.txs, block.results, strict=True):
            if result.code != 0:
                self._cache.discard(raw)

    def _time(self, height: int) -> comet.Timestamp:
        if height == 1:
            return self.genesis_time
        return weighted_median(self.blocks[height - 1].signed.commit, self._sets[height - 1])

    def _header(self, height: int, txs: list[bytes], proposer: bytes,
                misbehavior: list[Any]) -> comet.Header:
        previous = self.blocks.get(height - 1)
        last_id = previous.signed.commit.block_id if previous else comet.BlockId(b"", 0, b"")
        return comet.Header(
            version_block=comet.BLOCK_PROTOCOL, version_app=self._app_version,
            chain_id=self.chain_id, height=height, time=self._time(height),
            last_block_id=last_id,
            last_commit_hash=commit_hash(previous.signed.commit if previous else None),
            data_hash=_root(hashlib.sha256(raw).digest() for raw in txs),
            validators_hash=comet.validators_hash(self._sets[height]),
            next_validators_hash=comet.validators_hash(self._sets[height + 1]),
            consensus_hash=consensus_hash(), app_hash=self._app_hash,
            last_results_hash=results_hash(previous.results if previous else ()),
            evidence_hash=_root(m.SerializeToString() for m in misbehavior),
            proposer_address=proposer)

    def _last_commit_info(self) -> Any:
        """The ABCI ``CommitInfo`` of the tip's commit (empty before block 2)."""
        tip = self.blocks.get(self.height)
        if tip is None:
            return ABCI.CommitInfo(round=0)
        validators = self._sets[tip.height]
        votes = [ABCI.VoteInfo(validator=ABCI.Validator(address=v.address, power=v.voting_power),
                               block_id_flag=int(s.flag))
                 for v, s in zip(validators.validators, tip.signed.commit.signatures, strict=True)]
        return ABCI.CommitInfo(round=tip.signed.commit.round, votes=votes)

    def _sign(self, header: comet.Header, block_hash: bytes, txs: list[bytes],
              validators: comet.ValidatorSet, absent: set[bytes]) -> comet.SignedHeader:
        """The commit of ``header``: a precommit of each validator with a key, at round 0."""
        part = b"".join(comet.header_leaves(header)) + b"".join(txs)
        block_id = comet.BlockId(block_hash, 1, _root([part]))
        entries = []
        for index, validator in enumerate(validators.validators):
            key = self.keys.get(validator.address)
            if key is None or validator.public_key in absent:
                entries.append(comet.CommitSig(comet.BlockIdFlag.ABSENT, b"", comet.ZERO_TIME,
                                               b""))
                continue
            stamp = header.time.plus(timedelta(milliseconds=self.block_ms,
                                               microseconds=7 * index + 3))
            signature = key.sign(comet.canonical_vote_bytes(self.chain_id, header.height, 0,
                                                            block_id, stamp))
            entries.append(comet.CommitSig(comet.BlockIdFlag.COMMIT, validator.address, stamp,
                                           signature))
        return comet.SignedHeader(header, comet.Commit(header.height, 0, block_id,
                                                       tuple(entries)))

    # what CometBFT's RPC serves ---------------------------------------------------------------
    def signed_header(self, height: int) -> dict[str, Any]:
        """``/commit?height=h``'s ``result.signed_header``: what a node's API serves."""
        return signed_header_json(self.blocks[height].signed)

    def light_block(self, height: int) -> comet.LightBlock:
        return comet.LightBlock(self.blocks[height].signed, self._sets[height])

    def rpc_transport(self) -> httpx.MockTransport:
        """CometBFT's RPC for ``/commit`` and ``/validators`` (a JSON-RPC error for a height
        not committed yet, as CometBFT answers)."""
        def handle(request: httpx.Request) -> httpx.Response:
            height = int(request.url.params.get("height", self.height))
            if height not in self.blocks:
                return _rpc({"code": -32603, "message": "Internal error", "data":
                             f"height {height} must be less than or equal to the current "
                             f"blockchain height {self.height}"}, error=True)
            if request.url.path == "/commit":
                return _rpc({"signed_header": self.signed_header(height), "canonical": True})
            if request.url.path == "/validators":
                found = validators_json(self._sets[height])
                return _rpc({"block_height": str(height), "validators": found,
                             "count": str(len(found)), "total": str(len(found))})
            return httpx.Response(404)
        return httpx.MockTransport(handle)


def _rpc(result: dict[str, Any], *, error: bool = False) -> httpx.Response:
    return httpx.Response(200, json={"jsonrpc": "2.0", "id": -1,
                                     ("error" if error else "result"): result})


def local_headers(chain: Chain, local: LocalChain) -> SignedHeaders:
    """The signed headers of ``chain`` (what its ``prover`` is on CometBFT), fetched from
    ``local``'s RPC. Like ``EngineNode``, the caller fetches each height after the app
    commits it (``headers.fetch(height)``) and closes them when done."""
    headers = SignedHeaders(chain, RPC_HOST)
    headers._client.close()
    headers._client = httpx.Client(transport=local.rpc_transport(),
                                   base_url=f"http://{RPC_HOST}")
    return headers


# --- a node over the local chain --------------------------------------------------------------
class LocalNode(Node):
    """A :class:`~medledger.node.Node` whose blocks the local chain decides: submissions go to
    CheckTx, commits come from the app's ``Commit``, and the API's proofs carry the local
    chain's signed headers, read through ``SignedHeaders`` from its RPC as on ``EngineNode``.

    ``keys``: validator keys besides the node's own that sign commits."""

    header_poll_s = 0.01  # the local chain's headers are at hand at once

    def __init__(self, store: Store, genesis: Genesis, key: SigningKey, config: NodeConfig, *,
                 keys: Iterable[SigningKey] = (), proof_blocks: bool = True) -> None:
        super().__init__(store, genesis, key, config)
        self._wake: asyncio.Event | None = None  # set by run(): a submission wakes it
        self.app = LedgerApplication(self.chain, max_block_txs=config.max_block_txs,
                                     on_commit=self._committed)
        self.local = LocalChain(self.app, [key, *keys], genesis_time_ms=genesis.genesis_time,
                                proof_blocks=proof_blocks)
        self.mempool = self.local.mempool  # type: ignore[assignment]
        self.chain.undo_depth = UNDO_DEPTH
        self.headers = local_headers(self.chain, self.local)
        self.chain.prover = self.headers
        self.local.start()

    def _committed(self, block: Block) -> None:
        self.headers.fetch(block.header.height)
        self._notify_block(block)

    # submission, through CheckTx -----------------------------------------------------------------
    def submit(self, tx: Transaction, signature_ok: bool | None = None,
               stateless: tuple[str, str] | bool | None = None) -> Submitted:
        refused = self.app.remember(tx, verified=bool(signature_ok) and stateless is None)
        if refused is not None:
            return Submitted(tx.tx_id, refused.code, refused.message)
        answer = self.local.check_tx(tx.raw)
        if answer == DUPLICATE:
            return Submitted(tx.tx_id, "duplicate", "this transaction was already submitted")
        if answer.code:
            return Submitted(tx.tx_id, answer.codespace or "refused", answer.log)
        if self._wake is not None:
            self._wake.set()
        return Submitted(tx.tx_id, "ok", "")

    async def submit_async(self, data: Any, *, checked: bool = False) -> Submitted:
        return self.submit_dict(data, checked=checked)

    async def submit_batch_bytes(self, body: bytes, max_items: int) -> list[Submitted]:
        out = []
        for tx, verdict, stateless in await self.verifier.prepare(body, max_items):
            if tx is None:
                out.append(Submitted(None, "malformed", str(verdict)))
            elif verdict is not True:
                out.append(Submitted(tx.tx_id, "signature",
                                     "the signature does not verify for the sender key"))
            elif stateless is not None:
                out.append(Submitted(tx.tx_id, *stateless))
            else:
                out.append(self.submit(tx, True))
        return out

    # blocks -------------------------------------------------------------------------------------
    def produce_block(self) -> LocalBlock | None:  # type: ignore[override]
        """Commit what the mempool holds (and the empty block signing its app hash); the
        block of the transactions, or None when nothing waits."""
        return self.local.produce() if len(self.local.mempool) else None

    def commit_block(self, **options: Any) -> LocalBlock:
        """Commit the next block even if empty (``absent``, ``misbehavior`` as for
        :meth:`LocalChain.commit_block`), and the empty block signing its app hash."""
        return self.local.produce(**options)

    async def run(self) -> None:
        """Commit what waits, ``block_interval_ms`` apart (CometBFT's ``timeout_commit``)."""
        self._wake = asyncio.Event()
        while not self._stopping:
            if not len(self.local.mempool):
                await self._wake.wait()
                self._wake.clear()
                continue
            await asyncio.sleep(self.config.block_interval_ms / 1000)
            if not self._stopping:
                self.produce_block()

    def stop(self) -> None:
        """Stop :meth:`run` (waiting for a submission, it wakes) and whoever waits for a
        block; call it from the thread of the loop that runs the node."""
        super().stop()
        if self._wake is not None:
            self._wake.set()

    def status(self) -> dict[str, Any]:
        """The node's status with the local chain's mempool size (as ``EngineNode`` reports
        CometBFT's ``num_unconfirmed_txs``)."""
        return {**super().status(), "engine": "local", "mempool_size": len(self.local.mempool)}

    def close(self) -> None:
        super().close()
        self.headers.close()


def open_local(home: Home, *, keys: Iterable[SigningKey] = (), proof_blocks: bool = True
               ) -> LocalNode:
    """The node of ``home`` on a fresh local chain (its store must be empty)."""
    return LocalNode(SQLiteStore(home.store_path), home.genesis(), home.validator_key(),
                     home.config(), keys=keys, proof_blocks=proof_blocks)
