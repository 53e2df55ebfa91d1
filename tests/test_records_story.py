"""The records story end to end, on a 4-node consortium of real processes on CometBFT.

Each node is ``medledger up`` with its ``cometbft`` (:class:`tests.enginenet.EngineNet`);
everything goes through the REST API with the SDK (:class:`medledger.client.Client`,
RFC 9421 signed blob requests, the client-side sealing of :mod:`medledger.client.records`).

The people: a patient (keys in a keystore file with a passphrase); a clinician of st-mary
(hospital A, node 0) who writes; a cardiologist of northgate (hospital B, node 1) whom the
patient grants; an emergency clinician of riverside (hospital C, admitted by governance
during the story) who breaks the glass and, once two hospitals' admins release their
shares of the patient's emergency key, opens the record; the patient's timeline of
appointments and care plan; five guardians, three of whom recover the patient's lost
keystore, after which the patient rotates to new keys (these last through the
``medledger`` command line, each command a process of its own). Every FHIR resource
carries a canary token; at the end no file under any node's home may hold one, in any
form.

One consortium for the module; the steps are the tests below, in order, sharing
:class:`Story`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from medledger.apps.identity import pseudonym_of
from medledger.apps.records.state import (
    CURSOR_KEY,
    EMERGENCIES,
    EMERGENCY_QUEUE,
    JUSTIFY_MS,
)
from medledger.client import ApiRefused, verify_list_answer
from medledger.client.emergency import create_emergency_key, emergency_open, release_share
from medledger.client.records import (
    SealedRecord,
    open_record,
    records_add_body,
    seal_record,
    unwrap,
    wrap_for,
)
from medledger.client.signing import SignedAuth, sign_request
from medledger.crypto import Keystore, SigningKey
from medledger.ledger import Transaction
from medledger.standards.fhir import canonical_bytes, category, validate
from tests.enginenet import CHAIN, EngineNet, wait_for
from tests.nodeproc import FAST_KDF
from tests.story import COMMIT_TIMEOUT, HTTP_TIMEOUT, NetStory

pytestmark = pytest.mark.processes

PASSPHRASE = "patient passphrase for the story"
DAY_MS = 86_400_000
RECORDS = "/v1/records"
SNAPSHOT_INTERVAL = 5  # every node keeps state snapshots, so that the scans cover them


# canaries and resources -----------------------------------------------------------------------
def _canary(what: str) -> str:
    return f"CANARY{secrets.token_hex(10)}{what}"


ENCOUNTER_CANARY = _canary("encounter")
LAB_CANARY = _canary("troponin")
PLAN_CANARY = _canary("careplan")
CANARIES = (ENCOUNTER_CANARY, LAB_CANARY, PLAN_CANARY)


def encounter() -> dict[str, Any]:
    return {"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "AMB"},
            "subject": {"reference": "Patient/p"},
            "reasonCode": [{"text": f"chest pain on exertion, note {ENCOUNTER_CANARY}"}]}


def lab() -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                "observation-category",
                                      "code": "laboratory"}]}],
            "code": {"text": "Troponin I"}, "effectiveDateTime": "2026-01-03T09:00:00Z",
            "valueQuantity": {"value": 0.02, "unit": "ng/mL"},
            "note": [{"text": f"within range, note {LAB_CANARY}"}]}


# the people and the consortium ------------------------------------------------------------------
@dataclass
class Person:
    keys: Keystore

    @property
    def signing(self) -> SigningKey:
        return self.keys.signing

    @property
    def hex(self) -> str:
        return self.keys.signing.public_key.hex()

    def enc(self) -> dict[str, str]:
        return {"enc_key": self.keys.encryption.public_bytes().hex(),
                "enc_suite": self.keys.encryption.suite}


@dataclass
class Written:
    """A record as its author's client sealed it (the plaintext stays with the test)."""

    id: str
    category: str
    plaintext: bytes
    sealed: SealedRecord
    height: int


@dataclass
class Story(NetStory):
    root: Path
    patient: Person
    author: Person  # st-mary clinician
    cardiologist: Person  # northgate clinician
    medic: Person  # riverside emergency clinician
    patient_file: Path
    records: dict[str, Written] = field(default_factory=dict)
    grant: str = ""
    emergency: str = ""
    admins: dict[str, SigningKey] = field(default_factory=dict)

    @property
    def pseudonym(self) -> str:
        return pseudonym_of(self.patient.signing.public_key)

    def wait_all(self, height: int) -> None:
        self.net.wait_height(range(len(self.net.nodes)), height, timeout=COMMIT_TIMEOUT)

    def block_time(self, node: int) -> int:
        with self.client(node) as client:
            height = client.status()["height"]
            return int(client.block(height)["header"]["time"])

    def wrapped(self, node: int, record: str, reader: str) -> str:
        value = self.get(node, f"{RECORDS}/records/{record}/keys/{reader}")["value"]
        return str(value["wrapped"])


def fetch(url: str, key: SigningKey, digest: str) -> httpx.Response:
    """``GET /v1/blobs/{digest}`` signed with ``key`` (RFC 9421)."""
    with httpx.Client(base_url=url, auth=SignedAuth(key), timeout=HTTP_TIMEOUT) as http:
        return http.get(f"/v1/blobs/{digest}")


