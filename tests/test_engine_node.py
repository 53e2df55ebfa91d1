"""A node on CometBFT, as real processes on 127.0.0.1: `medledger up` serving ABCI and its
API, with the `cometbft` it starts beside it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from medledger.apps import default_registry
from medledger.crypto import SigningKey
from medledger.ledger import Transaction
from medledger.node import Home, NodeConfig
from tests.nodeproc import FAST_KDF, NodeProcess, free_port

pytestmark = pytest.mark.processes

CHAIN = "engine-chain"


def _engine_home(path: Path) -> Home:
    api = f"127.0.0.1:{free_port()}"
    return Home.init(path, CHAIN, kdf_params=FAST_KDF, api=api,
                     p2p=f"127.0.0.1:{free_port()}", engine_rpc=f"127.0.0.1:{free_port()}")


def _anchor(key: SigningKey, nonce: int) -> Transaction:
    type_, body = default_registry().sample_tx(nonce)
    return Transaction.create(key, CHAIN, type_, nonce, body)


def _engines(pid: int) -> list[int]:
    """The pids of the ``cometbft`` processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().split(" (", 1)[1].rsplit(")", 1)
        except (OSError, ValueError):
            continue
        if name == "cometbft" and int(rest.split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_node_commits_on_cometbft_and_survives_a_sigkill(tmp_path: Path) -> None:
    home = _engine_home(tmp_path / "node")
    key = home.member_keys("admin").signing
    node = NodeProcess(home)
    node.start(timeout=60)
    try:
        with httpx.Client(base_url=node.url, timeout=30) as client:
            answer = client.post("/v1/txs", params={"wait": "true"},
                                 content=_anchor(key, 1).raw).json()
            assert answer["code"] == "ok" and answer["height"] >= 1
            batch = b"[" + b",".join(_anchor(key, n).raw for n in (2, 3, 4)) + b"]"
            accepted = client.post("/v1/txs/batch", content=batch).json()
            assert [r["code"] for r in accepted["results"]] == ["ok"] * 3
            replay = client.post("/v1/txs", content=_anchor(key, 4).raw)
            assert replay.status_code >= 400
            _wait(lambda: client.get("/v1/status").json()["total_txs"] == 4, 30, "4 txs")
            before = client.get("/v1/status").json()
            assert before["engine"] == "cometbft"
        assert node.proc is not None
        engines = _engines(node.proc.pid)
        assert len(engines) == 1 and _alive(engines[0])
        node.kill()  # SIGKILL the supervisor: its engine must not outlive it
        _wait(lambda: not _alive(engines[0]), 20, "the orphaned cometbft to exit")
        node.start(timeout=60)
        with httpx.Client(base_url=node.url, timeout=30) as client:
            after = client.get("/v1/status").json()
            assert after["height"] >= before["height"]
            assert after["total_txs"] == 4
            answer = client.post("/v1/txs", params={"wait": "true"},
                                 content=_anchor(key, 5).raw).json()
            assert answer["code"] == "ok" and answer["height"] > before["height"]
    finally:
        node.stop()


def test_an_app_killed_between_finalize_and_commit_restarts_consistent(tmp_path: Path) -> None:
    """The app exits after answering FinalizeBlock for a height and before writing it:
    CometBFT has the block; on restart the handshake replays it, and the store ends where
    CometBFT's block store does, with the transaction committed once."""
    home = _engine_home(tmp_path / "node")
    key = home.member_keys("admin").signing
    node = NodeProcess(home)
    node.start(timeout=60)
    with httpx.Client(base_url=node.url, timeout=30) as client:
        height = client.post("/v1/txs", params={"wait": "true"},
                             content=_anchor(key, 1).raw).json()["height"]
    node.stop()
    doomed = height + 1
    os.environ["MEDLEDGER_FAILPOINT"] = f"before-commit:{doomed}"
    try:
        node.start(timeout=60)
        with httpx.Client(base_url=node.url, timeout=30) as client:
            assert client.post("/v1/txs", content=_anchor(key, 2).raw).status_code == 202
        assert node.proc is not None
        node.proc.wait(30)
        assert node.proc.returncode == 86
    finally:
        del os.environ["MEDLEDGER_FAILPOINT"]
        node.stop()
    node.start(timeout=60)
    try:
        with httpx.Client(base_url=node.url, timeout=30) as client:
            _wait(lambda: client.get("/v1/status").json()["total_txs"] == 2, 30, "the replay")
            status = client.get("/v1/status").json()
            assert status["height"] >= doomed
            tx = client.get(f"/v1/txs/{_anchor(key, 2).tx_id.hex()}").json()
            assert tx["height"] == doomed and tx["code"] == "ok"
    finally:
        node.stop()
