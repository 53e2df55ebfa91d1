"""Break-glass when the patient cannot act: the patient's emergency key, split among the
hospitals, released share by share to the emergency clinician, who then opens the records.

First the client's part on its own (:mod:`medledger.client.emergency`, 3 of 5), then the
whole flow through ``medledger records ...`` on a local chain (``tests/localchain.py``)
whose demo consortium has two hospitals, so the key is 2 of 2: the patient sets the key, a
clinician adds a record, an emergency clinician breaks the glass, one release is not
enough, two are. Every FHIR resource carries a canary; no file of the node's may hold it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import medledger.cli.main as cli
from medledger.apps.identity import pseudonym_of
from medledger.client.emergency import (
    EmergencyKey,
    create_emergency_key,
    emergency_open,
    recover_emergency_key,
    release_share,
)
from medledger.client.records import RecordError, RecoveryError, seal_record
from medledger.crypto import EncryptionKey, Keystore
from medledger.node import PASSPHRASE_ENV, Home
from medledger.node.blobs import BlobStore
from tests.conftest import DEMO_CHAIN_ID, DEMO_GENESIS_TIME, FAST_KDF
from tests.localchain import LocalNode, open_local
from tests.localworld import register_people, serve_cli
from tests.test_records_commands import (
    CANARY,
    PASSPHRASE,
    SUITE,
    observation,
    ok,
    read_json,
    refused,
    write,
)

EMERGENCY_ID = "e1" * 32


# the client's part ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def five() -> dict[str, EncryptionKey]:
    """The encryption keys of five hospitals' holding admins."""
    return {f"hospital-{i}": EncryptionKey.generate(SUITE) for i in range(5)}


def _split(five: dict[str, EncryptionKey]) -> EmergencyKey:
    holders = {org: (f"{i:02x}" * 32, k.public_bytes(), k.suite)
               for i, (org, k) in enumerate(five.items())}
    return create_emergency_key(holders)


def test_three_of_five_released_shares_open_a_record_and_two_do_not(
        five: dict[str, EncryptionKey]) -> None:
    made = _split(five)
    assert made.threshold == 3 and [s.org for s in made.shares] == sorted(five)
    clinician = EncryptionKey.generate(SUITE)
    released = [release_share(s.wrapped, five[s.org], emergency_id=EMERGENCY_ID,
                              clinician_key=clinician.public_bytes(),
                              clinician_suite=clinician.suite) for s in made.shares]
    sealed = seal_record(CANARY.encode(), patient_pseudonym="p" * 32, category="lab",
                         readers={"ee" * 32: (made.enc_key, made.enc_suite)})
    opening = {"emergency_id": EMERGENCY_ID, "enc_key": made.enc_key,
               "enc_suite": made.enc_suite, "threshold": 3, "patient_pseudonym": "p" * 32,
               "category": "lab"}
    for chosen in (released[:3], released[2:], [released[0], released[2], released[4]]):
        assert emergency_open(sealed.ciphertext, sealed.keys[0].wrapped, chosen, clinician,
                              **opening) == CANARY.encode()
    with pytest.raises(RecoveryError, match="3 released shares are needed, 2 open"):
        emergency_open(sealed.ciphertext, sealed.keys[0].wrapped, released[:2], clinician,
                       **opening)
    # a bad share among them is left out; another clinician's key opens none
    junk = release_share(made.shares[0].wrapped, five[made.shares[0].org],
                         emergency_id="0" * 64, clinician_key=clinician.public_bytes(),
                         clinician_suite=clinician.suite)
    assert emergency_open(sealed.ciphertext, sealed.keys[0].wrapped,
                          [junk, *released[1:4]], clinician, **opening) == CANARY.encode()
    with pytest.raises(RecoveryError):
        recover_emergency_key(released, EncryptionKey.generate(SUITE),
                              emergency_id=EMERGENCY_ID, enc_key=made.enc_key,
                              enc_suite=made.enc_suite, threshold=3)


def test_a_share_opens_only_for_its_holder(five: dict[str, EncryptionKey]) -> None:
    made = _split(five)
    other = five[made.shares[1].org]
    with pytest.raises(RecordError, match="does not open with this guardian's key"):
        release_share(made.shares[0].wrapped, other, emergency_id=EMERGENCY_ID,
                      clinician_key=other.public_bytes(), clinician_suite=other.suite)