def refusal(answer: httpx.Response) -> tuple[int, str | None]:
    """``(status, code)`` of an answer (code None when the body is not a refusal's)."""
    try:
        return answer.status_code, answer.json().get("code")
    except ValueError:
        return answer.status_code, None


def blob_file(net: EngineNet, node: int, digest: str) -> Path:
    return net.nodes[node].home.path / "data" / "blobs" / digest[:2] / digest


def _admit_riverside(story: Story, admin: SigningKey) -> None:
    """Hospital C joins by governance: validator 0 proposes, validators 1 and 2 approve
    (3 of 4 equal powers is above 2/3)."""
    validators = [node.home.validator_key() for node in story.net.nodes]
    with story.client(0) as client:
        tip = client.status()["height"]
    change = {"id": "riverside", "name": "Riverside Hospital", "role": "hospital",
              "admins": [admin.public_key.hex()]}
    proposed = story.send(0, validators[0], "governance.propose",
                          {"kind": "org_admit", "change": change,
                           "effective_height": tip + 200})
    story.commit(0, [story.tx(v, "governance.approve", {"proposal": proposed["tx_id"]})
                     for v in validators[1:3]])
    assert story.get(0, "/v1/identity/orgs/riverside")["value"]["status"] == "active"


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    root = tmp_path_factory.mktemp("story")
    net = EngineNet(root / "consortium", 4, block_interval_ms=200)
    for node in net.nodes:
        config = node.home.config()
        replace(config, snapshot_interval=SNAPSHOT_INTERVAL).save(node.home.path)
    people = root / "people"
    people.mkdir()
    # 1. the patient's keys, in a keystore file under a passphrase (never in a node's home)
    patient_file = people / "patient.key"
    Keystore.generate().save(patient_file, PASSPHRASE, kdf_params=FAST_KDF)
    net.start()
    try:
        net.wait_height(range(4), 1)
        story = Story(net, root, Person(Keystore.load(patient_file, PASSPHRASE)),
                      Person(Keystore.generate()), Person(Keystore.generate()),
                      Person(Keystore.generate()), patient_file)
        riverside_admin = SigningKey.generate()
        _admit_riverside(story, riverside_admin)

        def admin(org: str) -> SigningKey:
            for node in net.nodes:
                if org in node.home.known_keys():
                    return node.home.member_keys(org).signing
            raise AssertionError(f"no home keeps {org}'s admin key")

        def register(org: str, key: SigningKey, who: Person, role: str) -> Transaction:
            return story.tx(key, "identity.member.register",
                            {"org": org, "key": who.hex, "role": role, "name": role,
                             **who.enc()})

        story.admins = {org: admin(org) for org in ("st-mary", "northgate")}
        story.admins["riverside"] = riverside_admin
        story.commit(0, [
            story.tx(story.patient.signing, "identity.patient.register", story.patient.enc()),
            register("st-mary", admin("st-mary"), story.author, "clinician"),
            register("northgate", admin("northgate"), story.cardiologist, "clinician"),
            register("riverside", riverside_admin, story.medic, "emergency_clinician"),
        ])
        yield story
    finally:
        net.stop()


# 1. the patient ---------------------------------------------------------------------------------
def test_1_patient_registers_under_a_pseudonym(story: Story) -> None:
    entry = story.get(2, f"/v1/identity/patients/{story.pseudonym}")["value"]
    assert entry["key"] == story.patient.hex
    assert entry["enc_key"] == story.patient.enc()["enc_key"]
    key = story.get(3, f"/v1/identity/keys/{story.patient.hex}")["value"]
    assert key["kind"] == "patient" and key["pseudonym"] == story.pseudonym
    assert key["name"] is None and key["org"] is None  # nothing but the pseudonym


# 2. a clinician at hospital A writes ------------------------------------------------------------
def _reader(story: Story, key_hex: str) -> tuple[bytes, str]:
    """A reader's encryption key as the ledger has it (read from node 0)."""
    entry = story.get(0, f"/v1/identity/keys/{key_hex}")["value"]
    return bytes.fromhex(entry["enc_key"]), entry["enc_suite"]


def _write(story: Story, resource: dict[str, Any]) -> Written:
    model = validate(resource)
    kind, plaintext = category(model), canonical_bytes(model)
    readers = {who: _reader(story, who) for who in (story.patient.hex, story.author.hex)}
    sealed = seal_record(plaintext, patient_pseudonym=story.pseudonym, category=kind,
                         readers=readers)
    assert not any(c.encode() in sealed.ciphertext for c in CANARIES)
    with httpx.Client(base_url=story.api(0), auth=SignedAuth(story.author.signing),
                      timeout=HTTP_TIMEOUT) as http:
        stored = http.put(f"/v1/blobs/{sealed.digest}", content=sealed.ciphertext)
    assert stored.status_code == 201, stored.text
    assert stored.json() == {"digest": sealed.digest, "size": sealed.size}
    answer = story.send(0, story.author.signing, "records.add",
                        records_add_body(sealed, patient=story.pseudonym, category=kind))
    return Written(answer["tx_id"], kind, plaintext, sealed, answer["height"])


