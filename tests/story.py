"""What the 4-node stories (records, medicines) share: a consortium of real processes
(:class:`tests.enginenet.EngineNet`) that a story drives through the API a client uses,
with each sender's nonces kept here and every read made once the node read from has
committed everything the story did so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from medledger.client import ApiRefused, Client
from medledger.crypto import SigningKey
from medledger.ledger import Transaction
from tests.enginenet import CHAIN, EngineNet, wait_for

HTTP_TIMEOUT = 15.0
COMMIT_TIMEOUT = 30.0


@dataclass
class NetStory:
    """The story's consortium; ``height``: the highest height a transaction of the story
    committed at (a node is read from only once it has it)."""

    net: EngineNet
    nonces: dict[str, int] = field(default_factory=dict, kw_only=True)
    height: int = field(default=0, kw_only=True)

    def api(self, node: int) -> str:
        return self.net.nodes[node].api

    def client(self, node: int) -> Client:
        return Client(self.api(node), timeout=HTTP_TIMEOUT)

    def tx(self, key: SigningKey, type_: str, body: dict[str, Any]) -> Transaction:
        """A transaction of ``key`` with its next nonce (asked of node 0 the first time)."""
        sender = key.public_key.hex()
        if sender not in self.nonces:
            with self.client(0) as client:
                self.nonces[sender] = client.next_nonce(key.public_key) - 1
        self.nonces[sender] += 1
        return Transaction.create(key, CHAIN, type_, self.nonces[sender], body)

    def caught_up(self, node: int) -> None:
        """Until ``node`` has committed everything the story did so far: a transaction is
        checked against the state of the node it is submitted to."""
        self.net.wait_height([node], self.height, timeout=COMMIT_TIMEOUT)

    def commit(self, node: int, txs: list[Transaction]) -> list[dict[str, Any]]:
        """Submit ``txs`` (independent of each other) to ``node`` and wait (bounded) until
        each is committed ``ok``."""
        self.caught_up(node)
        with self.client(node) as client:
            for tx in txs:
                assert client.submit(tx)["status"] == "pending"

            def committed(tx: Transaction) -> dict[str, Any] | None:
                try:
                    return client.tx(tx.tx_id.hex())
                except ApiRefused as e:
                    assert e.status in (404, 503), e
                    return None

            answers = [wait_for(lambda tx=tx: committed(tx), COMMIT_TIMEOUT,
                                f"{tx.type} to commit") for tx in txs]
        for tx, answer in zip(txs, answers, strict=True):
            assert answer["code"] == "ok", (tx.type, answer)
            self.height = max(self.height, answer["height"])
        return answers

    def send(self, node: int, key: SigningKey, type_: str, body: dict[str, Any]
             ) -> dict[str, Any]:
        """One transaction, committed ``ok`` (the node answers once a header proves it)."""
        self.caught_up(node)
        tx = self.tx(key, type_, body)
        with self.client(node) as client:
            answer = client.submit(tx, wait=True, timeout=COMMIT_TIMEOUT)
        assert answer.get("status") == "committed", answer
        assert answer["code"] == "ok", (type_, answer)
        self.height = max(self.height, answer["height"])
        return answer

    def refused(self, node: int, key: SigningKey, type_: str, body: dict[str, Any]
                ) -> ApiRefused:
        """A transaction the node refuses at admission (its nonce stays unused)."""
        self.caught_up(node)
        tx = self.tx(key, type_, body)
        self.nonces[key.public_key.hex()] -= 1
        with self.client(node) as client, pytest.raises(ApiRefused) as refused:
            client.submit(tx)
        return refused.value

    def get(self, node: int, path: str, **params: Any) -> Any:
        """An unproven read, once ``node`` has committed everything the story did."""
        self.caught_up(node)
        with self.client(node) as client:
            return client.get(path, params)
