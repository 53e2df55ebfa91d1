"""The records app's authorisation matrix over the HTTP API: every role against every records
endpoint, on its own patient's records and on another's.

A node of the records chain runs on the in-process stand-in for CometBFT
(``tests/localchain.py``), with a blob store, behind ``httpx.ASGITransport``. Two patients:
P, who named a delegate, and Q. The author (a st-mary clinician) wrote a lab and an imaging
record for P and a lab record for Q; P granted a northgate clinician lab records, Q granted a
pharmacist medication records; each patient split an emergency key among the three
hospitals. The people, their keys and organisations are those of
``tests/test_records_app.py``; this file adds a second st-mary clinician, st-mary's
share-holding admin, a node operator and a caller who signs nothing.

Each table maps every role to its outcome on P's records and on Q's, and is compared whole:

- ``GET /v1/records/...``, proven or not: 200 for every caller, and the same answer
  whoever asks (docs/records.md, "What every member can see"): the content is what is gated;
- ``GET /v1/blobs/{digest}`` (signed): the patient, the author and member nodes, and a
  reader whose ``records.access`` or emergency opened a window, until its basis ends;
- ``PUT /v1/blobs/{digest}`` (signed): any registered, active key and member nodes; nobody
  once the record is erased;
- ``POST /v1/txs`` of each records transaction type: CheckTx's verdict (its refusal code,
  with the HTTP status the registry gives it). Every role's transaction is checked against
  the same committed state: what is admitted is never committed, so one role's transaction
  cannot change another's outcome.

Digests are of made-up bytes and wrapped keys filler: no medical content anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from medledger.api import create_app
from medledger.apps.records import JUSTIFY_MS
from medledger.client.signing import SignedAuth
from medledger.crypto import DEFAULT_SUITE, SigningKey
from medledger.ledger import Transaction
from medledger.node import NodeConfig
from medledger.node.blobs import BlobStore
from medledger.store import SQLiteStore
from tests.localchain import LocalNode
from tests.test_records_app import (
    ADMINS,
    CHAIN,
    EMERGENCY_READER,
    ENC,
    HEX,
    HOLDERS,
    HOSPITALS,
    HOUR,
    START,
    VALIDATOR,
    WRAPPED,
    K,
    P,
    Q,
    add_body,
    digest,
    genesis,
    grant_body,
    key,
    setup_txs,
)

# the roles ------------------------------------------------------------------------------------
COLLEAGUE = key("colleague")
SIGNERS: dict[str, SigningKey | None] = {
    "patient": K["patient"],  # P; Q's records are another patient's
    "delegate": K["delegate"],  # P's guardian, a registered patient
    "author": K["author"],  # st-mary clinician, author of every record
    "colleague": COLLEAGUE,  # st-mary clinician who wrote nothing: authorship is the key's
    "granted": K["granted"],  # northgate clinician with P's lab grant
    "elsewhere": K["elsewhere"],  # northgate clinician without a grant
    "emergency": K["emergency"],  # city-er emergency clinician
    "pharmacist": K["pharmacist"],
    "claims": K["claims"],  # sure-health claims officer
    "auditor": K["auditor"],  # st-mary auditor
    "regulator": K["regulator"],  # health-authority
    "admin": HOLDERS["st-mary"],  # st-mary's admin, holding its share of each emergency key
    # A node operator signs with its member node's key (here the validator's). Member nodes
    # replicate every ciphertext, so the blob routes serve and take any blob from it; its key
    # is no registered identity, so it sends no records transaction, and no content key is
    # wrapped for it: it holds every ciphertext and can open none (docs/records.md).
    "node": VALIDATOR,
    "stranger": K["stranger"],  # a key nobody registered
    "anonymous": None,  # signs nothing
}
ROLES = list(SIGNERS)
SENDERS = [role for role in ROLES if SIGNERS[role] is not None]  # a transaction is signed
CLINICIANS = ("author", "colleague", "granted", "elsewhere", "emergency")
PATIENT_SIDE = ("patient", "delegate")
UNREGISTERED = ("node", "stranger")

PSEUDONYM = {"P": P, "Q": Q}
OWNER = {"P": HEX["patient"], "Q": HEX["other_patient"]}
FAR = START + 1000 * HOUR  # no grant expires in these tests, the jump past 72 hours included


def auth(role: str) -> SignedAuth | None:
    signer = SIGNERS[role]
    return None if signer is None else SignedAuth(signer)


def ciphertext(label: str) -> bytes:
    """The bytes whose SHA-256 is ``digest(label)``: the record's stand-in ciphertext."""
    return f"ciphertext {label}".encode()