def test_2_a_clinician_at_hospital_a_writes_an_encounter_and_a_lab_result(story: Story) -> None:
    for resource in (encounter(), lab()):
        written = _write(story, resource)
        story.records[written.category] = written
    assert set(story.records) == {"encounter", "lab"}
    for written in story.records.values():
        meta = story.get(0, f"{RECORDS}/records/{written.id}")["value"]
        assert meta["patient"] == story.pseudonym and meta["category"] == written.category
        assert meta["digest"] == written.sealed.digest and meta["size"] == written.sealed.size
        assert meta["author"] == story.author.hex and meta["org"] == "st-mary"
        assert sorted(meta["readers"]) == sorted([story.patient.hex, story.author.hex])
    listed = story.get(0, f"{RECORDS}/patients/{story.pseudonym}/records")
    assert [item["value"] for item in listed["items"]] == [
        story.records["encounter"].id, story.records["lab"].id]


# 3. the patient reads it from node C ------------------------------------------------------------
def test_3_the_patient_reads_it_from_another_node(story: Story) -> None:
    written = story.records["encounter"]
    story.wait_all(written.height)
    path = blob_file(story.net, 2, written.sealed.digest)
    wait_for(path.is_file, 20, "node 0 to push the ciphertext to node 2")  # replicated
    assert path.read_bytes() == written.sealed.ciphertext
    answer = fetch(story.api(2), story.patient.signing, written.sealed.digest)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    plaintext = open_record(answer.content,
                            story.wrapped(2, written.id, story.patient.hex),
                            story.patient.keys.encryption, patient_pseudonym=story.pseudonym,
                            category=written.category, digest=written.sealed.digest)
    assert plaintext == written.plaintext and ENCOUNTER_CANARY.encode() in plaintext
    # a blob this node lacks is fetched from a peer: node 3 loses its copy, and serves it
    lab_record = story.records["lab"]
    wait_for(blob_file(story.net, 3, lab_record.sealed.digest).is_file, 20,
             "node 0 to push the lab ciphertext to node 3")
    blob_file(story.net, 3, lab_record.sealed.digest).unlink()
    again = fetch(story.api(3), story.patient.signing, lab_record.sealed.digest)
    assert again.status_code == 200 and again.content == lab_record.sealed.ciphertext
    assert blob_file(story.net, 3, lab_record.sealed.digest).read_bytes() == \
        lab_record.sealed.ciphertext
    # nobody else reads it: not the cardiologist (no grant yet), not a stranger
    assert refusal(fetch(story.api(2), story.cardiologist.signing,
                         written.sealed.digest)) == (403, "not_allowed")
    assert refusal(fetch(story.api(2), SigningKey.generate(),
                         written.sealed.digest)) == (403, "not_allowed")


# 4. the patient grants hospital B's cardiologist ------------------------------------------------
def test_4_the_patient_grants_the_cardiologist_for_30_days(story: Story) -> None:
    patient = Person(Keystore.load(story.patient_file, PASSPHRASE))  # the patient's device
    enc_public, suite = _reader(story, story.cardiologist.hex)
    keys = []
    for written in story.records.values():
        content_key = unwrap(story.wrapped(1, written.id, patient.hex), written.sealed.digest,
                             patient.keys.encryption)
        keys.append({"record": written.id, "reader": story.cardiologist.hex,
                     "wrapped": wrap_for(content_key, written.sealed.digest, enc_public,
                                         suite)})
    expires = story.block_time(1) + 30 * DAY_MS
    answer = story.send(1, patient.signing, "records.grant", {
        "patient": story.pseudonym, "grantee": story.cardiologist.hex,
        "categories": ["encounter", "lab"], "purpose": "TREAT", "expires": expires,
        "keys": keys})
    story.grant = answer["tx_id"]
    grant = story.get(1, f"{RECORDS}/grants/{story.grant}")["value"]
    assert grant["grantee"] == story.cardiologist.hex and grant["expires"] == expires
    assert sorted(grant["records"]) == sorted(w.id for w in story.records.values())
    assert grant["revoked"] is None and grant["by"] == patient.hex
    listed = story.get(1, f"{RECORDS}/patients/{story.pseudonym}/grants")
    assert [item["value"] for item in listed["items"]] == [story.grant]
    # a grant is not yet a read: no window is open, so no node serves the cardiologist
    assert refusal(fetch(story.api(1), story.cardiologist.signing,
                         story.records["lab"].sealed.digest)) == (403, "not_allowed")


# 5. the cardiologist reads through node B; the read is on the patient's access log ---------------
def test_5_the_cardiologist_reads_and_the_read_is_on_the_access_log(story: Story) -> None:
    ids = [w.id for w in story.records.values()]
    access = story.send(1, story.cardiologist.signing, "records.access",
                        {"records": ids, "basis": f"grant:{story.grant}"})
    for written in story.records.values():
        answer = fetch(story.api(1), story.cardiologist.signing, written.sealed.digest)
        assert answer.status_code == 200, answer.text
        plaintext = open_record(answer.content,
                                story.wrapped(1, written.id, story.cardiologist.hex),
                                story.cardiologist.keys.encryption,
                                patient_pseudonym=story.pseudonym, category=written.category,
                                digest=written.sealed.digest)
        assert plaintext == written.plaintext

    genesis = story.net.nodes[0].home.genesis()

    def proven_log() -> list[Any] | None:
        try:
            answer = story.get(1, f"{RECORDS}/patients/{story.pseudonym}/access", prove=True)
        except ApiRefused as e:
            assert e.status == 503, e
            return None
        items = verify_list_answer(answer, genesis.validators, CHAIN, "records", "access",
                                   story.pseudonym).items
        return items if any(item["tx"] == access["tx_id"] for item in items) else None

    log = wait_for(proven_log, 20, "node 1 to prove the access log with the read on it")
    assert log == [{"basis": f"grant:{story.grant}", "height": access["height"],
                    "org": "northgate", "reader": story.cardiologist.hex, "records": ids,
                    "time": log[0]["time"], "tx": access["tx_id"]}]


