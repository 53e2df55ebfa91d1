"""The trace app on a chain in process: master data, the custody, aggregation and
transformation rules with a refusal test each, recalls and their private notices, the
DSCSA clock, and the verifier catching each kind of fake.

The supply chain: ``acme`` makes a drug (company prefix 0614141) from two raw-material
lots, commissions packs, packs them into cases and a pallet, and ships the pallet to the
wholesaler ``medisupply``, who unpacks it and ships a case on to the pharmacy ``corner``.
``other`` is a second pharmacy; ``authority`` the regulator.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medledger.apps import default_registry
from medledger.apps.trace import CODES, privacy
from medledger.apps.trace.events import deref
from medledger.apps.trace.state import HISTORY, LOT_PACKS, RESPOND_MS
from medledger.apps.trace.verify import verdict
from medledger.crypto import DEFAULT_SUITE, EncryptionKey, SigningKey
from medledger.ledger import Transaction, Validator, ValidatorSet
from medledger.ledger.engine import HISTORY_KEY
from medledger.node import Genesis
from medledger.node.chain import Chain, nonce_key
from medledger.standards.gs1 import (
    LGTIN,
    SGTIN,
    SSCC,
    Scan,
    check_digit,
    element_string,
    lgtin_urn,
    parse_code,
    sgtin_urn,
    sscc_urn,
)
from medledger.store import EventQuery, SQLiteStore
from tests.chainutil import decide

CHAIN = "trace-test"
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000
VALIDATOR = SigningKey.from_seed(b"\x07" * 32)
ORGS = {"acme": "manufacturer", "medisupply": "wholesaler", "corner": "pharmacy",
        "other": "pharmacy", "authority": "regulator", "rival": "manufacturer"}
ADMINS = {org: SigningKey.from_seed(org.encode().ljust(32, b".")) for org in ORGS}
ENC = EncryptionKey.from_private_bytes(DEFAULT_SUITE, b"\x02" * 32).public_bytes().hex()
CP = "0614141"
CP_LEN = len(CP)


def gln(org: str) -> str:
    body = CP + f"{list(ORGS).index(org) + 1:05d}"
    return body + str(check_digit(body))


def gtin(item: str) -> str:
    body = "0" + CP + item
    return body + str(check_digit(body))


DRUG, OTHER_DRUG = gtin("12345"), gtin("54321")
RAW_A, RAW_B = LGTIN(gtin("90001"), "RAW-A1"), LGTIN(gtin("90002"), "RAW-B7")
LOT = LGTIN(DRUG, "L2026A")
EXPIRY = "2027-06-30"
PACKS = [SGTIN(DRUG, f"S{i:04d}") for i in range(1, 7)]


def sscc(n: int) -> SSCC:
    body = "3" + CP + f"{n:09d}"
    return SSCC(body + str(check_digit(body)))


CASE_1, CASE_2, PALLET = sscc(1), sscc(2), sscc(3)


def urn(ident: SGTIN | SSCC | LGTIN) -> str:
    if isinstance(ident, SGTIN):
        return sgtin_urn(ident, CP_LEN)
    if isinstance(ident, SSCC):
        return sscc_urn(ident, CP_LEN)
    return lgtin_urn(ident, CP_LEN)


_TIMES = itertools.count(1)


def _base(kind: str, step: str, action: str | None = None) -> dict[str, Any]:
    seconds = next(_TIMES)
    event = {"type": kind, "eventTime": f"2026-01-0{1 + seconds // 86400}T"
                                         f"{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:"
                                         f"{seconds % 60:02d}.000Z",
             "eventTimeZoneOffset": "+00:00", "bizStep": step}
    if action is not None:
        event["action"] = action
    return event


def commission(packs: list[SGTIN], lot: str = LOT.lot, expiry: str = EXPIRY) -> dict[str, Any]:
    return {**_base("ObjectEvent", "commissioning", "ADD"), "epcList": [urn(p) for p in packs],
            "ilmd": {"cbvmda:lotNumber": lot, "cbvmda:itemExpirationDate": expiry}}


def receive_raw(lots: list[LGTIN]) -> dict[str, Any]:
    return {**_base("ObjectEvent", "receiving", "ADD"), "epcList": [],
            "quantityList": [{"epcClass": urn(lot), "quantity": 100, "uom": "KGM"}
                             for lot in lots]}


def transform(inputs: list[LGTIN], output: LGTIN, expiry: str = EXPIRY) -> dict[str, Any]:
    return {**_base("TransformationEvent", "commissioning"),
            "inputQuantityList": [{"epcClass": urn(i), "quantity": 10, "uom": "KGM"}
                                  for i in inputs],
            "outputQuantityList": [{"epcClass": urn(output), "quantity": 1000}],
            "ilmd": {"cbvmda:lotNumber": output.lot, "cbvmda:itemExpirationDate": expiry}}


def pack(parent: SSCC, children: list[SGTIN | SSCC]) -> dict[str, Any]:
    return {**_base("AggregationEvent", "packing", "ADD"), "parentID": urn(parent),
            "childEPCs": [urn(c) for c in children]}


def unpack(parent: SSCC, children: list[SGTIN | SSCC] | None = None) -> dict[str, Any]:
    event = {**_base("AggregationEvent", "unpacking", "DELETE"), "parentID": urn(parent)}
    event["childEPCs"] = [urn(c) for c in children or []]
    return event


def ship(objects: list[SGTIN | SSCC], to: str) -> dict[str, Any]:
    return {**_base("ObjectEvent", "shipping", "OBSERVE"), "epcList": [urn(o) for o in objects],
            "destinationList": [{"type": "owning_party",
                                 "destination": f"https://id.gs1.org/417/{gln(to)}"}]}


def receive(objects: list[SGTIN | SSCC]) -> dict[str, Any]:
    return {**_base("ObjectEvent", "receiving", "OBSERVE"), "epcList": [urn(o) for o in objects]}


def end(step: str, packs: list[SGTIN], action: str = "DELETE") -> dict[str, Any]:
    return {**_base("ObjectEvent", step, action), "epcList": [urn(p) for p in packs]}


COMMITMENT = "c0" * 32


class World:
    """A chain with the organisations, their GLNs, acme's prefix and products."""

    def __init__(self, path: Path) -> None:
        genesis = Genesis(CHAIN, START, ValidatorSet.of([Validator(VALIDATOR.public_key, 10,
                                                                   "v")]),
                          tuple({"id": org, "name": org, "role": role,
                                 "admins": [ADMINS[org].public_key.hex()]}
                                for org, role in ORGS.items()))
        self.chain = Chain(SQLiteStore(path), genesis, default_registry())
        self.nonces: dict[bytes, int] = {}
        self.time = START

    def tx(self, org: str, type_: str, body: dict[str, Any], consume: bool = True
           ) -> Transaction:
        signer = ADMINS[org]
        nonce = self.nonces.get(signer.public_key, 0) + 1
        if consume:
            self.nonces[signer.public_key] = nonce
        return Transaction.create(signer, CHAIN, type_, nonce, body)

    def commit(self, *txs: tuple[str, str, dict[str, Any]], time: int | None = None,
               expect: str = "ok") -> list[Any]:
        self.time = self.time + 1000 if time is None else time
        signed = [self.tx(*t) for t in txs]
        block, record = decide(self.chain, signed, time=self.time)
        self.chain.commit_decided(block, record)
        codes = [(r.code, r.message) for r in block.results]
        assert all(c == expect for c, _ in codes), codes
        return list(block.results)

    def capture(self, org: str, *events: dict[str, Any], commitment: str | None = None) -> None:
        body: dict[str, Any] = {"events": list(events)}
        if commitment is not None:
            body["commitment"] = commitment
        self.commit((org, "trace.capture", body))

    def attempt(self, org: str, type_: str, body: dict[str, Any]) -> tuple[str, str,
                                                                            dict[str, Any]]:
        tx = self.tx(org, type_, body, consume=False)
        block, record = decide(self.chain, [tx], time=self.time + 1000)
        return block.results[0].code, block.results[0].message, record.state_writes

    def get(self, key: str) -> Any:
        return self.chain.view().get(key)

    def pack(self, p: SGTIN) -> dict[str, Any]:
        return self.get(f"trace/pack/{p.key}")

    def lot(self, lot: LGTIN) -> dict[str, Any] | None:
        return self.get(f"trace/lot/{lot.key}")

    def verdict(self, p: SGTIN, scanner: str | None = None, label_lot: str | None = None,
                label_expiry: str | None = None) -> tuple[str, tuple[str, ...]]:
        entry = self.get(f"trace/pack/{p.key}")
        lot = self.lot(LGTIN(p.gtin, entry["lot"])) if entry else None
        found = verdict(label_lot, label_expiry, entry, lot, scanner, self.time)
        return found.verdict, found.reasons

    def events(self, type_: str) -> list[dict[str, str]]:
        """The attributes of each committed event of ``type_``, in order."""
        return [json.loads(e.attrs) for e in self.chain.store.list_events(EventQuery(type=type_))]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "chain.db")
    w.commit(("acme", "trace.prefix", {"prefix": CP}),
             *((org, "trace.party", {"gln": gln(org)}) for org in ORGS))
    w.commit(("acme", "trace.product", {"gtin": DRUG, "name": "Cardiozol 10 mg",
                                        "ndc": "0777-3105-02"}),
             ("acme", "trace.product", {"gtin": OTHER_DRUG, "name": "Pulmosin 5 mg"}))
    yield w
    w.chain.store.close()


