"""Blocks committed in tests the way a node on CometBFT commits them, without CometBFT.

Two levels, for two kinds of test:

- :func:`decide` and :func:`commit_block`, at the chain's level: ``Chain.build_decided``
  with the context CometBFT decides (height, BFT time, reported misbehaviour), a proposer
  and an engine block hash, then ``Chain.commit_decided``. This is what
  ``LedgerApplication.finalize_block`` and ``commit`` do with a block, without protobuf; a
  test may also build a block it never commits, or one CometBFT would not decide.
- :class:`AbciChain`, at the node's level: a store, its chain and the real
  :class:`~medledger.node.abci.LedgerApplication`, fed protobuf requests as CometBFT feeds
  them. :meth:`AbciChain.submit` is CheckTx (an accepted transaction joins a list that
  stands in for CometBFT's mempool); :meth:`AbciChain.produce` is PrepareProposal,
  ProcessProposal, FinalizeBlock and Commit of what that list holds.

The engine's part is made up, deterministically: block ``h``'s engine hash is
:func:`engine_hash` ``(h)`` and its time :func:`block_time` (the genesis time at height 1,
as CometBFT's first block has, then one second a height), unless a test gives its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medledger.apps import AppRegistry, BlockContext, Misbehavior, default_registry
from medledger.ledger import Block, Transaction
from medledger.node.abci import LedgerApplication, validator_address
from medledger.node.abci.wire import abci_types
from medledger.node.chain import Chain
from medledger.node.genesis import Genesis
from medledger.store import BlockRecord, SQLiteStore

__all__ = ["BLOCK_MS", "AbciChain", "block_time", "commit_block", "decide", "engine_hash",
           "finalize_request"]

T = abci_types()
BLOCK_MS = 1000  # the made-up time between two blocks


def engine_hash(height: int) -> bytes:
    """The engine's (CometBFT's) block hash these helpers give block ``height``."""
    return hashlib.sha256(b"cometbft block %d" % height).digest()


def block_time(genesis: Genesis, height: int) -> int:
    """The BFT time (ms) these helpers give block ``height``."""
    return genesis.genesis_time + BLOCK_MS * (height - 1)


# the chain's level ---------------------------------------------------------------------------
def decide(chain: Chain, txs: Sequence[Transaction], *, time: int | None = None,
           proposer: bytes | None = None, misbehavior: tuple[Misbehavior, ...] = ()
           ) -> tuple[Block, BlockRecord]:
    """Execute ``txs`` as the block after ``chain``'s tip, decided by the engine; return it
    and the record that commits it (nothing is written).

    ``time``: its BFT time (default :func:`block_time`); ``proposer``: its proposer's key
    (default the first validator of the next height's set)."""
    height = chain.height + 1
    ctx = BlockContext(chain.chain_id, height,
                       block_time(chain.genesis, height) if time is None else time, misbehavior)
    if proposer is None:
        proposer = chain.validators.validators[0].public_key
    return chain.build_decided(list(txs), ctx, proposer, engine_hash(height))


def commit_block(chain: Chain, txs: Sequence[Transaction], *, time: int | None = None,
                 proposer: bytes | None = None) -> Block:
    """:func:`decide` the next block and commit it; return it."""
    block, record = decide(chain, txs, time=time, proposer=proposer)
    chain.commit_decided(block, record)
    return block


# the node's level ----------------------------------------------------------------------------
def finalize_request(height: int, txs: Sequence[bytes], time_ms: int, proposer: bytes) -> Any:
    """CometBFT's ``RequestFinalizeBlock`` for block ``height`` at ``time_ms``, proposed by
    the validator with public key ``proposer``."""
    request = T.RequestFinalizeBlock(txs=list(txs), height=height, hash=engine_hash(height),
                                     proposer_address=validator_address(proposer))
    request.time.seconds, millis = divmod(time_ms, 1000)
    request.time.nanos = millis * 1_000_000
    return request


class AbciChain:
    """A SQLite store at ``path``, its chain and the ABCI application over it, with a list
    of the transactions CheckTx accepted (CometBFT's mempool, as far as these tests need
    one: in order, each once, dropped when a block commits it)."""

    def __init__(self, path: Path, genesis: Genesis, registry: AppRegistry | None = None, *,
                 max_block_txs: int = 10_000,
                 on_commit: Callable[[Block], None] | None = None) -> None:
        self.store = SQLiteStore(path)
        self.chain = Chain(self.store, genesis, registry or default_registry())
        self.app = LedgerApplication(self.chain, max_block_txs=max_block_txs,
                                     on_commit=self._committed)
        self.mempool: list[bytes] = []
        self._on_commit = on_commit
        self._last: Block | None = None

    def _committed(self, block: Block) -> None:
        self._last = block
        if self._on_commit is not None:
            self._on_commit(block)

    def check(self, raw: bytes) -> str:
        """CheckTx of ``raw`` (a new transaction): ``"ok"``, or the refusal's stable code."""
        answer = self.app.check_tx(T.RequestCheckTx(tx=raw, type=T.NEW))
        return "ok" if answer.code == 0 else str(answer.codespace)

    def submit(self, tx: Transaction | bytes) -> str:
        """:meth:`check` ``tx``, and keep it for the next block when it is accepted."""
        raw = tx if isinstance(tx, bytes) else tx.raw
        code = self.check(raw)
        if code == "ok":
            self.mempool.append(raw)
        return code

    def produce(self, *, time_ms: int | None = None, proposer: bytes | None = None) -> Block:
        """Propose what the mempool holds, finalize it as the next block and commit it;
        return the committed block."""
        height = self.chain.height + 1
        proposal = self.app.prepare_proposal(T.RequestPrepareProposal(
            txs=self.mempool, max_tx_bytes=1 << 30, height=height))
        verdict = self.app.process_proposal(T.RequestProcessProposal(
            txs=proposal.txs, height=height))
        assert verdict.status == T.ResponseProcessProposal.ProposalStatus.ACCEPT
        block = self.finalize_and_commit(list(proposal.txs), time_ms=time_ms,
                                         proposer=proposer)[1]
        included = set(proposal.txs)
        self.mempool = [raw for raw in self.mempool if raw not in included]
        return block

    def finalize(self, txs: Sequence[bytes], *, time_ms: int | None = None,
                 proposer: bytes | None = None) -> Any:
        """FinalizeBlock of ``txs`` as the next height; return the response."""
        height = self.chain.height + 1
        if time_ms is None:
            time_ms = block_time(self.chain.genesis, height)
        if proposer is None:
            proposer = self.chain.validators.validators[0].public_key
        return self.app.finalize_block(finalize_request(height, txs, time_ms, proposer))

    def finalize_and_commit(self, txs: Sequence[bytes], *, time_ms: int | None = None,
                            proposer: bytes | None = None) -> tuple[Any, Block]:
        """:meth:`finalize` then Commit; return the FinalizeBlock response and the block."""
        answer = self.finalize(txs, time_ms=time_ms, proposer=proposer)
        self.app.commit(T.RequestCommit())
        assert self._last is not None and self._last.header.height == self.chain.height
        return answer, self._last

    def close(self) -> None:
        self.store.close()
