"""The log of blocks: the node rebuilds its leaves from the store (:mod:`medledger.node.history`)
and their root is the one state keeps; a real node on CometBFT proves an old block by it
under a recent header, and the light client (:mod:`medledger.client.history`) refuses every
lie in such an answer."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from medledger.apps import default_registry
from medledger.client import ApiRefused, Client, VerificationFailed, verify_block_answer
from medledger.codec import decode
from medledger.crypto import SigningKey
from medledger.ledger import Transaction
from medledger.ledger.engine import HISTORY_KEY, history_leaf
from medledger.merkle import log
from medledger.node import Home
from medledger.node.abci import LedgerApplication, validator_address
from medledger.node.abci.wire import abci_types
from medledger.node.chain import Chain
from medledger.node.consortium import free_port
from medledger.node.history import BlockLog, LogUnavailable
from medledger.store import SQLiteStore
from tests.conftest import FAST_KDF

T = abci_types()
CHAIN = "log-chain"


def _anchor(key: SigningKey, nonce: int) -> Transaction:
    type_, body = default_registry().sample_tx(nonce)
    return Transaction.create(key, CHAIN, type_, nonce, body)


# in process: the rebuilt leaves against the root state keeps --------------------------------
def test_the_rebuilt_log_has_the_root_state_keeps_at_every_height(tmp_path: Path) -> None:
    home = Home.init(tmp_path / "node", CHAIN, kdf_params=FAST_KDF, demo=True,
                     genesis_time=1_700_000_000_000)
    admin = home.member_keys("admin").signing
    store = SQLiteStore(home.store_path)
    app = LedgerApplication(Chain(store, home.genesis(), default_registry()))
    proposer = validator_address(app.chain.validators.validators[0].public_key)
    busy = {1, 2, 4, 7, 8}  # heights with a transaction; the others are empty
    kept: dict[int, dict[str, Any]] = {}
    block_log = BlockLog(store)
    nonce = 0
    for height in range(1, 10):
        txs = []
        if height in busy:
            nonce += 1
            txs = [_anchor(admin, nonce).raw]
        request = T.RequestFinalizeBlock(txs=txs, height=height, hash=bytes([height]) * 32,
                                         proposer_address=proposer)
        request.time.seconds = 1_700_000_000 + height
        app.finalize_block(request)
        app.commit(T.RequestCommit())
        kept[height] = decode(store.get_value(HISTORY_KEY))
        size = kept[height]["size"]
        for h in (h for h in busy if h <= height):  # every block so far, against this root
            entry = block_log.entry(h, size)
            leaf = log.leaf_hash(history_leaf(h, bytes([h]) * 32, entry.results_hash))
            assert log.verify_inclusion(leaf, entry.index, size, list(entry.audit_path),
                                        bytes.fromhex(kept[height]["root"]))
    assert [kept[h]["size"] for h in range(1, 10)] == [1, 2, 2, 3, 3, 3, 4, 5, 5]
    for empty in (3, 5, 6, 9):
        with pytest.raises(LogUnavailable, match="changed nothing"):
            block_log.entry(empty, 5)
    with pytest.raises(LogUnavailable, match="no block at height 10"):
        block_log.entry(10, 5)
    with pytest.raises(LogUnavailable, match="not in a log of 3"):
        block_log.entry(7, 3)  # block 7 is leaf 3: not in the log of the first 3
    store.close()


# a real node ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Home, str, list[int]]]:
    """A single-validator node on CometBFT (a `medledger up` process) that committed a few
    blocks of anchors; yields its home, API URL and the heights of the blocks with them."""
    api = f"127.0.0.1:{free_port()}"
    home = Home.init(tmp_path_factory.mktemp("log") / "node", CHAIN, api=api,
                     kdf_params=FAST_KDF, demo=True, engine_rpc=f"127.0.0.1:{free_port()}",
                     p2p=f"127.0.0.1:{free_port()}")
    env = {**os.environ, "MEDLEDGER_PASSPHRASE": home.passphrase()}
    proc = subprocess.Popen([sys.executable, "-m", "medledger", "up", "--home", str(home.path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{api}"
    try:
        admin = home.member_keys("admin").signing
        with Client(url, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.status()
                    break
                except Exception:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.2)
            heights = []
            for nonce in range(1, 4):  # a fresh chain: the admin key has sent nothing
                answer = client.submit(_anchor(admin, nonce), wait=True)
                assert answer["status"] == "committed", answer
                heights.append(answer["height"])
        yield home, url, heights
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _proof(url: str, height: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        answer = httpx.get(f"{url}/v1/blocks/{height}/proof", timeout=30)
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer.json() | {"_status": answer.status_code}
        time.sleep(0.2)


@pytest.mark.processes
def test_an_old_block_is_proven_by_the_log_under_a_recent_header(
        node: tuple[Home, str, list[int]]) -> None:
    home, url, heights = node
    genesis = home.genesis()
    first = _proof(url, heights[0])
    assert first.pop("_status") == 200
    checked = verify_block_answer(first, genesis.validators, CHAIN)
    # proven by a later header alone (the last one that signs state: while no block comes,
    # the tip's state waits for the next header)
    assert checked.height == heights[0] and checked.proven_at.height >= heights[-1] - 1 > 1
    assert checked.header.height == heights[0] and checked.header.chain_id == CHAIN
    missing = _proof(url, 10_000)
    assert missing["_status"] == 404 and missing["code"] == "not_in_log"


def _at(answer: dict[str, Any], path: str) -> tuple[Any, Any]:
    """The container of the field at dotted ``path`` and the field's key or index."""
    *parents, last = path.split(".")
    target: Any = answer
    for name in parents:
        target = target[int(name)] if isinstance(target, list) else target[name]
    return target, int(last) if isinstance(target, list) else last


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(answer: dict[str, Any]) -> None:
        target, key = _at(answer, path)
        target[key] = value
    return change