@pytest.fixture
def shipped(world: World) -> World:
    """The story up to the pharmacy: raw lots, the finished lot, six packs in two cases on
    a pallet, the pallet at the wholesaler, case 1 (packs 1-3) received by ``corner``."""
    w = world
    w.capture("acme", receive_raw([RAW_A, RAW_B]))
    w.capture("acme", transform([RAW_A, RAW_B], LOT))
    w.capture("acme", commission(PACKS), pack(CASE_1, PACKS[:3]), pack(CASE_2, PACKS[3:]),
              pack(PALLET, [CASE_1, CASE_2]))
    w.capture("acme", ship([PALLET], "medisupply"))
    w.capture("medisupply", receive([PALLET]), unpack(PALLET))
    w.capture("medisupply", ship([CASE_1], "corner"))
    w.capture("corner", receive([CASE_1]), unpack(CASE_1))
    return w


# the story ------------------------------------------------------------------------------------
def test_custody_follows_the_pallet_and_each_case(shipped: World) -> None:
    w = shipped
    assert [w.pack(p)["custodian"] for p in PACKS] == ["corner"] * 3 + ["medisupply"] * 3
    assert all(w.pack(p)["parent"] is None for p in PACKS[:3])
    assert w.pack(PACKS[3])["parent"] == f"sscc:{CASE_2.key}"
    lot = w.lot(LOT)
    assert lot["inputs"] == [f"lgtin:{RAW_A.key}", f"lgtin:{RAW_B.key}"]
    assert LOT_PACKS.count(w.chain.view(), LOT.key) == 6
    # every event that names the pack or moves it is on its provable history: the
    # shipments of the pallet and of the case it was in included
    steps = [w.get(f"trace/event/{h}")["step"]
             for h in HISTORY.items(w.chain.view(), f"pack.{PACKS[0].key}")]
    assert steps == ["commissioning", "packing", "shipping", "receiving", "shipping",
                     "receiving", "unpacking"]
    assert w.verdict(PACKS[0], "corner") == ("GENUINE", ())