def blob_url(label: str) -> str:
    return f"/v1/blobs/{digest(label)}"


# the consortium -------------------------------------------------------------------------------
Step = tuple[SigningKey, str, dict[str, Any]]


class Consortium:
    """A node with its blob store and API; commits what it is given, one block at a time."""

    def __init__(self, path: Path) -> None:
        self.node = LocalNode(SQLiteStore(path / "node.db"), genesis(), VALIDATOR,
                              NodeConfig())
        self.node.blobs = BlobStore(path / "blobs")
        self.app = create_app(self.node, run_node=False)
        self.nonces: dict[bytes, int] = {}
        self.ids: dict[str, str] = {}

    def tx(self, signer: SigningKey, type_: str, body: dict[str, Any]) -> Transaction:
        """The signer's next transaction. Its nonce counts as used once it is admitted
        (:meth:`admitted`): a refused one leaves no gap that would hold the next back."""
        nonce = self.nonces.get(signer.public_key, 0) + 1
        return Transaction.create(signer, CHAIN, type_, nonce, body)

    def admitted(self, tx: Transaction) -> None:
        self.nonces[tx.sender] = tx.nonce

    def commit(self, *steps: Step) -> list[str]:
        """Commit one block of ``steps`` (submitted directly), each of which must pass;
        their ids."""
        txs = []
        for step in steps:
            tx = self.tx(*step)
            assert self.node.submit(tx).accepted, tx.type
            self.admitted(tx)
            txs.append(tx)
        return self._produced(txs)

    def _produced(self, txs: list[Transaction]) -> list[str]:
        self.node.produce_block()
        for tx in txs:
            stored = self.node.store.get_tx(tx.tx_id)
            assert stored is not None and stored.code == "ok", (tx.type, stored)
        return [tx.tx_id.hex() for tx in txs]

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                 base_url="http://node.test")

    async def post(self, role: str, type_: str, body: dict[str, Any]
                   ) -> tuple[Transaction, httpx.Response]:
        """POST the role's transaction to ``/v1/txs``."""
        signer = SIGNERS[role]
        assert signer is not None
        tx = self.tx(signer, type_, body)
        async with self.http() as http:
            answer = await http.post("/v1/txs", content=tx.raw)
        if answer.status_code == 202:
            self.admitted(tx)
        return tx, answer

    async def send(self, role: str, type_: str, body: dict[str, Any]) -> str:
        """"ok" once the role's transaction is admitted, else its refusal code (and the
        HTTP status, when it is not the one the registry gives that code)."""
        _, answer = await self.post(role, type_, body)
        code = "ok" if answer.status_code == 202 else answer.json()["code"]
        status = 202 if code == "ok" else self.node.chain.registry.codes.get(code, 422)
        return code if answer.status_code == status else f"{code} (HTTP {answer.status_code})"

    async def step(self, *steps: tuple[str, str, dict[str, Any]]) -> None:
        """Send each role's transaction over the API, then commit them in one block."""
        txs = []
        for step in steps:
            tx, answer = await self.post(*step)
            assert answer.status_code == 202, answer.text
            txs.append(tx)
        self._produced(txs)

    async def status(self, method: str, url: str, role: str, content: bytes = b"") -> int:
        async with self.http() as http:
            answer = await http.request(method, url, content=content or None, auth=auth(role))
        return answer.status_code

    def close(self) -> None:
        self.node.close()


