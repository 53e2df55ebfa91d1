"""A node on CometBFT, as real processes on 127.0.0.1: `medledger up` serving ABCI and its
API, with the `cometbft` it starts beside it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from medledger.apps import default_registry
from medledger.client import (
    VerificationFailed,
    verify_header,
    verify_state_answer,
    verify_tx_answer,
)
from medledger.crypto import SigningKey
from medledger.ledger import Transaction, Validator, ValidatorSet
from medledger.node import Home
from tests.nodeproc import FAST_KDF, NodeProcess, free_port, wait_proven

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
    wait_proven(node.url, height)  # CometBFT made the block after it, which signs its state
    tip = int(httpx.get(f"{node.rpc}/status", timeout=5).json()["result"]["sync_info"][
        "latest_block_height"])
    node.stop()
    doomed = tip + 1  # the next block: the one of the next transaction
    os.environ["MEDLEDGER_FAILPOINT"] = f"before-commit:{doomed}"
    try:
        node.start(timeout=60, proven=False)
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


def test_answers_are_proven_by_cometbfts_signed_headers(tmp_path: Path) -> None:
    """A transaction, its result and a state entry check out offline against CometBFT's
    signed headers and the genesis validators; any change to the answer is refused."""
    home = _engine_home(tmp_path / "node")
    genesis = home.genesis()
    key = home.member_keys("admin").signing
    node = NodeProcess(home)
    node.start(timeout=60)
    try:
        with httpx.Client(base_url=node.url, timeout=30) as client:
            for nonce in (1, 2):
                committed = client.post("/v1/txs", params={"wait": "true"},
                                        content=_anchor(key, nonce).raw).json()
            tx_answer = client.get(f"/v1/txs/{committed['tx_id']}").json()
            state_answer = client.get("/v1/state/identity/org/local").json()
            block_answer = client.get(f"/v1/blocks/{committed['height']}").json()
    finally:
        node.stop()
    trusted, chain_id = genesis.validators, genesis.chain_id
    checked = verify_tx_answer(tx_answer, trusted, chain_id)
    assert (checked.header.height, checked.index, checked.result.code) == (
        committed["height"], committed["index"], "ok")
    assert [int(h["header"]["height"]) for h in tx_answer["light"]] == [
        committed["height"], committed["height"] + 1]
    state = verify_state_answer(state_answer, trusted, chain_id)
    assert state.value["id"] == "local"
    assert verify_header(block_answer, trusted).height == committed["height"]

    def refused(answer: dict[str, Any], change: Callable[[dict[str, Any]], None],
                verify: Callable[..., Any]) -> str:
        copy = json.loads(json.dumps(answer))
        change(copy)
        with pytest.raises(VerificationFailed) as caught:
            verify(copy, trusted, chain_id)
        return caught.value.reason

    def flip(text: str) -> str:
        return ("0" if text[0] != "0" else "1") + text[1:]

    light = "light"
    assert "app hash" in refused(state_answer, lambda a: a["header"].update(
        state_root=flip(a["header"]["state_root"])), verify_state_answer)
    assert "does not check out" in refused(state_answer, lambda a: a[light][-1]["header"].update(
        app_hash=flip(a[light][-1]["header"]["app_hash"])), verify_state_answer)
    assert "state root" in refused(state_answer, lambda a: a["value"].update(name="Forged"),
                                   verify_state_answer)
    assert "results hash" in refused(tx_answer, lambda a: a.update(message="forged"),
                                     verify_tx_answer)
    assert "data hash" in refused(tx_answer, lambda a: a["proof"].update(
        leaf_index=a["proof"]["leaf_index"] + 1, tree_size=a["proof"]["tree_size"] + 1),
        verify_tx_answer)
    assert "does not check out" in refused(tx_answer, lambda a: a[light][0]["header"].update(
        data_hash=flip(a[light][0]["header"]["data_hash"])), verify_tx_answer)
    assert "headers of its block" in refused(tx_answer, lambda a: a.update(light=a[light][:1]),
                                             verify_tx_answer)
    stranger = ValidatorSet.of([Validator(SigningKey.generate().public_key, 10, "x")])
    with pytest.raises(VerificationFailed, match="does not check out"):
        verify_state_answer(state_answer, stranger, chain_id)


def test_only_member_nodes_may_connect(tmp_path: Path) -> None:
    """Two member nodes (listed in genesis) connect; a third node with the same genesis but
    a node key no organisation lists is refused by the members' peer filter."""
    import shutil

    from medledger.node.config import NodeConfig
    from medledger.node.consortium import Consortium
    from medledger.node.engine import EngineHome, EnginePorts, node_id_of

    consortium = Consortium.init(tmp_path / "net", CHAIN, 2, kdf_params=FAST_KDF,
                                 ports=[(free_port(), free_port()) for _ in range(2)],
                                 engine=True, block_interval_ms=200)
    members = [Home(n.home) for n in consortium.nodes]
    stranger = Home(tmp_path / "stranger")
    shutil.copytree(members[1].path, stranger.path,
                    ignore=shutil.ignore_patterns("cometbft", "data", "*.sock"))
    (stranger.path / "data").mkdir()
    api = f"127.0.0.1:{free_port()}"
    NodeConfig(api=api, p2p=f"127.0.0.1:{free_port()}").save(stranger.path)
    first = consortium.nodes[0]
    first_id = EngineHome(first.home).node_id()
    node_key = SigningKey.generate()
    EngineHome(stranger.path).write(
        stranger.genesis(), SigningKey.generate(), node_key,
        EnginePorts(stranger.config().p2p, f"127.0.0.1:{free_port()}"),
        [f"{first_id}@{first.p2p}"], moniker="stranger", block_interval_ms=200)
    nodes = [NodeProcess(h) for h in (*members, stranger)]
    try:
        for node in nodes:
            node.start(timeout=60, proven=False)  # two validators commit once both run

        def peers(home: Home) -> int:
            rpc = EngineHome(home.path).rpc()
            return int(httpx.get(f"http://{rpc}/net_info", timeout=5).json()["result"]["n_peers"])

        _wait(lambda: peers(members[0]) == 1 and peers(members[1]) == 1, 30, "the members")
        _wait(lambda: "refused peer " + node_id_of(node_key.public_key)
              in nodes[0].log.read_text(), 30, "the stranger to be refused")
        # the stranger may count the member for a moment, until the member's side of the
        # handshake refuses it: what must hold is that it ends up with none
        _wait(lambda: peers(stranger) == 0, 30, "the stranger to have no peer")
        assert peers(members[0]) == 1
    finally:
        for node in nodes:
            node.stop()