# 6. the patient revokes -------------------------------------------------------------------------
def test_6_after_revocation_no_node_serves_the_cardiologist(story: Story) -> None:
    digest = story.records["lab"].sealed.digest
    story.wait_all(story.net.height(1))
    for node in range(4):  # the read window is open on every node before
        assert fetch(story.api(node), story.cardiologist.signing, digest).status_code == 200
    revoked = story.send(3, story.patient.signing, "records.revoke", {"grant": story.grant})
    for node in range(4):
        wait_for(lambda node=node: story.net.height(node) >= revoked["height"], COMMIT_TIMEOUT,
                 f"node {node} to commit the revocation")
        for written in story.records.values():
            assert refusal(fetch(story.api(node), story.cardiologist.signing,
                                 written.sealed.digest)) == (403, "not_allowed"), node
    grant = story.get(2, f"{RECORDS}/grants/{story.grant}")["value"]
    assert grant["revoked"]["by"] == story.patient.hex
    refused = story.refused(1, story.cardiologist.signing, "records.access",
                            {"records": [story.records["lab"].id],
                             "basis": f"grant:{story.grant}"})
    assert (refused.status, refused.code) == (403, "grant_revoked")
    # the patient still reads their own record
    assert fetch(story.api(1), story.patient.signing, digest).status_code == 200


# 7. break-glass ---------------------------------------------------------------------------------
def _overdue(story: Story, node: int) -> list[Any]:
    return story.get(node, f"{RECORDS}/overdue")["overdue"]  # type: ignore[no-any-return]


def test_7_break_glass_at_hospital_c_then_justify(story: Story) -> None:
    lab_record = story.records["lab"]
    digest = lab_record.sealed.digest
    assert refusal(fetch(story.api(2), story.medic.signing, digest)) == (403, "not_allowed")
    assert _overdue(story, 2) == []
    broke = story.send(2, story.medic.signing, "records.emergency",
                       {"patient": story.pseudonym, "reason": "ETREAT",
                        "records": [lab_record.id]})
    story.emergency = broke["tx_id"]
    # the patient's event stream names them
    with story.client(2) as client:
        events = client.events(type="records.emergency",
                               attrs={"patient": story.pseudonym})["events"]
    assert [e["tx_id"] for e in events] == [story.emergency]
    told = events[0]["attrs"]
    assert told["patient"] == story.pseudonym and told["reason"] == "ETREAT"
    assert told["org"] == "riverside" and told["reader"] == story.medic.hex
    emergency = story.get(2, f"{RECORDS}/emergencies/{story.emergency}")["value"]
    assert emergency["due"] == emergency["time"] + JUSTIFY_MS
    assert emergency["justification"] is None and emergency["flagged"] is None
    # listed as due: queued for the end-block hook, not yet reached by its cursor (72 h of
    # block time cannot pass here; the flag itself is the unit tests' to check)
    with story.client(2) as client:
        count = client.state(EMERGENCIES.count_key(EMERGENCY_QUEUE), prove=False)["value"]
        queued = [client.state(EMERGENCIES.item_key(EMERGENCY_QUEUE, n),
                               prove=False)["value"] for n in range(1, count + 1)]
        cursor = client.state(CURSOR_KEY, prove=False)["value"] or 1
    assert queued.index(story.emergency) + 1 >= cursor
    assert _overdue(story, 2) == []  # not overdue before it falls due

    access = story.send(2, story.medic.signing, "records.access",
                        {"records": [lab_record.id], "basis": f"emergency:{story.emergency}"})
    answer = fetch(story.api(2), story.medic.signing, digest)
    assert answer.status_code == 200 and answer.content == lab_record.sealed.ciphertext
    # the content key in an emergency is the client's part (not on the ledger)
    with pytest.raises(ApiRefused) as none:
        story.wrapped(2, lab_record.id, story.medic.hex)
    assert none.value.status == 404
    # the encounter was not named: the emergency does not cover it
    refused = story.refused(2, story.medic.signing, "records.access",
                            {"records": [story.records["encounter"].id],
                             "basis": f"emergency:{story.emergency}"})
    assert (refused.status, refused.code) == (403, "not_in_emergency")
    log = story.get(2, f"{RECORDS}/patients/{story.pseudonym}/access")["items"]
    mine = [item["value"] for item in log if item["value"]["reader"] == story.medic.hex]
    assert [entry["tx"] for entry in mine] == [story.emergency, access["tx_id"]]
    assert {entry["basis"] for entry in mine} == {f"emergency:{story.emergency}"}

    justified = story.send(2, story.medic.signing, "records.justify",
                           {"emergency": story.emergency, "text": "case ref ED-2026-0117"})
    emergency = story.get(2, f"{RECORDS}/emergencies/{story.emergency}")["value"]
    assert emergency["justification"]["by"] == story.medic.hex
    assert emergency["justification"]["height"] == justified["height"]
    assert emergency["flagged"] is None
    with story.client(2) as client:
        late = client.events(type="records.justified",
                             attrs={"emergency": story.emergency})["events"]
    assert [e["attrs"]["late"] for e in late] == ["false"]
    assert _overdue(story, 2) == [] and _overdue(story, 0) == []