def test_dispensing_ends_the_pack_s_life_and_keeps_only_a_commitment(shipped: World) -> None:
    w = shipped
    w.capture("corner", end("dispensing", [PACKS[0]], "OBSERVE"), commitment=COMMITMENT)
    entry = w.pack(PACKS[0])
    assert entry["status"] == "dispensed" and entry["dispensed"]["commitment"] == COMMITMENT
    stored = w.get(f"trace/event/{HISTORY.items(w.chain.view(), f'pack.{PACKS[0].key}')[-1]}")
    assert "patient" not in str(stored).lower()  # no patient identifier in clear
    code, _, _ = w.attempt("corner", "trace.capture",
                           {"events": [end("dispensing", [PACKS[0]], "OBSERVE")],
                            "commitment": COMMITMENT})
    assert code == "not_active"


def test_an_event_is_captured_once_by_its_cbv_hash(shipped: World) -> None:
    event = end("inspecting", [PACKS[0]], "OBSERVE")
    shipped.capture("corner", event)
    code, message, _ = shipped.attempt("corner", "trace.capture", {"events": [event]})
    assert code == "duplicate_event" and "ni:///sha-256;" in message


def test_a_document_is_applied_all_or_none(shipped: World) -> None:
    good, bad = end("inspecting", [PACKS[1]], "OBSERVE"), ship([PACKS[3]], "other")
    code, message, writes = shipped.attempt("corner", "trace.capture",
                                            {"events": [good, bad]})
    assert code == "not_custodian" and message.startswith("events[1]:")
    assert sorted(writes) == sorted([HISTORY_KEY, nonce_key(ADMINS["corner"].public_key)])


