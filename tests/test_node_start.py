"""A node refuses to start on a tampered store, or on another chain's store, and says where."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from medledger.crypto import SigningKey
from medledger.ledger import Transaction
from medledger.node import Home
from tests.nodeproc import NodeProcess, make_home

pytestmark = pytest.mark.processes


def commit_blocks(home: Home, count: int) -> list[int]:
    """Commit ``count`` anchors, one a block, through a real node; their heights."""
    key: SigningKey = home.member_keys("admin").signing
    node = NodeProcess(home)
    node.start()
    heights = []
    try:
        for nonce in range(1, count + 1):
            tx = Transaction.create(key, "proc-chain", "ledger.anchor", nonce,
                                    {"digest": nonce.to_bytes(32, "big").hex(), "label": "x"})
            answer = httpx.post(f"{node.url}/v1/txs", params={"wait": "true"}, content=tx.raw,
                                timeout=60).json()
            assert answer["code"] == "ok", answer
            heights.append(answer["height"])
    finally:
        node.stop()
    return heights


def start(home_path: Path, passphrase: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medledger", "up", "--home", str(home_path)],
        env={**os.environ, "MEDLEDGER_PASSPHRASE": passphrase}, capture_output=True,
        text=True, timeout=60)


# what to change in the store, and the block whose height the refusal names: that of the
# second or third transaction, or the tip (where the state root no longer matches)
TAMPER = {
    "a transaction's bytes": (("UPDATE txs SET raw = CAST(replace(CAST(raw AS TEXT), '\"x\"', "
                              "'\"y\"') AS BLOB) WHERE height = {second}"), "second"),
    "a block header": (("UPDATE blocks SET header = CAST(replace(CAST(header AS TEXT), "
                       "'\"tx_count\":1', '\"tx_count\":0') AS BLOB) WHERE height = {third}"),
                       "third"),
    "a state value": (("UPDATE state SET value = CAST('{{\"label\":\"forged\"}}' AS BLOB) WHERE "
                      "key = (SELECT MIN(key) FROM state WHERE key LIKE 'anchor/%')"), "tip"),
}


@pytest.mark.parametrize("sql,where", TAMPER.values(), ids=TAMPER.keys())
def test_up_refuses_a_tampered_store(tmp_path: Path, sql: str, where: str) -> None:
    home = make_home(tmp_path / "node")
    heights = commit_blocks(home, 3)
    assert heights == sorted(set(heights))
    con = sqlite3.connect(home.store_path)
    with con:
        tip = con.execute("SELECT MAX(height) FROM blocks").fetchone()[0]
        named = {"second": heights[1], "third": heights[2], "tip": tip}
        assert con.execute(sql.format(**named)).rowcount == 1
    con.close()
    result = start(home.path, home.passphrase())
    assert result.returncode == 1
    assert f"height {named[where]}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_up_refuses_a_store_of_another_genesis(tmp_path: Path) -> None:
    home = make_home(tmp_path / "node")
    commit_blocks(home, 1)
    other = make_home(tmp_path / "other")
    os.replace(home.store_path, other.store_path)
    result = start(other.path, other.passphrase())
    assert result.returncode == 1
    assert "another genesis" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_stops_the_node_and_its_workers_cleanly(tmp_path: Path) -> None:
    """SIGTERM ends the node after its workers and store are closed: no worker is left
    behind and nothing leaks."""
    home = make_home(tmp_path / "n")
    node = NodeProcess(home)
    node.start()
    key = home.member_keys("admin").signing
    txs = [Transaction.create(key, "proc-chain", "ledger.anchor", n,
                              {"digest": n.to_bytes(32, "big").hex(), "label": "x" * 100})
           for n in range(1, 101)]
    body = b"[" + b",".join(t.raw for t in txs) + b"]"  # big enough for the worker pool
    answer = httpx.post(f"{node.url}/v1/txs/batch", content=body, timeout=30).json()
    assert answer["accepted"] == 100
    assert node.proc is not None
    pid = node.proc.pid
    children = [int(d) for d in os.listdir("/proc") if d.isdigit() and _parent(int(d)) == pid]
    assert len(children) >= 2, "the batch should have started worker processes"
    node.stop()
    deadline = time.monotonic() + 10  # workers and the resource tracker go after the node
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.05)
    assert not any(_alive(c) for c in children)
    log = node.log.read_text()
    assert "leaked" not in log and "Traceback" not in log, log


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1
