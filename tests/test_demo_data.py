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

import httpx
import pytest

import medledger.cli.net as net
from medledger.apps import DemoTx, default_registry
from medledger.apps.identity import pseudonym_of
from medledger.apps.records.bundles import record_parts
from medledger.cli import demo_records
from medledger.crypto import SigningKey
from medledger.ledger import Transaction, Validator, ValidatorSet
from medledger.node import Chain, Genesis, Home
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
    assert [(t.signer, t.type) for t in demo][:3] == [
        ("st-mary", "identity.member.register"), ("northgate", "identity.member.register"),
        ("st-mary", "ledger.anchor")]
    # then the trace app's supply chain: acme-pharma to st-mary to northgate
    assert {t.type for t in demo[3:]} == {"trace.prefix", "trace.party", "trace.product",
                                         "trace.capture"}
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
    assert [(r.code, r.message) for r in results] == [("ok", "")] * len(results)
    assert len(results) == len(default_registry().demo(ORGS))
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


def test_records_demo_is_deterministic() -> None:
    names = [p.key for p in demo_records.PATIENTS] + [m.key for m in demo_records.MEMBERS]
    assert names == ["patient-ana", "patient-ben", "dr-cara", "dr-noor", "holder-st-mary",
                     "holder-northgate"]
    for name in names:  # fixed seeds: the same keys on every machine
        a, b = demo_records.demo_keys(name), demo_records.demo_keys(name)
        assert a.signing.public_key == b.signing.public_key
        assert a.encryption.public_bytes() == b.encryption.public_bytes()
    assert len({demo_records.demo_keys(n).signing.public_key for n in names}) == len(names)
    for patient in demo_records.PATIENTS:
        bundle = demo_records.demo_bundle(patient)
        assert bundle == demo_records.demo_bundle(patient)
        assert {"lab", "condition", "encounter"} <= set(_parts(patient))
    assert [m.role for m in demo_records.MEMBERS] == ["clinician", "emergency_clinician",
                                                     "admin", "admin"]


def test_no_records_demo_once_seeded_or_without_the_hospitals(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLEDGER_PASSPHRASE", PASSPHRASE)
    c = Consortium.init(tmp_path / "c", "demo-chain", 1, demo=False, kdf_params=FAST_KDF,
                        ports=[(free_port(), free_port())], engine=True)
    assert demo_records.seed_records_demo(c) is False  # no st-mary, no northgate: nothing
    assert not (c.root / demo_records.RECORDS_DEMO_MARKER).exists()
    assert Home(c.nodes[0].home).known_keys() == ["admin"]
    (c.root / demo_records.RECORDS_DEMO_MARKER).write_text("seeded\n")
    assert demo_records.seed_records_demo(c) is True  # marked: nothing is sent


def test_a_records_demo_failure_warns_and_stops_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDLEDGER_PASSPHRASE", PASSPHRASE)
    c = Consortium.init(tmp_path / "c", "demo-chain", 1, kdf_params=FAST_KDF,
                        ports=[(free_port(), free_port())], engine=True)  # never started
    assert demo_records.seed_records_demo(c) is False
    said = capsys.readouterr().out
    assert "demo: warning: records demo data: " in said, said
    assert "`net run` will try again next time" in said, said
    assert not (c.root / demo_records.RECORDS_DEMO_MARKER).exists()


def _parts(patient: demo_records.DemoPatient) -> list[str]:
    return [p.category for p in record_parts(demo_records.demo_bundle(patient))]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "medledger", *args], check=False,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _check_records_demo(c: Consortium, env: dict[str, str], events: list[str]) -> None:
    """What the records demo left on the ledger, seen through the command line and the API."""
    node0 = str(c.nodes[0].home)
    ana, ben = (pseudonym_of(demo_records.demo_keys(p.key).signing.public_key)
                for p in demo_records.PATIENTS)
    for patient, pseudonym in zip(demo_records.PATIENTS, (ana, ben), strict=True):
        listed = _cli(env, "records", "list", "--patient", pseudonym, "--verify", "--json",
                      "--home", node0)
        rows = json.loads(listed.stdout)
        assert "verified" in listed.stderr and "NOT VERIFIED" not in listed.stderr
        assert sorted(r["category"] for r in rows) == sorted(_parts(patient))
        assert {r["org"] for r in rows} == {"st-mary"}
    timeline = json.loads(_cli(env, "records", "timeline", "--patient", ana, "--key",
                               "patient-ana", "--json", "--home", node0).stdout)
    assert timeline and {"lab", "condition"} <= {row["category"] for row in timeline}

    log = _cli(env, "records", "access-log", "--patient", ben, "--verify", "--json",
               "--home", node0)
    [entry] = json.loads(log.stdout)
    assert entry["basis"].startswith("emergency:") and entry["org"] == "northgate"
    api = f"http://{c.nodes[0].api}/v1"
    emergency = httpx.get(f"{api}/records/emergencies/{entry['tx']}").json()["value"]
    assert emergency["reason"] == "ETREAT" and emergency["justification"] is None
    escrow = httpx.get(f"{api}/records/patients/{ben}/emergency-key").json()["value"]
    assert (sorted(escrow["shares"]), escrow["threshold"]) == (["northgate", "st-mary"], 2)
    released = [httpx.get(f"{api}/records/emergencies/{entry['tx']}/releases/{org}")
                for org in ("st-mary", "northgate")]
    assert [r.status_code for r in released] == [200, 404]  # the second is the newcomer's
    # what the hint says to try: the second release, then Dr Noor reads under break-glass
    _cli(env, "records", "release", entry["tx"], "--org", "northgate", "--key",
         "holder-northgate", "--home", node0)
    record = emergency["records"][0]
    read = _cli(env, "records", "read", record, "--basis", f"emergency:{entry['tx']}",
                "--key", "dr-noor", "--home", node0)
    assert json.loads(read.stdout)["resourceType"]

    now = httpx.get(f"{api}/status").json()["latest_block_time"]
    grants = [httpx.get(f"{api}/records/grants/{item['value']}").json()["value"]
              for item in httpx.get(f"{api}/records/patients/{ana}/grants").json()["items"]]
    expired = [g for g in grants if g["expires"] <= now]
    active = [g for g in grants if g["expires"] > now]
    assert [g["grantee"] for g in active] == ["org:northgate"], grants
    noor = demo_records.demo_keys("dr-noor").signing.public_key.hex()
    assert [g["grantee"] for g in expired] == [noor], grants
    assert all(g["revoked"] is None for g in grants)

    listed = _cli(env, "events", "list", "--json", "--home", node0)
    events.extend(e["type"] for e in json.loads(listed.stdout)["events"])


