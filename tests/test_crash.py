"""SIGKILL the node while it commits a stream of transactions; nothing acknowledged is lost."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from medledger.crypto import SigningKey
from medledger.ledger import Transaction
from medledger.node import Home, verify_store
from medledger.store import SQLiteStore
from tests.nodeproc import NodeProcess, make_home

pytestmark = pytest.mark.processes

KILLS = 4  # kill/restart cycles (bounded)


class Stream:
    """Submit anchors in batches and record every transaction the node says is committed."""

    def __init__(self, url: str, key: SigningKey, first_nonce: int) -> None:
        self.url, self.key, self.nonce = url, key, first_nonce
        self.acknowledged: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as http:
            while not self.stop.is_set():
                txs = []
                for _ in range(25):
                    txs.append(Transaction.create(
                        self.key, "proc-chain", "ledger.anchor", self.nonce,
                        {"digest": random.randbytes(32).hex(), "label": f"n{self.nonce}"}))
                    self.nonce += 1
                body = b"[" + b",".join(t.raw for t in txs) + b"]"
                try:
                    http.post("/v1/txs/batch", content=body).raise_for_status()
                    for _ in range(200):  # bounded: about 2 s
                        answer = http.get(f"/v1/txs/{txs[-1].tx_id.hex()}")
                        if answer.status_code == 200:
                            self.acknowledged.extend(t.tx_id.hex() for t in txs)
                            break
                        time.sleep(0.01)
                except httpx.HTTPError:
                    return  # the node is gone


def next_nonce(url: str, key: SigningKey) -> int:
    answer = httpx.get(f"{url}/v1/state/nonce/{key.public_key.hex()}", timeout=5)
    if answer.status_code == 404:
        return 1
    value = answer.json()["value"]
    return 1 if value is None else int(value) + 1


def test_sigkill_while_committing_loses_nothing_acknowledged(tmp_path: Path) -> None:
    home = make_home(tmp_path / "node", block_interval_ms=20)
    key = home.member_keys("admin").signing
    node = NodeProcess(home)
    acknowledged: list[str] = []
    rng = random.Random(7)
    try:
        for _cycle in range(KILLS):
            node.start()
            stream = Stream(node.url, key, next_nonce(node.url, key))
            thread = threading.Thread(target=stream.run, daemon=True)
            thread.start()
            time.sleep(0.6 + rng.random())
            node.kill()
            stream.stop.set()
            thread.join(10)
            acknowledged.extend(stream.acknowledged)
        node.start()
        with httpx.Client(base_url=node.url, timeout=5) as http:
            height = http.get("/v1/status").json()["height"]
            missing = [t for t in acknowledged if http.get(f"/v1/txs/{t}").status_code != 200]
        node.stop()
    finally:
        node.stop()
    assert len(acknowledged) >= 50, "the stream should have committed something"
    assert height > KILLS
    assert missing == []
    store = SQLiteStore(home.store_path)
    report = verify_store(store, home.genesis())
    store.close()
    assert report.transactions >= len(acknowledged)


def test_verify_command_is_clean_after_kills(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medledger.cli.main import app

    home = make_home(tmp_path / "node", block_interval_ms=10)
    key = home.member_keys("admin").signing
    node = NodeProcess(home)
    try:
        node.start()
        stream = Stream(node.url, key, 1)
        thread = threading.Thread(target=stream.run, daemon=True)
        thread.start()
        time.sleep(1.0)
        node.kill()
        stream.stop.set()
        thread.join(10)
    finally:
        node.stop()
    result = CliRunner().invoke(app, ["verify", "--home", str(home.path)],
                                env={"MEDLEDGER_PASSPHRASE": Home(home.path).passphrase()})
    assert result.exit_code == 0, result.output
    assert "intact" in result.output
