"""The medicines story end to end, on a 4-node consortium of real processes on CometBFT.

Each node is ``medledger up`` with its ``cometbft`` (:class:`tests.enginenet.EngineNet`);
everything goes through the REST API with the SDK (:class:`medledger.client.Client`).

The parties: the drug maker ``acme-pharma`` (a founding organisation; its events go through
node 0), the wholesaler ``medisupply`` (node 1) and the pharmacy ``corner`` (node 2), both
admitted by governance during the story. Reads and verifications are node 3's. The maker
registers its GS1 company prefix and a product, receives two raw-material lots, makes a
finished lot of them, commissions six serialised packs, packs them into two cases on a
pallet (SSCC) and ships the pallet to the wholesaler, who unpacks it and ships case 1 on to
the pharmacy. The pharmacy scans packs in the three forms a label gives (GS1 DataMatrix
content, element string, Digital Link) and checks each verdict's proofs offline against the
genesis validators; a never-issued serial and a pack still at the wholesaler are SUSPECT.
A pack is dispensed to a patient (only the patient's commitment goes on the ledger); the
traces run back from a pack to its raw lots and forward from a raw lot to every pack; the
maker recalls the lot, and the one patient who received a pack of it is told, privately;
an event is captured once, whichever node it comes through; and the recall of a second lot,
dispensed to 64 patients, reaches every one of them.

One consortium for the module; the steps are the tests below, in order, sharing
:class:`Story`. The EPCIS 2.0 events are built with :mod:`tests.test_trace_app`'s builders
(company prefix 0614141: ``DRUG``, lot ``L2026A``, ``PACKS`` S0001..S0006, ``CASE_1`` holds
packs 1-3, ``CASE_2`` packs 4-6, ``PALLET`` both cases).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from medledger.apps.trace.state import lot_key, pack_key
from medledger.apps.trace.verify import REASONS, verdict
from medledger.client import ApiRefused, VerificationFailed, verify_state_answer
from medledger.crypto import SigningKey
from medledger.ledger import Transaction, ValidatorSet
from medledger.standards import epcis
from medledger.standards.gs1 import (
    LGTIN,
    SGTIN,
    Scan,
    datamatrix_content,
    digital_link,
    element_string,
    parse_code,
)
from tests.enginenet import CHAIN, EngineNet, wait_for
from tests.story import COMMIT_TIMEOUT, NetStory
from tests.test_trace_app import (
    CASE_1,
    CASE_2,
    DRUG,
    EXPIRY,
    LOT,
    PACKS,
    PALLET,
    RAW_A,
    RAW_B,
    commission,
    end,
    gln,
    pack,
    receive,
    receive_raw,
    ship,
    transform,
    unpack,
)
from tests.test_trace_app import CP as PREFIX

pytestmark = pytest.mark.processes

PROOF_TIMEOUT = 20.0
TRACE = "/v1/trace"

MAKER, WHOLESALER, PHARMACY = "acme-pharma", "medisupply", "corner"
NODE_OF = {MAKER: 0, WHOLESALER: 1, PHARMACY: 2}  # where each organisation's events go
READER = 3  # reads and verifications
# the party GLNs (the builders' ship() addresses test_trace_app's org names: acme, medisupply,
# corner)
GLN = {MAKER: gln("acme"), WHOLESALER: gln("medisupply"), PHARMACY: gln("corner")}
COMMITMENT = secrets.token_hex(32)  # what the patient's device would make at dispensing


def scan_of(p: SGTIN) -> Scan:
    """What a pack's label reads: GTIN, expiry, lot, serial."""
    return Scan(gtin=p.gtin, serial=p.serial, lot=LOT.lot, expiry=EXPIRY)