def _flip(path: str) -> Callable[[dict[str, Any]], None]:
    def change(answer: dict[str, Any]) -> None:
        target, key = _at(answer, path)
        text = target[key]
        target[key] = ("0" if text[0] != "0" else "1") + text[1:]
    return change


LIES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "another block hash in the entry": (_flip("entry.block_hash"), "log's root"),
    "another results hash": (_flip("entry.results_hash"), "log's root"),
    "another leaf index": (_set("entry.leaf_index", 0), "log's root"),
    "a shorter log": (_set("entry.tree_size", 1), "proven state holds"),
    "a flipped audit path": (_flip("entry.audit_path.0"), "log's root"),
    "another log root in state": (_flip("log.value.root"), "does not lead to the state root"),
    "another height": (_set("height", 1), "another block"),
    "another CometBFT header": (_flip("engine_header.app_hash"), "does not hash"),
    "a state answer for another key": (_set("log.key", "chain/other"), "does not lead"),
    "no entry": (lambda a: a.pop("entry"), "malformed"),
}


@pytest.mark.processes
@pytest.mark.parametrize("name", sorted(LIES))
def test_every_lie_in_a_block_proof_is_refused(node: tuple[Home, str, list[int]],
                                               name: str) -> None:
    home, url, heights = node
    answer = _proof(url, heights[1])
    assert answer.pop("_status") == 200
    assert len(answer["entry"]["audit_path"]) >= 1
    lie, reason = LIES[name]
    forged = copy.deepcopy(answer)
    lie(forged)
    with pytest.raises(VerificationFailed, match=reason):
        verify_block_answer(forged, home.genesis().validators, CHAIN)


@pytest.mark.processes
def test_the_cli_verifies_a_block_by_the_log(node: tuple[Home, str, list[int]]) -> None:
    home, url, heights = node
    env = {**os.environ, "MEDLEDGER_PASSPHRASE": home.passphrase()}
    done = subprocess.run([sys.executable, "-m", "medledger", "block", str(heights[0]),
                           "--verify", "--home", str(home.path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout[:done.stdout.index("}") + 1])
    assert shown["height"] == heights[0]
    assert "verified" in done.stdout


@pytest.mark.processes
def test_after_a_wait_the_next_proven_read_sees_the_transaction(
        node: tuple[Home, str, list[int]]) -> None:
    """``wait=true`` answers once a signed header proves the state after the block, so a
    client's next proven read (and its next nonce) already sees what it sent."""
    home, url, _heights = node
    admin = home.member_keys("admin").signing
    with Client(url, timeout=30) as client:
        nonce = client.next_nonce(admin.public_key)
        tip = client.state(f"nonce/{admin.public_key.hex()}", prove=False)
        assert tip["value"] == nonce - 1 and "proof" not in tip
        answer = client.submit(_anchor(admin, nonce), wait=True)
        assert answer["status"] == "committed" and answer["code"] == "ok"
        proven = client.state(f"nonce/{admin.public_key.hex()}")
        assert proven["value"] == nonce and proven["height"] >= answer["height"]
        assert client.next_nonce(admin.public_key) == nonce + 1


@pytest.mark.processes
def test_a_wait_without_proof_answers_before_the_next_header(
        node: tuple[Home, str, list[int]]) -> None:
    """``proven=false`` answers once the block is committed, before the signed header of
    the next: a proven read made at once is still at an earlier height (or busy) in at
    least one of three tries, and the unproven state already has the transaction."""
    home, url, _heights = node
    admin = home.member_keys("admin").signing
    earlier = 0
    with Client(url, timeout=30) as client:
        for _ in range(3):
            nonce = client.next_nonce(admin.public_key)
            answer = client.submit(_anchor(admin, nonce), wait=True, proven=False)
            assert answer["status"] == "committed" and answer["code"] == "ok"
            try:
                proven = client.state(f"nonce/{admin.public_key.hex()}")
                earlier += proven["height"] < answer["height"]
            except ApiRefused as e:
                assert e.code == "busy"
                earlier += 1
            unproven = client.state(f"nonce/{admin.public_key.hex()}", prove=False)
            assert unproven["value"] == nonce
            _wait_proven_nonce(client, admin, answer["height"])
    assert earlier >= 1


def _wait_proven_nonce(client: Client, key: SigningKey, height: int) -> None:
    """Until a proven read of ``key``'s nonce is at ``height`` or later (bounded)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if client.state(f"nonce/{key.public_key.hex()}")["height"] >= height:
                return
        except ApiRefused as e:
            assert e.code == "busy"
        time.sleep(0.05)
    raise AssertionError(f"no proven read at height {height} within 15 s")
