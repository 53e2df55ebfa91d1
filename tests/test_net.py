"""A local consortium on CometBFT: ``init --validators N`` lays out the homes (each with
its CometBFT home, the others as persistent peers); ``net up|status|down`` runs, watches
and stops real node processes on 127.0.0.1, each a ``medledger up`` with its ``cometbft``."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from medledger.node import ConfigError, Home, NodeConfig
from medledger.node.consortium import Consortium
from medledger.node.engine import EngineHome, node_id_of
from tests.nodeproc import FAST_KDF, engines_under, free_port, wait_proven

CHAIN = "net-chain"


def make_consortium(root: Path, n: int) -> Consortium:
    ports = [(free_port(), free_port()) for _ in range(n)]
    return Consortium.init(root, CHAIN, n, kdf_params=FAST_KDF, ports=ports, engine=True,
                           block_interval_ms=200)


def persistent_peers(engine: EngineHome) -> list[str]:
    text = (engine.config_dir / "config.toml").read_text()
    match = re.search(r'^persistent_peers = "([^"]*)"$', text, re.MULTILINE)
    assert match is not None
    return [p for p in match.group(1).split(",") if p]


def test_homes_share_one_genesis_and_list_each_other(tmp_path: Path) -> None:
    c = make_consortium(tmp_path / "c", 4)
    homes = [Home(n.home) for n in c.nodes]
    engines = [EngineHome(n.home) for n in c.nodes]
    genesis = {h.genesis_path.read_bytes() for h in homes}
    assert len(genesis) == 1
    g = homes[0].genesis()
    assert [v.public_key for v in g.validators.validators] == sorted(n.key for n in c.nodes)
    assert {o["id"] for o in g.organisations} == {"local", "st-mary", "northgate",
                                                  "acme-pharma", "carewell"}
    # every node's CometBFT node ID is listed by the organisation that runs it
    listed = {node_id: org["id"] for org in g.organisations for node_id in org.get("nodes", [])}
    assert sorted(listed) == sorted(e.node_id() for e in engines)
    assert listed[engines[0].node_id()] == "st-mary"
    assert listed[engines[3].node_id()] == "carewell"
    rpcs = {e.rpc() for e in engines}
    assert len(rpcs) == 4 and all(r.startswith("127.0.0.1:") for r in rpcs)
    for node, home, engine in zip(c.nodes, homes, engines, strict=True):
        assert home.validator_key().public_key == node.key
        config = NodeConfig.load(home.path)
        assert config.api == node.api and config.p2p == node.p2p
        assert sorted(persistent_peers(engine)) == sorted(
            f"{e.node_id()}@{o.p2p}" for o, e in zip(c.nodes, engines, strict=True)
            if o is not node)
        toml = (engine.config_dir / "config.toml").read_text()
        assert f'laddr = "tcp://{node.p2p}"' in toml and "filter_peers = true" in toml
        comet = json.loads((engine.config_dir / "genesis.json").read_text())
        assert comet["chain_id"] == CHAIN and comet["app_state"] == g.to_dict()
        assert {base64.b64decode(v["pub_key"]["value"]) for v in comet["validators"]} == {
            n.key for n in c.nodes}
        own = json.loads((engine.config_dir / "priv_validator_key.json").read_text())
        assert base64.b64decode(own["pub_key"]["value"]) == node.key
        assert own["address"] == node_id_of(node.key).upper()
    # each demo organisation keeps its admin key on its own node
    assert Home(c.nodes[0].home).member_keys("st-mary")
    assert Home(c.nodes[3].home).member_keys("carewell")
    assert Consortium.load(tmp_path / "c") == c


REFUSED = {
    "no validators": (0, "between 1 and"),
    "too many": (65, "between 1 and"),
}


@pytest.mark.parametrize("n,why", REFUSED.values(), ids=REFUSED.keys())
def test_init_refuses(tmp_path: Path, n: int, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        Consortium.init(tmp_path / "c", CHAIN, n, kdf_params=FAST_KDF, engine=True)
    assert not (tmp_path / "c").exists()


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    make_consortium(tmp_path / "c", 2)
    with pytest.raises(ConfigError, match="already holds"):
        make_consortium(tmp_path / "c", 2)


def medledger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medledger", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_init_command_writes_cometbft_homes_by_default(tmp_path: Path) -> None:
    made = medledger("init", "--home", str(tmp_path / "c"), "--validators", "2",
                     "--base-port", "36656")
    assert made.returncode == 0, made.stdout + made.stderr
    c = Consortium.load(tmp_path / "c")
    engines = [EngineHome(n.home) for n in c.nodes]
    assert all(e.exists() for e in engines)
    assert [e.rpc() for e in engines] == ["127.0.0.1:36658", "127.0.0.1:36668"]
    assert persistent_peers(engines[0]) == [f"{engines[1].node_id()}@127.0.0.1:36666"]


@pytest.mark.processes
def test_net_up_status_down(tmp_path: Path) -> None:
    c = make_consortium(tmp_path / "c", 4)
    root = str(tmp_path / "c")
    pids: list[int] = []
    try:
        up = medledger("net", "up", "--home", root)
        assert up.returncode == 0, up.stdout + up.stderr
        deadline = time.monotonic() + 60
        while True:  # the four connect and commit their first block together
            status = medledger("net", "status", "--home", root, "--json")
            assert status.returncode == 0, status.stderr
            reports = json.loads(status.stdout)
            if all(r["height"] and r["peers"] == 3 for r in reports) or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [r["name"] for r in reports] == ["node0", "node1", "node2", "node3"]
        for report, node in zip(reports, c.nodes, strict=True):
            assert report["running"] and report["height"] >= 1 and report["peers"] == 3
            assert report["api"] == f"http://{node.api}" and report["home"] == str(node.home)
            assert Path(f"/proc/{report['pid']}").exists()
            engine = EngineHome(node.home)
            answer = httpx.get(f"http://{node.api}/v1/status", timeout=5).json()
            assert answer["engine"] == "cometbft" and answer["engine_node_id"] == \
                engine.node_id()
            info = httpx.get(f"http://{engine.rpc()}/net_info", timeout=5).json()["result"]
            assert sorted(p["node_info"]["id"] for p in info["peers"]) == sorted(
                EngineHome(o.home).node_id() for o in c.nodes if o is not node)
        assert len(engines_under(c.root)) == 4  # each node runs its cometbft
        again = medledger("net", "up", "--home", root)  # idempotent: nothing new started
        assert again.returncode == 0 and "pid" not in again.stdout
        pids = [r["pid"] for r in reports]
        _add_a_validator_by_governance(c, tmp_path / "joiner")
    finally:
        down = medledger("net", "down", "--home", root)
    assert down.returncode == 0, down.stderr
    assert "stopped 4 node(s)" in down.stdout
    for pid in pids:
        assert not _alive(pid)
    assert engines_under(c.root) == [], "a node's cometbft outlived `net down`"
    after = json.loads(medledger("net", "status", "--home", root, "--json").stdout)
    assert all(r["pid"] is None and not r["running"] for r in after)


def _add_a_validator_by_governance(c: Consortium, joiner_home: Path) -> None:
    """A new node's operator prints its validator key and node ID; node0 proposes adding it, node1 and
    node2 approve (30 of 40 power), and the set scheduled for the effective height holds
    it; st-mary's admin lists the new node's CometBFT node ID. From the effective height
    CometBFT's own validator set holds it (10 of 50 power: the four go on without it)."""
    joiner = Consortium.init(joiner_home, CHAIN, 1, kdf_params=FAST_KDF, engine=True,
                             ports=[(free_port(), free_port())]).nodes[0]
    shown = medledger("governance", "identity", "--home", str(joiner.home))
    assert shown.returncode == 0, shown.stderr
    ident = json.loads(shown.stdout)
    assert ident == {"node_key": joiner.key.hex(), "node_id": EngineHome(joiner.home).node_id()}
    change = json.dumps({"public_key": ident["node_key"], "power": 10,
                         "name": "joiner"})  # any JSON spacing and order
    # on CometBFT each committed transaction takes two heights (its block, and the one that
    # signs the state after it): three votes and a node listing need more than the default
    tip = httpx.get(f"http://{c.nodes[0].api}/v1/status", timeout=5).json()["height"]
    proposed = medledger("governance", "propose", "validator_add", change,
                         "--effective-height", str(tip + 10), "--home", str(c.nodes[0].home))
    assert proposed.returncode == 0, proposed.stdout + proposed.stderr
    proposal = json.loads(proposed.stdout)
    for node in c.nodes[1:3]:
        approved = medledger("governance", "approve", proposal["proposal"],
                             "--home", str(node.home))
        assert approved.returncode == 0, approved.stdout + approved.stderr
    # the status `approve` prints is read from the state a signed header proves, which on
    # CometBFT may still be that of the block before the approval: ask once it is proven
    wait_proven(f"http://{c.nodes[3].api}", json.loads(approved.stdout)["approved_in"])
    again = medledger("governance", "approve", proposal["proposal"],
                      "--home", str(c.nodes[3].home))
    assert again.returncode == 1 and "already approved" in again.stderr
    shown = json.loads(medledger("governance", "show", proposal["proposal"], "--home",
                                 str(c.nodes[3].home)).stdout)
    assert (shown["kind"], shown["status"]) == ("validator_add", "approved")
    effective = proposal["effective_height"]
    pending = httpx.get(f"http://{c.nodes[0].api}/v1/state/validators/pending/"
                        f"{effective:016d}").json()["value"]
    assert joiner.key.hex() in {v["public_key"] for v in pending}
    joiner_id = ident["node_id"]
    listed = medledger("identity", "node", "add", joiner_id, "--org", "st-mary",
                       "--home", str(c.nodes[0].home))
    assert listed.returncode == 0, listed.stdout + listed.stderr
    block = re.search(r"in block (\d+)", " ".join(listed.stdout.split()))
    assert block is not None, listed.stdout
    wait_proven(f"http://{c.nodes[0].api}", int(block[1]))
    node = httpx.get(f"http://{c.nodes[0].api}/v1/state/identity/node/{joiner_id}").json()
    assert node["value"] == {"org": "st-mary"}
    rpc = f"http://{EngineHome(c.nodes[0].home).rpc()}"
    _reach(c, rpc, effective)
    before = _validators(rpc, effective - 1)
    after = _validators(rpc, effective)
    address = node_id_of(joiner.key).upper()
    assert address not in before and len(before) == 4
    assert after == {**before, address: 10}
    wrong = medledger("governance", "propose", "validator_add", "{not json",
                      "--home", str(c.nodes[0].home))
    assert wrong.returncode == 1 and "JSON object" in wrong.stderr
    floats = medledger("governance", "propose", "validator_power", '{"power": 1.5}',
                       "--home", str(c.nodes[0].home))
    assert floats.returncode == 1 and "JSON object the ledger can carry" in floats.stderr
    assert "Traceback" not in wrong.stderr + floats.stderr


def _reach(c: Consortium, rpc: str, height: int) -> None:
    """Anchor documents from node1 (CometBFT makes no block without a transaction) until
    node0's CometBFT has a block at ``height``; bounded."""
    for n in range(12):
        if int(httpx.get(f"{rpc}/status", timeout=5).json()["result"]["sync_info"][
                "latest_block_height"]) >= height:
            return
        added = medledger("anchor", "add", f"{n + 1:064x}", "--label", f"step {n}",
                          "--home", str(c.nodes[1].home))
        assert added.returncode == 0, added.stdout + added.stderr
    raise AssertionError(f"the chain did not reach height {height}")


def _validators(rpc: str, height: int) -> dict[str, int]:
    """CometBFT's validator set at ``height``: address -> voting power."""
    result = httpx.get(f"{rpc}/validators", params={"height": height}, timeout=5).json()
    return {v["address"]: int(v["voting_power"]) for v in result["result"]["validators"]}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_net_commands_explain_a_missing_consortium(tmp_path: Path) -> None:
    result = medledger("net", "status", "--home", str(tmp_path / "nowhere"))
    assert result.returncode != 0
    assert "init --home" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert os.listdir(tmp_path) == []