# the consortium ---------------------------------------------------------------------------------
@dataclass
class Story(NetStory):
    trusted: ValidatorSet  # the genesis validators (no set changes in this story)
    admins: dict[str, SigningKey] = field(default_factory=dict)
    raw_receipt: dict[str, Any] = field(default_factory=dict)  # an event as captured

    def capture(self, org: str, *events: dict[str, Any], commitment: str | None = None
                ) -> dict[str, Any]:
        """``trace.capture`` of ``events`` by ``org``'s admin, through ``org``'s node."""
        body: dict[str, Any] = {"events": list(events)}
        if commitment is not None:
            body["commitment"] = commitment
        return self.send(NODE_OF[org], self.admins[org], "trace.capture", body)

    def verify(self, node: int, code: str, scanner: str | None) -> dict[str, Any]:
        """``GET /v1/trace/verify`` at ``node``, once it answers from a proven state that
        has everything the story did (a node proves the state a signed header covers: 503
        until the header after the tip is final)."""
        params = {"code": code} | ({"scanner": scanner} if scanner else {})

        def proven() -> dict[str, Any] | None:
            with self.client(node) as client:
                try:
                    answer = client.get(f"{TRACE}/verify", params)
                except ApiRefused as e:
                    assert (e.status, e.code) == (503, "busy"), e
                    return None
            return answer if answer["pack"]["height"] >= self.height else None

        return wait_for(proven, PROOF_TIMEOUT,  # type: ignore[no-any-return]
                        f"node {node} to verify {code!r} at height {self.height} or above",
                        every=0.2)

    def notices(self, node: int, lot: str) -> list[dict[str, Any]]:
        """Every ``trace.recall_notice`` of ``lot`` that ``node`` has committed."""
        found: list[dict[str, Any]] = []
        after = 0
        with self.client(node) as client:
            while True:
                page = client.events(type="trace.recall_notice", attrs={"lot": lot},
                                     after=after, limit=100)
                found += page["events"]
                if page["next"] is None:
                    return found
                after = page["next"]

    def offline(self, answer: dict[str, Any], scanner: str | None) -> tuple[str, list[str]]:
        """The verdict as the pharmacist's device finds it, trusting no node: the code read
        here, both proofs checked against the genesis validators, the verdict computed again
        from the proven entries at the proven header's time."""
        scan = parse_code(answer["code"])
        assert scan.gtin is not None and scan.serial is not None
        item = SGTIN(scan.gtin, scan.serial)
        pack_state = verify_state_answer(answer["pack"], self.trusted, CHAIN)
        assert pack_state.key == pack_key(item)
        lot_value = None
        if answer["lot"] is not None:
            lot_state = verify_state_answer(answer["lot"], self.trusted, CHAIN)
            lot_no = (pack_state.value or {}).get("lot") or scan.lot
            assert lot_state.key == lot_key(LGTIN(item.gtin, lot_no))
            assert lot_state.header.height == pack_state.header.height  # one state
            lot_value = lot_state.value
        found = verdict(scan.lot, scan.expiry, pack_state.value, lot_value, scanner,
                        pack_state.header.time)
        assert (found.verdict, list(found.reasons)) == (answer["verdict"], answer["reasons"])
        return found.verdict, list(found.reasons)


def _admit(story: Story, orgs: dict[str, tuple[str, str, SigningKey]]) -> None:
    """Organisations join by governance: validator 0 proposes each, validators 1 and 2
    approve (3 of 4 equal powers is above 2/3)."""
    validators = [node.home.validator_key() for node in story.net.nodes]
    with story.client(0) as client:
        tip = client.status()["height"]
    proposals = [story.tx(validators[0], "governance.propose", {
        "kind": "org_admit", "effective_height": tip + 200,
        "change": {"id": org, "name": name, "role": role,
                   "admins": [admin.public_key.hex()]}})
        for org, (name, role, admin) in orgs.items()]
    story.commit(0, proposals)
    story.commit(0, [story.tx(v, "governance.approve", {"proposal": p.tx_id.hex()})
                     for p in proposals for v in validators[1:3]])
    for org, (_, role, _) in orgs.items():
        entry = story.get(0, f"/v1/identity/orgs/{org}")["value"]
        assert (entry["status"], entry["role"]) == ("active", role)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    root: Path = tmp_path_factory.mktemp("medicines")
    net = EngineNet(root / "consortium", 4, block_interval_ms=200)
    net.start()
    try:
        net.wait_height(range(4), 1)
        story = Story(net, net.nodes[0].home.genesis().validators)

        def admin(org: str) -> SigningKey:
            for node in net.nodes:
                if org in node.home.known_keys():
                    return node.home.member_keys(org).signing
            raise AssertionError(f"no home keeps {org}'s admin key")

        story.admins = {MAKER: admin(MAKER), WHOLESALER: SigningKey.generate(),
                        PHARMACY: SigningKey.generate()}
        _admit(story, {WHOLESALER: ("MediSupply Wholesale", "wholesaler",
                                    story.admins[WHOLESALER]),
                       PHARMACY: ("Corner Pharmacy", "pharmacy", story.admins[PHARMACY])})
        yield story
    finally:
        net.stop()