# refusals -------------------------------------------------------------------------------------
REFUSALS: dict[str, tuple[str, Any, str]] = {
    # master data
    "a wholesaler registers a prefix": ("medisupply", lambda w: ("trace.prefix",
                                                                 {"prefix": "0999999"}),
                                        "not_maker"),
    "a prefix inside a registered one": ("rival", lambda w: ("trace.prefix",
                                                             {"prefix": CP + "1"}),
                                         "prefix_taken"),
    "a prefix a registered one starts with": ("rival", lambda w: ("trace.prefix",
                                                                  {"prefix": CP[:6]}),
                                              "prefix_taken"),
    "a product under another maker's prefix": ("rival", lambda w: (
        "trace.product", {"gtin": gtin("77777"), "name": "Fake"}), "not_owner"),
    "a product twice": ("acme", lambda w: ("trace.product", {"gtin": DRUG, "name": "Again"}),
                        "exists"),
    "a party GLN taken": ("rival", lambda w: ("trace.party", {"gln": gln("acme")}),
                          "party_taken"),
    # commissioning
    "commissioning another maker's GTIN": ("rival", lambda w: _cap(commission(
        [SGTIN(DRUG, "X1")])), "not_owner"),
    "commissioning an unregistered product": ("acme", lambda w: _cap(commission(
        [SGTIN(gtin("11111"), "X1")])), "unknown_product"),
    "commissioning a serial twice": ("acme", lambda w: _cap(commission([PACKS[0]])),
                                     "already_commissioned"),
    "commissioning into a lot with another expiry": ("acme", lambda w: _cap(commission(
        [SGTIN(DRUG, "X9")], expiry="2028-01-31")), "lot_mismatch"),
    "commissioning without a lot": ("acme", lambda w: _cap({**commission(
        [SGTIN(DRUG, "X8")]), "ilmd": {}}), "malformed"),
    # transformation
    "transforming a lot not held": ("rival", lambda w: _cap(transform(
        [RAW_A], LGTIN(DRUG, "L9"))), "not_custodian"),
    "transforming an unknown lot": ("acme", lambda w: _cap(transform(
        [LGTIN(gtin("90009"), "NONE")], LGTIN(DRUG, "L9"))), "unknown_lot"),
    "making a lot that exists": ("acme", lambda w: _cap(transform([RAW_A], LOT)),
                                 "lot_exists"),
    # aggregation
    "packing what another holds": ("acme", lambda w: _cap(pack(sscc(9), [PACKS[0]])),
                                   "not_custodian"),
    "packing a pack twice": ("medisupply", lambda w: _cap(pack(sscc(4), [PACKS[3]])),
                             "already_packed"),
    "unpacking what is not inside": ("medisupply", lambda w: _cap(unpack(CASE_2, [PACKS[0]])),
                                     "not_in_container"),
    "packing a container into itself": ("medisupply", lambda w: _cap(pack(CASE_2, [CASE_2])),
                                        "cycle"),
    "packing a lot into a case": ("medisupply", lambda w: _cap({**pack(sscc(5), [PACKS[3]]),
                                                               "childEPCs": [urn(LOT)]}),
                                  "malformed"),
    "receiving raw materials without a lot": ("acme", lambda w: _cap({
        **receive_raw([RAW_A]), "quantityList": []}), "malformed"),
    "an expiry that is no day": ("acme", lambda w: _cap(commission([SGTIN(DRUG, "X7")],
                                                                  lot="L-NEW",
                                                                  expiry="2027-02-30")),
                                 "malformed"),
    # custody
    "shipping what another holds": ("other", lambda w: _cap(ship([PACKS[0]], "corner")),
                                    "not_custodian"),
    "shipping a pack out of its case": ("medisupply", lambda w: _cap(ship([PACKS[3]],
                                                                          "other")),
                                        "in_container"),
    "shipping to an unknown party": ("corner", lambda w: _cap({**ship([PACKS[0]], "other"),
                                                               "destinationList": [{
                                                                   "type": "owning_party",
                                                                   "destination":
                                                                   "https://id.gs1.org/417/"
                                                                   "0000000000000"}]}),
                                     "unknown_party"),
    "receiving what was sent to another": ("other", lambda w: _in_transit_to_corner(w),
                                           "not_addressee"),
    "shipping what is in transit": ("medisupply", lambda w: _shipped_twice(w), "in_transit"),
    # end of life
    "dispensing without a commitment": ("corner", lambda w: _cap(end("dispensing",
                                                                     [PACKS[0]])),
                                        "malformed"),
    "a wholesaler dispenses": ("medisupply", lambda w: _cap(end("dispensing", [PACKS[3]]),
                                                            COMMITMENT), "not_dispenser"),
    "dispensing a pack another holds": ("other", lambda w: _cap(end("dispensing",
                                                                    [PACKS[0]]), COMMITMENT),
                                        "not_custodian"),
    "destroying a pack another holds": ("other", lambda w: _cap(end("destroying",
                                                                    [PACKS[0]])),
                                        "not_custodian"),
    "an event the ledger does not take": ("corner", lambda w: _cap(end("repairing",
                                                                       [PACKS[0]])),
                                          "unsupported_event"),
    "a commitment on a shipment": ("corner", lambda w: _cap(ship([PACKS[0]], "other"),
                                                            COMMITMENT), "malformed"),
    "a regulator commissions": ("authority", lambda w: _cap(commission(
        [SGTIN(DRUG, "R1")])), "not_owner"),
}