# 8. signatures and integrity --------------------------------------------------------------------
def test_8_stale_and_replayed_requests_are_refused_and_tampered_blobs_never_served(
        story: Story) -> None:
    lab_record = story.records["lab"]
    digest = lab_record.sealed.digest
    url = f"{story.api(0)}/v1/blobs/{digest}"
    with httpx.Client(timeout=HTTP_TIMEOUT) as http:
        stale = sign_request(http.build_request("GET", url), story.patient.signing,
                             created=int(time.time()) - 120)
        assert refusal(http.send(stale)) == (401, "stale")
        ahead = sign_request(http.build_request("GET", url), story.patient.signing,
                             created=int(time.time()) + 120)
        assert refusal(http.send(ahead)) == (401, "stale")
        once = sign_request(http.build_request("GET", url), story.patient.signing)
        first = http.send(once)
        assert first.status_code == 200 and first.content == lab_record.sealed.ciphertext
        assert refusal(http.send(once)) == (401, "replayed")
        # the same signature at another node: it covers the authority, so it does not verify
        elsewhere = http.build_request("GET", f"{story.api(1)}/v1/blobs/{digest}",
                                       headers={k: once.headers[k] for k in
                                                ("signature", "signature-input")})
        assert refusal(http.send(elsewhere)) == (401, "bad_signature")
        unsigned = http.get(url)
        assert refusal(unsigned) == (401, "unsigned")

    # node 3's copy is changed on disk: it serves its peers' intact copy and repairs its own
    path = blob_file(story.net, 3, digest)
    tampered = bytes([path.read_bytes()[0] ^ 1]) + path.read_bytes()[1:]
    path.write_bytes(tampered)
    answer = fetch(story.api(3), story.patient.signing, digest)
    assert answer.status_code == 200 and answer.content == lab_record.sealed.ciphertext
    assert path.read_bytes() == lab_record.sealed.ciphertext
    # every copy of the encounter is changed: no node serves any of them
    enc = story.records["encounter"].sealed
    for node in range(4):
        path = blob_file(story.net, node, enc.digest)
        wait_for(path.is_file, 20, f"node {node} to hold the encounter's ciphertext")
        path.write_bytes(bytes([enc.ciphertext[0] ^ 1]) + enc.ciphertext[1:])
    for node in range(4):
        answer = fetch(story.api(node), story.patient.signing, enc.digest)
        assert refusal(answer) == (500, "integrity"), node
        assert enc.ciphertext[1:] not in answer.content


# 9. erasure -------------------------------------------------------------------------------------
def _forms(secret: bytes) -> list[bytes]:
    """``secret`` as raw bytes, as hex, and as base64 (standard and URL-safe) at each of
    the three alignments it may have inside a longer encoded run."""
    forms = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret)
        # drop the characters that mix in the padding bytes and the unknown tail
        head = (4 * shift + 2) // 3
        forms.append(encoded[head + 1:len(encoded) - 4])
        forms.append(base64.urlsafe_b64encode(b"\0" * shift + secret)[head + 1:
                                                                      len(encoded) - 4])
    return [f for f in forms if len(f) >= 16]


def _text_forms(text: str) -> list[bytes]:
    raw = text.encode()
    return [*_forms(raw), text.encode("utf-16-le"), text.encode("utf-16-be")]


def test_9_erasure_removes_the_ciphertext_from_every_node(story: Story) -> None:
    written = story.records["encounter"]
    erased = story.send(0, story.patient.signing, "records.erase", {"record": written.id})
    story.wait_all(erased["height"] + 1)
    for node in range(4):
        assert not blob_file(story.net, node, written.sealed.digest).exists(), node
        assert refusal(fetch(story.api(node), story.patient.signing,
                             written.sealed.digest)) == (403, "not_allowed"), node
    # the ledger keeps the digest and the metadata
    meta = story.get(3, f"{RECORDS}/records/{written.id}")["value"]
    assert meta["digest"] == written.sealed.digest and meta["size"] == written.sealed.size
    assert meta["category"] == "encounter" and meta["patient"] == story.pseudonym
    assert meta["erased"]["height"] == erased["height"]
    assert story.get(3, f"{RECORDS}/digests/{written.sealed.digest}")["value"] == written.id
    # no file under any node's home holds the ciphertext (nor the tampered copies of it)
    middle = written.sealed.ciphertext[16:-16]
    found = scan(story.net, {"ciphertext": _forms(middle)})
    assert not found, f"the erased ciphertext is still on disk: {found}"
    # the lab record is untouched: its ciphertext is still there, so the scan can see one
    assert scan(story.net, {"lab": _forms(story.records["lab"].sealed.ciphertext[16:-16])})