def _member(org: str, signer: SigningKey, role: str) -> dict[str, Any]:
    return {"org": org, "key": signer.public_key.hex(), "role": role, "name": role,
            "enc_key": ENC, "enc_suite": DEFAULT_SUITE}


def _register(w: Consortium) -> None:
    """Everyone of test_records_app, the colleague, and an admin with an encryption key at
    each hospital (the emergency key's share holders)."""
    w.commit(*setup_txs(),
             (ADMINS["st-mary"], "identity.member.register",
              _member("st-mary", COLLEAGUE, "clinician")),
             *[(ADMINS[org], "identity.member.register", _member(org, HOLDERS[org], "admin"))
               for org in HOSPITALS])


def _records(w: Consortium) -> None:
    author = K["author"]
    ids = w.commit((author, "records.add", add_body(P, "P lab")),
                   (author, "records.add", add_body(P, "P imaging", category="imaging")),
                   (author, "records.add", add_body(Q, "Q lab")),
                   (K["patient"], "records.delegate",
                    {"patient": P, "delegate": HEX["delegate"], "role": "guardian"}))
    w.ids.update(zip(["P lab", "P imaging", "Q lab"], ids, strict=False))
    assert w.node.blobs is not None
    for label in ("P lab", "P imaging", "Q lab"):
        w.node.blobs.put(ciphertext(label))


def _escrow(patient: str) -> dict[str, Any]:
    return {"patient": patient, "enc_key": ENC, "enc_suite": DEFAULT_SUITE, "threshold": 2,
            "shares": [{"org": org, "holder": HOLDERS[org].public_key.hex(),
                        "wrapped": WRAPPED} for org in HOSPITALS], "keys": []}


def _consent(w: Consortium) -> None:
    """P's lab grant to the granted clinician (with the lab record's key wrapped for them),
    Q's medication grant to the pharmacist; each patient's emergency key."""
    lab_key = [{"record": w.ids["P lab"], "reader": HEX["granted"], "wrapped": WRAPPED}]
    ids = w.commit(
        (K["patient"], "records.grant", grant_body(HEX["granted"], ["lab"], FAR, lab_key)),
        (K["other_patient"], "records.grant",
         {**grant_body(HEX["pharmacist"], ["medication"], FAR), "patient": Q}),
        (K["patient"], "records.emergency_key", _escrow(P)),
        (K["other_patient"], "records.emergency_key", _escrow(Q)))
    w.ids.update(zip(["P grant", "Q grant"], ids, strict=False))


def _break_glass(w: Consortium) -> None:
    """The emergency clinician's emergency on each patient's lab record."""
    w.ids["P emergency"], w.ids["Q emergency"] = w.commit(*[
        (K["emergency"], "records.emergency",
         {"patient": PSEUDONYM[who], "reason": "ETREAT", "records": [w.ids[f"{who} lab"]]})
        for who in "PQ"])


def _publish_the_rest(w: Consortium) -> None:
    """What the remaining routes show: st-mary's share released for each emergency, the
    granted clinician's read, and both emergencies overdue (blocks past 72 hours)."""
    w.commit(*[(HOLDERS["st-mary"], "records.release",
                {"emergency": w.ids[f"{who} emergency"], "share": WRAPPED}) for who in "PQ"],
             (K["granted"], "records.access",
              {"records": [w.ids["P lab"]], "basis": f"grant:{w.ids['P grant']}"}))
    w.node.local.block_ms = JUSTIFY_MS + 60_000  # the next block's BFT time is past due
    w.node.commit_block()
    w.node.local.block_ms = 1000
    w.node.commit_block()


BASE = (_register, _records, _consent)