def _cap(event: dict[str, Any], commitment: str | None = None) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"events": [event]}
    if commitment is not None:
        body["commitment"] = commitment
    return "trace.capture", body


def _in_transit_to_corner(w: World) -> tuple[str, dict[str, Any]]:
    w.capture("medisupply", unpack(CASE_2, [PACKS[3]]), ship([PACKS[3]], "corner"))
    return _cap(receive([PACKS[3]]))


def _shipped_twice(w: World) -> tuple[str, dict[str, Any]]:
    w.capture("medisupply", ship([CASE_2], "corner"))
    return _cap(ship([CASE_2], "other"))


@pytest.mark.parametrize("name", REFUSALS)
def test_every_refusal_is_specific_and_leaves_state_unchanged(shipped: World,
                                                              name: str) -> None:
    org, make, expected = REFUSALS[name]
    type_, body = make(shipped)
    code, message, writes = shipped.attempt(org, type_, body)
    assert code == expected, message
    assert sorted(writes) == sorted([HISTORY_KEY, nonce_key(ADMINS[org].public_key)])


def test_every_refusal_code_has_an_http_status() -> None:
    tested = {case[2] for case in REFUSALS.values()} - {"malformed", "exists"}
    assert tested <= set(CODES)
    assert set(default_registry().codes) >= set(CODES)


# recalls and reports --------------------------------------------------------------------------
def test_a_recall_stops_shipping_and_dispensing_and_reaches_only_the_patients(
        shipped: World) -> None:
    w = shipped
    w.capture("corner", end("dispensing", [PACKS[0]], "OBSERVE"), commitment=COMMITMENT)
    w.capture("corner", end("dispensing", [PACKS[1]], "OBSERVE"), commitment="d1" * 32)
    code, _, _ = w.attempt("corner", "trace.recall", {"gtin": DRUG, "lot": LOT.lot,
                                                      "reason": "contamination"})
    assert code == "not_owner"
    w.commit(("acme", "trace.recall", {"gtin": DRUG, "lot": LOT.lot,
                                       "reason": "contamination"}))
    notices = w.events("trace.recall_notice")
    assert sorted(e["commitment"] for e in notices) == sorted([COMMITMENT, "d1" * 32])
    assert w.verdict(PACKS[2], "corner") == ("SUSPECT", ("recalled",))
    assert w.attempt("corner", "trace.capture", _cap(end("dispensing", [PACKS[2]]),
                                                     COMMITMENT)[1])[0] == "recalled"
    assert w.attempt("medisupply", "trace.capture", _cap(ship([CASE_2], "other"))[1]
                     )[0] == "recalled"
    # a regulator may recall too, once
    assert w.attempt("authority", "trace.recall", {"gtin": DRUG, "lot": LOT.lot,
                                                   "reason": "again"})[0] == "recalled"