def test_9b_an_erased_ciphertext_cannot_be_uploaded_again(story: Story) -> None:
    written = story.records["encounter"]
    with httpx.Client(base_url=story.api(0), auth=SignedAuth(story.author.signing),
                      timeout=HTTP_TIMEOUT) as http:
        again = http.put(f"/v1/blobs/{written.sealed.digest}", content=written.sealed.ciphertext)
    try:
        time.sleep(1.5)  # a push to the peers would have landed by now
        holding = [node for node in range(4)
                   if blob_file(story.net, node, written.sealed.digest).exists()]
        assert (again.status_code, again.json()["code"], holding) == (410, "erased", []), \
            (again.status_code, again.text, f"held again by nodes {holding}")
    finally:  # the canary scan after this one runs on the erased state either way
        for node in range(4):
            blob_file(story.net, node, written.sealed.digest).unlink(missing_ok=True)


# 9c. the emergency key ---------------------------------------------------------------------------
def _register_holders(story: Story) -> dict[str, Person]:
    """An admin with an encryption key at each hospital, to hold its share."""
    holders = {org: Person(Keystore.generate()) for org in story.admins}
    story.commit(0, [story.tx(story.admins[org], "identity.member.register",
                              {"org": org, "key": who.hex, "role": "admin",
                               "name": "share holder", **who.enc()})
                     for org, who in holders.items()])
    return holders


def _release(story: Story, node: int, holder: Person, org: str) -> None:
    escrow = story.get(node, f"{RECORDS}/patients/{story.pseudonym}/emergency-key")["value"]
    share = release_share(escrow["shares"][org]["wrapped"], holder.keys.encryption,
                          emergency_id=story.emergency,
                          clinician_key=story.medic.keys.encryption.public_bytes(),
                          clinician_suite=story.medic.keys.encryption.suite)
    answer = story.send(node, holder.signing, "records.release",
                        {"emergency": story.emergency, "share": share})
    story.wait_all(answer["height"])  # node 2, where the clinician reads, has it too


def test_9c_the_emergency_clinician_opens_the_record_once_two_hospitals_release(
        story: Story) -> None:
    """The patient's emergency key, split 2 of 3 among the hospitals, opens the lab record
    for the emergency clinician of step 7 once two hospitals' nodes release their shares,
    and not after one."""
    holders = _register_holders(story)
    made = create_emergency_key({org: (who.hex, who.keys.encryption.public_bytes(),
                                       who.keys.encryption.suite)
                                 for org, who in holders.items()}, 2)
    lab_record = story.records["lab"]
    content_key = unwrap(story.wrapped(0, lab_record.id, story.patient.hex),
                         lab_record.sealed.digest, story.patient.keys.encryption)
    rewrapped = {"record": lab_record.id, "wrapped": wrap_for(
        content_key, lab_record.sealed.digest, made.enc_key, made.enc_suite)}
    answer = story.send(0, story.patient.signing, "records.emergency_key",
                        made.body(story.pseudonym, [rewrapped]))
    story.wait_all(answer["height"])
    escrow = story.get(2, f"{RECORDS}/patients/{story.pseudonym}/emergency-key")["value"]
    assert sorted(escrow["shares"]) == ["northgate", "riverside", "st-mary"]

    def open_now() -> bytes:
        story.send(2, story.medic.signing, "records.access",
                   {"records": [lab_record.id], "basis": f"emergency:{story.emergency}"})
        released = []
        for org in holders:
            with contextlib.suppress(ApiRefused):  # 404: not released (yet)
                released.append(story.get(
                    2, f"{RECORDS}/emergencies/{story.emergency}/releases/{org}"
                )["value"]["share"])
        return emergency_open(
            fetch(story.api(2), story.medic.signing, lab_record.sealed.digest).content,
            story.wrapped(2, lab_record.id, escrow["reader"]), released,
            story.medic.keys.encryption,
            emergency_id=story.emergency, enc_key=made.enc_key, enc_suite=made.enc_suite,
            threshold=2, patient_pseudonym=story.pseudonym, category="lab",
            digest=lab_record.sealed.digest)

    _release(story, 0, holders["st-mary"], "st-mary")  # each from its own hospital's node
    with pytest.raises(ValueError, match="2 released shares are needed, 1 open"):
        open_now()
    _release(story, 1, holders["northgate"], "northgate")
    assert open_now() == lab_record.plaintext
    with story.client(3) as client:  # the patient is told of each release
        told = client.events(type="records.released", attrs={"patient": story.pseudonym})
    assert sorted(e["attrs"]["org"] for e in told["events"]) == ["northgate", "st-mary"]