def consortium(path: Path, *steps: Callable[[Consortium], None]) -> Consortium:
    w = Consortium(path)
    for build in (*BASE, *steps):
        build(w)
    return w


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    """Records, grants, a delegate and emergency keys; no emergency yet."""
    w = consortium(tmp_path)
    yield w
    w.close()


@pytest.fixture
def broken_glass(tmp_path: Path) -> Iterator[Consortium]:
    """The world, and an emergency on each patient's lab record."""
    w = consortium(tmp_path, _break_glass)
    yield w
    w.close()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    """Something under every records route, for both patients (read only: shared)."""
    w = consortium(tmp_path_factory.mktemp("published"), _break_glass, _publish_the_rest)
    yield w
    w.close()


# metadata: every records route ----------------------------------------------------------------
RoutePath = Callable[[Consortium, str], str]
ROUTES: dict[str, RoutePath] = {  # the route: its path for P's entry or Q's
    "/records/{record_id}": lambda w, who: f"/records/{w.ids[f'{who} lab']}",
    "/records/{record_id}/keys/{reader}":
        lambda w, who: f"/records/{w.ids[f'{who} lab']}/keys/{OWNER[who]}",
    "/digests/{digest}": lambda w, who: f"/digests/{digest(f'{who} lab')}",
    "/patients/{pseudonym}/records": lambda w, who: f"/patients/{PSEUDONYM[who]}/records",
    "/patients/{pseudonym}/grants": lambda w, who: f"/patients/{PSEUDONYM[who]}/grants",
    "/patients/{pseudonym}/access": lambda w, who: f"/patients/{PSEUDONYM[who]}/access",
    "/patients/{pseudonym}/emergency-key":
        lambda w, who: f"/patients/{PSEUDONYM[who]}/emergency-key",
    "/grants/{grant_id}": lambda w, who: f"/grants/{w.ids[f'{who} grant']}",
    "/emergencies/{emergency_id}": lambda w, who: f"/emergencies/{w.ids[f'{who} emergency']}",
    "/emergencies/{emergency_id}/releases/{org}":
        lambda w, who: f"/emergencies/{w.ids[f'{who} emergency']}/releases/st-mary",
    "/overdue": lambda w, who: "/overdue",  # one list, naming both patients' emergencies
}
METADATA_CASES = [(route, False) for route in ROUTES] + [
    (route, True) for route in ROUTES if route != "/overdue"]  # the overdue list has no proof
METADATA = dict.fromkeys(ROLES, (200, 200))  # docs/records.md: every member sees it all


def _holds_something(answer: Any) -> bool:
    """An entry's value, a list's items, or overdue emergencies: not an empty answer."""
    return bool(answer.get("value") or answer.get("items") or answer.get("overdue"))


def test_the_matrix_covers_every_records_route(published: Consortium) -> None:
    paths = published.app.openapi()["paths"]
    assert {path.removeprefix("/v1/records") for path in paths
            if path.startswith("/v1/records/")} == set(ROUTES)


@pytest.mark.anyio
@pytest.mark.parametrize(("route", "prove"), METADATA_CASES,
                         ids=[f"{route} {'proven' if prove else 'plain'}"
                              for route, prove in METADATA_CASES])
async def test_metadata_is_every_caller_s_alike(published: Consortium, route: str,
                                               prove: bool) -> None:
    got, bodies = {}, set()
    async with published.http() as http:
        for role in ROLES:
            answers = [await http.get(f"/v1/records{ROUTES[route](published, who)}",
                                      params={"prove": "true"} if prove else None,
                                      auth=auth(role)) for who in "PQ"]
            got[role] = tuple(a.status_code for a in answers)
            bodies.add(tuple(a.content for a in answers))
    assert got == METADATA
    [same] = bodies  # nobody is shown more, or less, than anybody else
    assert all(_holds_something(json.loads(body)) for body in same)