def test_each_patient_finds_their_own_recalled_pack_and_only_theirs(shipped: World) -> None:
    w = shipped
    ana, ben = (privacy.patient_secret(bytes([n]) * 32) for n in (1, 2))
    ana_p, ben_p = "a1" * 16, "b2" * 16
    w.capture("corner", end("dispensing", [PACKS[0]], "OBSERVE"),
              commitment=privacy.commitment(ana, ana_p, PACKS[0]))
    w.capture("corner", end("dispensing", [PACKS[1]], "OBSERVE"),
              commitment=privacy.commitment(ben, ben_p, PACKS[1]))
    w.commit(("authority", "trace.recall", {"gtin": DRUG, "lot": LOT.lot,
                                            "reason": "mislabelled strength"}))
    notices = {e["commitment"] for e in w.events("trace.recall_notice")}
    packs = [deref(r) for r in LOT_PACKS.items(w.chain.view(), LOT.key)]

    def mine(secret: bytes, pseudonym: str) -> list[SGTIN]:
        return [p for p in packs if privacy.commitment(secret, pseudonym, p) in notices]

    assert mine(ana, ana_p) == [PACKS[0]] and mine(ben, ben_p) == [PACKS[1]]
    assert mine(privacy.patient_secret(b"\x03" * 32), "c3" * 16) == []
    # the patient (or the claims app, with consent) opens a commitment; nothing else does
    stored = w.pack(PACKS[0])["dispensed"]["commitment"]
    assert privacy.opens(stored, privacy.salt(ana, PACKS[0]), ana_p, PACKS[0])
    assert not privacy.opens(stored, privacy.salt(ana, PACKS[0]), ben_p, PACKS[0])
    assert not privacy.opens(stored, privacy.salt(ben, PACKS[0]), ana_p, PACKS[0])


def test_a_suspect_report_unanswered_for_24_hours_is_flagged(shipped: World) -> None:
    w = shipped
    [result] = w.commit(("corner", "trace.report", {"gtin": DRUG, "serial": "S0001",
                                                    "reason": "suspect_counterfeit"}))
    report_id = w.events("trace.reported")[0]["report"]
    w.commit(time=w.time + RESPOND_MS - 2000)
    assert w.get(f"trace/overdue/{report_id}") is None
    w.commit(time=w.time + 2000)
    assert w.get(f"trace/overdue/{report_id}")["maker"] == "acme"
    w.commit(("acme", "trace.answer", {"report": report_id, "finding": "legitimate",
                                       "note": "serial checked"}))
    answer = w.get(f"trace/report/{report_id}")["answer"]
    assert answer["late"] is True and w.get(f"trace/overdue/{report_id}") is None


# the verifier catches each kind of fake ---------------------------------------------------------
def test_a_never_issued_serial(shipped: World) -> None:
    assert shipped.verdict(SGTIN(DRUG, "S9999"), "corner") == ("SUSPECT", ("never_issued",))


def test_a_cloned_serial_scanned_at_another_pharmacy(shipped: World) -> None:
    # the genuine pack is at corner; a copy of its code turns up at other
    assert shipped.verdict(PACKS[0], "other") == ("SUSPECT", ("not_in_custody",))


def test_a_relabelled_lot(shipped: World) -> None:
    assert shipped.verdict(PACKS[0], "corner", label_lot="L2027Z", label_expiry="2028-12-31"
                           ) == ("SUSPECT", ("label_lot_mismatch", "label_expiry_mismatch"))