# 9d, 9e. the command line on the consortium ------------------------------------------------------
def _cli(story: Story, *words: str | Path, node: int | None = 0) -> str:
    """``medledger WORDS... [--api <node>]`` in its own process; its stdout (exit 0
    asserted)."""
    api = [] if node is None else ["--api", story.api(node)]
    done = subprocess.run(
        [sys.executable, "-m", "medledger", *map(str, words), *api],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "MEDLEDGER_PASSPHRASE": PASSPHRASE})
    assert done.returncode == 0, (words, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def _saved(story: Story, who: Person, name: str) -> Path:
    path = story.root / "people" / f"{name}.key"
    if not path.exists():
        who.keys.save(path, PASSPHRASE, kdf_params=FAST_KDF)
    return path


def test_9d_the_patient_follows_appointments_and_the_care_plan_on_a_timeline(
        story: Story) -> None:
    author = _saved(story, story.author, "author")
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan",
            "subject": {"reference": "Patient/p"}, "period": {"start": "2026-02-01"},
            "activity": [{"detail": {"status": "completed",
                                     "description": f"walk daily {PLAN_CANARY}"}},
                         {"detail": {"status": "in-progress"}},
                         {"detail": {"status": "not-started"}}]}
    visit = {"resourceType": "Appointment", "status": "booked",
             "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T10:30:00Z",
             "participant": [{"status": "accepted", "actor": {"display": "cardiology"}}]}
    for name, resource in (("plan", plan), ("visit", visit)):
        path = story.root / f"{name}.json"
        path.write_text(json.dumps(resource))
        assert "added record" in _cli(story, "records", "add", path, "--patient",
                                      story.pseudonym, "--key", author)
        path.unlink()
    rows = json.loads(_cli(story, "records", "timeline", "--patient", story.pseudonym,
                           "--key", story.patient_file, "--json", node=3))
    by_kind = {r["category"]: r for r in rows}
    assert by_kind["care-plan"]["status"] == "active, 1/3 activities completed"
    assert by_kind["appointment"]["status"] == "booked"
    assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)
    assert by_kind["lab"]["date"].startswith("2026-01-03")


def test_9e_three_of_five_guardians_recover_a_lost_keystore_then_the_patient_rotates(
        story: Story) -> None:
    guardians = [Person(Keystore.generate()) for _ in range(5)]
    story.commit(0, [story.tx(g.signing, "identity.patient.register", g.enc())
                     for g in guardians])
    shares = story.root / "shares"
    _cli(story, "guardians", "set", *[w for g in guardians for w in ("--guardian", g.hex)],
         "--threshold", "3", "--out", shares, "--key", story.patient_file)
    # the keystore is lost; three guardians bring their files and open them
    chosen = sorted(shares.iterdir())[1:4]
    opening = [w for i, g in enumerate(guardians)
               for w in ("--guardian-key", _saved(story, g, f"guardian{i}"))]
    recovered = story.root / "people" / "recovered.key"
    _cli(story, "guardians", "recover", *chosen, *opening, "--out", recovered, node=None)
    new = story.root / "people" / "patient-new.key"
    Keystore.generate().save(new, PASSPHRASE, kdf_params=FAST_KDF)
    said = _cli(story, "records", "rotate", "--key", recovered, "--new-key", new, node=1)
    with story.client(1) as client:
        story.wait_all(client.status()["height"])
    live = [w for w in story.records.values()
            if story.get(1, f"{RECORDS}/records/{w.id}")["value"]["erased"] is None]
    assert f" {len(live) + 2} records re-wrapped" in said  # with the plan and the visit
    new_keys = Keystore.load(new, PASSPHRASE)
    assert story.get(2, f"/v1/identity/patients/{story.pseudonym}")["value"]["key"] == (
        new_keys.signing.public_key.hex())
    lab_record = story.records["lab"]
    read = _cli(story, "records", "read", lab_record.id, "--key", new, node=2)
    assert json.loads(read) == json.loads(lab_record.plaintext)
    answer = fetch(story.api(3), story.patient.signing, lab_record.sealed.digest)
    assert refusal(answer) == (403, "not_allowed")  # the lost key reads nothing now


# 10. the canary scan ----------------------------------------------------------------------------
def test_10_no_node_file_holds_any_record_plaintext(story: Story) -> None:
    homes = [node.home.path for node in story.net.nodes]
    for home in homes:  # what the scan covers, and that it is there to be scanned
        assert (home / "data" / "chain.db").is_file()
        assert (home / "data" / "chain.db-wal").is_file()
        assert (home / "cometbft" / "data" / "cs.wal").is_dir()
        assert (home / "node.log").is_file() and (home / "cometbft" / "cometbft.log").is_file()
        assert any((home / "data" / "snapshots").rglob("*")), "no state snapshot was taken"
        assert any((home / "data" / "blobs").rglob("*")), "no blob left to scan"
        assert any(p.suffix == ".ldb" or p.name.endswith(".log")
                   for p in (home / "cometbft" / "data").rglob("*"))
    found = scan(story.net, {c: _text_forms(c) for c in CANARIES})
    assert not found, f"record plaintext reached a node's files: {found}"
    # and the scan would have seen one, in each form
    probe = story.net.nodes[0].home.path / "data" / "probe.bin"
    try:
        for form in (LAB_CANARY.encode(), LAB_CANARY.encode("utf-16-le"),
                     LAB_CANARY.encode("utf-16-be"), base64.b64encode(LAB_CANARY.encode()),
                     base64.b64encode(b"x" + LAB_CANARY.encode()),
                     base64.b64encode(b"xy" + LAB_CANARY.encode()),
                     LAB_CANARY.encode().hex().encode()):
            probe.write_bytes(b"{" + form + b"}")
            assert scan(story.net, {"probe": _text_forms(LAB_CANARY)}), form
    finally:
        probe.unlink(missing_ok=True)