# 1. master data ---------------------------------------------------------------------------------
def test_1_master_data_the_parties_the_prefix_and_the_product(story: Story) -> None:
    for org in (MAKER, WHOLESALER, PHARMACY):  # each through its own node
        story.send(NODE_OF[org], story.admins[org], "trace.party", {"gln": GLN[org]})
    story.send(0, story.admins[MAKER], "trace.prefix", {"prefix": PREFIX})
    story.send(0, story.admins[MAKER], "trace.product",
               {"gtin": DRUG, "name": "Cardiozol 10 mg", "ndc": "0777-3105-02"})
    product = story.get(READER, f"{TRACE}/product", gtin=DRUG)["value"]
    assert (product["gtin"], product["name"], product["ndc"], product["org"]) == (
        DRUG, "Cardiozol 10 mg", "0777-3105-02", MAKER)
    with story.client(READER) as client:
        for org in (MAKER, WHOLESALER, PHARMACY):
            party = client.state(f"trace/party/{GLN[org]}", prove=False)["value"]
            assert party["org"] == org
            assert client.state(f"trace/org_party/{org}", prove=False)["value"] == GLN[org]
        assert client.state(f"trace/prefix/{PREFIX}", prove=False)["value"]["org"] == MAKER
    # the wholesaler holds no prefix: it cannot register one
    refused = story.refused(1, story.admins[WHOLESALER], "trace.prefix", {"prefix": "0999999"})
    assert (refused.status, refused.code) == (403, "not_maker")


# 2. the maker: raw lots, the finished lot, packs, cases and a pallet ------------------------------
def test_2_raw_lots_transformed_into_a_lot_commissioned_and_packed(story: Story) -> None:
    story.raw_receipt = receive_raw([RAW_A, RAW_B])
    story.capture(MAKER, story.raw_receipt)
    story.capture(MAKER, transform([RAW_A, RAW_B], LOT))
    story.capture(MAKER, commission(PACKS), pack(CASE_1, PACKS[:3]), pack(CASE_2, PACKS[3:]),
                  pack(PALLET, [CASE_1, CASE_2]))
    for raw in (RAW_A, RAW_B):
        lot = story.get(READER, f"{TRACE}/lot", gtin=raw.gtin, lot=raw.lot)["value"]
        assert (lot["kind"], lot["custodian"], lot["inputs"]) == ("raw", MAKER, [])
    made = story.get(READER, f"{TRACE}/lot", gtin=DRUG, lot=LOT.lot)["value"]
    assert (made["kind"], made["maker"], made["custodian"], made["expiry"]) == (
        "finished", MAKER, MAKER, EXPIRY)
    assert made["inputs"] == [f"lgtin:{RAW_A.key}", f"lgtin:{RAW_B.key}"]
    assert made["recalled"] is None
    packs = story.get(READER, f"{TRACE}/lot/packs", gtin=DRUG, lot=LOT.lot)
    assert [item["value"] for item in packs["items"]] == [f"sgtin:{p.key}" for p in PACKS]
    pallet = story.get(READER, f"{TRACE}/container", sscc=PALLET.sscc)["value"]
    assert pallet["children"] == [f"sscc:{CASE_1.key}", f"sscc:{CASE_2.key}"]
    assert pallet["custodian"] == MAKER
    for case, inside in ((CASE_1, PACKS[:3]), (CASE_2, PACKS[3:])):
        entry = story.get(READER, f"{TRACE}/container", sscc=case.sscc)["value"]
        assert entry["children"] == [f"sgtin:{p.key}" for p in inside]
        assert entry["parent"] == f"sscc:{PALLET.key}"
        for p in inside:
            found = story.get(READER, f"{TRACE}/pack", code=element_string(scan_of(p)))["value"]
            assert (found["status"], found["custodian"], found["lot"], found["parent"]) == (
                "active", MAKER, LOT.lot, f"sscc:{case.key}")


