"""A consortium on CometBFT as real processes on 127.0.0.1, for fault tests.

Each node is ``python -m medledger up --home HOME`` (:class:`NodeProc`), which starts its
``cometbft`` as a child. The helpers here start and stop them, signal either process,
route a node's peer links through :class:`tests.netproxy.Proxy`, drive a load
(:class:`Stream`) and check what every node holds (:func:`same_chain`,
:func:`acknowledged_everywhere`). Every wait is bounded; only processes started here (the
``medledger up`` processes and the ``cometbft`` children seen under them) are signalled,
each known by its pid and its start time, so a reused pid is never touched.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from medledger.apps import default_registry
from medledger.crypto import SigningKey
from medledger.ledger import Transaction
from medledger.node import Home
from medledger.node.consortium import Consortium, ConsortiumNode
from medledger.node.engine import EngineHome
from tests.netproxy import Proxy
from tests.nodeproc import FAST_KDF, EngineChildren, Pid, children, free_port

__all__ = ["EngineNet", "Height", "NodeProc", "Pid", "Stream", "acknowledged_everywhere",
           "children", "node_chain", "same_chain", "wait_for"]

CHAIN = "engine-faults"
HTTP_TIMEOUT = 5.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
MESH_TIMEOUT = 30.0  # see EngineNet._wait_mesh
PROOF_WAIT = 15.0  # a node answers a transaction of its tip block within 10 s (503 then)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             every: float = 0.1) -> Any:
    """``predicate()``'s first truthy value, polled until ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


# processes --------------------------------------------------------------------------------
class NodeProc(EngineChildren):
    """One node: ``medledger up`` on its home, and the ``cometbft`` it runs."""

    def __init__(self, node: ConsortiumNode) -> None:
        self.name = node.name
        self.home = Home(node.home)
        self.engine_home = EngineHome(node.home)
        self.api = f"http://{node.api}"
        self.rpc = f"http://{self.engine_home.rpc()}"
        self.log = node.home / "node.log"
        self.engine_log = self.engine_home.path / "cometbft.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.app: Pid | None = None
        self.engines: list[Pid] = []  # every cometbft seen under this node, for cleanup

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start ``medledger up`` (without waiting: see :meth:`wait_up`)."""
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} runs"
        full_env = {**os.environ, "MEDLEDGER_PASSPHRASE": self.home.passphrase(),
                    **(env or {})}
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "medledger", "up", "--home", str(self.home.path)],
                env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.app = Pid.of(self.popen.pid)

    def wait_up(self, timeout: float = START_TIMEOUT) -> None:
        """Until the API answers and the node's cometbft answers its RPC."""
        def up() -> bool:
            if self.exit_code() is not None:
                raise AssertionError(f"{self.name} exited with {self.exit_code()}: "
                                     f"{self.log.read_text()[-3000:]}\n{self._engine_tail()}")
            return self.engine() is not None and _answers(self.api + "/v1/status") \
                and _answers(self.rpc + "/status")
        wait_for(up, timeout, f"{self.name} to serve its API and its engine's RPC", 0.2)

    def _popen(self) -> subprocess.Popen[bytes] | None:
        return self.popen

    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    # faults -----------------------------------------------------------------------------
    def kill_app(self) -> None:
        """SIGKILL ``medledger up`` (its cometbft gets SIGKILL from the kernel)."""
        assert self.popen is not None and self.app is not None
        self.engine()  # remember the child before its parent goes
        self.app.send(signal.SIGKILL)
        self.popen.wait(STOP_TIMEOUT)

    def kill_engine(self) -> None:
        """SIGKILL the node's cometbft; ``medledger up`` sees it gone and stops."""
        engine = wait_for(self.engine, 10, f"{self.name}'s cometbft")
        engine.send(signal.SIGKILL)
        assert self.popen is not None
        self.popen.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL cometbft and ``medledger up`` at once: the whole node is gone."""
        engine = wait_for(self.engine, 10, f"{self.name}'s cometbft")
        assert self.popen is not None and self.app is not None
        engine.send(signal.SIGKILL)
        self.app.send(signal.SIGKILL)
        self.popen.wait(STOP_TIMEOUT)

    def pause(self, *, engine_only: bool = False) -> None:
        """SIGSTOP cometbft, then (unless ``engine_only``) ``medledger up``: the node
        freezes mid-round."""
        engine = wait_for(self.engine, 10, f"{self.name}'s cometbft")
        assert self.app is not None
        engine.send(signal.SIGSTOP)
        if not engine_only:
            self.app.send(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT ``medledger up``, then its cometbft."""
        for process in [p for p in (self.app,) if p is not None] + self.engines:
            process.send(signal.SIGCONT)

    def stop(self) -> None:
        """End the node and any cometbft left from it (continued first if stopped)."""
        self.engine()  # remember the current child, whatever happens to its parent
        self.resume()
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(STOP_TIMEOUT)
        for engine in self.live_engines():
            engine.send(signal.SIGCONT)
            engine.send(signal.SIGTERM)
        try:
            wait_for(lambda: not self.live_engines(), STOP_TIMEOUT, "cometbft to end")
        except AssertionError:
            for engine in self.live_engines():
                engine.send(signal.SIGKILL)
            wait_for(lambda: not self.live_engines(), STOP_TIMEOUT, "cometbft to die")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _get(url: str, timeout: float = HTTP_TIMEOUT) -> Any:
    answer = httpx.get(url, timeout=timeout)
    answer.raise_for_status()
    return answer.json()