# blobs: GET -----------------------------------------------------------------------------------
READS = ("P lab", "P imaging", "Q lab")  # P's granted category, P's other one, Q's
NONE = (403, 403, 403)
BLOB_READS = {  # before any read: what the ledger lets each role fetch
    **dict.fromkeys(ROLES, NONE),
    "patient": (200, 200, 403),  # their own, not Q's
    "author": (200, 200, 200),  # every record they wrote
    "node": (200, 200, 200),  # replication: ciphertext only
    "anonymous": (401, 401, 401),
}


async def blob_reads(w: Consortium, roles: list[str] = ROLES) -> dict[str, tuple[int, ...]]:
    return {role: tuple([await w.status("GET", blob_url(label), role) for label in READS])
            for role in roles}


def _read_on_p_grant(w: Consortium, *labels: str) -> tuple[str, str, dict[str, Any]]:
    return ("granted", "records.access",
            {"records": [w.ids[label] for label in labels], "basis": f"grant:{w.ids['P grant']}"})


@pytest.mark.anyio
async def test_blob_reads_open_with_a_logged_read_and_close_with_revocation(
        world: Consortium) -> None:
    assert await blob_reads(world) == BLOB_READS  # a grantee who logged no read gets 403
    # P's grant covers lab records only: a read naming the imaging record is refused whole
    assert await world.send(*_read_on_p_grant(world, "P lab", "P imaging")) == (
        "category_not_granted")
    await world.step(_read_on_p_grant(world, "P lab"),
                     ("emergency", "records.emergency",
                      {"patient": P, "reason": "BTG", "records": [world.ids["P lab"]]}))
    after_reads = {**BLOB_READS, "granted": (200, 403, 403), "emergency": (200, 403, 403)}
    assert await blob_reads(world) == after_reads
    await world.step(("patient", "records.revoke", {"grant": world.ids["P grant"]}))
    assert await blob_reads(world) == {**after_reads, "granted": NONE}


@pytest.mark.anyio
async def test_a_suspended_member_is_refused_all_but_the_metadata(world: Consortium) -> None:
    async def author_everywhere() -> dict[str, Any]:
        return {
            "GET P lab": await world.status("GET", blob_url("P lab"), "author"),
            "GET Q lab": await world.status("GET", blob_url("Q lab"), "author"),
            "PUT P lab": await world.status("PUT", blob_url("P lab"), "author",
                                            ciphertext("P lab")),
            "records.add": await world.send("author", "records.add",
                                            _add(world, "author", "P")),
            "metadata": await world.status(
                "GET", f"/v1/records/records/{world.ids['P lab']}", "author"),
        }

    before = await author_everywhere()  # its admitted records.add commits with the next block
    world.commit((ADMINS["st-mary"], "identity.member.suspend",
                  {"org": "st-mary", "key": HEX["author"]}))
    after = await author_everywhere()
    assert {endpoint: (before[endpoint], after[endpoint]) for endpoint in before} == {
        "GET P lab": (200, 403), "GET Q lab": (200, 403),
        "PUT P lab": (200, 403),  # 200: the node had it already
        "records.add": ("ok", "key_suspended"),
        "metadata": (200, 200),
    }


# blobs: PUT -----------------------------------------------------------------------------------
UPLOADS = ("P lab", "Q lab")
BLOB_UPLOADS = {  # any registered, active key may store ciphertext; so may a member node
    **dict.fromkeys(ROLES, (201, 201)), "stranger": (403, 403), "anonymous": (401, 401)}


async def blob_uploads(w: Consortium) -> dict[str, tuple[int, ...]]:
    """Each role uploads each record's ciphertext to a store that lacks it (201 when
    stored); the store then holds what it held before."""
    blobs = w.node.blobs
    assert blobs is not None
    held = [label for label in UPLOADS if blobs.has(bytes.fromhex(digest(label)))]
    got = {}
    for role in ROLES:
        statuses = []
        for label in UPLOADS:
            blobs.erase(bytes.fromhex(digest(label)))
            statuses.append(await w.status("PUT", blob_url(label), role, ciphertext(label)))
        got[role] = tuple(statuses)
    for label in held:
        blobs.put(ciphertext(label))
    return got


