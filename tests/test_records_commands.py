"""``medledger records ...`` through typer's CliRunner, in process, against a demo node on
a local chain (``tests/localchain.py``) with a blob store, its API behind
``httpx.MockTransport`` (requests forwarded whole, signatures included; a submission with
``wait=true`` commits its block at once).

The people: a patient (and a second one), a clinician at st-mary who authors, a clinician at
northgate the patient grants, an emergency clinician at northgate, and five guardians. Every
FHIR resource carries a canary; no file of the node's may hold it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import carebundle
import pytest
from typer.testing import CliRunner, Result

import medledger.cli.main as cli
from medledger.apps.identity import pseudonym_of
from medledger.crypto import Keystore
from medledger.ledger import Transaction
from medledger.node import PASSPHRASE_ENV, Home
from medledger.node.blobs import BlobStore
from medledger.standards.fhir import split_bundle, validate
from tests.conftest import DEMO_CHAIN_ID, DEMO_GENESIS_TIME, FAST_KDF
from tests.localchain import LocalNode, open_local
from tests.localworld import commit_ok, register_people, serve_cli

PASSPHRASE = "correct horse battery staple"
CANARY = "CANARY-4be1-record-plaintext"
SUITE = "x25519"


# the node and its API ---------------------------------------------------------------------------
@dataclass
class World:
    home: Home
    node: LocalNode
    keys: dict[str, Path]  # a keystore file per person
    api: str = "node.test:80"

    def keystore(self, who: str) -> Keystore:
        return Keystore.load(self.keys[who], PASSPHRASE)

    def key_hex(self, who: str) -> str:
        return self.keystore(who).signing.public_key.hex()

    def pseudonym(self, who: str = "patient") -> str:
        return pseudonym_of(self.keystore(who).signing.public_key)


MEMBERS = {"author": ("st-mary", "clinician"), "grantee": ("northgate", "clinician"),
           "medic": ("northgate", "emergency_clinician")}
PATIENTS = ("patient", "other", *(f"guardian{i}" for i in range(5)))


def _people(home: Home, node: LocalNode, folder: Path) -> dict[str, Path]:
    return register_people(home, node, folder, DEMO_CHAIN_ID, members=MEMBERS,
                           patients=PATIENTS, suite=SUITE, passphrase=PASSPHRASE)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as m:
        m.setenv(PASSPHRASE_ENV, PASSPHRASE)
        root = tmp_path_factory.mktemp("records")
        home = Home.init(root / "node", DEMO_CHAIN_ID, kdf_params=FAST_KDF, demo=True,
                         genesis_time=DEMO_GENESIS_TIME)
        node = open_local(home)
        node.blobs = BlobStore(home.path / "data" / "blobs")
        (root / "people").mkdir()
        files = _people(home, node, root / "people")
        serve_cli(node, m)
        yield World(home, node, files)
        node.close()
        on_disk = b"".join(p.read_bytes() for p in home.path.rglob("*") if p.is_file())
        assert CANARY.encode() not in on_disk, "record plaintext reached the node's files"


@pytest.fixture(autouse=True)
def passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def records(runner: CliRunner, world: World, *args: str | Path, who: str | None = None
            ) -> Result:
    words = ["records", *(str(a) for a in args), "--api", world.api]
    if who is not None:
        words += ["--key", str(world.keys[who])]
    return runner.invoke(cli.app, words)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def refused(result: Result, says: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.output  # no traceback
    assert "Traceback" not in result.output
    assert says in " ".join(result.output.split()), result.output
    assert CANARY not in result.output


def record_ids(result: Result) -> list[str]:
    return re.findall(r"added record ([0-9a-f]{64})", result.stdout)


# FHIR content ---------------------------------------------------------------------------------
def observation(value: float = 6.9, when: str = "2026-01-03T09:00:00Z",
                note: str = CANARY) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                "observation-category",
                                      "code": "laboratory"}]}],
            "code": {"text": "HbA1c"}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "%"}, "note": [{"text": note}]}


def condition(when: str = "2024-02-01") -> dict[str, Any]:
    return {"resourceType": "Condition", "code": {"text": f"diabetes {CANARY}"},
            "subject": {"reference": "Patient/p"}, "onsetDateTime": when}


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def add(runner: CliRunner, world: World, path: Path, patient: str = "patient") -> list[str]:
    result = ok(records(runner, world, "add", path, "--patient", world.pseudonym(patient),
                        who="author"))
    ids = record_ids(result)
    assert ids and CANARY not in result.output
    return ids


def read_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


# scenarios ------------------------------------------------------------------------------------
def test_add_list_then_read_by_the_patient(runner: CliRunner, world: World,
                                           tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": observation()},
        {"fullUrl": "urn:uuid:2", "resource": condition()}]}
    ids = add(runner, world, write(tmp_path / "visit.json", bundle))
    assert len(ids) == 2  # one record per category
    listed = read_json(records(runner, world, "list", "--patient", world.pseudonym(),
                               "--json"))
    assert [r["id"] for r in listed][-2:] == ids
    assert {r["category"] for r in listed if r["id"] in ids} == {"lab", "condition"}
    verified = records(runner, world, "list", "--patient", world.pseudonym(), "--verify",
                       "--home", world.home.path)
    assert ok(verified).exit_code == 0 and "verified" in verified.stderr

    content = read_json(records(runner, world, "read", ids[0], who="patient"))
    assert content["type"] == "collection"
    assert content["entry"][0]["resource"]["note"][0]["text"] == CANARY
    out = tmp_path / "lab.json"
    ok(records(runner, world, "read", ids[0], "--out", out, who="patient"))
    assert json.loads(out.read_text()) == content
    assert out.stat().st_mode & 0o077 == 0
    meta = read_json(records(runner, world, "show", ids[0], "--json"))
    assert meta["patient"] == world.pseudonym() and CANARY not in json.dumps(meta)


def test_grant_read_log_then_revoke(runner: CliRunner, world: World, tmp_path: Path) -> None:
    [lab] = add(runner, world, write(tmp_path / "lab.json", observation(7.2)))
    [cond] = add(runner, world, write(tmp_path / "cond.json", condition()))
    grantee = world.key_hex("grantee")
    granted = ok(records(runner, world, "grant", "--patient", world.pseudonym(), "--to",
                         grantee, "--categories", "lab", "--days", "30", "--purpose", "TREAT",
                         who="patient"))
    grant_id = re.search(r"granted ([0-9a-f]{64})", granted.stdout)[1]  # type: ignore[index]

    content = read_json(records(runner, world, "read", lab, who="grantee"))
    assert content["valueQuantity"]["value"] == 7.2
    refused(records(runner, world, "read", cond, who="grantee"),
            "no active grant of the patient covers this condition record")
    log = read_json(records(runner, world, "access-log", "--patient", world.pseudonym(),
                            "--json"))
    assert {"reader": grantee, "records": [lab], "basis": f"grant:{grant_id}"}.items() <= \
        log[-1].items()

    # a record added while the grant is active is sealed for the grantee too
    [later] = add(runner, world, write(tmp_path / "later.json", observation(5.5)))
    assert read_json(records(runner, world, "read", later, who="grantee"))[
        "valueQuantity"]["value"] == 5.5

    ok(records(runner, world, "revoke", grant_id, who="patient"))
    refused(records(runner, world, "read", lab, who="grantee"), "no active grant")
    refused(records(runner, world, "read", lab, "--basis", f"grant:{grant_id}",
                    who="grantee"), "grant_revoked")


def test_emergency_then_justify(runner: CliRunner, world: World, tmp_path: Path) -> None:
    [lab] = add(runner, world, write(tmp_path / "lab.json", observation()), "other")
    broke = ok(records(runner, world, "emergency", "--patient", world.pseudonym("other"),
                       "--reason", "ETREAT", "--records", lab, who="medic"))
    emergency = re.search(r"emergency ([0-9a-f]{64})", broke.stdout)[1]  # type: ignore[index]
    log = read_json(records(runner, world, "access-log", "--patient",
                            world.pseudonym("other"), "--json"))
    assert log[-1]["basis"] == f"emergency:{emergency}" and log[-1]["records"] == [lab]
    ok(records(runner, world, "justify", emergency, "--text", "case ER-2291", who="medic"))
    refused(records(runner, world, "justify", emergency, "--text", "again", who="medic"),
            "already_justified")
    # the ledger holds no content key for the emergency reader: the key is the client's part
    refused(records(runner, world, "read", lab, "--basis", f"emergency:{emergency}",
                    who="medic"), "has no content key for key")


def test_import_then_export_equal_resource_for_resource(runner: CliRunner, world: World,
                                                        tmp_path: Path) -> None:
    raw = carebundle.to_json(carebundle.generate_bundle(profile="type2_diabetes", seed=7))
    source = tmp_path / "bundle.json"
    source.write_text(raw)
    keys = Keystore.generate(SUITE)  # a fresh patient, so that export holds this bundle only
    keys.save(tmp_path / "fresh.key", PASSPHRASE, kdf_params=FAST_KDF)
    world.keys["fresh"] = tmp_path / "fresh.key"
    commit_ok(world.node, [Transaction.create(keys.signing, DEMO_CHAIN_ID,
                                            "identity.patient.register", 1,
                                            {"enc_key": keys.encryption.public_bytes().hex(),
                                             "enc_suite": SUITE})])
    imported = ok(records(runner, world, "import", source, "--patient",
                          world.pseudonym("fresh"), who="author"))
    assert len(record_ids(imported)) >= 4 and "[1/" in imported.stderr
    out = tmp_path / "export.json"
    ok(records(runner, world, "export", "--patient", world.pseudonym("fresh"), "--out", out,
               who="fresh"))
    assert split_bundle(out.read_bytes()) == split_bundle(raw.encode())
    validate(out.read_bytes())


def test_timeline_lists_by_date_with_status_and_progress(runner: CliRunner, world: World,
                                                         tmp_path: Path) -> None:
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan",
            "subject": {"reference": "Patient/p"}, "title": "diet", "period": {
                "start": "2025-06-01"}, "activity": [
            {"detail": {"status": "completed", "description": CANARY}},
            {"detail": {"status": "in-progress"}}]}
    visit = {"resourceType": "Appointment", "status": "booked",
             "start": "2027-03-01T10:00:00Z", "end": "2027-03-01T10:30:00Z",
             "participant": [{"status": "accepted", "actor": {"display": "Dr"}}]}
    for name, resource in (("plan", plan), ("visit", visit), ("old", condition("2019-05-05"))):
        add(runner, world, write(tmp_path / f"{name}.json", resource), "guardian4")
    rows = read_json(records(runner, world, "timeline", "--patient",
                             world.pseudonym("guardian4"), "--json", who="guardian4"))
    assert [r["date"] for r in rows] == ["2019-05-05", "2025-06-01", "2027-03-01T10:00:00Z"]
    assert rows[1]["status"] == "active, 1/2 activities completed"
    assert rows[2]["status"] == "booked" and rows[2]["category"] == "appointment"
    table = ok(records(runner, world, "timeline", "--patient", world.pseudonym("guardian4"),
                       who="guardian4"))
    assert "1/2 activities completed" in table.stdout
    refused(records(runner, world, "timeline", "--patient", world.pseudonym("guardian4"),
                    who="patient"), "is not patient")


def test_guardians_three_of_five_recover(runner: CliRunner, world: World,
                                         tmp_path: Path) -> None:
    guardians = [f"guardian{i}" for i in range(5)]
    args: list[str | Path] = ["guardians", "set", "--threshold", "3", "--out",
                              tmp_path / "shares"]
    for g in guardians:
        args += ["--guardian", world.key_hex(g)]
    ok(records(runner, world, *args, who="patient"))
    files = sorted((tmp_path / "shares").iterdir())
    assert len(files) == 5
    chosen = [f for f in files if any(f.name.startswith(f"guardian-{world.key_hex(g)[:16]}")
                                      for g in guardians[1:4])]
    opening = [a for g in guardians[1:4] for a in ("--guardian-key", str(world.keys[g]))]
    new = tmp_path / "recovered.key"
    ok(runner.invoke(cli.app, ["records", "guardians", "recover", *map(str, chosen),
                               *opening, "--out", str(new)]))
    recovered, original = Keystore.load(new, PASSPHRASE), world.keystore("patient")
    assert recovered.signing.seed == original.signing.seed
    assert recovered.encryption.private_bytes() == original.encryption.private_bytes()

    two = runner.invoke(cli.app, ["records", "guardians", "recover", *map(str, chosen[:2]),
                                  *opening, "--out", str(tmp_path / "two.key")])
    refused(two, "3 of the 5 guardians' files are needed, 2 given")
    assert not (tmp_path / "two.key").exists()


def test_recover_then_rotate_moves_every_record_to_the_new_keys(
        runner: CliRunner, world: World, tmp_path: Path) -> None:
    pseudonym = world.pseudonym("other")
    [lab] = add(runner, world, write(tmp_path / "lab.json", observation(5.4)), "other")
    [gone] = add(runner, world, write(tmp_path / "cond.json", condition()), "other")
    ok(records(runner, world, "erase", gone, who="other"))
    guardians = [f"guardian{i}" for i in range(3)]
    ok(records(runner, world, "guardians", "set", "--threshold", "2", "--out",
               tmp_path / "shares", *[a for g in guardians for a in ("--guardian",
                                                                     world.key_hex(g))],
               who="other"))
    recovered = tmp_path / "recovered.key"
    ok(runner.invoke(cli.app, ["records", "guardians", "recover",
                               *map(str, sorted((tmp_path / "shares").iterdir())[:2]),
                               *[a for g in guardians
                                 for a in ("--guardian-key", str(world.keys[g]))],
                               "--out", str(recovered)]))
    new_file = tmp_path / "new.key"
    new = Keystore.generate(SUITE)
    new.save(new_file, PASSPHRASE, kdf_params=FAST_KDF)

    listed = read_json(records(runner, world, "list", "--patient", pseudonym, "--json"))
    live = sum(r["erased"] is None for r in listed)
    assert 0 < live < len(listed)
    rotated = ok(records(runner, world, "rotate", "--key", recovered, "--new-key", new_file))
    assert f" {live} records re-wrapped" in rotated.stdout  # not the erased one
    patient = world.node.chain.view().get(f"identity/patient/{pseudonym}")
    assert patient["key"] == new.signing.public_key.hex()
    assert patient["rotated"]["from"] == world.key_hex("other")
    content = read_json(records(runner, world, "read", lab, "--key", new_file))
    assert content["valueQuantity"]["value"] == 5.4
    refused(records(runner, world, "read", lab, who="other"), "403")
    [later] = add(runner, world, write(tmp_path / "later.json", observation(5.1)), "other")
    assert read_json(records(runner, world, "read", later, "--key", new_file)
                     )["valueQuantity"]["value"] == 5.1

    again = ok(records(runner, world, "rotate", "--key", recovered, "--new-key", new_file))
    assert "0 records re-wrapped" in again.stdout and "already rotated" in again.stderr
    refused(records(runner, world, "rotate", "--key", new_file, "--new-key", new_file),
            "--new-key is already registered")


BAD_INPUT: dict[str, tuple[list[str], str]] = {
    "a pseudonym that is not hex": (["list", "--patient", "not-a-pseudonym"],
                                    "--patient must be 32 hex characters"),
    "an unknown category": (["grant", "--patient", "0" * 32, "--to", "1" * 64, "--categories",
                             "lab,gossip", "--days", "1", "--purpose", "TREAT"],
                            "unknown category 'gossip'"),
    "a reason that is no break-glass code": (
        ["emergency", "--patient", "0" * 32, "--reason", "CURIOSITY", "--records", "2" * 64],
        "--reason must be one of BTG, ETREAT, ERTREAT"),
    "a record id that is not hex": (["show", "xyz"], "RECORD must be 64 hex characters"),
    "a file that is not there": (["add", "/nonexistent/visit.json", "--patient", "0" * 32],
                                 "cannot read /nonexistent/visit.json"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUT))
def test_bad_input_is_refused_with_the_reason(name: str, runner: CliRunner,
                                              world: World) -> None:
    args, says = BAD_INPUT[name]
    refused(records(runner, world, *args), says)


def test_invalid_fhir_is_refused_naming_the_path(runner: CliRunner, world: World,
                                                 tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.json", observation(when=f"yesterday {CANARY}"))
    refused(records(runner, world, "add", bad, "--patient", world.pseudonym(), who="author"),
            "Observation.effectiveDateTime: invalid dateTime")
    mixed = write(tmp_path / "mixed.json", {"resourceType": "Bundle", "type": "collection",
                                           "entry": [{"resource": observation()},
                                                     {"resource": condition()}]})
    refused(records(runner, world, "add", mixed, "--patient", world.pseudonym(),
                    "--previous", "3" * 64, who="author"), "--previous amends one record")
    refused(records(runner, world, "import", write(tmp_path / "one.json", observation()),
                    "--patient", world.pseudonym(), who="author"), "expected a Bundle")


def test_every_records_command_has_help(runner: CliRunner) -> None:
    for path in (["add"], ["import"], ["erase"], ["grant"], ["revoke"], ["emergency"],
                 ["justify"], ["read"], ["timeline"], ["export"], ["show"], ["list"],
                 ["access-log"], ["guardians", "set"], ["guardians", "recover"],
                 ["emergency-key"], ["release"], ["rotate"]):
        result = runner.invoke(cli.app, ["records", *path, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, path


@pytest.mark.parametrize("short, long", [(["patient", "register"],
                                          ["identity", "patient", "register"]),
                                         (["guardians", "recover"],
                                          ["records", "guardians", "recover"])])
def test_a_shortcut_is_the_same_command(runner: CliRunner, short: list[str],
                                        long: list[str]) -> None:
    def body(words: list[str]) -> str:
        result = runner.invoke(cli.app, [*words, "--help"])
        assert result.exit_code == 0, result.output
        return result.output.split("Usage:", 1)[1].split("\n", 1)[1]  # past the usage line
    assert body(short) == body(long)


def test_erase_then_nobody_reads(runner: CliRunner, world: World, tmp_path: Path) -> None:
    [lab] = add(runner, world, write(tmp_path / "lab.json", observation(8.1)))
    refused(records(runner, world, "erase", lab, who="author"), "not_patient")
    ok(records(runner, world, "erase", lab, who="patient"))
    refused(records(runner, world, "read", lab, who="patient"), "was erased")