def test_a_small_consortium_needs_every_hospital_up_to_three() -> None:
    for n, k in ((1, 1), (2, 2), (3, 3), (4, 3)):
        keys = {f"h{i}": EncryptionKey.generate(SUITE) for i in range(n)}
        made = create_emergency_key({org: (f"{i:02x}" * 32, key.public_bytes(), key.suite)
                                     for i, (org, key) in enumerate(keys.items())})
        assert (made.threshold, len(made.shares)) == (k, n)


# the whole flow on a local chain --------------------------------------------------------------
MEMBERS = {"author": ("st-mary", "clinician"), "medic": ("northgate", "emergency_clinician"),
           "holder-st-mary": ("st-mary", "admin"), "holder-northgate": ("northgate", "admin")}


@dataclass
class World:
    home: Home
    node: LocalNode
    keys: dict[str, Path]
    api: str = "node.test:80"

    def pseudonym(self) -> str:
        keys = Keystore.load(self.keys["patient"], PASSPHRASE)
        return pseudonym_of(keys.signing.public_key)


def _people(home: Home, node: LocalNode, folder: Path) -> dict[str, Path]:
    return register_people(home, node, folder, DEMO_CHAIN_ID, members=MEMBERS,
                           patients=("patient",), suite=SUITE, passphrase=PASSPHRASE)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as m:
        m.setenv(PASSPHRASE_ENV, PASSPHRASE)
        root = tmp_path_factory.mktemp("break-glass")
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


def records(world: World, *args: str | Path, who: str) -> Result:
    return CliRunner().invoke(cli.app, ["records", *(str(a) for a in args), "--api",
                                        world.api, "--key", str(world.keys[who])])


def _add(world: World, path: Path) -> str:
    result = ok(records(world, "add", path, "--patient", world.pseudonym(), who="author"))
    return re.findall(r"added record ([0-9a-f]{64})", result.stdout)[0]


def test_break_glass_opens_with_two_of_two_hospitals_and_not_with_one(
        world: World, tmp_path: Path) -> None:
    early = _add(world, write(tmp_path / "early.json", observation(5.1)))
    refused(records(world, "emergency-key", "--patient", world.pseudonym(), who="author"),
            "is not patient")
    set_ = ok(records(world, "emergency-key", "--patient", world.pseudonym(), who="patient"))
    assert "any 2 of northgate, st-mary release it; 1 records re-wrapped" in set_.stdout
    lab = _add(world, write(tmp_path / "lab.json", observation(9.4)))  # sealed for it too

    broke = ok(records(world, "emergency", "--patient", world.pseudonym(), "--reason",
                       "ETREAT", "--records", f"{lab},{early}", who="medic"))
    emergency = re.search(r"emergency ([0-9a-f]{64})", broke.stdout)[1]  # type: ignore[index]
    basis = f"emergency:{emergency}"
    refused(records(world, "read", lab, "--basis", basis, who="medic"),
            "released so far: none")

    refused(records(world, "release", emergency, "--org", "st-mary", who="holder-northgate"),
            "wrapped for its admin")
    ok(records(world, "release", emergency, "--org", "st-mary", who="holder-st-mary"))
    refused(records(world, "release", emergency, "--org", "st-mary", who="holder-st-mary"),
            "already_released")
    refused(records(world, "read", lab, "--basis", basis, who="medic"),
            "released so far: st-mary")  # k - 1 shares open nothing

    ok(records(world, "release", emergency, "--org", "northgate", who="holder-northgate"))
    content = read_json(records(world, "read", lab, "--basis", basis, who="medic"))
    assert content["valueQuantity"]["value"] == 9.4
    assert content["note"][0]["text"] == CANARY
    assert read_json(records(world, "read", early, "--basis", basis, who="medic"))[
        "valueQuantity"]["value"] == 5.1  # re-wrapped when the key was set
    log = read_json(CliRunner().invoke(cli.app, ["records", "access-log", "--patient",
                                                 world.pseudonym(), "--json", "--api",
                                                 world.api]))
    assert [entry["basis"] for entry in log] == [basis] * 3  # the emergency and two reads
