"""A node whose blocks CometBFT decides: the ABCI application, the engine process beside it,
and submission through the engine's mempool.

:class:`EngineNode` keeps :class:`~medledger.node.node.Node`'s face to the API (submit,
wait for a commit, status) and changes what is underneath:

- ``run`` serves the ABCI socket (:class:`~medledger.node.abci.AbciServer`) and starts the
  node's ``cometbft`` as a child process (which dies with this process), then watches it:
  when the engine exits, the node stops, and says why.
- a submitted transaction is decoded, verified and checked statelessly here (a batch in
  worker processes, as before), remembered by the application as such, and handed to the
  engine's mempool (``broadcast_tx_async``, batches in one JSON-RPC call); the engine calls
  ``CheckTx``, which finds it verified and runs the nonce and stateful checks, and the
  answer to the client waits for that verdict.
- commits arrive from the ABCI thread and wake waiters on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx

from medledger.crypto import SigningKey
from medledger.ledger import Block, MalformedError, Transaction
from medledger.node.abci import AbciServer, LedgerApplication
from medledger.node.abci.server import PROFILE_ENV
from medledger.node.abci.snapshots import StateSync
from medledger.node.blobs import BlobPeers, BlobStore
from medledger.node.config import ConfigError, NodeConfig
from medledger.node.engine import RPC_BATCH_CALLS, EngineHome, start_engine
from medledger.node.genesis import Genesis
from medledger.node.headers import SignedHeaders
from medledger.node.home import Home
from medledger.node.node import Node, Submitted
from medledger.node.verify import verify_store
from medledger.store import SQLiteStore, Store

__all__ = ["EngineNode", "open_node"]

log = logging.getLogger("medledger.node")

ENGINE_STATUS_EVERY = 1.0  # seconds between polls of the engine's status
RPC_TIMEOUT = 30.0
UNDO_DEPTH = 8  # heights back whose values stay readable, for proofs at a signed height
ENGINE_START_WAIT = 20.0  # seconds a submission waits for the engine's RPC to come up


class EngineNode(Node):
    """A node of a chain whose consensus engine is CometBFT (see the module docstring)."""

    def __init__(self, store: Store, genesis: Genesis, key: SigningKey, config: NodeConfig,
                 engine: EngineHome, *, start_engine_process: bool = True) -> None:
        super().__init__(store, genesis, key, config)
        self.engine = engine
        self.start_engine_process = start_engine_process
        self.state_sync = StateSync(self.chain, engine.node_home / "data" / "snapshots",
                                    interval=config.snapshot_interval,
                                    keep=config.snapshot_keep)
        self._verdicts = _Verdicts()  # CheckTx answers that submissions wait for
        self.app = LedgerApplication(self.chain, max_block_txs=config.max_block_txs,
                                     mempool_size=engine.mempool_size(),
                                     peers_allowed=self._peer_allowed,
                                     on_commit=self._committed_in_thread,
                                     on_checked=self._verdicts.checked,
                                     state_sync=self.state_sync)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rpc: httpx.AsyncClient | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stop_event: asyncio.Event | None = None
        self._engine_status: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.chain.undo_depth = UNDO_DEPTH
        self.headers = SignedHeaders(self.chain, engine.rpc())
        self.chain.prover = self.headers
        self.blobs = BlobStore(engine.node_home / "data" / "blobs")
        self.blob_peers = BlobPeers(self.blobs, self._blob_signer, config.blob_peers)

    def _blob_signer(self) -> SigningKey:
        """The key this node signs its blob requests to peers with: its validator key while
        it is a validator, else its CometBFT node key (which genesis or governance lists)."""
        if self.chain.validators.power_of(self.key.public_key):
            return self.key
        return self.engine.node_key()

    # running ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve ABCI, start the engine, follow it until the node stops or it exits."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        if self._stopping:
            return
        profile = _loop_profile()
        server = AbciServer(self.app, self.engine.abci_address)
        await server.start()
        self._spawn_header_catch_up()
        self._rpc = httpx.AsyncClient(base_url=f"http://{self.engine.rpc()}",
                                      timeout=RPC_TIMEOUT)
        try:
            if self.start_engine_process:
                log_path = self.engine.path / "cometbft.log"
                with open(log_path, "ab") as engine_log:
                    self._process = start_engine(self.engine, engine_log)
                log.info("CometBFT started (pid %d), its log in %s", self._process.pid,
                         log_path)
            await self._follow()
        finally:
            await self._end_engine()
            if self.blob_peers is not None:
                await self.blob_peers.aclose()
            await self._rpc.aclose()
            await server.close()
            self.state_sync.close()
            if profile is not None:
                profile.disable()
                path = Path(os.environ[PROFILE_ENV]) / f"loop-{os.getpid()}.prof"
                profile.dump_stats(str(path))

    async def _follow(self) -> None:
        assert self._stop_event is not None
        while not self._stopping:
            if self._process is not None and self._process.poll() is not None:
                log.error("CometBFT exited with status %s (see %s): stopping this node",
                          self._process.returncode, self.engine.path / "cometbft.log")
                self.stop()
                os.kill(os.getpid(), signal.SIGTERM)  # the API server stops with the node
                return
            await self._poll_status()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), ENGINE_STATUS_EVERY)

    async def _poll_status(self) -> None:
        assert self._rpc is not None
        try:
            status = (await self._rpc.get("/status")).json()["result"]
            net = (await self._rpc.get("/net_info")).json()["result"]
            consensus = (await self._rpc.get("/consensus_state")).json()["result"]
            waiting = (await self._rpc.get("/num_unconfirmed_txs")).json()["result"]
        except (httpx.HTTPError, ValueError, KeyError):
            return  # starting, or busy: the next poll will tell
        height_round_step = consensus["round_state"]["height/round/step"].split("/")
        self._engine_status = {
            "engine": "cometbft",
            "engine_node_id": status["node_info"]["id"],
            "engine_height": int(status["sync_info"]["latest_block_height"]),
            "catching_up": status["sync_info"]["catching_up"],
            "peers": int(net["n_peers"]),
            "round": int(height_round_step[1]),
            "step": int(height_round_step[2]),
            "mempool_size": int(waiting["n_txs"]),
        }

    def _spawn_header_catch_up(self) -> None:
        """After a start, fetch the signed headers of the tip (once the engine answers)."""
        async def catch_up() -> None:
            for _ in range(200):
                height = self.chain.height
                if self._stopping or height == 0:
                    return
                if await asyncio.to_thread(self.headers.fetch, height) is not None:
                    await asyncio.to_thread(self.headers.fetch, height - 1)
                    return
                await asyncio.sleep(0.1)

        task = asyncio.get_running_loop().create_task(catch_up())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_engine(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 20)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)

    def stop(self) -> None:
        super().stop()
        if self._stop_event is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop_event.set)

    def close(self) -> None:
        super().close()
        self.headers.close()

    def status(self) -> dict[str, Any]:
        return {**super().status(), **self._engine_status}

    def _peer_allowed(self, node_id: str) -> bool:
        """CometBFT's peer filter: a node that genesis or governance lists as a member's."""
        allowed = self.chain.registry.admits_peer(self.chain.view(), node_id)
        if not allowed:
            log.warning("refused peer %s: not a consortium member's node", node_id)
        return allowed

    # commits ----------------------------------------------------------------------------
    def _committed_in_thread(self, block: Block) -> None:
        self._erase_blobs(block)
        self.state_sync.committed(block.header.height)
        self.headers.fetch(block.header.height)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._notify_block, block)

    def _erase_blobs(self, block: Block) -> None:
        """Delete from this node's blob store what the block erased (a patient's erasure:
        the ledger keeps the digest and the metadata)."""
        if self.blobs is None:
            return
        events = [e for result in block.results for e in result.events]
        for digest in self.chain.registry.erased_blobs(events):
            if self.blobs.erase(digest):
                log.info("erased blob %s", digest.hex())

    # submission -------------------------------------------------------------------------
    def submit(self, tx: Transaction, signature_ok: bool | None = None,
               stateless: tuple[str, str] | bool | None = None) -> Submitted:
        raise RuntimeError("an engine node submits asynchronously: use submit_async")

    async def submit_async(self, data: Any, *, checked: bool = False) -> Submitted:
        try:
            tx = Transaction.from_dict(data, checked=checked)
        except MalformedError as e:
            return Submitted(None, "malformed", str(e))
        prepared = self.app.remember(tx)
        if prepared is not None:
            return Submitted(tx.tx_id, prepared.code, prepared.message)
        return (await self._broadcast([tx]))[0]

    async def submit_batch_bytes(self, body: bytes, max_items: int) -> list[Submitted]:
        prepared = await self.verifier.prepare(body, max_items)
        out: list[Submitted | None] = []
        ready: list[Transaction] = []
        for tx, verdict, stateless in prepared:
            if tx is None:
                out.append(Submitted(None, "malformed", str(verdict)))
            elif verdict is not True:
                out.append(Submitted(tx.tx_id, "signature",
                                     "the signature does not verify for the sender key"))
            elif stateless is not None:
                out.append(Submitted(tx.tx_id, *stateless))
            else:
                self.app.remember(tx, verified=True)
                ready.append(tx)
                out.append(None)
        answers = iter(await self._broadcast(ready)) if ready else iter(())
        return [r if r is not None else next(answers) for r in out]

    async def _broadcast(self, txs: list[Transaction]) -> list[Submitted]:
        """Hand ``txs`` to the engine's mempool, in order; answer each with the app's own
        CheckTx verdict (:class:`_Verdicts`), or with the engine's refusal before CheckTx
        (a repeat, a full mempool).

        They go in JSON-RPC batches of ``broadcast_tx_async``, which returns once CometBFT
        has queued the CheckTx: ``broadcast_tx_sync`` waits for each CheckTx in turn, and
        CometBFT's socket client writes a lone request out only when its 20 ms flush timer
        fires, so a batch of them took about 10 ms a transaction."""
        if self._rpc is None:
            return [Submitted(tx.tx_id, "unavailable", "the node is starting") for tx in txs]
        loop = asyncio.get_running_loop()
        waiter, repeated = self._verdicts.expect([tx.raw for tx in txs], loop)
        refused: dict[int, Submitted] = {i: Submitted(txs[i].tx_id, "duplicate", _REPEATED)
                                         for i in repeated}
        sent = [i for i in range(len(txs)) if i not in refused]
        for first in range(0, len(sent), RPC_BATCH_CALLS):
            chunk = sent[first:first + RPC_BATCH_CALLS]
            answers = await self._post_async([txs[i] for i in chunk])
            if isinstance(answers, Exception):
                for i in sent[first:]:
                    refused[i] = _unavailable([txs[i]], answers)[0]
                break
            for i, answer in zip(chunk, answers, strict=True):
                if answer is not None:
                    refused[i] = answer
        for i in refused:
            if i not in repeated:
                self._verdicts.withdraw(txs[i].raw)
        verdicts = await waiter.wait(RPC_TIMEOUT)
        if verdicts is None:  # no CheckTx in time: the engine's ABCI connection is stuck
            for tx in txs:
                self._verdicts.withdraw(tx.raw)
            verdicts = waiter.answers
        return [refused[i] if i in refused else _checked(tx, verdicts.get(tx.raw))
                for i, tx in enumerate(txs)]

    async def _post_async(self, txs: list[Transaction]
                          ) -> list[Submitted | None] | Exception:
        """One JSON-RPC batch of ``broadcast_tx_async``: per transaction, the engine's
        refusal or None (queued for CheckTx); the error when the engine did not answer."""
        assert self._rpc is not None
        calls = [{"jsonrpc": "2.0", "id": index, "method": "broadcast_tx_async",
                  "params": {"tx": base64.b64encode(tx.raw).decode()}}
                 for index, tx in enumerate(txs)]
        payload = calls if len(calls) > 1 else calls[0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ENGINE_START_WAIT
        while True:
            try:
                answers = (await self._rpc.post("/", json=payload)).json()
                break
            except httpx.ConnectError as e:  # the engine is (re)starting: wait a little
                if loop.time() >= deadline or self._stopping:
                    return e
                await asyncio.sleep(0.1)
            except (httpx.HTTPError, ValueError) as e:
                return e
        if isinstance(answers, dict):
            answers = [answers]
        by_id = {a.get("id"): a for a in answers}
        return [_refused(tx, by_id.get(index)) for index, tx in enumerate(txs)]


class _Waiter:
    """The CheckTx verdicts one submission waits for."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.answers: dict[bytes, tuple[int, str, str] | None] = {}
        self._loop = loop
        self._remaining = count
        self._lock = threading.Lock()
        self._done = asyncio.Event()
        if count == 0:
            self._done.set()

    def settle(self, raw: bytes, verdict: tuple[int, str, str] | None) -> None:
        """Record ``raw``'s verdict (None: none will come); from any thread."""
        with self._lock:
            self.answers[raw] = verdict
            self._remaining -= 1
            done = self._remaining == 0
        if done:
            self._loop.call_soon_threadsafe(self._done.set)

    async def wait(self, timeout: float) -> dict[bytes, tuple[int, str, str] | None] | None:
        """Every verdict, or None after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            return None
        return self.answers


class _Verdicts:
    """The CheckTx verdicts that submissions wait for, by transaction bytes: the ABCI
    thread records each first CheckTx (:meth:`checked`), and a submission wakes once all of
    its transactions are answered (one wake-up a batch, not one a transaction)."""

    def __init__(self) -> None:
        self._waiting: dict[bytes, _Waiter] = {}

    def expect(self, raws: list[bytes], loop: asyncio.AbstractEventLoop
               ) -> tuple[_Waiter, set[int]]:
        """A waiter for ``raws``, and the indexes of those already awaited (by this
        submission or another): a repeat, which the engine's cache would refuse."""
        repeated: set[int] = set()
        fresh: list[bytes] = []
        seen: set[bytes] = set()
        for index, raw in enumerate(raws):
            if raw in seen or raw in self._waiting:
                repeated.add(index)
            else:
                seen.add(raw)
                fresh.append(raw)
        waiter = _Waiter(loop, len(fresh))
        for raw in fresh:
            self._waiting[raw] = waiter
        return waiter, repeated

    def checked(self, raw: bytes, answer: Any) -> None:
        """The app answered ``raw``'s first CheckTx (in the ABCI thread)."""
        waiter = self._waiting.pop(raw, None)
        if waiter is not None:
            waiter.settle(raw, (answer.code, answer.codespace, answer.log))

    def withdraw(self, raw: bytes) -> None:
        """No CheckTx will come for ``raw``: the engine refused it before."""
        waiter = self._waiting.pop(raw, None)
        if waiter is not None:
            waiter.settle(raw, None)