@pytest.mark.anyio
async def test_blob_uploads_then_erasure(world: Consortium) -> None:
    assert await blob_uploads(world) == BLOB_UPLOADS
    await world.step(("patient", "records.erase", {"record": world.ids["P lab"]}))
    stored = [role for role in ROLES if BLOB_UPLOADS[role] == (201, 201)]
    assert await blob_uploads(world) == {**BLOB_UPLOADS, **dict.fromkeys(stored, (410, 201))}
    # the engine node deletes the file at commit; the local stand-in does not, so the
    # node's own fetch (which no app is asked about) is left out here
    readers = [role for role in ROLES if role != "node"]
    assert await blob_reads(world, readers) == {
        **{role: BLOB_READS[role] for role in readers},
        "patient": (403, 200, 403), "author": (403, 200, 200)}


# transactions ---------------------------------------------------------------------------------
TxBody = Callable[[Consortium, str, str], dict[str, Any]]  # (world, sender, "P" or "Q")


def _add(w: Consortium, role: str, who: str) -> dict[str, Any]:
    """A new lab record sealed for the patient, the sender and the patient's emergency key."""
    signer = SIGNERS[role]
    assert signer is not None
    readers = dict.fromkeys([OWNER[who], signer.public_key.hex(), EMERGENCY_READER])
    return {"patient": PSEUDONYM[who], "category": "lab", "digest": digest(f"{who} new"),
            "size": 2048, "previous": None,
            "keys": [{"reader": reader, "wrapped": WRAPPED} for reader in readers]}


def _lab(w: Consortium, who: str) -> list[str]:
    return [w.ids[f"{who} lab"]]


TX_CASES: dict[str, tuple[str, TxBody]] = {  # case: (type, body)
    "records.add": ("records.add", _add),
    "records.grant": ("records.grant", lambda w, r, who: {
        **grant_body(HEX["elsewhere"], ["lab"], FAR), "patient": PSEUDONYM[who]}),
    "records.revoke": ("records.revoke", lambda w, r, who: {"grant": w.ids[f"{who} grant"]}),
    "records.delegate": ("records.delegate", lambda w, r, who: {
        "patient": PSEUDONYM[who], "delegate": COLLEAGUE.public_key.hex(), "role": "carer"}),
    "records.undelegate": ("records.undelegate", lambda w, r, who: {
        "patient": PSEUDONYM[who], "delegate": HEX["delegate"]}),
    # each read names P's basis: it must not open the other patient's record
    "records.access on P's grant": ("records.access", lambda w, r, who: {
        "records": _lab(w, who), "basis": f"grant:{w.ids['P grant']}"}),
    "records.access on P's emergency": ("records.access", lambda w, r, who: {
        "records": _lab(w, who), "basis": f"emergency:{w.ids['P emergency']}"}),
    "records.emergency": ("records.emergency", lambda w, r, who: {
        "patient": PSEUDONYM[who], "reason": "BTG", "records": _lab(w, who)}),
    "records.justify": ("records.justify", lambda w, r, who: {
        "emergency": w.ids[f"{who} emergency"], "text": "case ref 2024-301"}),
    "records.erase": ("records.erase", lambda w, r, who: {"record": w.ids[f"{who} lab"]}),
    "records.emergency_key": ("records.emergency_key", lambda w, r, who: _escrow(
        PSEUDONYM[who])),
    "records.release": ("records.release", lambda w, r, who: {
        "emergency": w.ids[f"{who} emergency"], "share": WRAPPED}),
    "records.rewrap": ("records.rewrap", lambda w, r, who: {
        "patient": PSEUDONYM[who], "keys": [{"record": w.ids[f"{who} lab"],
                                             "wrapped": WRAPPED}]}),
}


