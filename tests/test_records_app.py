"""The records app: its rules as named scenario tables, who may send what, who may fetch a
blob, time (grant expiry, revocation, read windows, the 72-hour justification flag), and
its routes with provable lists checked by the SDK.

The rules run on a chain whose blocks are decided as CometBFT decides them
(``tests/chainutil.py``), each at a BFT time the test chooses. A refusal and the
authorisation tables are decided from the same tip without being committed
(:meth:`World.attempt`), so each case starts from the same state; a refusal must leave no
write but the sender's nonce and the block history. The routes run on a node over the
in-process stand-in for CometBFT (``tests/localchain.py``).

No medical content appears anywhere: digests are of made-up bytes, wrapped keys are filler.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from medledger.apps import default_registry
from medledger.apps.identity import pseudonym_of
from medledger.apps.records import (
    ACCESS_WINDOW_MS,
    CODES,
    EMERGENCY_COVER_MS,
    JUSTIFY_MS,
    break_glass_key,
    emergency_reader,
    overdue_key,
    reader_key,
    record_key,
    release_key,
)
from medledger.client import verify_list_answer, verify_state_answer
from medledger.codec import decode
from medledger.crypto import DEFAULT_SUITE, EncryptionKey, SigningKey
from medledger.ledger import Transaction, Validator, ValidatorSet
from medledger.ledger.engine import HISTORY_KEY
from medledger.node import Genesis, NodeConfig
from medledger.node.chain import Chain, nonce_key, result_of
from medledger.store import EventQuery, SQLiteStore
from tests.chainutil import decide
from tests.localchain import LocalNode

CHAIN = "records-chain"
START = 1_700_000_000_000
HOUR = 3_600_000
VALIDATOR = SigningKey.from_seed(b"\x01" * 32)
ENC = EncryptionKey.from_private_bytes(DEFAULT_SUITE, b"\x02" * 32).public_bytes().hex()
WRAPPED = "q" * 64  # stands for an HPKE-wrapped content key (48 bytes, base64url)


def key(name: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(f"records test {name}".encode()).digest())


ORGS = {  # id: (role, admin key)
    "st-mary": "hospital", "northgate": "hospital", "city-er": "hospital",
    "carewell": "pharmacy", "sure-health": "insurer", "health-authority": "regulator",
}
ADMINS = {org: key(f"admin {org}") for org in ORGS}
MEMBERS = {  # role in the tables: (org, identity role)
    "author": ("st-mary", "clinician"),
    "granted": ("northgate", "clinician"),
    "elsewhere": ("northgate", "clinician"),
    "emergency": ("city-er", "emergency_clinician"),
    "pharmacist": ("carewell", "pharmacist"),
    "claims": ("sure-health", "claims_officer"),
    "auditor": ("st-mary", "auditor"),
    "regulator": ("health-authority", "auditor"),
}
PATIENTS = ("patient", "delegate", "other_patient")
ROLES = ["patient", "delegate", *MEMBERS, "stranger"]
K = {name: key(name) for name in [*MEMBERS, *PATIENTS, "stranger"]}
HEX = {name: k.public_key.hex() for name, k in K.items()}
P = pseudonym_of(K["patient"].public_key)
Q = pseudonym_of(K["other_patient"].public_key)


def digest(label: str) -> str:
    return hashlib.sha256(f"ciphertext {label}".encode()).hexdigest()


def genesis() -> Genesis:
    return Genesis(CHAIN, START, ValidatorSet.of([Validator(VALIDATOR.public_key, 10, "v")]),
                   tuple({"id": org, "name": org, "role": role,
                          "admins": [ADMINS[org].public_key.hex()]}
                         for org, role in ORGS.items()))


def add_body(patient: str, label: str, author: str = "author", *, category: str = "lab",
             previous: str | None = None, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    owner = "patient" if patient == P else "other_patient"
    readers = list(dict.fromkeys([owner, author, *extra]))
    return {"patient": patient, "category": category, "digest": digest(label), "size": 2048,
            "previous": previous,
            "keys": [{"reader": HEX[r], "wrapped": WRAPPED} for r in readers]}


def grant_body(grantee: str, categories: list[str], expires: int,
               keys: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"patient": P, "grantee": grantee, "categories": categories,
            "purpose": "TREAT", "expires": expires, "keys": keys or []}


def setup_txs() -> list[tuple[SigningKey, str, dict[str, Any]]]:
    """Members registered by their admins, patients by themselves."""
    txs: list[tuple[SigningKey, str, dict[str, Any]]] = [
        (ADMINS[org], "identity.member.register",
         {"org": org, "key": HEX[name], "role": role, "name": name, "enc_key": ENC,
          "enc_suite": DEFAULT_SUITE})
        for name, (org, role) in MEMBERS.items()]
    txs += [(K[name], "identity.patient.register", {"enc_key": ENC, "enc_suite": DEFAULT_SUITE})
            for name in PATIENTS]
    return txs


class World:
    """A chain with every role registered; commits blocks at chosen BFT times, or decides
    a block from the tip without committing it (:meth:`attempt`)."""

    def __init__(self, path: Path) -> None:
        self.chain = Chain(SQLiteStore(path), genesis(), default_registry())
        self.nonces: dict[bytes, int] = {}
        self.time = START
        self.ids: dict[str, str] = {}

    def tx(self, signer: SigningKey, type_: str, body: dict[str, Any],
           consume: bool = True) -> Transaction:
        nonce = self.nonces.get(signer.public_key, 0) + 1
        if consume:
            self.nonces[signer.public_key] = nonce
        return Transaction.create(signer, CHAIN, type_, nonce, body)

    def commit(self, *txs: tuple[SigningKey, str, dict[str, Any]], time: int | None = None,
               expect: str = "ok") -> list[str]:
        """Commit one block of ``txs`` (each must end in ``expect``); return their ids."""
        self.time = self.time + 1000 if time is None else time
        signed = [self.tx(*t) for t in txs]
        block, record = decide(self.chain, signed, time=self.time)
        self.chain.commit_decided(block, record)
        codes = [(r.code, r.message) for r in block.results]
        assert all(c == expect for c, _ in codes), codes
        return [t.tx_id.hex() for t in signed]

    def attempt(self, signer: SigningKey, type_: str, body: dict[str, Any],
                time: int | None = None) -> tuple[str, dict[str, bytes | None]]:
        """Decide a block of one transaction at the tip, without committing it: its code
        and the state writes the block would make."""
        tx = self.tx(signer, type_, body, consume=False)
        block, record = decide(self.chain, [tx], time=self.time + 1000 if time is None else time)
        return block.results[0].code, record.state_writes

    def get(self, key: str) -> Any:
        return self.chain.view().get(key)

    def may_read(self, label: str, reader: str, time: int | None = None) -> bool:
        return default_registry().may_read_blob(
            self.chain.view(), bytes.fromhex(digest(label)), K[reader].public_key,
            self.time if time is None else time)

    def events(self, type_: str) -> list[Any]:
        return self.chain.store.list_events(EventQuery(type=type_))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Everyone registered; then:

    - ``r1`` (lab) and ``img`` (imaging) of the patient, ``q1`` (lab) of the other patient,
      all by the author; ``old`` amended by ``new``; ``gone`` erased by the patient;
    - the guardian (``delegate``) named by the patient;
    - ``g_lab``: lab records to ``granted`` for 10 hours, with ``r1``'s key wrapped for it;
      ``g_revoked`` revoked; ``g_short`` expired;
    - ``e1``: the emergency clinician broke the glass on ``r1``; ``e_done`` justified."""
    w = World(tmp_path / "chain.db")
    w.commit(*setup_txs())
    a = K["author"]
    ids = w.commit((a, "records.add", add_body(P, "r1")),
                   (a, "records.add", add_body(P, "img", category="imaging")),
                   (a, "records.add", add_body(Q, "q1")),
                   (a, "records.add", add_body(P, "old")),
                   (a, "records.add", add_body(P, "gone")),
                   (K["patient"], "records.delegate",
                    {"patient": P, "delegate": HEX["delegate"], "role": "guardian"}))
    w.ids.update(zip(["r1", "img", "q1", "old", "gone"], ids, strict=False))
    w.ids["new"], = w.commit((a, "records.add", add_body(P, "new", previous=w.ids["old"])))
    w.commit((K["patient"], "records.erase", {"record": w.ids["gone"]}))
    key_for_granted = [{"record": w.ids["r1"], "reader": HEX["granted"], "wrapped": WRAPPED}]
    ids = w.commit(
        (K["patient"], "records.grant",
         grant_body(HEX["granted"], ["lab"], w.time + 10 * HOUR + 1000, key_for_granted)),
        (K["patient"], "records.grant", grant_body(HEX["granted"], ["lab"], w.time + 10 * HOUR)),
        (K["patient"], "records.grant", grant_body(HEX["granted"], ["lab"], w.time + 1500)))
    w.ids.update(zip(["g_lab", "g_revoked", "g_short"], ids, strict=True))
    w.commit((K["delegate"], "records.revoke", {"grant": w.ids["g_revoked"]}))
    emergency = {"patient": P, "reason": "ETREAT", "records": [w.ids["r1"]]}
    w.ids["e1"], w.ids["e_done"] = w.commit((K["emergency"], "records.emergency", emergency),
                                            (K["emergency"], "records.emergency", emergency))
    w.commit((K["emergency"], "records.justify", {"emergency": w.ids["e_done"],
                                                  "text": "case ref 2024-117"}))
    yield w
    w.chain.store.close()


