"""SIGKILL a lone node on CometBFT while it commits a stream of transactions: its
``medledger up`` in some cycles (its ``cometbft`` then gets SIGKILL from the kernel), its
``cometbft`` in others (``medledger up`` then stops). Restarted, the node holds every
transaction it acknowledged, at the height and index it acknowledged it at, its app and
its CometBFT agree on every block, and ``medledger verify`` finds the store intact."""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.crypto import SigningKey
from medledger.node import Home, verify_store
from medledger.store import SQLiteStore
from tests.enginenet import Stream, acknowledged_everywhere, node_chain, wait_for
from tests.nodeproc import CHAIN, NodeProcess, make_home

pytestmark = pytest.mark.processes

KILLS = ("app", "engine", "app", "engine")  # which process each cycle SIGKILLs (bounded)


def next_nonce(url: str, key: SigningKey) -> int:
    answer = httpx.get(f"{url}/v1/state/nonce/{key.public_key.hex()}", timeout=5)
    if answer.status_code == 404:
        return 1
    value = answer.json()["value"]
    return 1 if value is None else int(value) + 1


def stream(node: NodeProcess, key: SigningKey, cycle: int) -> Stream:
    """Batches of 25 sample transactions, the next nonce on, as fast as they commit."""
    return Stream(node.url, key, CHAIN, 1_000_000 * (cycle + 1), batch=25, pause=0.05,
                  max_pending=100, sent=next_nonce(node.url, key) - 1).start()


def kill(node: NodeProcess, process: str) -> None:
    assert node.proc is not None
    engine = node.engine()
    assert engine is not None and engine.alive()
    if process == "app":
        node.kill()
    else:
        node.kill_engine()
    assert not node.running() and not engine.alive(), "a process of the node outlived the kill"


def test_sigkill_while_committing_loses_nothing_acknowledged(tmp_path: Path) -> None:
    home = make_home(tmp_path / "node", block_interval_ms=20)
    key = home.member_keys("admin").signing
    node = NodeProcess(home)
    streams: list[Stream] = []
    rng = random.Random(7)
    try:
        for cycle, process in enumerate(KILLS):
            node.start()
            streams.append(stream(node, key, cycle))
            wait_for(lambda s=streams[-1]: s.acknowledged, 30, "a first acknowledgement")
            time.sleep(0.5 + rng.random())
            kill(node, process)
            streams[-1].finish()
        node.start()
        height = int(httpx.get(f"{node.url}/v1/status", timeout=5).json()["height"])
        # the tip is served once the engine has the header after it: check below it
        chain = node_chain("node", node.url, node.rpc, height - 1)
        acknowledged = acknowledged_everywhere(chain, streams)
        node.stop()
    finally:
        node.stop()
    assert acknowledged >= 100, "the stream should have committed in every cycle"
    assert all(s.acknowledged for s in streams)
    assert height > len(KILLS)
    store = SQLiteStore(home.store_path)
    report = verify_store(store, home.genesis())
    store.close()
    assert report.transactions >= acknowledged


@pytest.mark.parametrize("process", ["app", "engine"], ids=["medledger up", "cometbft"])
def test_verify_command_is_clean_after_kills(tmp_path: Path, process: str) -> None:
    home = make_home(tmp_path / "node", block_interval_ms=10)
    key = home.member_keys("admin").signing
    node = NodeProcess(home)
    try:
        node.start()
        load = stream(node, key, 0)
        wait_for(lambda: load.acknowledged, 30, "a first acknowledgement")
        time.sleep(1.0)
        kill(node, process)
        load.finish()
    finally:
        node.stop()
    result = CliRunner().invoke(app, ["verify", "--home", str(home.path)],
                                env={"MEDLEDGER_PASSPHRASE": Home(home.path).passphrase()})
    assert result.exit_code == 0, result.output
    assert "intact" in result.output
    store = SQLiteStore(home.store_path)
    try:
        assert store.latest_height() >= 1
    finally:
        store.close()