@pytest.mark.processes
def test_net_run_seeds_a_fresh_consortium_once(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLEDGER_PASSPHRASE", PASSPHRASE)
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    ports = [(free_port(), free_port()) for _ in range(4)]
    c = Consortium.init(tmp_path / "c", "demo-chain", 4, kdf_params=FAST_KDF, ports=ports,
                        engine=True, block_interval_ms=200)
    first = _net_run(c, tmp_path / "run1.log", r"demo: records demo data added", env)
    assert first.count("demo: identity.member.register committed in block") == 2, first
    assert "demo: ledger.anchor committed in block" in first, first
    assert "warning" not in first, first
    assert (c.root / net.DEMO_MARKER).exists()
    assert (c.root / demo_records.RECORDS_DEMO_MARKER).exists()
    assert first.count(": registered patient ") == 2, first
    assert first.count("demo: dr-cara: added record ") == len(
        [c for p in demo_records.PATIENTS for c in _parts(p)]), first
    assert first.count("demo: patient-ana: granted ") == 2, first
    assert "demo: dr-noor: emergency " in first, first
    assert "to dr-noor has expired (block time)" in first, first
    assert re.search(r"records timeline --patient [0-9a-f]{32} --key patient-ana --home "
                     + re.escape(str(c.root / "node0")), first), first
    keys = Home(c.nodes[0].home).known_keys()
    assert {"patient-ana", "patient-ben", "dr-cara", "dr-noor"} <= set(keys)
    assert Home(c.nodes[1].home).known_keys() == ["northgate"]  # still its default key

    events: list[str] = []
    second = _net_run(c, tmp_path / "run2.log", r"node0: height [1-9]", env,
                      lambda: _check_records_demo(c, env, events))
    assert "demo:" not in second, second
    assert engines_under(c.root) == [], "a node's cometbft outlived `net run`"
    # seeded once only: the apps' demo (a clinician, an auditor, an anchor), then the
    # records demo (four members, two patients, their records, two grants, an emergency
    # key, one emergency and one release; the second release is the check's, as the hint
    # says)
    assert events.count("identity.member_registered") == 6, events
    assert events.count("anchor.anchored") == 1, events
    assert events.count("identity.patient_registered") == 2, events
    records = sum(len(_parts(p)) for p in demo_records.PATIENTS)
    assert events.count("records.added") == records, events
    assert events.count("records.granted") == 2, events
    assert events.count("records.emergency") == 1, events
    assert events.count("records.emergency_key") == 1, events
    assert events.count("records.released") == 2, events