# the happy path -------------------------------------------------------------------------------
def test_a_record_is_metadata_wrapped_keys_a_list_entry_and_a_digest_index(world: World) -> None:
    r1 = world.get(record_key(world.ids["r1"]))
    assert r1["patient"] == P and r1["author"] == HEX["author"] and r1["org"] == "st-mary"
    assert r1["digest"] == digest("r1") and r1["size"] == 2048 and r1["erased"] is None
    assert r1["readers"] == sorted([HEX["patient"], HEX["author"]])
    assert world.get(f"records/digest/{digest('r1')}") == world.ids["r1"]
    assert world.get(f"records/key/{world.ids['r1']}/{HEX['patient']}")["wrapped"] == WRAPPED
    assert world.get(f"records/key/{world.ids['r1']}/{HEX['granted']}")["grant"] == (
        world.ids["g_lab"])
    listed = [world.get(f"records/by_patient/{P}/{n:016d}") for n in range(1, 6)]
    assert listed == [world.ids[n] for n in ("r1", "img", "old", "gone", "new")]
    assert world.get(f"records/by_patient/{P}/count") == 5
    assert world.get(f"records/by_patient/{Q}/count") == 1


def test_an_amendment_points_back_and_the_amended_record_points_forward(world: World) -> None:
    old, new = world.get(record_key(world.ids["old"])), world.get(record_key(world.ids["new"]))
    assert old["amended_by"] == world.ids["new"] and new["previous"] == world.ids["old"]
    assert old["digest"] == digest("old")  # nothing overwritten but the forward pointer
    assert new["amended_by"] is None


def test_an_extra_reader_needs_a_grant_for_the_category_or_a_delegation(world: World) -> None:
    a = K["author"]
    code, _ = world.attempt(a, "records.add", add_body(P, "x1", extra=("granted",)))
    assert code == "ok"  # g_lab covers lab
    code, _ = world.attempt(a, "records.add", add_body(P, "x2", category="imaging",
                                                       extra=("granted",)))
    assert code == "reader_not_allowed"
    code, _ = world.attempt(a, "records.add", add_body(P, "x3", extra=("delegate",)))
    assert code == "ok"
    code, _ = world.attempt(a, "records.add", add_body(P, "x4", extra=("elsewhere",)))
    assert code == "reader_not_allowed"


# refusals leave state unchanged ---------------------------------------------------------------
Body = Callable[[World], dict[str, Any]]


def _keys(*readers: str) -> list[dict[str, str]]:
    return [{"reader": HEX[r], "wrapped": WRAPPED} for r in readers]