# the consortium ---------------------------------------------------------------------------
class EngineNet:
    """``n`` validators on CometBFT under ``root``; ``nodes[i]`` is a :class:`NodeProc`."""

    def __init__(self, root: Path, n: int = 4, *, block_interval_ms: int = 200) -> None:
        self.consortium = Consortium.init(
            root, CHAIN, n, kdf_params=FAST_KDF, engine=True,
            ports=[(free_port(), free_port()) for _ in range(n)],
            block_interval_ms=block_interval_ms)
        self.chain_id = CHAIN
        self.nodes = [NodeProc(node) for node in self.consortium.nodes]
        self.proxies: list[Proxy] = []

    def keys(self) -> list[SigningKey]:
        """The admin key of every founding organisation, wherever its home keeps it."""
        found = []
        for node in self.nodes:
            for name in node.home.known_keys():
                if name != "validator":
                    found.append(node.home.member_keys(name).signing)
        return found

    def start(self, env: dict[int, dict[str, str]] | None = None) -> None:
        """Start every node (``env[i]``: extra environment of node ``i``) and wait until
        each serves and has every other as a peer; on failure, stop what started."""
        try:
            for index, node in enumerate(self.nodes):
                node.start((env or {}).get(index))
            for node in self.nodes:
                node.wait_up()
            self._wait_mesh(env or {})
        except BaseException:
            self.stop()
            raise

    def _wait_mesh(self, env: dict[int, dict[str, str]]) -> None:
        """Until every node has every other as a peer. Two CometBFTs that dial each other
        at the same moment can end with one side holding a connection the other dropped,
        until its ping times out (up to about 105 s); a node short of peers after
        :data:`MESH_TIMEOUT` is restarted once, which closes every connection it had."""
        everyone = range(len(self.nodes))
        try:
            self.wait_peers(everyone, len(self.nodes) - 1, MESH_TIMEOUT)
            return
        except AssertionError:
            short = [i for i in everyone if self.peers(i) < len(self.nodes) - 1]
        for index in short:
            self.nodes[index].stop()
            self.nodes[index].start(env.get(index))
        for index in short:
            self.nodes[index].wait_up()
        self.wait_peers(everyone, len(self.nodes) - 1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        for proxy in self.proxies:
            proxy.stop()

    # links --------------------------------------------------------------------------------
    def route_through_proxies(self, target: int) -> list[Proxy]:
        """Before :meth:`start`: every peer link of node ``target`` passes through a proxy
        (one in front of it for the others to dial, one per peer for it to dial); cutting
        them all isolates it. The addresses in ``persistent_peers`` are the proxies', so
        no peer is re-dialled around them (CometBFT re-dials an inbound persistent peer at
        its self-reported address only when that address is in its list)."""
        nodes = self.consortium.nodes
        target_id = self.nodes[target].engine_home.node_id()
        inbound = Proxy("127.0.0.1", _port(nodes[target].p2p)).start()
        self.proxies.append(inbound)
        for index, node in enumerate(self.nodes):
            peers = []
            for peer in _read_peers(node.engine_home):
                peer_id, address = peer.split("@", 1)
                if index == target:
                    outbound = Proxy("127.0.0.1", _port(address)).start()
                    self.proxies.append(outbound)
                    address = outbound.address
                elif peer_id == target_id:
                    address = inbound.address
                peers.append(f"{peer_id}@{address}")
            _write_peers(node.engine_home, peers)
        return list(self.proxies)

    # observing ----------------------------------------------------------------------------
    def status(self, index: int) -> dict[str, Any] | None:
        try:
            return _get(self.nodes[index].api + "/v1/status", 3)  # type: ignore[no-any-return]
        except (httpx.HTTPError, ValueError):
            return None

    def height(self, index: int) -> int:
        status = self.status(index)
        return -1 if status is None else int(status["height"])

    def served(self, index: int, height: int) -> bool:
        """Whether node ``index`` serves block ``height`` (``GET /v1/blocks/{h}``)."""
        return _answers(f"{self.nodes[index].api}/v1/blocks/{height}")

    def heights(self, nodes: Iterable[int]) -> list[int]:
        return [self.height(i) for i in nodes]

    def wait_height(self, nodes: Iterable[int], height: int, timeout: float = 60.0) -> None:
        nodes = list(nodes)
        wait_for(lambda: min(self.heights(nodes)) >= height, timeout,
                 f"nodes {nodes} to reach height {height} (at {self.heights(nodes)})", 0.2)

    def engine_rpc(self, index: int, path: str, **params: Any) -> Any:
        answer = httpx.get(self.nodes[index].rpc + path, params=params, timeout=HTTP_TIMEOUT)
        answer.raise_for_status()
        return answer.json()["result"]

    def peers(self, index: int) -> int:
        """How many peers node ``index``'s CometBFT has (-1: no answer)."""
        try:
            return int(self.engine_rpc(index, "/net_info")["n_peers"])
        except (httpx.HTTPError, ValueError, KeyError):
            return -1

    def wait_peers(self, nodes: Iterable[int], peers: int, timeout: float = 60.0) -> None:
        nodes = list(nodes)
        try:
            wait_for(lambda: all(self.peers(i) >= peers for i in nodes), timeout,
                     f"nodes {nodes} to have {peers} peers each", 0.25)
        except AssertionError as e:
            raise AssertionError(f"{e}: they have {[self.peers(i) for i in nodes]}") from None

    def proposer(self, asked: int) -> int:
        """The node whose validator proposes in the round node ``asked`` is in now."""
        address = self.engine_rpc(asked, "/consensus_state")["round_state"]["proposer"]["address"]
        for index, node in enumerate(self.nodes):
            key = json.loads((node.engine_home.config_dir / "priv_validator_key.json").read_text())
            if key["address"].upper() == address.upper():
                return index
        raise AssertionError(f"proposer {address} is none of this consortium's validators")


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


_PEERS = re.compile(r'^persistent_peers = "([^"]*)"$', re.MULTILINE)


def _read_peers(engine: EngineHome) -> list[str]:
    match = _PEERS.search((engine.config_dir / "config.toml").read_text())
    assert match is not None, f"no persistent_peers in {engine.config_dir}"
    return [p for p in match.group(1).split(",") if p]


def _write_peers(engine: EngineHome, peers: list[str]) -> None:
    path = engine.config_dir / "config.toml"
    text, count = _PEERS.subn(f'persistent_peers = "{",".join(peers)}"', path.read_text())
    assert count == 1
    path.write_text(text)


# load -------------------------------------------------------------------------------------
@dataclass
class Stream:
    """Batches of sample transactions from one sender to one node, in a thread.

    ``acknowledged`` maps the id (hex) of every transaction the node answered committed for
    (``GET /v1/txs/{id}``: 200) to ``(height, index, code)``. A batch waits while
    ``max_pending`` transactions are still uncommitted (so a stalled chain is not flooded);
    a node that does not answer is asked again after a pause. Bounded by ``max_batches``
    and by :meth:`finish`.
    """

    url: str
    key: SigningKey
    chain_id: str
    first_index: int
    batch: int = 8
    pause: float = 0.25
    max_pending: int = 40
    max_batches: int = 2000
    acknowledged: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    sent: int = 0
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)
        self._thread.start()
        return self

    def finish(self, settle: float = 0.0) -> None:
        """Stop sending; keep collecting acknowledgements for ``settle`` seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3 * PROOF_WAIT)
            if self._thread.is_alive():
                return  # a daemon thread, bounded by its timeouts; nothing more to collect
        deadline = time.monotonic() + settle
        with httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT) as http:
            while self.pending and time.monotonic() < deadline:
                self._collect(http)
                time.sleep(0.2)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT) as http:
            batches = 0
            while not self._stop.is_set() and batches < self.max_batches:
                if len(self.pending) < self.max_pending:
                    self._send(http)
                    batches += 1
                self._collect(http)
                self._stop.wait(self.pause)

    def _send(self, http: httpx.Client) -> None:
        registry = default_registry()
        txs = []
        for _ in range(self.batch):
            self.sent += 1
            nonce = self.sent
            type_, body = registry.sample_tx(self.first_index + nonce)
            txs.append(Transaction.create(self.key, self.chain_id, type_, nonce, body))
        try:
            answer = http.post("/v1/txs/batch", content=b"[" + b",".join(t.raw for t in txs)
                               + b"]")
            results = answer.json()["results"]
        except (httpx.HTTPError, ValueError, KeyError):
            self.failures += 1
            return
        for tx, result in zip(txs, results, strict=True):
            if result.get("code") == "ok":
                self.pending.append(tx.tx_id.hex())

    def _collect(self, http: httpx.Client) -> None:
        """Ask for each pending transaction, oldest first. A transaction in the tip block is
        answered once the engine has the next block (its header proves the state), after
        a wait of up to 10 s: on such a wait (503) or a timeout, ask the rest next time."""
        still = []
        for position, tx_id in enumerate(self.pending):
            try:
                answer = http.get(f"/v1/txs/{tx_id}", timeout=PROOF_WAIT)
            except httpx.HTTPError:
                still.extend(self.pending[position:])
                break
            if answer.status_code == 200:
                found = answer.json()
                self.acknowledged[tx_id] = (found["height"], found["index"], found["code"])
                continue
            if answer.status_code != 404:
                still.extend(self.pending[position:])
                break
            still.append(tx_id)
        self.pending = still


# checks -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Height:
    """What one node holds at one height, app-level and in CometBFT's block store."""

    block_hash: str  # the app-level header's hash
    state_root: str
    engine_hash: str  # the CometBFT block hash the app recorded for this height
    txs: tuple[tuple[str, str], ...]  # (tx id, result code) in block order


