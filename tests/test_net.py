"""A local consortium: ``init --validators N`` lays out the homes; ``net up|status|down``
runs, watches and stops real node processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from medledger.node import ConfigError, Home, NodeConfig
from medledger.node.consortium import Consortium
from tests.nodeproc import FAST_KDF, free_port


def make_consortium(root: Path, n: int) -> Consortium:
    ports = [(free_port(), free_port()) for _ in range(n)]
    return Consortium.init(root, "net-chain", n, kdf_params=FAST_KDF, ports=ports)


def test_homes_share_one_genesis_and_list_each_other(tmp_path: Path) -> None:
    c = make_consortium(tmp_path / "c", 4)
    homes = [Home(n.home) for n in c.nodes]
    genesis = {h.genesis_path.read_bytes() for h in homes}
    assert len(genesis) == 1
    g = homes[0].genesis()
    assert [v.public_key for v in g.validators.validators] == sorted(n.key for n in c.nodes)
    assert {o["id"] for o in g.organisations} == {"local", "st-mary", "northgate",
                                                  "acme-pharma", "carewell"}
    for node, home in zip(c.nodes, homes, strict=True):
        assert home.validator_key().public_key == node.key
        config = NodeConfig.load(home.path)
        assert config.api == node.api and config.p2p == node.p2p
        assert sorted(k for k, _ in config.peer_list()) == sorted(
            o.key for o in c.nodes if o is not node)
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
        Consortium.init(tmp_path / "c", "net-chain", n, kdf_params=FAST_KDF)
    assert not (tmp_path / "c").exists()


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    make_consortium(tmp_path / "c", 2)
    with pytest.raises(ConfigError, match="already holds"):
        make_consortium(tmp_path / "c", 2)


def medledger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medledger", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.processes
def test_net_up_status_down(tmp_path: Path) -> None:
    c = make_consortium(tmp_path / "c", 4)
    root = str(tmp_path / "c")
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
    after = json.loads(medledger("net", "status", "--home", root, "--json").stdout)
    assert all(r["pid"] is None and not r["running"] for r in after)


def _add_a_validator_by_governance(c: Consortium, joiner_home: Path) -> None:
    """A new node's operator prints its identity; node0 proposes adding it with its
    certificate, node1 and node2 approve (30 of 40 power), and the set scheduled for the
    effective height holds it, with the certificate every transport will admit it by."""
    joiner = Consortium.init(joiner_home, "net-chain", 1, kdf_params=FAST_KDF,
                             ports=[(free_port(), free_port())]).nodes[0]
    shown = medledger("governance", "identity", "--home", str(joiner.home))
    assert shown.returncode == 0, shown.stderr
    ident = json.loads(shown.stdout)
    assert ident["node_key"] == joiner.key.hex()
    change = json.dumps({"public_key": ident["node_key"], "power": 10, "name": "joiner",
                         "certificate": ident["certificate"]})  # any JSON spacing and order
    proposed = medledger("governance", "propose", "validator_add", change,
                         "--home", str(c.nodes[0].home))
    assert proposed.returncode == 0, proposed.stdout + proposed.stderr
    proposal = json.loads(proposed.stdout)
    for node in c.nodes[1:3]:
        approved = medledger("governance", "approve", proposal["proposal"],
                             "--home", str(node.home))
        assert approved.returncode == 0, approved.stdout + approved.stderr
    assert json.loads(approved.stdout)["status"] == "approved"
    again = medledger("governance", "approve", proposal["proposal"],
                      "--home", str(c.nodes[3].home))
    assert again.returncode == 1 and "already approved" in again.stderr
    shown = medledger("governance", "show", proposal["proposal"], "--home",
                      str(c.nodes[0].home))
    assert json.loads(shown.stdout)["kind"] == "validator_add"
    pending = httpx.get(f"http://{c.nodes[0].api}/v1/state/validators/pending/"
                        f"{proposal['effective_height']:016d}").json()["value"]
    assert joiner.key.hex() in {v["public_key"] for v in pending}
    cert = httpx.get(f"http://{c.nodes[0].api}/v1/state/validators/cert/{joiner.key.hex()}")
    assert cert.json()["value"] == ident["certificate"]
    wrong = medledger("governance", "propose", "validator_add", "{not json",
                      "--home", str(c.nodes[0].home))
    assert wrong.returncode == 1 and "JSON object" in wrong.stderr
    floats = medledger("governance", "propose", "validator_power", '{"power": 1.5}',
                       "--home", str(c.nodes[0].home))
    assert floats.returncode == 1 and "JSON object the ledger can carry" in floats.stderr
    assert "Traceback" not in wrong.stderr + floats.stderr


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
