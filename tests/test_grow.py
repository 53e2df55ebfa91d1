"""A chain that starts with one validator grows into a consortium by governance, on
CometBFT, with real node processes on 127.0.0.1: the lone validator's node commits; an
admin lists the new node's CometBFT node ID and governance adds its validator key; the lone
validator commits alone up to the height before the change; the new node, started from the
shared genesis with the first as its persistent peer, syncs the chain, and from the height
the change takes effect every commit carries both validators' signatures."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from medledger.apps import governance
from medledger.crypto import Keystore, SigningKey
from medledger.ledger import Transaction
from medledger.node import Home, NodeConfig
from medledger.node.engine import EngineHome, EnginePorts, node_id_of
from tests.enginenet import wait_for
from tests.nodeproc import FAST_KDF, NodeProcess, free_port, make_home

CHAIN = "grow-chain"
COMMIT_FLAG = 2  # CometBFT's BlockIDFlagCommit: the validator signed the block


def joining_home(path: Path, first: Home) -> Home:
    """A node of ``first``'s chain laid out by hand (README, "Joining"): the shared
    genesis, its own validator key (of no power yet) and node key, ``first`` as its
    persistent peer, and no state sync: it replays every block from genesis."""
    shutil.copytree(first.path, path, ignore=shutil.ignore_patterns(
        "cometbft", "data", "keys", "*.sock", "*.log", "*.pid", "validator.key"))
    (path / "data").mkdir()
    home = Home(path)
    Keystore.generate().save(home.validator_key_path, home.passphrase(), kdf_params=FAST_KDF)
    config = NodeConfig(api=f"127.0.0.1:{free_port()}", p2p=f"127.0.0.1:{free_port()}",
                        block_interval_ms=first.config().block_interval_ms)
    config.save(path)
    peer = f"{EngineHome(first.path).node_id()}@{first.config().p2p}"
    EngineHome(path).write(home.genesis(), home.validator_key(), SigningKey.generate(),
                           EnginePorts(config.p2p, f"127.0.0.1:{free_port()}"), [peer],
                           moniker="b", block_interval_ms=config.block_interval_ms)
    return home


def submit(url: str, tx: Transaction) -> dict[str, Any]:
    answer = httpx.post(f"{url}/v1/txs", content=tx.raw, params={"wait": "true"}, timeout=90)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["code"] == "ok", body
    return body


def rpc(node: NodeProcess, path: str, **params: Any) -> Any:
    answer = httpx.get(f"{node.rpc}{path}", params=params, timeout=10)
    answer.raise_for_status()
    return answer.json()["result"]


def signers(node: NodeProcess, height: int) -> set[str]:
    """The validators whose signatures the commit of ``height`` carries (CometBFT's
    ``/commit`` of ``node``)."""
    commit = rpc(node, "/commit", height=height)["signed_header"]["commit"]
    return {s["validator_address"] for s in commit["signatures"]
            if s["block_id_flag"] == COMMIT_FLAG}


def validators(node: NodeProcess, height: int) -> set[str]:
    return {v["address"] for v in rpc(node, "/validators", height=height)["validators"]}


@pytest.mark.processes
def test_a_lone_validator_grows_into_a_consortium(tmp_path: Path) -> None:
    home_a = make_home(tmp_path / "a", block_interval_ms=200, chain_id=CHAIN)
    home_b = joining_home(tmp_path / "b", home_a)
    a, b = NodeProcess(home_a), NodeProcess(home_b)
    validator = home_a.validator_key()
    key_b = home_b.validator_key().public_key
    address_a, address_b = (node_id_of(k).upper() for k in (validator.public_key, key_b))
    admin = home_a.member_keys("admin").signing
    nonce = {admin.public_key: 0, validator.public_key: 0}

    def signed(key: SigningKey, type_: str, body: dict[str, Any]) -> Transaction:
        nonce[key.public_key] += 1
        return Transaction.create(key, CHAIN, type_, nonce[key.public_key], body)

    def anchor() -> Transaction:
        n = nonce[admin.public_key] + 1
        return signed(admin, "ledger.anchor", {"digest": n.to_bytes(32, "big").hex(),
                                               "label": f"grow {n}"})

    try:
        a.start()
        submit(a.url, anchor())
        # the local organisation lists b's node, which a's peer filter then admits
        submit(a.url, signed(admin, "identity.node.add",
                             {"org": "local", "node_id": EngineHome(home_b.path).node_id()}))
        tip = rpc(a, "/status")["sync_info"]["latest_block_height"]
        effective = int(tip) + 5
        proposed = submit(a.url, signed(validator, governance.PROPOSE, {
            "kind": "validator_add", "effective_height": effective,
            "change": {"name": "b", "power": 10, "public_key": key_b.hex()}}))
        assert proposed["height"] < effective - 1  # a alone holds all power: enacted at once
        # a commits alone up to the height before the change (CometBFT makes a block for
        # each transaction and one after it), then cannot commit without b
        while int(rpc(a, "/status")["sync_info"]["latest_block_height"]) < effective - 1:
            submit(a.url, anchor())
        assert int(rpc(a, "/status")["sync_info"]["latest_block_height"]) == effective - 1
        stuck = anchor()
        waiting = httpx.post(f"{a.url}/v1/txs", content=stuck.raw, timeout=30,
                             params={"wait": "true", "timeout": 3})
        assert waiting.status_code == 202, "a alone holds half of the new set's power"

        b.start(proven=False)
        committed = wait_for(lambda: _committed(a, stuck), 90, "the stuck anchor to commit")
        assert committed["height"] >= effective
        after = submit(a.url, anchor())
        wait_for(lambda: _height(b) >= after["height"], 60, "b to follow")
        for height in range(1, after["height"] + 1):
            ours = httpx.get(f"{a.url}/v1/blocks/{height}", timeout=15).json()
            theirs = httpx.get(f"{b.url}/v1/blocks/{height}", timeout=15).json()
            assert ours["block_hash"] == theirs["block_hash"], height
        for node in (a, b):
            assert validators(node, effective - 1) == {address_a}
            assert validators(node, effective) == {address_a, address_b}
            for height in range(1, effective):
                assert signers(node, height) == {address_a}, height
            for height in range(effective, after["height"] + 1):
                assert signers(node, height) == {address_a, address_b}, height
        both = httpx.get(f"{a.url}/v1/validators", timeout=10).json()
        assert {v["public_key"] for v in both["validators"]} == {
            validator.public_key.hex(), key_b.hex()}
    finally:
        b.stop()
        a.stop()


def _committed(node: NodeProcess, tx: Transaction) -> dict[str, Any] | None:
    answer = httpx.get(f"{node.url}/v1/txs/{tx.tx_id.hex()}", timeout=15)
    return answer.json() if answer.status_code == 200 else None  # type: ignore[no-any-return]


def _height(node: NodeProcess) -> int:
    try:
        return int(httpx.get(f"{node.url}/v1/status", timeout=5).json()["height"])
    except (httpx.HTTPError, ValueError, KeyError):
        return -1