_REPEATED = "this transaction was already submitted"


def _loop_profile() -> Any:
    """With ``MEDLEDGER_PROFILE=DIR``, a cProfile of the event loop's thread (the API, the
    ABCI socket, submissions), started now; None otherwise."""
    folder = os.environ.get(PROFILE_ENV)
    if not folder:
        return None
    import cProfile

    Path(folder).mkdir(parents=True, exist_ok=True)
    profile = cProfile.Profile()
    profile.enable()
    return profile


def _unavailable(txs: list[Transaction], error: Exception) -> list[Submitted]:
    return [Submitted(tx.tx_id, "unavailable", f"the consensus engine did not answer: "
                                               f"{error}") for tx in txs]


def _refused(tx: Transaction, answer: dict[str, Any] | None) -> Submitted | None:
    """The engine's answer to one ``broadcast_tx_async``: its refusal, or None when the
    transaction was queued for CheckTx."""
    if answer is None:
        return Submitted(tx.tx_id, "unavailable", "the consensus engine gave no answer")
    if "error" in answer:
        detail = str(answer["error"].get("data") or answer["error"].get("message"))
        if "already exists in cache" in detail:
            return Submitted(tx.tx_id, "duplicate", _REPEATED)
        if "mempool is full" in detail:
            return Submitted(tx.tx_id, "mempool_full", "the mempool is full; retry later")
        return Submitted(tx.tx_id, "unavailable", f"the consensus engine refused it: {detail}")
    return None


def _checked(tx: Transaction, verdict: tuple[int, str, str] | None) -> Submitted:
    """The app's CheckTx verdict on ``tx`` as a :class:`Submitted`."""
    if verdict is None:
        return Submitted(tx.tx_id, "unavailable", "the consensus engine did not check it in "
                                                  f"{RPC_TIMEOUT:.0f} s")
    code, codespace, message = verdict
    if code == 0:
        return Submitted(tx.tx_id, "ok", "")
    return Submitted(tx.tx_id, codespace or "refused", message)


def open_node(home: Home, api: str | None = None, verify: bool | None = None) -> EngineNode:
    """The node in ``home``, beside the CometBFT home it holds; its store verified first
    unless told not to (``verify``; by default the home's ``verify_on_start``)."""
    engine = EngineHome(home.path)
    if not engine.exists():
        raise ConfigError(f"{home.path} has no CometBFT home ({engine.path}): make the "
                          f"node's home with `medledger init` or `medledger join`")
    config = home.config().with_api(api)
    genesis = home.genesis()
    store = SQLiteStore(home.store_path)
    if config.verify_on_start if verify is None else verify:
        verify_store(store, genesis, signatures=False)
    return EngineNode(store, genesis, home.validator_key(), config, engine)