# scanning files, LevelDB tables included --------------------------------------------------------
def scan(net: EngineNet, needles: dict[str, list[bytes]]) -> list[str]:
    """``"<name> in <file>"`` for each needle found in any file under any node's home.
    LevelDB tables (CometBFT's stores) keep their blocks Snappy-compressed, so they are
    read block by block and decompressed."""
    found = []
    for node in net.nodes:
        for path in sorted(node.home.path.rglob("*")):
            if not path.is_file():
                continue
            for data in _views(path):
                for name, forms in needles.items():
                    if any(form in data for form in forms):
                        found.append(f"{name} in {path}")
    return sorted(set(found))


def _views(path: Path) -> Iterator[bytes]:
    """The file's bytes, and what a format may split or compress read whole: a LevelDB
    table's blocks decompressed, a LevelDB journal's records joined across its 32 KiB
    blocks, and every row of a SQLite database (its WAL included) whatever its pages."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # removed while scanning (a compaction, a rotated log)
        return
    yield data
    if path.parent.suffix == ".db" and path.suffix == ".ldb":
        yield b"\n".join(leveldb_blocks(data))
    elif path.parent.suffix == ".db" and path.suffix == ".log":
        yield leveldb_journal(data)
    elif data.startswith(b"SQLite format 3\0"):
        yield sqlite_rows(path)


def sqlite_rows(path: Path) -> bytes:
    """Every value of every row of every table, read through SQLite (read-only)."""
    out = []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                            timeout=10)) as db:
        tables = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        out.append(value)
                    elif value is not None:
                        out.append(str(value).encode())
    return b"\n".join(out)


def leveldb_journal(data: bytes) -> bytes:
    """The payloads of a LevelDB journal (``*.log``: 32 KiB blocks of records, each with a
    7-byte header), joined, so that a value cut by a block boundary reads whole."""
    out, block = [], 32768
    for start in range(0, len(data), block):
        pos, end = start, min(start + block, len(data))
        while pos + 7 <= end:
            length = int.from_bytes(data[pos + 4:pos + 6], "little")
            if data[pos + 6] == 0 and length == 0:
                break  # the zeroed tail of a block
            out.append(data[pos + 7:pos + 7 + length])
            pos += 7 + length
    return b"".join(out)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def snappy_decompress(data: bytes) -> bytes:
    """Raw Snappy (the block format LevelDB uses)."""
    size, pos = _varint(data, 0)
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(data[pos:pos + extra], "little")
                pos += extra
            length += 1
            out += data[pos:pos + length]
            pos += length
            continue
        if kind == 1:
            length, offset = 4 + ((tag >> 2) & 7), ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            length, offset = (tag >> 2) + 1, int.from_bytes(data[pos:pos + 2], "little")
            pos += 2
        else:
            length, offset = (tag >> 2) + 1, int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
        if not 0 < offset <= len(out):
            raise ValueError("a Snappy copy reaches before the start")
        for _ in range(length):  # copies may overlap what they write
            out.append(out[-offset])
    if len(out) != size:
        raise ValueError(f"Snappy: {len(out)} bytes decoded, {size} announced")
    return bytes(out)


_LEVELDB_MAGIC = 0xDB4775248B80FB57


def _leveldb_block(data: bytes, offset: int, size: int) -> bytes:
    kind = data[offset + size]
    block = data[offset:offset + size]
    if kind == 1:
        return snappy_decompress(block)
    if kind != 0:
        raise ValueError(f"unknown LevelDB block compression {kind}")
    return block


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + length]
        pos += length


def leveldb_blocks(data: bytes) -> list[bytes]:
    """Every block of a LevelDB table file (``.ldb``), decompressed."""
    footer = data[-48:]
    if struct.unpack_from("<Q", footer, 40)[0] != _LEVELDB_MAGIC:
        raise ValueError("not a LevelDB table")
    meta_offset, pos = _varint(footer, 0)
    meta_size, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    index = _leveldb_block(data, index_offset, index_size)
    blocks = [index, _leveldb_block(data, meta_offset, meta_size)]
    for _, handle in _block_entries(index):
        offset, at = _varint(handle, 0)
        size, _ = _varint(handle, at)
        blocks.append(_leveldb_block(data, offset, size))
    return blocks


def test_the_leveldb_reader_finds_what_snappy_hides() -> None:
    """The scan's own check: a Snappy stream with copies decodes to its text."""
    text = b"abcdabcdabcdabcd" + ENCOUNTER_CANARY.encode()
    # literal "abcd" (tag 3<<2), then a copy of 12 bytes at offset 4 (2-byte offset form),
    # then the canary as a literal
    canary = ENCOUNTER_CANARY.encode()
    stream = (bytes([len(text)]) + bytes([3 << 2]) + b"abcd" + bytes([(11 << 2) | 2])
              + (4).to_bytes(2, "little") + bytes([(len(canary) - 1) << 2]) + canary)
    assert snappy_decompress(stream) == text

