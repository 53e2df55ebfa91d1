"""The apps' demo data: what ``make run`` (``medledger net run``) adds to a fresh consortium
so that a newcomer sees the apps at work -- valid, deterministic, committed by a chain, and
sent once by a real ``net run``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import medledger.cli.net as net
from medledger.apps import DemoTx, default_registry
from medledger.crypto import SigningKey
from medledger.ledger import Transaction, Validator, ValidatorSet
from medledger.node import Chain, Genesis
from medledger.node.consortium import Consortium
from medledger.node.home import DEMO_ORGANISATIONS
from medledger.store import EventQuery, SQLiteStore
from tests.chainutil import commit_block
from tests.nodeproc import FAST_KDF, engines_under, free_port

ORGS = [org_id for org_id, _, _ in DEMO_ORGANISATIONS]
KEY = SigningKey.from_seed(b"\x07" * 32)
ADMINS = {org_id: SigningKey.from_seed(hashlib.sha256(org_id.encode()).digest())
          for org_id in ORGS}
DEMO_DIGEST = hashlib.sha256(b"medledger demo").hexdigest()
PASSPHRASE = "demo data passphrase"


def _signed(chain_id: str, demo: tuple[DemoTx, ...]) -> list[Transaction]:
    nonces: dict[str, int] = {}
    txs = []
    for tx in demo:
        nonces[tx.signer] = nonces.get(tx.signer, 0) + 1
        txs.append(Transaction.create(ADMINS[tx.signer], chain_id, tx.type,
                                      nonces[tx.signer], tx.body))
    return txs


def test_demo_transactions_are_well_formed_and_deterministic() -> None:
    registry = default_registry()
    demo = registry.demo(ORGS)
    assert demo == default_registry().demo(ORGS)  # no randomness
    assert [(t.signer, t.type) for t in demo] == [
        ("st-mary", "identity.member.register"), ("northgate", "identity.member.register"),
        ("st-mary", "ledger.anchor")]
    assert demo[0].body["name"] == "Dr Ada Demo" and demo[0].body["role"] == "clinician"
    assert demo[2].body == {"digest": DEMO_DIGEST, "label": "demo document"}
    for tx in _signed("demo-chain", demo):
        registry.check_stateless(tx)  # raises Rejected when malformed
    assert registry.demo([]) == ()
    assert [t.signer for t in registry.demo(["st-mary"])] == ["st-mary", "st-mary"]


def test_a_chain_commits_every_demo_transaction(tmp_path: Path) -> None:
    orgs = tuple({"admins": [ADMINS[org_id].public_key.hex()], "id": org_id, "name": name,
                  "role": role} for org_id, name, role in DEMO_ORGANISATIONS)
    genesis = Genesis("demo-chain", 1_000, ValidatorSet.of([Validator(KEY.public_key, 10, "v")]),
                      orgs)
    chain = Chain(SQLiteStore(tmp_path / "s.db"), genesis, default_registry())
    commit_block(chain, _signed("demo-chain", default_registry().demo(ORGS)))
    results = chain.store.get_block_txs(1)
    assert [r.code for r in results] == ["ok", "ok", "ok"]
    types = [e.type for e in chain.store.list_events(EventQuery())]
    assert types.count("identity.member_registered") == 2
    assert "anchor.anchored" in types
    assert chain.view().get(f"anchor/{DEMO_DIGEST}")["label"] == "demo document"


def test_no_demo_data_when_no_home_holds_an_organisations_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLEDGER_PASSPHRASE", PASSPHRASE)
    ports = [(free_port(), free_port())]
    c = Consortium.init(tmp_path / "c", "demo-chain", 1, demo=False, kdf_params=FAST_KDF,
                        ports=ports, engine=True)
    monkeypatch.setattr(net, "_status", lambda node, timeout=2.0: None)
    assert net.seed_demo(c) is False
    assert not (c.root / net.DEMO_MARKER).exists()


# a real `net run`, twice --------------------------------------------------------------------
def _wait_for(log: Path, proc: subprocess.Popen[bytes], pattern: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = log.read_text()
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not in {log}:\n{log.read_text()}")


def _net_run(c: Consortium, log: Path, pattern: str, env: dict[str, str],
             while_up: Callable[[], None] = lambda: None) -> str:
    """Run ``net run`` until its log matches ``pattern`` and every node shows a height, call
    ``while_up``, stop it with SIGTERM; return the log."""
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medledger", "net", "run", "--home", str(c.root),
             "--every", "0.3"], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env)
    try:
        _wait_for(log, proc, pattern, 90)
        for node in c.nodes:
            _wait_for(log, proc, rf" {node.name}: height [1-9]", 30)
        while_up()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
            subprocess.run([sys.executable, "-m", "medledger", "net", "down", "--home",
                            str(c.root)], capture_output=True, timeout=60, env=env)
    return log.read_text()


@pytest.mark.processes
def test_net_run_seeds_a_fresh_consortium_once(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLEDGER_PASSPHRASE", PASSPHRASE)
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    ports = [(free_port(), free_port()) for _ in range(4)]
    c = Consortium.init(tmp_path / "c", "demo-chain", 4, kdf_params=FAST_KDF, ports=ports,
                        engine=True, block_interval_ms=200)
    first = _net_run(c, tmp_path / "run1.log", r"demo: ledger\.anchor committed in block \d+",
                     env)
    assert first.count("demo: identity.member.register committed in block") == 2, first
    assert "warning" not in first, first
    assert (c.root / net.DEMO_MARKER).exists()

    events: list[str] = []

    def list_events() -> None:
        listed = subprocess.run(
            [sys.executable, "-m", "medledger", "events", "list", "--json", "--home",
             str(c.nodes[0].home)], capture_output=True, text=True, timeout=60, env=env)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        events.extend(e["type"] for e in json.loads(listed.stdout)["events"])

    second = _net_run(c, tmp_path / "run2.log", r"node0: height [1-9]", env, list_events)
    assert "demo:" not in second, second
    assert engines_under(c.root) == [], "a node's cometbft outlived `net run`"
    assert events.count("identity.member_registered") == 2, events  # seeded once only
    assert events.count("anchor.anchored") == 1, events