# 3. down the supply chain -----------------------------------------------------------------------
def test_3_the_pallet_to_the_wholesaler_a_case_on_to_the_pharmacy(story: Story) -> None:
    story.capture(MAKER, ship([PALLET], "medisupply"))
    in_transit = story.get(READER, f"{TRACE}/pack", code=element_string(scan_of(PACKS[0])))
    assert in_transit["value"]["transit"] == {"from": MAKER, "to": WHOLESALER}
    story.capture(WHOLESALER, receive([PALLET]), unpack(PALLET))
    story.capture(WHOLESALER, ship([CASE_1], "corner"))
    story.capture(PHARMACY, receive([CASE_1]), unpack(CASE_1))

    def where(p: SGTIN) -> tuple[str, Any, Any]:
        entry = story.get(READER, f"{TRACE}/pack", code=element_string(scan_of(p)))["value"]
        return entry["custodian"], entry["parent"], entry["transit"]

    assert [where(p) for p in PACKS] == (
        [(PHARMACY, None, None)] * 3 + [(WHOLESALER, f"sscc:{CASE_2.key}", None)] * 3)
    case_2 = story.get(READER, f"{TRACE}/container", sscc=CASE_2.sscc)["value"]
    assert (case_2["custodian"], case_2["parent"]) == (WHOLESALER, None)
    assert story.get(READER, f"{TRACE}/container", sscc=PALLET.sscc)["value"]["children"] == []
    # every event that moved the pack is on its history, with the organisation that captured it
    history = story.get(READER, f"{TRACE}/history", code=element_string(scan_of(PACKS[0])))
    events = [story.get(READER, f"{TRACE}/events/{item['value']}")["value"]
              for item in history["items"]]
    assert [(e["step"], e["org"]) for e in events] == [
        ("commissioning", MAKER), ("packing", MAKER), ("shipping", MAKER),
        ("receiving", WHOLESALER), ("shipping", WHOLESALER), ("receiving", PHARMACY),
        ("unpacking", PHARMACY)]


