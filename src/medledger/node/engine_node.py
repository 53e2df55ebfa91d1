"""A node whose blocks CometBFT decides: the ABCI application, the engine process beside it,
and submission through the engine's mempool.

:class:`EngineNode` keeps :class:`~medledger.node.node.Node`'s face to the API (submit,
wait for a commit, status) and changes what is underneath:

- ``run`` serves the ABCI socket (:class:`~medledger.node.abci.AbciServer`) and starts the
  node's ``cometbft`` as a child process (which dies with this process), then watches it:
  when the engine exits, the node stops, and says why.
- a submitted transaction is decoded, verified and checked statelessly here (a batch in
  worker processes, as before), remembered by the application as such, and handed to the
  engine's mempool (``broadcast_tx_sync``, a batch in one JSON-RPC call); the engine calls
  ``CheckTx``, which finds it verified and runs the nonce and stateful checks.
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
from typing import Any

import httpx

from medledger.crypto import SigningKey
from medledger.ledger import Block, MalformedError, Transaction
from medledger.node.abci import AbciServer, LedgerApplication
from medledger.node.abci.snapshots import StateSync
from medledger.node.config import NodeConfig
from medledger.node.engine import EngineHome, start_engine
from medledger.node.genesis import Genesis
from medledger.node.headers import SignedHeaders
from medledger.node.node import Node, Submitted
from medledger.store import Store

__all__ = ["EngineNode"]

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
        self.commits_alone = False
        self.engine = engine
        self.start_engine_process = start_engine_process
        self.state_sync = StateSync(self.chain, engine.node_home / "data" / "snapshots",
                                    interval=config.snapshot_interval,
                                    keep=config.snapshot_keep)
        self.app = LedgerApplication(self.chain, max_block_txs=config.max_block_txs,
                                     on_commit=self._committed_in_thread,
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

    # running ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve ABCI, start the engine, follow it until the node stops or it exits."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        if self._stopping:
            return
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
            await self._rpc.aclose()
            await server.close()
            self.state_sync.close()

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

    async def light_headers(self, height: int, timeout: float) -> list[dict[str, Any]] | None:
        """The signed headers that prove block ``height`` and its results (``height`` and
        ``height + 1``), waiting up to ``timeout`` seconds for the next block."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await asyncio.to_thread(self.headers.pair, height)
            if found is not None or loop.time() >= deadline or self._stopping:
                return found
            await asyncio.sleep(0.1)

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
        return {**super().status(), "mempool_size": None, **self._engine_status}

    # commits ----------------------------------------------------------------------------
    def _committed_in_thread(self, block: Block) -> None:
        self.state_sync.committed(block.header.height)
        self.headers.fetch(block.header.height)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._notify_block, block)

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

    async def submit_batch_bytes(self, body: bytes, max_items: int, *, gossip: bool = True
                                 ) -> list[Submitted]:
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
        """Hand ``txs`` to the engine's mempool in one JSON-RPC batch; its CheckTx answers."""
        if self._rpc is None:
            return [Submitted(tx.tx_id, "unavailable", "the node is starting") for tx in txs]
        calls = [{"jsonrpc": "2.0", "id": index, "method": "broadcast_tx_sync",
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
                    return _unavailable(txs, e)
                await asyncio.sleep(0.1)
            except (httpx.HTTPError, ValueError) as e:
                return _unavailable(txs, e)
        if isinstance(answers, dict):
            answers = [answers]
        by_id = {a.get("id"): a for a in answers}
        return [_submitted(tx, by_id.get(index)) for index, tx in enumerate(txs)]


def _unavailable(txs: list[Transaction], error: Exception) -> list[Submitted]:
    return [Submitted(tx.tx_id, "unavailable", f"the consensus engine did not answer: "
                                               f"{error}") for tx in txs]


def _submitted(tx: Transaction, answer: dict[str, Any] | None) -> Submitted:
    """The engine's answer to one ``broadcast_tx_sync`` as a :class:`Submitted`."""
    if answer is None:
        return Submitted(tx.tx_id, "unavailable", "the consensus engine gave no answer")
    if "error" in answer:
        detail = str(answer["error"].get("data") or answer["error"].get("message"))
        if "already exists in cache" in detail:
            return Submitted(tx.tx_id, "duplicate", "this transaction was already submitted")
        if "mempool is full" in detail:
            return Submitted(tx.tx_id, "mempool_full", "the mempool is full; retry later")
        return Submitted(tx.tx_id, "unavailable", f"the consensus engine refused it: {detail}")
    result = answer["result"]
    if result.get("code", 0) == 0:
        return Submitted(tx.tx_id, "ok", "")
    return Submitted(tx.tx_id, result.get("codespace") or "refused", result.get("log", ""))