def test_a_diverted_pack(shipped: World) -> None:
    # case 2 is still the wholesaler's: a pack of it sold by a pharmacy was diverted
    assert shipped.verdict(PACKS[4], "other") == ("SUSPECT", ("not_in_custody",))


def test_a_dispensed_pack_sold_again(shipped: World) -> None:
    shipped.capture("corner", end("dispensing", [PACKS[0]], "OBSERVE"), commitment=COMMITMENT)
    assert shipped.verdict(PACKS[0], "corner") == ("SUSPECT", ("dispensed",))


def test_an_expired_pack(shipped: World) -> None:
    shipped.commit(time=START + 600 * DAY)
    assert shipped.verdict(PACKS[0], "corner") == ("SUSPECT", ("expired",))
    assert shipped.attempt("corner", "trace.capture", _cap(end("dispensing", [PACKS[0]]),
                                                           COMMITMENT)[1])[0] == "expired"


def test_codes_in_every_form_name_the_same_pack(shipped: World) -> None:
    scan = Scan(gtin=DRUG, serial="S0001", lot=LOT.lot, expiry=EXPIRY)
    for text in (element_string(scan), urn(PACKS[0]),
                 f"https://id.gs1.org/01/{DRUG}/10/{LOT.lot}/21/S0001?17=270630"):
        read = parse_code(text)
        assert SGTIN(read.gtin, read.serial) == PACKS[0], text


# the demo supply chain ------------------------------------------------------------------------
def test_the_demo_supply_chain_commits_and_shows_each_verdict(tmp_path: Path) -> None:
    from medledger.apps.trace import demo
    from medledger.cli.demo_records import demo_keys

    orgs = {"acme-pharma": "manufacturer", "st-mary": "hospital", "northgate": "hospital"}
    admins = {org: SigningKey.from_seed(org.encode().ljust(32, b"-")) for org in orgs}
    genesis = Genesis(CHAIN, START + 300 * DAY,
                      ValidatorSet.of([Validator(VALIDATOR.public_key, 10, "v")]),
                      tuple({"id": o, "name": o, "role": r,
                             "admins": [admins[o].public_key.hex()]} for o, r in orgs.items()))
    chain = Chain(SQLiteStore(tmp_path / "demo.db"), genesis, default_registry())
    txs = default_registry().demo(list(orgs))
    assert [t.type for t in txs].count("trace.capture") == 5
    nonces: dict[str, int] = {}
    for n, demo_tx in enumerate(txs, 1):
        nonces[demo_tx.signer] = nonces.get(demo_tx.signer, 0) + 1
        tx = Transaction.create(admins[demo_tx.signer], CHAIN, demo_tx.type,
                                nonces[demo_tx.signer], demo_tx.body)
        block, record = decide(chain, [tx], time=START + 300 * DAY + n * 1000)
        chain.commit_decided(block, record)
        assert block.results[0].code == "ok", (demo_tx.type, block.results[0].message)
    view, now = chain.view(), START + 300 * DAY + 60_000
    verdicts = {}
    for what, code in demo.TRY.items():
        scan = parse_code(code)
        entry = view.get(f"trace/pack/{SGTIN(scan.gtin, scan.serial).key}")
        lot = view.get(f"trace/lot/{LGTIN(scan.gtin, entry['lot']).key}") if entry else None
        verdicts[what] = verdict(scan.lot, scan.expiry, entry, lot, "st-mary", now).reasons
    assert verdicts == {"genuine at St Mary's": (), "dispensed already": ("dispensed",),
                        "diverted (Northgate's pack scanned at St Mary's)": ("not_in_custody",),
                        "never issued": ("never_issued",),
                        "relabelled lot": ("label_lot_mismatch",)}
    # the commitment on the dispensing is the records demo's patient Ana's
    ana = demo_keys("patient-ana")
    secret = privacy.patient_secret(ana.signing.seed)
    stored = view.get(f"trace/pack/{demo.PACKS[0].key}")["dispensed"]["commitment"]
    from medledger.codec import pseudonym
    assert stored == privacy.commitment(secret, pseudonym(ana.signing.public_key),
                                        demo.PACKS[0])
    chain.store.close()
