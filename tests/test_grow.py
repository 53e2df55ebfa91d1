"""A chain that starts with one validator grows into a consortium by governance, with real
node processes on 127.0.0.1: the lone validator adds a second one (carrying its TLS
certificate), commits alone up to the height before the change, then joins consensus by
itself; the new node, given the genesis, its peer's address and certificate, syncs the
chain and from the change on every block needs both."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from medledger.apps import governance
from medledger.codec import decode, encode
from medledger.ledger import Transaction, ValidatorSet
from medledger.node import Home, NodeConfig
from medledger.node.consortium import Consortium
from medledger.p2p import node_certificate
from tests.nodeproc import FAST_KDF, NodeProcess, free_port

CHAIN = "grow-chain"


def lone_home(root: Path) -> tuple[Home, bytes, str]:
    node = Consortium.init(root, CHAIN, 1, kdf_params=FAST_KDF,
                           ports=[(free_port(), free_port())]).nodes[0]
    home = Home(node.home)
    config = home.config()
    NodeConfig(**{**config.to_dict(), "timeout_propose_ms": 1000, "timeout_vote_ms": 500,
                  "peers": config.peers}).save(home.path)
    return home, node.key, node.p2p


def submit(url: str, tx: Transaction) -> dict:  # type: ignore[type-arg]
    answer = httpx.post(f"{url}/v1/txs", content=tx.raw, params={"wait": "true"}, timeout=90)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["code"] == "ok", body
    return body  # type: ignore[no-any-return]


@pytest.mark.processes
def test_a_lone_validator_grows_into_a_consortium(tmp_path: Path) -> None:
    home_a, key_a, p2p_a = lone_home(tmp_path / "a")
    home_b, key_b, _ = lone_home(tmp_path / "b")
    # b joins a's chain: a's genesis, a as its peer, a's certificate beside its own
    shutil.copyfile(home_a.genesis_path, home_b.genesis_path)
    config = home_b.config()
    NodeConfig(**{**config.to_dict(), "peers": (f"{key_a.hex()}@{p2p_a}",)}).save(home_b.path)
    members = decode((home_b.path / "members.json").read_bytes())
    members[key_a.hex()] = node_certificate(home_a.validator_key()).hex()
    (home_b.path / "members.json").write_bytes(encode(members))

    a, b = NodeProcess(home_a), NodeProcess(home_b)
    validator = home_a.validator_key()
    admin = home_a.member_keys("admin").signing
    try:
        a.start()

        def anchor(nonce: int) -> Transaction:
            return Transaction.create(admin, CHAIN, "ledger.anchor", nonce,
                                      {"digest": nonce.to_bytes(32, "big").hex(),
                                       "label": f"grow {nonce}"})

        first = submit(a.url, anchor(1))["height"]
        effective = first + 3
        add = {"certificate": node_certificate(home_b.validator_key()).hex(), "name": "b",
               "power": 10, "public_key": key_b.hex()}
        proposed = submit(a.url, Transaction.create(validator, CHAIN, governance.PROPOSE, 1, {
            "kind": "validator_add", "change": add, "effective_height": effective}))
        assert proposed["height"] == first + 1  # a alone holds all power: enacted at once
        assert submit(a.url, anchor(2))["height"] == effective - 1  # a's last block alone
        b.start()
        after = submit(a.url, anchor(3))  # needs both from here on
        assert after["height"] >= effective
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if httpx.get(f"{b.url}/v1/status").json()["height"] >= after["height"]:
                break
            time.sleep(0.2)
        for height in range(1, after["height"] + 1):
            ours = httpx.get(f"{a.url}/v1/blocks/{height}").json()
            theirs = httpx.get(f"{b.url}/v1/blocks/{height}").json()
            assert ours["block_hash"] == theirs["block_hash"], height
        block = httpx.get(f"{a.url}/v1/blocks/{after['height']}").json()
        both = httpx.get(f"{a.url}/v1/validators").json()
        assert {v["public_key"] for v in both["validators"]} == {key_a.hex(), key_b.hex()}
        assert block["header"]["validators_hash"] == ValidatorSet.from_list(
            both["validators"]).hash().hex()
        assert {s["validator"] for s in block["certificate"]["signatures"]} == {
            key_a.hex(), key_b.hex()}
        assert "joining them" in a.log.read_text()
    finally:
        b.stop()
        a.stop()
