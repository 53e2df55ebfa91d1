"""A local consortium of real node processes on 127.0.0.1 for tests (bounded waits, own
pids only)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from medledger.ledger import Transaction
from medledger.node import Home, NodeConfig
from medledger.node.consortium import Consortium
from tests.nodeproc import FAST_KDF, NodeProcess, free_port

CHAIN = "proc-consortium"


class LocalConsortium:
    """N validator processes; ``nodes[i]`` is a :class:`NodeProcess`."""

    def __init__(self, root: Path, n: int = 4, *, block_interval_ms: int = 100) -> None:
        ports = [(free_port(), free_port()) for _ in range(n)]
        self.consortium = Consortium.init(root, CHAIN, n, kdf_params=FAST_KDF, ports=ports)
        self.homes = [Home(node.home) for node in self.consortium.nodes]
        for home in self.homes:
            config = home.config()
            NodeConfig(**{**config.to_dict(), "block_interval_ms": block_interval_ms,
                          "timeout_propose_ms": 1000, "timeout_vote_ms": 500,
                          "peers": config.peers}).save(home.path)
        self.nodes = [NodeProcess(home) for home in self.homes]
        self.key = self.homes[0].member_keys("admin").signing
        self.nonce = 0

    def isolate_through_proxies(self, target: int) -> list[Any]:
        """Route every link of node ``target`` through a :class:`tests.netproxy.Proxy`
        (call before :meth:`start`); cutting the proxies isolates it."""
        from tests.netproxy import Proxy

        nodes = self.consortium.nodes
        proxies = []
        inbound = Proxy("127.0.0.1", int(nodes[target].p2p.rsplit(":", 1)[1])).start()
        proxies.append(inbound)
        for i, home in enumerate(self.homes):
            config = home.config()
            peers = []
            for key, address in config.peer_list():
                if i == target:
                    outbound = Proxy("127.0.0.1", int(address.rsplit(":", 1)[1])).start()
                    proxies.append(outbound)
                    address = outbound.address
                elif key == nodes[target].key:
                    address = inbound.address
                peers.append(f"{key.hex()}@{address}")
            NodeConfig(**{**config.to_dict(), "peers": tuple(peers)}).save(home.path)
        return proxies

    def start(self) -> None:
        """Start every node; if one fails to start, stop those already started."""
        try:
            for node in self.nodes:
                node.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalConsortium:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # transactions -------------------------------------------------------------------------
    def anchor(self) -> Transaction:
        self.nonce += 1
        n = self.nonce
        return Transaction.create(self.key, CHAIN, "ledger.anchor", n,
                                  {"digest": n.to_bytes(32, "big").hex(), "label": f"t{n}"})

    def submit_wait(self, node: int, tx: Transaction, timeout: float = 60.0) -> httpx.Response:
        return httpx.post(f"{self.nodes[node].url}/v1/txs?wait=true&timeout={timeout}",
                          content=tx.raw, timeout=timeout + 10)

    def submit_batch(self, node: int, txs: list[Transaction]) -> dict[str, Any]:
        body = b"[" + b",".join(t.raw for t in txs) + b"]"
        answer = httpx.post(f"{self.nodes[node].url}/v1/txs/batch", content=body, timeout=60)
        return answer.json()  # type: ignore[no-any-return]

    # watching -----------------------------------------------------------------------------
    def status(self, node: int) -> dict[str, Any] | None:
        try:
            return httpx.get(f"{self.nodes[node].url}/v1/status", timeout=3).json()  # type: ignore[no-any-return]
        except httpx.HTTPError:
            return None

    def wait_height(self, nodes: list[int], height: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            heights = [(s or {}).get("height", -1) for s in map(self.status, nodes)]
            if min(heights) >= height:
                return
            time.sleep(0.1)
        raise AssertionError(f"nodes {nodes} did not reach height {height} in {timeout} s: "
                             f"{heights}")

    def block_hash(self, node: int, height: int) -> str:
        answer = httpx.get(f"{self.nodes[node].url}/v1/blocks/{height}", timeout=10).json()
        return str(answer["block_hash"])

    def state_root_at_tip(self, node: int) -> tuple[int, str]:
        status = self.status(node)
        assert status is not None
        return status["height"], status["state_root"]

    def tx_height(self, node: int, tx: Transaction) -> int | None:
        answer = httpx.get(f"{self.nodes[node].url}/v1/txs/{tx.tx_id.hex()}", timeout=10)
        return answer.json()["height"] if answer.status_code == 200 else None