def _app_heights(url: str, top: int) -> dict[int, Height]:
    out = {}
    with httpx.Client(base_url=url, timeout=PROOF_WAIT) as http:
        for h in range(1, top + 1):
            block = http.get(f"/v1/blocks/{h}").raise_for_status().json()
            ids = [Transaction.from_dict(t).tx_id.hex() for t in block["txs"]]
            out[h] = Height(block["block_hash"], block["header"]["state_root"],
                            _engine_hash_of(block),
                            tuple(zip(ids, [r["code"] for r in block["results"]], strict=True)))
    return out


def _engine_hash_of(block: dict[str, Any]) -> str:
    """The CometBFT block hash a node's block answer names: the one its app recorded (its
    certificate), else that of the signed header that proves the block (``light``)."""
    if "certificate" in block:
        return str(block["certificate"]["cometbft_block_hash"])
    return str(block["light"][0]["commit"]["block_id"]["hash"]).lower()


def _engine_heights(url: str, top: int) -> dict[int, tuple[str, str]]:
    """CometBFT's ``(block hash, header app_hash)`` at heights 1..top (20 a call)."""
    out: dict[int, tuple[str, str]] = {}
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as http:
        low = 1
        while low <= top:
            high = min(top, low + 19)
            metas = http.get("/blockchain", params={"minHeight": low, "maxHeight": high}
                             ).raise_for_status().json()["result"]["block_metas"]
            for meta in metas:
                out[int(meta["header"]["height"])] = (meta["block_id"]["hash"].lower(),
                                                      meta["header"]["app_hash"].lower())
            low = high + 1
    return out