# 4. the pharmacy verifies -----------------------------------------------------------------------
def test_4_the_pharmacy_verifies_packs_with_proofs_checked_offline(story: Story) -> None:
    label = scan_of(PACKS[0])
    forms = {"datamatrix": datamatrix_content(label), "element string": element_string(label),
             "digital link": digital_link(label),
             "datamatrix as a scanner sends it": "]d2" + datamatrix_content(label)}
    assert "\x1d" in forms["datamatrix"] and forms["element string"].startswith("(01)")
    assert forms["digital link"].startswith(f"https://id.gs1.org/01/{DRUG}/10/")
    for form, code in forms.items():
        answer = story.verify(READER, code, PHARMACY)
        assert (answer["verdict"], answer["reasons"]) == ("GENUINE", []), (form, answer)
        assert answer["scan"] == {"gtin": DRUG, "serial": "S0001", "lot": LOT.lot,
                                  "expiry": EXPIRY}, form
        assert story.offline(answer, PHARMACY) == ("GENUINE", []), form
        assert answer["explained"] == []
        assert answer["pack"]["value"]["custodian"] == PHARMACY

    # a serial never issued: SUSPECT, its absence proven
    fake = Scan(gtin=DRUG, serial="S9999", lot=LOT.lot, expiry=EXPIRY)
    answer = story.verify(READER, datamatrix_content(fake), PHARMACY)
    assert (answer["verdict"], answer["reasons"]) == ("SUSPECT", ["never_issued"])
    assert answer["explained"] == [REASONS["never_issued"]]
    assert answer["pack"]["value"] is None
    assert verify_state_answer(answer["pack"], story.trusted, CHAIN).value is None
    assert story.offline(answer, PHARMACY) == ("SUSPECT", ["never_issued"])

    # a pack of case 2, still the wholesaler's, sold by the pharmacy: diverted
    answer = story.verify(READER, digital_link(scan_of(PACKS[4])), PHARMACY)
    assert (answer["verdict"], answer["reasons"]) == ("SUSPECT", ["not_in_custody"])
    assert story.offline(answer, PHARMACY) == ("SUSPECT", ["not_in_custody"])
    assert answer["pack"]["value"]["custodian"] == WHOLESALER
    # the same pack is genuine where it is
    held = story.verify(READER, digital_link(scan_of(PACKS[4])), WHOLESALER)
    assert story.offline(held, WHOLESALER) == ("GENUINE", [])

    # an answer changed on its way fails the offline check
    tampered = story.verify(READER, element_string(scan_of(PACKS[1])), PHARMACY)
    tampered["pack"]["value"]["custodian"] = WHOLESALER
    with pytest.raises(VerificationFailed, match="state root"):
        story.offline(tampered, PHARMACY)


# 5. dispensing ----------------------------------------------------------------------------------
def test_5_dispensing_to_a_patient_ends_the_pack_s_life(story: Story) -> None:
    dispensed = story.capture(PHARMACY, end("dispensing", [PACKS[0]], "OBSERVE"),
                              commitment=COMMITMENT)
    entry = story.get(READER, f"{TRACE}/pack", code=element_string(scan_of(PACKS[0])))["value"]
    assert entry["status"] == "dispensed"
    assert entry["dispensed"] == {"commitment": COMMITMENT, "height": dispensed["height"],
                                  "time": entry["dispensed"]["time"]}
    answer = story.verify(READER, datamatrix_content(scan_of(PACKS[0])), PHARMACY)
    assert (answer["verdict"], answer["reasons"]) == ("SUSPECT", ["dispensed"])
    assert story.offline(answer, PHARMACY) == ("SUSPECT", ["dispensed"])
    # its life has ended: it is not dispensed twice
    refused = story.refused(2, story.admins[PHARMACY], "trace.capture",
                            {"events": [end("dispensing", [PACKS[0]], "OBSERVE")],
                             "commitment": secrets.token_hex(32)})
    assert (refused.status, refused.code) == (409, "not_active")


