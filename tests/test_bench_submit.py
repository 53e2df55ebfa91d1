"""The bench's client re-sends only what a full mempool refused: every transaction is
accepted exactly once, none is lost and none is refused as a repeat."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import httpx
import pytest

from medledger.cli.bench import _submit
from medledger.crypto import SigningKey
from medledger.ledger import Transaction
from medledger.node import Genesis, NodeConfig
from tests.nodeproc import NodeProcess, make_home, save_genesis, set_engine_option

pytestmark = pytest.mark.processes


def test_a_full_mempool_is_waited_out_without_repeats(tmp_path: Path) -> None:
    home = make_home(tmp_path / "n", block_interval_ms=200)
    sender = SigningKey.generate()
    genesis = home.genesis()
    orgs = [dict(o) for o in genesis.organisations]
    orgs[0]["admins"] = [*orgs[0]["admins"], sender.public_key.hex()]
    save_genesis(home, Genesis(genesis.chain_id, genesis.genesis_time, genesis.validators,
                               tuple(orgs)))
    config = home.config()
    NodeConfig(**{**config.to_dict(), "max_block_txs": 300}).save(home.path)
    set_engine_option(home, "mempool", "size", "300")  # CometBFT's mempool holds 300
    txs = [Transaction.create(sender, "proc-chain", "ledger.anchor", n,
                              {"digest": n.to_bytes(32, "big").hex(), "label": "b"})
           for n in range(1, 1201)]
    # 3 batches of 400, each more than the mempool of 300 holds
    batches = [b"[" + b",".join(t.raw for t in txs[i:i + 400]) + b"]" for i in (0, 400, 800)]
    node = NodeProcess(home)
    node.start()
    try:
        answers: queue.Queue[object] = queue.Queue()
        go = threading.Event()
        go.set()
        client = threading.Thread(target=_submit, args=(node.url, batches, answers, go))
        client.start()
        client.join(120)
        assert not client.is_alive()
        assert answers.get_nowait() == "ready"
        assert answers.get_nowait() == 1200
        committed = _committed(node, 1200)
        assert committed == 1200, "transactions answered ok were not committed"
    finally:
        node.stop()


def _committed(node: NodeProcess, expected: int, timeout: float = 60.0) -> int:
    """How many transactions the node has committed once ``expected`` are, or once its
    engine's mempool stays empty for 2 s (nothing more will commit); bounded."""
    deadline = time.monotonic() + timeout
    empty_since: float | None = None
    while True:
        total = int(httpx.get(f"{node.url}/v1/status", timeout=5).json()["total_txs"])
        waiting = int(httpx.get(f"{node.rpc}/num_unconfirmed_txs", timeout=5)
                      .json()["result"]["total"])
        now = time.monotonic()
        empty_since = (empty_since or now) if waiting == 0 else None
        if total >= expected or now > deadline or (empty_since and now - empty_since > 2):
            return total
        time.sleep(0.1)