def node_chain(name: str, api: str, rpc: str, top: int) -> dict[int, Height]:
    """What one node holds at heights 1..``top``, asserting that its app recorded the block
    its CometBFT stored at each height, and that each CometBFT header carries the state
    root of the height before it as its app hash."""
    app = _app_heights(api, top)
    engine = _engine_heights(rpc, top)
    for h in range(1, top + 1):
        assert app[h].engine_hash == engine[h][0], \
            f"{name}'s app recorded another block than its CometBFT at {h}"
        if h > 1:
            assert engine[h][1] == app[h - 1].state_root, \
                f"{name}: the app hash at {h} is not the state root at {h - 1}"
    return app


def same_chain(net: EngineNet, nodes: Iterable[int], upto: int | None = None
               ) -> dict[int, Height]:
    """Assert that ``nodes`` hold the same chain at every height they all have (or up to
    ``upto``), app-level (block hash, state root) and in CometBFT (block hash), each node
    as :func:`node_chain` checks it. Returns that common chain, by height.

    A node serves a block once the engine's headers prove the state after it, which for
    the tip takes the next block (or an empty one after it): check below a stalled tip."""
    nodes = list(nodes)
    top = min(net.height(i) for i in nodes) if upto is None else upto
    assert top >= 1, f"nodes {nodes} hold no common block"
    apps = {i: node_chain(net.nodes[i].name, net.nodes[i].api, net.nodes[i].rpc, top)
            for i in nodes}
    for h in range(1, top + 1):
        held = {i: apps[i][h] for i in nodes}
        assert len(set(held.values())) == 1, f"a fork at height {h}: {held}"
    return apps[nodes[0]]


def acknowledged_everywhere(chain: dict[int, Height], streams: Iterable[Stream]) -> int:
    """Assert that every transaction a node answered committed for is in ``chain`` (what
    :func:`same_chain` found on every node) at the height and index, and with the code, the
    node answered. Returns how many were acknowledged."""
    where = {tx_id: (h, index, code) for h, held in chain.items()
             for index, (tx_id, code) in enumerate(held.txs)}
    count = 0
    for stream in streams:
        for tx_id, answered in stream.acknowledged.items():
            assert where.get(tx_id) == answered, \
                f"acknowledged {tx_id} at {answered}, the chain has {where.get(tx_id)}"
            count += 1
    return count