# 6. traces --------------------------------------------------------------------------------------
def test_6_back_from_a_pack_to_its_raw_lots_and_forward_from_a_raw_lot(story: Story) -> None:
    back = story.get(READER, f"{TRACE}/back", code=digital_link(scan_of(PACKS[0])))
    assert [(e["step"], e["org"]) for e in back["pack"]["events"]] == [
        ("commissioning", MAKER), ("packing", MAKER), ("shipping", MAKER),
        ("receiving", WHOLESALER), ("shipping", WHOLESALER), ("receiving", PHARMACY),
        ("unpacking", PHARMACY), ("dispensing", PHARMACY)]
    assert {e["org"] for e in back["pack"]["events"]} == {MAKER, WHOLESALER, PHARMACY}
    lots = {lot["key"]: lot for lot in back["lots"]}
    assert list(lots) == [f"lgtin:{LOT.key}", f"lgtin:{RAW_A.key}", f"lgtin:{RAW_B.key}"]
    assert lots[f"lgtin:{LOT.key}"]["custodian"] == MAKER
    assert [(e["step"], e["org"]) for e in lots[f"lgtin:{LOT.key}"]["events"]] == [
        ("commissioning", MAKER)] * 2  # made by the transformation; its packs commissioned
    for raw in (RAW_A, RAW_B):
        found = lots[f"lgtin:{raw.key}"]
        assert (found["kind"], found["custodian"]) == ("raw", MAKER)
        assert [(e["step"], e["org"]) for e in found["events"]] == [
            ("receiving", MAKER), ("commissioning", MAKER)]

    forward = story.get(READER, f"{TRACE}/forward", gtin=RAW_A.gtin, lot=RAW_A.lot)
    assert forward["complete"] is True
    assert [lot["key"] for lot in forward["lots"]] == [f"lgtin:{RAW_A.key}",
                                                       f"lgtin:{LOT.key}"]
    now = {p["key"]: (p["status"], p["custodian"]) for p in forward["packs"]}
    assert now == {f"sgtin:{PACKS[0].key}": ("dispensed", PHARMACY),
                   **{f"sgtin:{p.key}": ("active", PHARMACY) for p in PACKS[1:3]},
                   **{f"sgtin:{p.key}": ("active", WHOLESALER) for p in PACKS[3:]}}
    assert len(forward["packs"]) == len(PACKS)


# 7. the recall ----------------------------------------------------------------------------------
def test_7_a_recall_stops_every_pack_and_reaches_the_patient_privately(story: Story) -> None:
    recalled = story.send(0, story.admins[MAKER], "trace.recall",
                          {"gtin": DRUG, "lot": LOT.lot, "reason": "contamination"})
    lot = story.get(READER, f"{TRACE}/lot", gtin=DRUG, lot=LOT.lot)["value"]
    assert lot["recalled"]["by"] == MAKER and lot["recalled"]["height"] == recalled["height"]
    expected = {PACKS[0]: (PHARMACY, ["dispensed", "recalled"]),
                PACKS[1]: (PHARMACY, ["recalled"]), PACKS[4]: (WHOLESALER, ["recalled"])}
    for node in range(4):  # the next verification at any node
        for item, (scanner, reasons) in expected.items():
            answer = story.verify(node, element_string(scan_of(item)), scanner)
            assert (answer["verdict"], answer["reasons"]) == ("SUSPECT", reasons), (node, item)
            assert story.offline(answer, scanner) == ("SUSPECT", reasons), (node, item)

    # nothing of the lot ships or is dispensed any more
    refused = story.refused(2, story.admins[PHARMACY], "trace.capture",
                            {"events": [ship([PACKS[1]], "medisupply")]})
    assert (refused.status, refused.code) == (409, "recalled")
    refused = story.refused(1, story.admins[WHOLESALER], "trace.capture",
                            {"events": [ship([CASE_2], "corner")]})
    assert (refused.status, refused.code) == (409, "recalled")
    refused = story.refused(2, story.admins[PHARMACY], "trace.capture",
                            {"events": [end("dispensing", [PACKS[1]], "OBSERVE")],
                             "commitment": secrets.token_hex(32)})
    assert (refused.status, refused.code) == (409, "recalled")

    # the one patient who received a pack is told, by the commitment alone (in the recall's
    # block or one after it: the notices go out from the end-block hook)
    notices = wait_for(lambda: story.notices(READER, LOT.lot), COMMIT_TIMEOUT,
                       "the recall notice")
    assert len(notices) == 1, notices
    assert notices[0]["height"] >= recalled["height"]
    assert notices[0]["attrs"] == {"commitment": COMMITMENT, "gtin": DRUG, "lot": LOT.lot}
    with story.client(READER) as client:
        by_commitment = client.events(attrs={"commitment": COMMITMENT})["events"]
        told = client.events(type="trace.recalled")["events"]
    assert [e["type"] for e in by_commitment] == ["trace.recall_notice"]
    assert [(e["tx_id"], e["attrs"]) for e in told] == [
        (recalled["tx_id"], {"gtin": DRUG, "lot": LOT.lot, "by": MAKER})]
    recalls = story.get(READER, f"{TRACE}/recalls")
    assert [item["value"] for item in recalls["items"]] == [LOT.key]