def table(others: str, **rows: tuple[str, str]) -> dict[str, tuple[str, str]]:
    """A transaction's table: ``rows``; the keys nobody registered refused as unknown
    senders; ``others`` on both patients for every other sender."""
    unknown = ("unknown_sender", "unknown_sender")
    return {role: rows.get(role, unknown if role in UNREGISTERED else (others, others))
            for role in SENDERS}


OWN_ONLY = ("ok", "not_patient")  # the patient's own records, never Q's
OWN_OR_DELEGATE = ("ok", "not_delegate")
BOTH = ("ok", "ok")
NOT_A_MEMBER = ("role_not_allowed", "role_not_allowed")
TX_TABLES: dict[str, dict[str, tuple[str, str]]] = {
    "records.add": table("role_not_allowed", **dict.fromkeys(CLINICIANS, BOTH)),
    "records.grant": table("not_delegate", **dict.fromkeys(PATIENT_SIDE, OWN_OR_DELEGATE)),
    "records.revoke": table("not_delegate", **dict.fromkeys(PATIENT_SIDE, OWN_OR_DELEGATE)),
    "records.delegate": table("not_patient", patient=OWN_ONLY),
    "records.undelegate": table("not_patient", patient=OWN_ONLY),
    "records.access on P's grant": table("not_grantee", granted=("ok", "wrong_patient"),
                                         **dict.fromkeys(PATIENT_SIDE, NOT_A_MEMBER)),
    "records.access on P's emergency": table("wrong_org",
                                             emergency=("ok", "not_in_emergency"),
                                             **dict.fromkeys(PATIENT_SIDE, NOT_A_MEMBER)),
    "records.emergency": table("role_not_allowed", emergency=BOTH),
    "records.justify": table("wrong_org", emergency=BOTH,
                             **dict.fromkeys(PATIENT_SIDE, NOT_A_MEMBER)),
    "records.erase": table("not_patient", patient=OWN_ONLY),
    "records.emergency_key": table("not_patient", patient=OWN_ONLY),
    "records.release": table("role_not_allowed", admin=BOTH),  # an admin of a share holder
    "records.rewrap": table("not_patient", patient=OWN_ONLY),
}


def test_the_matrix_covers_every_records_transaction_type(world: Consortium) -> None:
    types = {t for t in world.node.chain.registry.types if t.startswith("records.")}
    assert {type_ for type_, _ in TX_CASES.values()} == types
    assert set(TX_TABLES) == set(TX_CASES)


@pytest.mark.anyio
@pytest.mark.parametrize("case", TX_CASES)
async def test_authorisation_matrix_of_each_records_transaction(broken_glass: Consortium,
                                                                case: str) -> None:
    type_, body = TX_CASES[case]
    got = {role: (await broken_glass.send(role, type_, body(broken_glass, role, "P")),
                  await broken_glass.send(role, type_, body(broken_glass, role, "Q")))
           for role in SENDERS}
    assert got == TX_TABLES[case]


# the node operator ----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_a_node_operator_finds_no_content_key_of_its_own(published: Consortium) -> None:
    """The "node" row of the tables above shows what its operator can do: fetch and push
    every ciphertext, read the metadata as everyone does, and send no records transaction
    (unknown_sender). What it cannot do is open a ciphertext: no content key is wrapped for
    its key, while the patient's is there."""
    got = {}
    for label in READS:
        path = f"/v1/records/records/{published.ids[label]}/keys"
        got[label] = (await published.status("GET", f"{path}/{VALIDATOR.public_key.hex()}",
                                             "node"),
                      await published.status("GET", f"{path}/{OWNER[label.split()[0]]}", "node"))
    assert got == dict.fromkeys(READS, (404, 200))
