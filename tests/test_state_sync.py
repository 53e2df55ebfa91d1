"""State sync as real processes on 127.0.0.1: a 4-validator consortium on CometBFT writes
snapshots; a fifth node, made by `medledger join`, starts from one of them and follows the
chain."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest

from medledger.apps import default_registry
from medledger.apps.identity import NODE_ADD
from medledger.crypto import SigningKey
from medledger.ledger import Transaction
from medledger.node import Home
from medledger.node.consortium import Consortium
from medledger.node.engine import EngineHome
from tests.nodeproc import FAST_KDF, NodeProcess, free_port

pytestmark = pytest.mark.processes

CHAIN = "sync-chain"
INTERVAL = 4  # a snapshot every 4 heights
KEEP = 25  # snapshots each node keeps: 100 heights
HTTP = 10.0


def _wait(predicate: Callable[[], Any], timeout: float, what: str,
          tick: Callable[[], None] | None = None) -> Any:
    """``predicate()``'s first truthy value, polled every 0.5 s (calling ``tick`` first)
    until ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _get(url: str) -> Any:
    try:
        answer = httpx.get(url, timeout=HTTP)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def _height(node: NodeProcess) -> int:
    status = _get(f"{node.url}/v1/status")
    return status["height"] if status else 0


class Load:
    """Anchor transactions from the local admin, each with the next nonce."""

    def __init__(self, key: SigningKey, url: str) -> None:
        self.key, self.url = key, url
        self.nonces = count(1)

    def tx(self) -> Transaction:
        nonce = next(self.nonces)
        type_, body = default_registry().sample_tx(nonce)
        return Transaction.create(self.key, CHAIN, type_, nonce, body)

    def commit(self) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/v1/txs", params={"wait": "true"},
                            content=self.tx().raw, timeout=30).json()
        assert answer["code"] == "ok", answer
        return answer

    def add_node(self, node_id: str) -> None:
        """List a node of the local organisation (``identity.node.add``), so that the
        members' peer filter admits it."""
        tx = Transaction.create(self.key, CHAIN, NODE_ADD, next(self.nonces),
                                {"org": "local", "node_id": node_id})
        answer = httpx.post(f"{self.url}/v1/txs", params={"wait": "true"}, content=tx.raw,
                            timeout=30).json()
        assert answer["code"] == "ok", answer

    def send(self) -> None:
        """Submit one without waiting (keeps blocks coming; a refusal does no harm)."""
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{self.url}/v1/txs", content=self.tx().raw, timeout=HTTP)


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[list[NodeProcess]]:
    """Four validators on CometBFT, each writing a snapshot every INTERVAL heights; every
    process is stopped by pid afterwards."""
    made = Consortium.init(tmp_path / "c", CHAIN, 4, kdf_params=FAST_KDF,
                           ports=[(free_port(), free_port()) for _ in range(4)], engine=True,
                           block_interval_ms=200)
    nodes = []
    for member in made.nodes:
        home = Home(member.home)
        # kept long enough to outlive the joiner's discovery (15 s) and fetch under load: a
        # snapshot pruned meanwhile answers its chunks empty, and CometBFT then retries it
        # for minutes before it tries another
        replace(home.config(), snapshot_interval=INTERVAL, snapshot_keep=KEEP).save(home.path)
        nodes.append(NodeProcess(home))
    try:
        for node in nodes:
            node.start(timeout=60, proven=False)  # the first commits once three run
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _join(home: Path, members: list[NodeProcess]) -> NodeProcess:
    """``medledger join`` a fifth node to ``members``."""
    engines = [EngineHome(m.home.path) for m in members]
    command = [sys.executable, "-m", "medledger", "join", "--home", str(home),
               "--genesis", str(members[0].home.genesis_path),
               "--api", f"127.0.0.1:{free_port()}", "--p2p", f"127.0.0.1:{free_port()}",
               "--rpc", f"127.0.0.1:{free_port()}", "--discovery-time", "5"]
    for engine, member in zip(engines, members, strict=True):
        command += ["--peer", f"{engine.node_id()}@{member.home.config().p2p}"]
    command += ["--rpc-server", f"http://{engines[0].rpc()}",
                "--rpc-server", f"http://{engines[1].rpc()}"]
    joined = subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert joined.returncode == 0, joined.stderr.decode()[-2000:]
    assert b"trusted: height" in joined.stdout
    return NodeProcess(Home(home))


def _base_of(store: Path) -> tuple[int, int]:
    """The joiner's base height and its lowest block, read from its store."""
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
    try:
        base = db.execute("SELECT value FROM meta WHERE name = 'base_height'").fetchone()
        lowest = db.execute("SELECT MIN(height) FROM blocks").fetchone()[0]
    finally:
        db.close()
    return int(base[0]), lowest


def test_a_new_node_joins_from_a_snapshot_and_follows_the_chain(
        consortium: list[NodeProcess], tmp_path: Path) -> None:
    members = consortium
    load = Load(members[0].home.member_keys("admin").signing, members[1].url)
    for _ in range(3 * INTERVAL):  # each commit takes a height or two
        if load.commit()["height"] >= 3 * INTERVAL:  # snapshots at 4, 8 and 12
            break
    else:
        raise AssertionError(f"the chain did not reach height {3 * INTERVAL}")
    joiner = _join(tmp_path / "joiner", members)
    load.add_node(EngineHome(joiner.home.path).node_id())  # the members' filter admits it
    try:
        joiner.start(timeout=60, proven=False)  # it has no state before its snapshot
        # blocks keep coming (CometBFT makes none without transactions), so that the
        # light client finds the headers above the snapshot it verifies
        _wait(lambda: _height(joiner), 150, "the joiner to restore a snapshot", tick=load.send)
        base, lowest = _base_of(joiner.home.store_path)
        assert base > 1 and lowest == base  # it never executed block 1
        assert f"restored the state at height {base} from a snapshot" in joiner.log.read_text()
        pruned = httpx.get(f"{joiner.url}/v1/blocks/1", timeout=HTTP)
        assert pruned.status_code == 404 and pruned.json()["code"] == "pruned"
        assert f"snapshot at height {base}" in pruned.json()["message"]

        _wait(lambda: _height(joiner) >= base + 2, 30, "the joiner to execute blocks",
              tick=load.send)
        height = _height(joiner) - 1  # signed by the engine's next header everywhere
        blocks = [_wait(lambda n=node: _get(f"{n.url}/v1/blocks/{height}"), 20,
                        f"block {height} on {node.home.path.name}")
                  for node in (joiner, *members)]
        assert all(b["header"] == blocks[0]["header"] for b in blocks)  # state root and all

        for restarted in (False, True):  # a restart verifies the store from its base
            if restarted:
                joiner.stop()
                joiner.start(timeout=60, proven=False)
            committed = load.commit()
            seen = _wait(lambda c=committed: _get(f"{joiner.url}/v1/txs/{c['tx_id']}"), 30,
                         "the joiner to see a new transaction")
            assert seen["height"] == committed["height"] and seen["code"] == "ok"
        assert _base_of(joiner.home.store_path) == (base, base)
    finally:
        joiner.stop()