# 8. an event is captured once -------------------------------------------------------------------
def test_8_an_event_captured_twice_is_refused_by_its_cbv_hash_at_another_node(
        story: Story) -> None:
    event = story.raw_receipt  # captured through node 0 in step 2
    digest = epcis.event_hash(event)
    stored = story.get(READER, f"{TRACE}/events/{digest.split(';', 1)[1].split('?')[0]}")
    assert stored["value"]["hash"] == digest and stored["value"]["org"] == MAKER
    for node in (1, 3):
        refused = story.refused(node, story.admins[MAKER], "trace.capture",
                                {"events": [event]})
        assert (refused.status, refused.code) == (409, "duplicate_event"), node
        assert digest in refused.message
    # the same event written otherwise (its fields in another order, an event ID and a
    # record time, which CBV 2.0 does not hash) is the same event
    rewritten = {"eventID": "urn:uuid:6f1a1d8c-3c1e-4f5e-9b0a-1f2e3d4c5b6a",
                 "recordTime": "2026-02-01T00:00:00.000Z",
                 **dict(reversed(list(event.items())))}
    assert epcis.event_hash(rewritten) == digest
    refused = story.refused(2, story.admins[MAKER], "trace.capture", {"events": [rewritten]})
    assert (refused.status, refused.code) == (409, "duplicate_event")


def test_8b_the_same_event_sent_through_two_nodes_at_once_is_captured_once(
        story: Story) -> None:
    """The wholesaler (node 1) and the pharmacy (node 2) capture the same inspection at
    once: exactly one transaction captures it, the other is refused ``duplicate_event``,
    whether at admission or in the block."""
    event = end("inspecting", [PACKS[2]], "OBSERVE")
    digest = epcis.event_hash(event)
    for node in (1, 2):
        story.caught_up(node)
    sent = {org: story.tx(story.admins[org], "trace.capture", {"events": [event]})
            for org in (WHOLESALER, PHARMACY)}
    codes: dict[str, str] = {}
    admitted: dict[str, Transaction] = {}
    for org, tx in sent.items():
        with story.client(NODE_OF[org]) as client:
            try:
                assert client.submit(tx)["status"] == "pending"
                admitted[org] = tx
            except ApiRefused as e:  # the other's capture was committed first
                story.nonces[story.admins[org].public_key.hex()] -= 1
                codes[org] = e.code
    for org, tx in admitted.items():
        def committed(org: str = org, tx: Transaction = tx) -> dict[str, Any] | None:
            with story.client(NODE_OF[org]) as client:
                try:
                    return client.tx(tx.tx_id.hex())
                except ApiRefused as e:
                    assert e.status in (404, 503), e
                    return None

        answer = wait_for(committed, COMMIT_TIMEOUT, f"{org}'s capture to commit")
        codes[org] = answer["code"]
        story.height = max(story.height, answer["height"])
    assert sorted(codes.values()) == ["duplicate_event", "ok"], codes
    [captured_by] = [org for org, code in codes.items() if code == "ok"]
    stored = story.get(READER, f"{TRACE}/events/{digest.split(';', 1)[1].split('?')[0]}")
    assert stored["value"]["org"] == captured_by
    history = story.get(READER, f"{TRACE}/history", code=element_string(scan_of(PACKS[2])))
    assert [item["value"] for item in history["items"]].count(stored["value"]["hash"]
                                                             .split(";", 1)[1]
                                                             .split("?")[0]) == 1