REFUSALS: dict[str, tuple[str, str, Body, str]] = {  # name: (signer, type, body, code)
    # records.add
    "a pharmacist adds a record": ("pharmacist", "records.add",
                                   lambda w: add_body(P, "n", "pharmacist"), "role_not_allowed"),
    "a patient adds their own record": ("patient", "records.add",
                                        lambda w: add_body(P, "n", "patient"), "role_not_allowed"),
    "a record for an unregistered patient": (
        "author", "records.add", lambda w: {**add_body(P, "n"), "patient": "0" * 32},
        "unknown_patient"),
    "a digest already recorded": ("author", "records.add", lambda w: add_body(P, "r1"),
                                  "exists"),
    "keys without the patient's": ("author", "records.add",
                                   lambda w: {**add_body(P, "n"), "keys": _keys("author", "delegate")},
                                   "missing_reader"),
    "keys without the author's": ("author", "records.add",
                                  lambda w: {**add_body(P, "n"), "keys": _keys("patient", "delegate")},
                                  "missing_reader"),
    "a reader never registered": ("author", "records.add",
                                  lambda w: add_body(P, "n", extra=("stranger",)), "unknown_reader"),
    "a reader neither granted nor delegate": (
        "author", "records.add", lambda w: add_body(P, "n", extra=("elsewhere",)),
        "reader_not_allowed"),
    "amending another patient's record": (
        "author", "records.add", lambda w: add_body(P, "n", previous=w.ids["q1"]),
        "wrong_patient"),
    "amending a record that does not exist": (
        "author", "records.add", lambda w: add_body(P, "n", previous="0" * 64), "unknown_record"),
    "amending an erased record": ("author", "records.add",
                                  lambda w: add_body(P, "n", previous=w.ids["gone"]), "erased"),
    "amending a record already amended": (
        "author", "records.add", lambda w: add_body(P, "n", previous=w.ids["old"]),
        "already_amended"),
    "a reader named twice": ("author", "records.add",
                             lambda w: {**add_body(P, "n"), "keys": _keys("patient", "author",
                                                                          "author")},
                             "malformed"),
    "an empty wrapped key": ("author", "records.add", lambda w: {
        **add_body(P, "n"), "keys": [*_keys("patient"), {"reader": HEX["author"], "wrapped": ""}]},
        "malformed"),
    "a category that is not one": ("author", "records.add",
                                   lambda w: add_body(P, "n", category="diary"), "malformed"),
    "a size of zero": ("author", "records.add", lambda w: {**add_body(P, "n"), "size": 0},
                       "malformed"),
    "a wrapped key over 4096 bytes": ("author", "records.add", lambda w: {
        **add_body(P, "n"), "keys": [*_keys("patient"),
                                     {"reader": HEX["author"], "wrapped": "q" * 5464}]},
        "malformed"),
    # records.grant
    "the author grants": ("author", "records.grant",
                          lambda w: grant_body(HEX["elsewhere"], ["lab"], START + 99 * HOUR),
                          "not_delegate"),
    "another patient grants": ("other_patient", "records.grant",
                               lambda w: grant_body(HEX["elsewhere"], ["lab"], START + 99 * HOUR),
                               "not_delegate"),
    "a grant to an unregistered key": (
        "patient", "records.grant", lambda w: grant_body(HEX["stranger"], ["lab"],
                                                         START + 99 * HOUR), "unknown_grantee"),
    "a grant to a patient's key": (
        "patient", "records.grant", lambda w: grant_body(HEX["other_patient"], ["lab"],
                                                         START + 99 * HOUR), "unknown_grantee"),
    "a grant to an unknown organisation": (
        "patient", "records.grant", lambda w: grant_body("org:nowhere", ["lab"],
                                                         START + 99 * HOUR), "unknown_grantee"),
    "a grant expiring in the past": ("patient", "records.grant",
                                     lambda w: grant_body(HEX["elsewhere"], ["lab"], START),
                                     "bad_expiry"),
    "a grant with a key for another patient's record": (
        "patient", "records.grant", lambda w: grant_body(
            HEX["elsewhere"], ["lab"], START + 99 * HOUR,
            [{"record": w.ids["q1"], "reader": HEX["elsewhere"], "wrapped": WRAPPED}]),
        "wrong_patient"),
    "a grant with a key for a category it does not grant": (
        "patient", "records.grant", lambda w: grant_body(
            HEX["elsewhere"], ["lab"], START + 99 * HOUR,
            [{"record": w.ids["img"], "reader": HEX["elsewhere"], "wrapped": WRAPPED}]),
        "category_not_granted"),
    "a grant with a key for someone not the grantee": (
        "patient", "records.grant", lambda w: grant_body(
            HEX["elsewhere"], ["lab"], START + 99 * HOUR,
            [{"record": w.ids["r1"], "reader": HEX["pharmacist"], "wrapped": WRAPPED}]),
        "not_grantee"),
    "an org grant with a key for a member elsewhere": (
        "patient", "records.grant", lambda w: grant_body(
            "org:northgate", ["lab"], START + 99 * HOUR,
            [{"record": w.ids["r1"], "reader": HEX["author"], "wrapped": WRAPPED}]),
        "not_grantee"),
    "a grant with a key for an erased record": (
        "patient", "records.grant", lambda w: grant_body(
            HEX["elsewhere"], ["lab"], START + 99 * HOUR,
            [{"record": w.ids["gone"], "reader": HEX["elsewhere"], "wrapped": WRAPPED}]),
        "erased"),
    "a grantee that is neither key nor org": (
        "patient", "records.grant", lambda w: grant_body("st-mary", ["lab"], START + 99 * HOUR),
        "malformed"),
    "a category granted twice": (
        "patient", "records.grant", lambda w: grant_body(HEX["elsewhere"], ["lab", "lab"],
                                                         START + 99 * HOUR), "malformed"),
    # records.revoke
    "revoking a grant that does not exist": ("patient", "records.revoke",
                                             lambda w: {"grant": "0" * 64}, "no_grant"),
    "the grantee revokes": ("granted", "records.revoke", lambda w: {"grant": w.ids["g_lab"]},
                            "not_delegate"),
    "revoking twice": ("patient", "records.revoke", lambda w: {"grant": w.ids["g_revoked"]},
                       "grant_revoked"),
    # records.delegate, records.undelegate
    "a delegate names a delegate": ("delegate", "records.delegate", lambda w: {
        "patient": P, "delegate": HEX["other_patient"], "role": "guardian"}, "not_patient"),
    "naming an unregistered delegate": ("patient", "records.delegate", lambda w: {
        "patient": P, "delegate": HEX["stranger"], "role": "guardian"}, "unknown_delegate"),
    "naming a delegate twice": ("patient", "records.delegate", lambda w: {
        "patient": P, "delegate": HEX["delegate"], "role": "guardian"}, "exists"),
    "naming oneself": ("patient", "records.delegate", lambda w: {
        "patient": P, "delegate": HEX["patient"], "role": "guardian"}, "malformed"),
    "withdrawing someone not a delegate": ("patient", "records.undelegate", lambda w: {
        "patient": P, "delegate": HEX["elsewhere"]}, "unknown_delegate"),
    "a delegate withdraws itself": ("delegate", "records.undelegate", lambda w: {
        "patient": P, "delegate": HEX["delegate"]}, "not_patient"),
    # records.access
    "reading on a grant that does not exist": (
        "granted", "records.access", lambda w: {"records": [w.ids["r1"]],
                                                "basis": "grant:" + "0" * 64}, "no_grant"),
    "reading on a revoked grant": ("granted", "records.access", lambda w: {
        "records": [w.ids["r1"]], "basis": f"grant:{w.ids['g_revoked']}"}, "grant_revoked"),
    "reading on an expired grant": ("granted", "records.access", lambda w: {
        "records": [w.ids["r1"]], "basis": f"grant:{w.ids['g_short']}"}, "grant_expired"),
    "reading a category the grant leaves out": ("granted", "records.access", lambda w: {
        "records": [w.ids["img"]], "basis": f"grant:{w.ids['g_lab']}"}, "category_not_granted"),
    "reading on someone else's grant": ("elsewhere", "records.access", lambda w: {
        "records": [w.ids["r1"]], "basis": f"grant:{w.ids['g_lab']}"}, "not_grantee"),
    "reading another patient's record on a grant": ("granted", "records.access", lambda w: {
        "records": [w.ids["q1"]], "basis": f"grant:{w.ids['g_lab']}"}, "wrong_patient"),
    "reading a record that does not exist": ("granted", "records.access", lambda w: {
        "records": ["0" * 64], "basis": f"grant:{w.ids['g_lab']}"}, "unknown_record"),
    "reading an erased record": ("granted", "records.access", lambda w: {
        "records": [w.ids["gone"]], "basis": f"grant:{w.ids['g_lab']}"}, "erased"),
    "one covered record and one not": ("granted", "records.access", lambda w: {
        "records": [w.ids["r1"], w.ids["img"]], "basis": f"grant:{w.ids['g_lab']}"},
        "category_not_granted"),
    "reading on another organisation's emergency": ("author", "records.access", lambda w: {
        "records": [w.ids["r1"]], "basis": f"emergency:{w.ids['e1']}"}, "wrong_org"),
    "reading a record the emergency does not name": ("emergency", "records.access", lambda w: {
        "records": [w.ids["img"]], "basis": f"emergency:{w.ids['e1']}"}, "not_in_emergency"),
    "reading on an emergency that does not exist": ("emergency", "records.access", lambda w: {
        "records": [w.ids["r1"]], "basis": "emergency:" + "0" * 64}, "no_emergency"),
    "a basis of another kind": ("granted", "records.access", lambda w: {
        "records": [w.ids["r1"]], "basis": f"consent:{w.ids['g_lab']}"}, "malformed"),
    "a record named twice": ("granted", "records.access", lambda w: {
        "records": [w.ids["r1"], w.ids["r1"]], "basis": f"grant:{w.ids['g_lab']}"}, "malformed"),
    # records.emergency
    "a pharmacist breaks the glass": ("pharmacist", "records.emergency", lambda w: {
        "patient": P, "reason": "ETREAT", "records": [w.ids["r1"]]}, "role_not_allowed"),
    "an emergency on an unregistered patient": ("emergency", "records.emergency", lambda w: {
        "patient": "0" * 32, "reason": "ETREAT", "records": [w.ids["r1"]]}, "unknown_patient"),
    "an emergency naming another patient's record": ("emergency", "records.emergency",
                                                     lambda w: {"patient": P, "reason": "BTG",
                                                                "records": [w.ids["q1"]]},
                                                     "wrong_patient"),
    "an emergency naming an erased record": ("emergency", "records.emergency", lambda w: {
        "patient": P, "reason": "BTG", "records": [w.ids["gone"]]}, "erased"),
    "a reason that is no ActReason break-glass code": (
        "emergency", "records.emergency", lambda w: {
            "patient": P, "reason": "TREAT", "records": [w.ids["r1"]]}, "malformed"),
    # records.justify
    "justifying an emergency that does not exist": ("emergency", "records.justify", lambda w: {
        "emergency": "0" * 64, "text": "ref"}, "no_emergency"),
    "another organisation justifies": ("author", "records.justify", lambda w: {
        "emergency": w.ids["e1"], "text": "ref"}, "wrong_org"),
    "justifying twice": ("emergency", "records.justify", lambda w: {
        "emergency": w.ids["e_done"], "text": "ref"}, "already_justified"),
    # records.erase
    "the author erases": ("author", "records.erase", lambda w: {"record": w.ids["r1"]},
                          "not_patient"),
    "a delegate erases": ("delegate", "records.erase", lambda w: {"record": w.ids["r1"]},
                          "not_patient"),
    "erasing a record that does not exist": ("patient", "records.erase",
                                             lambda w: {"record": "0" * 64}, "unknown_record"),
    "erasing twice": ("patient", "records.erase", lambda w: {"record": w.ids["gone"]},
                      "erased"),
    # records.rewrap
    "a delegate re-wraps": ("delegate", "records.rewrap", lambda w: _rewrap(w, "r1"),
                            "not_patient"),
    "re-wrapping another patient's record": ("patient", "records.rewrap",
                                             lambda w: _rewrap(w, "q1"), "wrong_patient"),
    "re-wrapping an erased record": ("patient", "records.rewrap", lambda w: _rewrap(w, "gone"),
                                     "erased"),
    "re-wrapping a record twice": ("patient", "records.rewrap",
                                   lambda w: _rewrap(w, "r1", "r1"), "malformed"),
    "re-wrapping nothing": ("patient", "records.rewrap", lambda w: _rewrap(w), "malformed"),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_every_refusal_is_specific_and_leaves_state_unchanged(world: World, name: str) -> None:
    signer, type_, body, expected = REFUSALS[name]
    code, writes = world.attempt(K[signer], type_, body(world))
    assert code == expected
    assert sorted(writes) == sorted([HISTORY_KEY, nonce_key(K[signer].public_key)])


def test_every_refusal_code_has_an_http_status() -> None:
    registry = default_registry()
    codes = ({case[3] for case in [*REFUSALS.values(), *ESCROW_REFUSALS.values()]}
             | {"emergency_over"})
    assert codes <= set(registry.codes)
    assert set(CODES) <= codes  # every code of the app is exercised


# who may send what ----------------------------------------------------------------------------
def _rewrap(w: World, *labels: str) -> dict[str, Any]:
    return {"patient": P, "keys": [{"record": w.ids[label], "wrapped": WRAPPED}
                                   for label in labels]}


TX_BODIES: dict[str, Callable[[World, str], dict[str, Any]]] = {
    "records.add": lambda w, who: add_body(P, "authz", who if who in HEX else "author"),
    "records.grant": lambda w, who: grant_body(HEX["elsewhere"], ["lab"], START + 99 * HOUR),
    "records.revoke": lambda w, who: {"grant": w.ids["g_lab"]},
    "records.delegate": lambda w, who: {"patient": P, "delegate": HEX["auditor"],
                                        "role": "carer"},
    "records.undelegate": lambda w, who: {"patient": P, "delegate": HEX["delegate"]},
    "records.access": lambda w, who: {"records": [w.ids["r1"]],
                                      "basis": f"grant:{w.ids['g_lab']}"},
    "records.emergency": lambda w, who: {"patient": P, "reason": "BTG",
                                         "records": [w.ids["r1"]]},
    "records.justify": lambda w, who: {"emergency": w.ids["e1"], "text": "case ref 9"},
    "records.erase": lambda w, who: {"record": w.ids["r1"]},
    "records.rewrap": lambda w, who: _rewrap(w, "r1"),
}
_CLINICIANS = {"author", "granted", "elsewhere", "emergency"}
_OTHER_MEMBERS = {"pharmacist", "claims", "auditor", "regulator"}


def _expected(type_: str, role: str) -> str:
    """The authorisation table, one rule a transaction type."""
    if role == "stranger":
        return "unknown_sender"
    member = role in MEMBERS
    table = {
        "records.add": "ok" if role in _CLINICIANS else "role_not_allowed",
        "records.grant": "ok" if role in ("patient", "delegate") else "not_delegate",
        "records.revoke": "ok" if role in ("patient", "delegate") else "not_delegate",
        "records.delegate": "ok" if role == "patient" else "not_patient",
        "records.undelegate": "ok" if role == "patient" else "not_patient",
        "records.access": ("ok" if role == "granted" else
                           "not_grantee" if member else "role_not_allowed"),
        "records.emergency": "ok" if role == "emergency" else "role_not_allowed",
        "records.justify": ("ok" if role == "emergency" else
                            "wrong_org" if member else "role_not_allowed"),
        "records.erase": "ok" if role == "patient" else "not_patient",
        "records.rewrap": "ok" if role == "patient" else "not_patient",
    }
    return table[type_]


@pytest.mark.parametrize("type_", TX_BODIES)
def test_authorisation_table_of_roles_against_each_transaction(world: World, type_: str) -> None:
    got = {role: world.attempt(K[role], type_, TX_BODIES[type_](world, role))[0]
           for role in ROLES}
    assert got == {role: _expected(type_, role) for role in ROLES}
    assert list(got.values()).count("ok") >= 1


def test_authorisation_table_of_roles_against_blob_reads(world: World) -> None:
    """Before any read: the patient and the author only; after the granted clinician and
    the emergency clinician read ``r1``: them too, on ``r1`` and nothing else."""
    before = {role: (world.may_read("r1", role), world.may_read("q1", role)) for role in ROLES}
    world.commit((K["granted"], "records.access",
                  {"records": [world.ids["r1"]], "basis": f"grant:{world.ids['g_lab']}"}),
                 (K["emergency"], "records.access",
                  {"records": [world.ids["r1"]], "basis": f"emergency:{world.ids['e1']}"}))
    after = {role: (world.may_read("r1", role), world.may_read("q1", role)) for role in ROLES}
    own_only, both, neither = (True, False), (True, True), (False, False)
    assert before == {**dict.fromkeys(ROLES, neither), "patient": own_only, "author": both,
                      "emergency": own_only}  # e1's own read window is still open
    assert after == {**before, "granted": own_only}
    assert world.may_read("img", "granted") is False  # not a category g_lab covers
    assert world.may_read("q1", "other_patient") is True


def test_a_rotated_patient_signs_and_reads_with_the_new_keys_only(world: World) -> None:
    new = key("patient, new keys")
    rotate = {"new_key": new.public_key.hex(), "enc_key": ENC, "enc_suite": DEFAULT_SUITE}
    assert world.attempt(K["author"], "identity.patient.rotate", rotate)[0] == "unauthorized"
    taken = {**rotate, "new_key": HEX["other_patient"]}
    assert world.attempt(K["patient"], "identity.patient.rotate", taken)[0] == "exists"
    world.commit((K["patient"], "identity.patient.rotate", rotate))
    K["rotated"] = new  # may_read looks readers up by name
    try:
        assert world.get(f"identity/patient/{P}")["key"] == new.public_key.hex()
        assert world.get(f"identity/key/{HEX['patient']}")["replaced_by"] == new.public_key.hex()
        assert not world.may_read("r1", "patient") and world.may_read("r1", "rotated")
        assert not world.may_read("q1", "rotated")
        assert world.attempt(K["patient"], "records.rewrap", _rewrap(world, "r1"))[0] == (
            "key_rotated")
        world.commit((new, "records.rewrap", _rewrap(world, "r1", "img")))
        entry = world.get(f"records/key/{world.ids['r1']}/{new.public_key.hex()}")
        assert entry["wrapped"] == WRAPPED and entry["grant"] is None
        # the new key speaks for the patient: grants, and records sealed for it
        world.commit((new, "records.grant", grant_body(HEX["elsewhere"], ["lab"],
                                                       world.time + HOUR)))
        code, _ = world.attempt(K["author"], "records.add", add_body(P, "after"))
        assert code == "missing_reader"  # sealed for the old key, not the patient's new one
    finally:
        del K["rotated"]


# time -----------------------------------------------------------------------------------------
def _read_r1(world: World, basis: str, who: str = "granted") -> None:
    world.commit((K[who], "records.access", {"records": [world.ids["r1"]], "basis": basis}))


def test_a_read_window_closes_after_its_block_time(world: World) -> None:
    _read_r1(world, f"grant:{world.ids['g_lab']}")
    opened = world.time
    assert world.may_read("r1", "granted", opened + ACCESS_WINDOW_MS - 1)
    assert not world.may_read("r1", "granted", opened + ACCESS_WINDOW_MS)
    assert not world.may_read("r1", "granted", opened - 1)


def test_grant_expiry_by_block_time_closes_reads_at_the_next_height(world: World) -> None:
    expires = world.get(f"records/grant/{world.ids['g_lab']}")["expires"]
    world.commit(time=expires - 60_000)
    _read_r1(world, f"grant:{world.ids['g_lab']}")  # a minute before it expires
    world.commit(time=expires - 1)
    assert world.may_read("r1", "granted")  # the window is open, the grant not yet expired
    code, _ = world.attempt(K["granted"], "records.access", {
        "records": [world.ids["r1"]], "basis": f"grant:{world.ids['g_lab']}"}, time=expires - 1)
    assert code == "ok"
    world.commit(time=expires)
    assert not world.may_read("r1", "granted")  # the window would still be open
    assert world.get(f"records/window/{world.ids['r1']}/{HEX['granted']}")["until"] > expires
    code, _ = world.attempt(K["granted"], "records.access", {
        "records": [world.ids["r1"]], "basis": f"grant:{world.ids['g_lab']}"}, time=expires)
    assert code == "grant_expired"


def test_revocation_closes_reads_at_the_next_height(world: World) -> None:
    _read_r1(world, f"grant:{world.ids['g_lab']}")
    assert world.may_read("r1", "granted")
    world.commit((K["patient"], "records.revoke", {"grant": world.ids["g_lab"]}))
    assert not world.may_read("r1", "granted")
    grant = world.get(f"records/grant/{world.ids['g_lab']}")
    assert grant["revoked"]["by"] == HEX["patient"]
    # what was read stays read: the wrapped key is still in state (docs/records.md)
    assert world.get(f"records/key/{world.ids['r1']}/{HEX['granted']}") is not None


def test_an_org_grant_covers_every_member_of_that_organisation_only(world: World) -> None:
    gid, = world.commit((K["patient"], "records.grant",
                         grant_body("org:northgate", ["lab"], world.time + HOUR)))
    _read_r1(world, f"grant:{gid}", "elsewhere")
    assert world.may_read("r1", "elsewhere")
    code, _ = world.attempt(K["author"], "records.access",
                            {"records": [world.ids["r1"]], "basis": f"grant:{gid}"})
    assert code == "not_grantee"


def test_an_emergency_covers_its_organisation_for_a_limited_time(world: World) -> None:
    e1 = world.get(f"records/emergency/{world.ids['e1']}")
    basis = {"records": [world.ids["r1"]], "basis": f"emergency:{world.ids['e1']}"}
    assert world.attempt(K["emergency"], "records.access", basis,
                         time=e1["time"] + EMERGENCY_COVER_MS - 1)[0] == "ok"
    assert world.attempt(K["emergency"], "records.access", basis,
                         time=e1["time"] + EMERGENCY_COVER_MS)[0] == "emergency_over"


def test_the_72_hour_flag_fires_at_its_block_time_and_not_before(world: World) -> None:
    e1 = world.get(f"records/emergency/{world.ids['e1']}")
    assert e1["due"] == e1["time"] + JUSTIFY_MS == e1["time"] + 72 * HOUR
    world.commit(time=e1["due"] - 1)
    assert world.events("records.unjustified_emergency") == []
    assert world.get(overdue_key(world.ids["e1"])) is None
    world.commit(time=e1["due"])
    flagged = world.events("records.unjustified_emergency")
    assert len(flagged) == 1 and flagged[0].tx_index is None  # from the end-block hook
    overdue = world.get(overdue_key(world.ids["e1"]))
    assert overdue["patient"] == P and overdue["org"] == "city-er"
    assert world.get(f"records/emergency/{world.ids['e1']}")["flagged"]["time"] == e1["due"]
    assert world.get(overdue_key(world.ids["e_done"])) is None  # justified in time
    world.commit(time=e1["due"] + 10 * HOUR)  # a later block flags nothing twice
    assert len(world.events("records.unjustified_emergency")) == 1
    world.commit((K["emergency"], "records.justify",
                  {"emergency": world.ids["e1"], "text": "case ref 2024-118"}))
    assert world.get(overdue_key(world.ids["e1"])) is None
    assert world.get(f"records/emergency/{world.ids['e1']}")["justification"] is not None


def test_erasure_ends_every_blob_read_but_keeps_the_metadata(world: World) -> None:
    _read_r1(world, f"grant:{world.ids['g_lab']}")
    world.commit((K["patient"], "records.erase", {"record": world.ids["r1"]}))
    assert [world.may_read("r1", r) for r in ("patient", "author", "granted")] == [
        False, False, False]
    r1 = world.get(record_key(world.ids["r1"]))
    assert r1["erased"] is not None and r1["digest"] == digest("r1")
    assert world.get(f"records/digest/{digest('r1')}") == world.ids["r1"]


def test_an_erasure_tells_every_node_which_blob_to_delete(world: World) -> None:
    """The block's events name the erased ciphertext; each node's blob store deletes what
    the registry reads from them (and nothing for other events)."""
    world.commit((K["patient"], "records.erase", {"record": world.ids["r1"]}))
    stored = world.chain.store.get_block_txs(world.chain.height)
    events = [e for row in stored for e in result_of(row).events]
    registry = world.chain.registry
    assert registry.erased_blobs(events) == [bytes.fromhex(digest("r1"))]
    others = [e for e in events if e.type != "records.erased"]
    assert registry.erased_blobs(others) == []


def test_every_read_is_on_the_patient_s_access_log(world: World) -> None:
    _read_r1(world, f"grant:{world.ids['g_lab']}")
    count = world.get(f"records/access/{P}/count")
    entries = [world.get(f"records/access/{P}/{n:016d}") for n in range(1, count + 1)]
    assert [(e["reader"], e["basis"]) for e in entries] == [
        (HEX["emergency"], f"emergency:{world.ids['e1']}"),
        (HEX["emergency"], f"emergency:{world.ids['e_done']}"),
        (HEX["granted"], f"grant:{world.ids['g_lab']}")]
    assert entries[-1]["org"] == "northgate" and entries[-1]["records"] == [world.ids["r1"]]
    assert world.get(f"records/access/{Q}/count") is None


# routes and provable lists --------------------------------------------------------------------
@pytest.fixture
def node(tmp_path: Path) -> Iterator[LocalNode]:
    n = LocalNode(SQLiteStore(tmp_path / "node.db"), genesis(), VALIDATOR, NodeConfig())
    yield n
    n.close()


def _submit(node: LocalNode, nonces: dict[bytes, int],
            *txs: tuple[SigningKey, str, dict[str, Any]]) -> list[str]:
    ids = []
    for signer, type_, body in txs:
        nonces[signer.public_key] = nonces.get(signer.public_key, 0) + 1
        tx = Transaction.create(signer, CHAIN, type_, nonces[signer.public_key], body)
        assert node.submit(tx).accepted
        ids.append(tx.tx_id.hex())
    node.produce_block()
    return ids


@pytest.mark.anyio
async def test_routes_answer_with_provable_lists_and_entries(node: LocalNode) -> None:
    from medledger.api import create_app

    nonces: dict[bytes, int] = {}
    _submit(node, nonces, *setup_txs())
    a = K["author"]
    r1, r2 = _submit(node, nonces, (a, "records.add", add_body(P, "r1")),
                     (a, "records.add", add_body(P, "r2", category="imaging")))
    gid, = _submit(node, nonces, (K["patient"], "records.grant", grant_body(
        HEX["granted"], ["lab"], START + 99 * HOUR,
        [{"record": r1, "reader": HEX["granted"], "wrapped": WRAPPED}])))
    _submit(node, nonces, (K["granted"], "records.access",
                           {"records": [r1], "basis": f"grant:{gid}"}))
    trusted = node.chain.genesis.validators
    app = create_app(node, run_node=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as api:
        async def get(path: str, **params: Any) -> Any:
            response = await api.get(f"/v1/records{path}", params=params)
            assert response.status_code == 200, response.text
            return response.json()

        listed = await get(f"/patients/{P}/records", prove="true")
        assert list(verify_list_answer(listed, trusted, CHAIN, "records", "by_patient", P,
                                       1, 100).items) == [r1, r2]
        log = await get(f"/patients/{P}/access", prove="true")
        entries = verify_list_answer(log, trusted, CHAIN, "records", "access", P, 1, 100).items
        assert [(e["reader"], e["basis"]) for e in entries] == [(HEX["granted"], f"grant:{gid}")]
        grants = await get(f"/patients/{P}/grants", prove="true")
        assert list(verify_list_answer(grants, trusted, CHAIN, "records", "grants", P,
                                       1, 100).items) == [gid]
        tampered = {**listed, "items": listed["items"][:1]}  # a node leaving r2 out
        with pytest.raises(Exception, match="(?i)item|count|page"):
            verify_list_answer(tampered, trusted, CHAIN, "records", "by_patient", P, 1, 100)

        record = await get(f"/records/{r1}", prove="true")
        assert verify_state_answer(record, trusted, CHAIN).value["digest"] == digest("r1")
        wrapped = await get(f"/records/{r1}/keys/{HEX['granted']}")
        assert wrapped["value"] == {"grant": gid, "height": wrapped["value"]["height"],
                                    "wrapped": WRAPPED}
        assert (await get(f"/digests/{digest('r2')}"))["value"] == r2
        assert (await get(f"/grants/{gid}"))["value"]["categories"] == ["lab"]
        assert (await get("/overdue")) == {"overdue": [], "next": None}
        missing = await api.get(f"/v1/records/records/{'0' * 64}")
        assert missing.status_code == 404
        bad = await api.get("/v1/records/patients/xyz/records")
        assert bad.status_code in (400, 422)


def test_every_change_is_an_event_naming_the_patient(world: World) -> None:
    _read_r1(world, f"grant:{world.ids['g_lab']}")
    expected = {  # type: how many the fixture and the read made
        "records.added": 6, "records.delegated": 1, "records.erased": 1, "records.granted": 3,
        "records.revoked": 1, "records.emergency": 2, "records.accessed": 3,
        "records.justified": 1,
    }
    for type_, count in expected.items():
        found = world.events(type_)
        assert len(found) == count, type_
    emergency = decode(world.events("records.emergency")[0].attrs)
    assert emergency["patient"] == P and emergency["reason"] == "ETREAT"
    assert decode(world.events("records.accessed")[-1].attrs) == {"basis": f"grant:{world.ids['g_lab']}", "patient": P,
                              "reader": HEX["granted"], "record": world.ids["r1"]}


# the emergency key ----------------------------------------------------------------------------
HOSPITALS = ("st-mary", "northgate", "city-er")
HOLDERS = {org: key(f"holder {org}") for org in HOSPITALS}
EMERGENCY_READER = emergency_reader(ENC, DEFAULT_SUITE)
ENC_2 = EncryptionKey.from_private_bytes(DEFAULT_SUITE, b"\x03" * 32).public_bytes().hex()


def escrow_body(w: World, *, threshold: int = 2, orgs: tuple[str, ...] = HOSPITALS,
                holders: dict[str, str] | None = None, enc_key: str = ENC,
                records: tuple[str, ...] = ("r1",)) -> dict[str, Any]:
    holder = {org: HOLDERS[org].public_key.hex() for org in HOSPITALS} | (holders or {})
    return {"patient": P, "enc_key": enc_key, "enc_suite": DEFAULT_SUITE,
            "threshold": threshold,
            "shares": [{"org": org, "holder": holder[org], "wrapped": WRAPPED} for org in orgs],
            "keys": [{"record": w.ids[r], "wrapped": WRAPPED} for r in records]}


def release_body(w: World, emergency: str = "e1") -> dict[str, Any]:
    return {"emergency": w.ids[emergency], "share": WRAPPED}


@pytest.fixture
def escrowed(world: World) -> World:
    """The world, and then: an admin with an encryption key registered by each hospital
    (the share holders); the patient's emergency key, 2 of the 3 hospitals, with ``r1``
    re-wrapped for it; an emergency ``e_q`` on the other patient (who has no emergency
    key); st-mary's share released for ``e1``."""
    world.commit(*[(ADMINS[org], "identity.member.register",
                    {"org": org, "key": HOLDERS[org].public_key.hex(), "role": "admin",
                     "name": f"holder {org}", "enc_key": ENC, "enc_suite": DEFAULT_SUITE})
                   for org in HOSPITALS])
    world.commit((K["patient"], "records.emergency_key", escrow_body(world)))
    world.ids["e_q"], = world.commit((K["emergency"], "records.emergency", {
        "patient": Q, "reason": "BTG", "records": [world.ids["q1"]]}))
    world.commit((HOLDERS["st-mary"], "records.release", release_body(world)))
    return world


def test_the_patient_s_emergency_key_is_on_the_ledger_with_a_share_per_hospital(
        escrowed: World) -> None:
    entry = escrowed.get(break_glass_key(P))
    assert entry["reader"] == EMERGENCY_READER and entry["threshold"] == 2
    assert entry["enc_key"] == ENC and entry["by"] == HEX["patient"]
    assert entry["shares"] == {org: {"holder": HOLDERS[org].public_key.hex(),
                                     "wrapped": WRAPPED} for org in HOSPITALS}
    r1 = escrowed.ids["r1"]
    assert escrowed.get(reader_key(r1, EMERGENCY_READER))["wrapped"] == WRAPPED
    [event] = escrowed.events("records.emergency_key")
    assert decode(event.attrs) == {"patient": P, "reader": EMERGENCY_READER, "threshold": "2",
                                   "orgs": "city-er,northgate,st-mary"}
    # the emergency key is a reader of content keys, never of blobs
    assert not default_registry().may_read_blob(escrowed.chain.view(), bytes.fromhex(
        digest("r1")), bytes.fromhex(EMERGENCY_READER), escrowed.time)


def test_with_an_emergency_key_every_new_record_carries_it(escrowed: World) -> None:
    a = K["author"]
    assert escrowed.attempt(a, "records.add", add_body(P, "e1"))[0] == "missing_reader"
    with_key = add_body(P, "e2")
    with_key["keys"].append({"reader": EMERGENCY_READER, "wrapped": WRAPPED})
    assert escrowed.attempt(a, "records.add", with_key)[0] == "ok"
    assert escrowed.attempt(a, "records.add", add_body(Q, "e3"))[0] == "ok"  # Q has none
    escrowed.commit((a, "records.add", with_key))
    record = escrowed.get(record_key(escrowed.chain.store.get_block_txs(
        escrowed.chain.height)[0].tx_id.hex()))
    assert EMERGENCY_READER in record["readers"]


def test_a_replaced_emergency_key_is_the_one_new_records_carry(escrowed: World) -> None:
    escrowed.commit((K["patient"], "records.emergency_key",
                     escrow_body(escrowed, enc_key=ENC_2, threshold=3)))
    new_reader = emergency_reader(ENC_2, DEFAULT_SUITE)
    assert escrowed.get(break_glass_key(P))["reader"] == new_reader
    stale = add_body(P, "e4")
    stale["keys"].append({"reader": EMERGENCY_READER, "wrapped": WRAPPED})
    assert escrowed.attempt(K["author"], "records.add", stale)[0] == "missing_reader"


def test_each_organisation_releases_once_and_only_while_the_emergency_is_open(
        escrowed: World) -> None:
    e1 = escrowed.get(f"records/emergency/{escrowed.ids['e1']}")
    over = e1["time"] + EMERGENCY_COVER_MS
    northgate = HOLDERS["northgate"]
    assert escrowed.attempt(northgate, "records.release", release_body(escrowed),
                            time=over - 1)[0] == "ok"
    assert escrowed.attempt(northgate, "records.release", release_body(escrowed),
                            time=over)[0] == "emergency_over"
    # any admin of a share-holding organisation may send it (the holder alone can open it)
    assert escrowed.attempt(ADMINS["northgate"], "records.release",
                            release_body(escrowed))[0] == "ok"
    escrowed.commit((northgate, "records.release", release_body(escrowed)))
    released = escrowed.get(release_key(escrowed.ids["e1"], "northgate"))
    assert released == {"by": northgate.public_key.hex(), "emergency": escrowed.ids["e1"],
                        "height": escrowed.chain.height, "org": "northgate",
                        "reader": EMERGENCY_READER, "share": WRAPPED, "time": escrowed.time,
                        "to": HEX["emergency"]}
    assert escrowed.attempt(ADMINS["northgate"], "records.release",
                            release_body(escrowed))[0] == "already_released"
    events = [decode(e.attrs) for e in escrowed.events("records.released")]
    assert [(e["org"], e["patient"], e["to"]) for e in events] == [
        ("st-mary", P, HEX["emergency"]), ("northgate", P, HEX["emergency"])]


ESCROW_REFUSALS: dict[str, tuple[SigningKey, str, Body, str]] = {
    # records.emergency_key
    "a delegate sets the emergency key": (K["delegate"], "records.emergency_key",
                                          escrow_body, "not_patient"),
    "a clinician sets the emergency key": (K["author"], "records.emergency_key", escrow_body,
                                           "not_patient"),
    "a share for an organisation that does not exist": (
        K["patient"], "records.emergency_key", lambda w: escrow_body(
            w, orgs=("st-mary", "nowhere"), holders={"nowhere": HEX["granted"]}),
        "unknown_org"),
    "a share held by a pharmacy": (
        K["patient"], "records.emergency_key", lambda w: escrow_body(
            w, orgs=("st-mary", "carewell"), holders={"carewell": ADMINS["carewell"]
                                                     .public_key.hex()}), "not_hospital"),
    "a share held by a clinician": (
        K["patient"], "records.emergency_key",
        lambda w: escrow_body(w, holders={"st-mary": HEX["author"]}), "not_admin"),
    "a share held by an admin without an encryption key": (
        K["patient"], "records.emergency_key",
        lambda w: escrow_body(w, holders={"st-mary": ADMINS["st-mary"].public_key.hex()}),
        "not_admin"),
    "a share held by another hospital's admin": (
        K["patient"], "records.emergency_key",
        lambda w: escrow_body(w, holders={"st-mary": HOLDERS["northgate"].public_key.hex(),
                                          "northgate": HOLDERS["st-mary"].public_key.hex()}),
        "not_admin"),
    "one organisation able to open it alone": (
        K["patient"], "records.emergency_key", lambda w: escrow_body(w, threshold=1),
        "malformed"),
    "a threshold above the shares": (K["patient"], "records.emergency_key",
                                     lambda w: escrow_body(w, threshold=4), "malformed"),
    "an organisation named twice": (
        K["patient"], "records.emergency_key",
        lambda w: escrow_body(w, orgs=("st-mary", "st-mary", "city-er")), "malformed"),
    "a public key of the wrong size": (K["patient"], "records.emergency_key",
                                       lambda w: escrow_body(w, enc_key="ab" * 32),
                                       "malformed"),
    "a re-wrapped key for another patient's record": (
        K["patient"], "records.emergency_key", lambda w: escrow_body(w, records=("q1",)),
        "wrong_patient"),
    "a re-wrapped key for an erased record": (
        K["patient"], "records.emergency_key", lambda w: escrow_body(w, records=("gone",)),
        "erased"),
    # records.release
    "releasing for an emergency that does not exist": (
        HOLDERS["city-er"], "records.release",
        lambda w: {"emergency": "0" * 64, "share": WRAPPED}, "no_emergency"),
    "the emergency clinician releases": (K["emergency"], "records.release", release_body,
                                         "role_not_allowed"),
    "the patient releases": (K["patient"], "records.release", release_body,
                             "role_not_allowed"),
    "an organisation without a share releases": (
        ADMINS["carewell"], "records.release", release_body, "no_share"),
    "releasing for a patient without an emergency key": (
        HOLDERS["city-er"], "records.release", lambda w: release_body(w, "e_q"),
        "no_emergency_key"),
    "an organisation releases twice": (HOLDERS["st-mary"], "records.release", release_body,
                                       "already_released"),
    "an empty share": (HOLDERS["city-er"], "records.release",
                       lambda w: {**release_body(w), "share": ""}, "malformed"),
}


@pytest.mark.parametrize("name", ESCROW_REFUSALS)
def test_every_emergency_key_refusal_is_specific_and_leaves_state_unchanged(
        escrowed: World, name: str) -> None:
    signer, type_, body, expected = ESCROW_REFUSALS[name]
    code, writes = escrowed.attempt(signer, type_, body(escrowed))
    assert code == expected
    assert sorted(writes) == sorted([HISTORY_KEY, nonce_key(signer.public_key)])