# 9. a recall that reaches many patients -----------------------------------------------------------
def test_9_a_recall_reaches_every_one_of_64_patients(story: Story) -> None:
    """A second lot: 64 packs shipped to the pharmacy and dispensed, one to each of 64
    patients; its recall tells each of them (64 notices, each once) and is itself readable
    and proven like any transaction, as is every block after it. (Until 6fdd177 the recall's
    own result carried a notice per dispensed pack, above the 64 events a result holds: the
    recall committed but could not be read back, and no node proved any block after it.)"""
    lot = LGTIN(DRUG, "L2026B")
    packs = [SGTIN(DRUG, f"B{i:04d}") for i in range(64)]
    story.capture(MAKER, commission(packs, lot=lot.lot), ship(packs, "corner"))
    story.capture(PHARMACY, receive(packs))
    patients = {p: secrets.token_hex(32) for p in packs}
    story.commit(2, [story.tx(story.admins[PHARMACY], "trace.capture",
                              {"events": [end("dispensing", [p], "OBSERVE")],
                               "commitment": patients[p]}) for p in packs])
    recall = story.tx(story.admins[MAKER], "trace.recall",
                      {"gtin": DRUG, "lot": lot.lot, "reason": "sterility"})
    story.caught_up(READER)
    with story.client(READER) as client:  # block proofs answer before the recall
        assert client.block_proof(3)["height"] == 3
    story.caught_up(0)
    with story.client(0) as client:
        assert client.submit(recall)["status"] == "pending"

    def recalled_everywhere() -> int | None:
        heights = []
        for node in range(4):
            with story.client(node) as client:
                entry = client.state(f"trace/lot/{lot.key}", prove=False)["value"]
            if entry["recalled"] is None:
                return None
            heights.append(entry["recalled"]["height"])
        assert len(set(heights)) == 1, heights
        return heights[0]

    height = wait_for(recalled_everywhere, COMMIT_TIMEOUT, "every node to commit the recall")
    story.height = max(story.height, height)
    unreadable = []  # what a node cannot answer about the recall

    def read(node: int, what: str, call: Any) -> Any:
        """``call(client)`` at ``node``, asked again while the node says not yet (404, 503);
        a refusal of any other kind goes on ``unreadable``."""
        def once() -> Any:
            with story.client(node) as client:
                try:
                    return call(client)
                except ApiRefused as e:
                    return None if e.status in (404, 503) else e

        answer = wait_for(once, COMMIT_TIMEOUT, f"node {node} to answer {what}")
        if isinstance(answer, ApiRefused):
            unreadable.append(f"{what} at node {node}: HTTP {answer.status} {answer.code}")
            return None
        return answer

    for node in range(4):
        answer = read(node, "GET /v1/txs/<recall>", lambda c: c.tx(recall.tx_id.hex()))
        assert answer is None or (answer["code"], answer["height"]) == ("ok", height), answer
    block = read(READER, f"GET /v1/blocks/{height}", lambda c: c.block(height))
    assert block is None or [r["code"] for r in block["results"]] == ["ok"]
    for proven in (3, height):  # the block log proves every block, old and new
        answer = read(READER, f"GET /v1/blocks/{proven}/proof",
                      lambda c, h=proven: c.block_proof(h))
        assert answer is None or answer["height"] == proven

    # every patient is told, once, by the commitment alone
    def all_told() -> list[dict[str, Any]] | None:
        found = story.notices(READER, lot.lot)
        return found if len(found) >= len(packs) else None

    notices = wait_for(all_told, COMMIT_TIMEOUT, "the notices to every patient")
    assert sorted(e["attrs"]["commitment"] for e in notices) == sorted(patients.values())
    assert all(set(e["attrs"]) == {"commitment", "gtin", "lot"} for e in notices)
    assert [e["attrs"]["commitment"] for e in story.notices(READER, LOT.lot)] == [COMMITMENT]
    answer = story.verify(READER, element_string(Scan(gtin=DRUG, serial="B0000",
                                                      lot=lot.lot, expiry=EXPIRY)), PHARMACY)
    assert (answer["verdict"], answer["reasons"]) == ("SUSPECT", ["dispensed", "recalled"])
    assert story.offline(answer, PHARMACY) == ("SUSPECT", ["dispensed", "recalled"])
    assert not unreadable, f"the recall cannot be read back: {unreadable}"
