"""The apps' routes (``/v1/identity``, ``/v1/anchor``, ``/v1/governance``), the paged lists
(``/v1/blocks``, ``/v1/txs?sender=``) and the API's hygiene: ``Allow`` on a 405, a control
character in a path, the index, offline docs, and an OpenAPI document in which every answer
has a schema and every refusal code its status.

Requests go through ``httpx.ASGITransport`` (no sockets, no producer); the node runs on a
local chain (``tests/localchain.py``) and blocks are committed by calling
``node.produce_block()``: the transactions at height h, and the empty block h + 1 whose
CometBFT header signs their state. Every proven answer is checked with the light client,
against the genesis validators, as a client that trusts no node would.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import httpx
import pytest

from medledger.client import verify_list_answer, verify_state_answer
from medledger.crypto import DEFAULT_SUITE, EncryptionKey, SigningKey
from medledger.ledger import Transaction
from medledger.node import Home
from tests.localchain import LocalNode as Node

pytestmark = pytest.mark.anyio

CHAIN = "test-chain"  # the conftest's demo chain
JSON = {"content-type": "application/json"}
ENC_KEY = EncryptionKey.generate(DEFAULT_SUITE).public_bytes().hex()
DEMO_ORGS = ["acme-pharma", "carewell", "local", "northgate", "st-mary"]


def digest(n: int) -> str:
    return hashlib.sha256(f"document {n}".encode()).hexdigest()


class Ledger:
    """Signs with the demo keys (each with its own nonces) and commits blocks."""

    def __init__(self, node: Node, home: Home) -> None:
        self.node, self.home = node, home
        self.nonces: dict[bytes, int] = {}

    def tx(self, key: SigningKey, type_: str, body: dict[str, Any]) -> Transaction:
        nonce = self.nonces.get(key.public_key, 0) + 1
        self.nonces[key.public_key] = nonce
        return Transaction.create(key, CHAIN, type_, nonce, body)

    def commit(self, *txs: Transaction) -> int:
        for tx in txs:
            result = self.node.submit(tx)
            assert result.accepted, result
        block = self.node.produce_block()
        assert block is not None
        return block.height

    def key(self, name: str) -> SigningKey:
        return self.home.member_keys(name).signing


@pytest.fixture
def ledger(demo_node: Node, demo_home: Home) -> Ledger:
    return Ledger(demo_node, demo_home)


async def get(api: httpx.AsyncClient, path: str, status: int = 200, **params: Any) -> Any:
    response = await api.get(path, params=params)
    assert response.status_code == status, response.text
    return response.json()


def checked(answer: dict[str, Any], node: Node, key: str) -> Any:
    """The value of a proven state answer for ``key``, checked against the genesis set."""
    verified = verify_state_answer(answer, node.chain.genesis.validators, CHAIN)
    assert verified.key == key
    return verified.value


# identity ------------------------------------------------------------------------------------
async def test_organisations_page_through_every_genesis_organisation(
        api: httpx.AsyncClient, ledger: Ledger) -> None:
    ledger.commit(ledger.tx(ledger.key("admin"), "ledger.anchor",
                            {"digest": digest(1), "label": "one"}))
    seen, after = [], None
    for _ in range(10):
        page = await get(api, "/v1/identity/orgs", limit=2,
                         **({} if after is None else {"after": after}))
        assert len(page["orgs"]) <= 2
        seen += [org["id"] for org in page["orgs"]]
        after = page["next"]
        if after is None:
            break
    assert seen == DEMO_ORGS
    everything = await get(api, "/v1/identity/orgs")
    assert [o["id"] for o in everything["orgs"]] == DEMO_ORGS and everything["next"] is None
    assert everything["orgs"][-1] == {"id": "st-mary", "name": everything["orgs"][-1]["name"],
                                      "role": "hospital", "status": "active"}


async def test_an_organisation_with_and_without_proof(
        api: httpx.AsyncClient, demo_node: Node, ledger: Ledger) -> None:
    ledger.commit(ledger.tx(ledger.key("admin"), "ledger.anchor",
                            {"digest": digest(1), "label": "one"}))
    plain = await get(api, "/v1/identity/orgs/st-mary")
    assert plain["key"] == "identity/org/st-mary" and plain["height"] == 2
    assert plain["value"]["role"] == "hospital" and "proof" not in plain
    proven = await get(api, "/v1/identity/orgs/st-mary", prove="true")
    assert checked(proven, demo_node, "identity/org/st-mary") == plain["value"]

    missing = await get(api, "/v1/identity/orgs/no-such-org", 404)
    assert missing["code"] == "not_found"
    absent = await get(api, "/v1/identity/orgs/no-such-org", prove="true")
    assert absent["value"] is None
    assert checked(absent, demo_node, "identity/org/no-such-org") is None


async def test_keys_patients_and_members_are_provable(
        api: httpx.AsyncClient, demo_node: Node, ledger: Ledger) -> None:
    st_mary = ledger.key("st-mary")
    member, patient = SigningKey.generate(), SigningKey.generate()
    ledger.commit(
        ledger.tx(st_mary, "identity.member.register", {
            "org": "st-mary", "key": member.public_key.hex(), "role": "clinician",
            "name": "a clinician", "enc_key": ENC_KEY, "enc_suite": DEFAULT_SUITE}),
        ledger.tx(patient, "identity.patient.register",
                  {"enc_key": ENC_KEY, "enc_suite": DEFAULT_SUITE}))

    path = f"/v1/identity/keys/{member.public_key.hex()}"
    entry = (await get(api, path))["value"]
    assert (entry["org"], entry["role"], entry["status"]) == ("st-mary", "clinician", "active")
    assert checked(await get(api, path, prove="true"), demo_node,
                   f"identity/key/{member.public_key.hex()}") == entry
    stranger = SigningKey.generate().public_key.hex()
    assert (await get(api, f"/v1/identity/keys/{stranger}", 404))["code"] == "not_found"

    pseudonym = (await get(api, f"/v1/identity/keys/{patient.public_key.hex()}")
                 )["value"]["pseudonym"]
    record = checked(await get(api, f"/v1/identity/patients/{pseudonym}", prove="true"),
                     demo_node, f"identity/patient/{pseudonym}")
    assert (record["key"], record["height"]) == (patient.public_key.hex(), 1)

    members = await get(api, "/v1/identity/orgs/st-mary/members")
    assert members["count"] == 2 and members["height"] == 2
    assert [i["value"] for i in members["items"]] == [st_mary.public_key.hex(),
                                                      member.public_key.hex()]
    assert "count_proof" not in members and "proof" not in members["items"][0]
    proven = await get(api, "/v1/identity/orgs/st-mary/members", prove="true")
    verified = verify_list_answer(proven, demo_node.chain.genesis.validators, CHAIN,
                                  "identity", "members", "st-mary", 1, 100)
    assert verified.count == 2
    assert list(verified.items) == [st_mary.public_key.hex(), member.public_key.hex()]
    second = await get(api, "/v1/identity/orgs/st-mary/members", start=2, limit=1,
                       prove="true")
    assert list(verify_list_answer(second, demo_node.chain.genesis.validators, CHAIN,
                                   "identity", "members", "st-mary", 2, 1).items) == [
        member.public_key.hex()]


async def test_identity_refuses_malformed_ids_and_reads_before_the_first_block(
        api: httpx.AsyncClient) -> None:
    assert (await get(api, "/v1/identity/orgs/st-mary", 404))["code"] == "not_found"
    assert (await get(api, "/v1/identity/orgs/st-mary", 404, prove="true"))["code"] == (
        "not_found")
    for path in ("/v1/identity/orgs/St-Mary", "/v1/identity/orgs/x",
                 "/v1/identity/keys/abcd", "/v1/identity/patients/" + "0" * 31):
        assert (await get(api, path, 400))["code"] == "malformed"
    assert (await get(api, "/v1/identity/orgs", 400, limit=0))["code"] == "malformed"
    assert (await get(api, "/v1/identity/orgs", 422, limit="many"))["code"] == "malformed"


# anchor --------------------------------------------------------------------------------------
async def test_an_anchor_and_the_absence_of_one_are_provable(
        api: httpx.AsyncClient, demo_node: Node, ledger: Ledger) -> None:
    admin = ledger.key("admin")
    ledger.commit(ledger.tx(admin, "ledger.anchor", {"digest": digest(1), "label": "one"}))
    plain = await get(api, f"/v1/anchor/{digest(1)}")
    assert plain["value"]["label"] == "one"
    assert plain["value"]["sender"] == admin.public_key.hex()
    proven = await get(api, f"/v1/anchor/{digest(1)}", prove="true")
    assert checked(proven, demo_node, f"anchor/{digest(1)}") == plain["value"]
    # the same answer as the generic state read
    assert proven == await get(api, f"/v1/state/anchor/{digest(1)}")

    assert (await get(api, f"/v1/anchor/{digest(2)}", 404))["code"] == "not_found"
    absent = await get(api, f"/v1/anchor/{digest(2)}", prove="true")
    assert checked(absent, demo_node, f"anchor/{digest(2)}") is None
    assert (await get(api, f"/v1/anchor/{digest(1).upper()}", 400))["code"] == "malformed"


# governance ----------------------------------------------------------------------------------
async def test_a_proposal_is_listed_and_provable(
        api: httpx.AsyncClient, demo_node: Node, ledger: Ledger) -> None:
    org = {"id": "harbour-pharmacy", "name": "Harbour Pharmacy", "role": "pharmacy",
           "admins": [SigningKey.generate().public_key.hex()]}
    tx = ledger.tx(demo_node.key, "governance.propose",
                   {"kind": "org_admit", "change": org, "effective_height": 3})
    ledger.commit(tx)
    listed = await get(api, "/v1/governance/proposals")
    assert [p["id"] for p in listed["proposals"]] == [tx.tx_id.hex()]
    assert listed["next"] is None
    path = f"/v1/governance/proposals/{tx.tx_id.hex()}"
    proposal = checked(await get(api, path, prove="true"), demo_node,
                       f"governance/proposal/{tx.tx_id.hex()}")
    assert (proposal["kind"], proposal["status"]) == ("org_admit", "approved")
    assert proposal == (await get(api, path))["value"]
    # the organisation it admitted is served by identity at once
    assert (await get(api, "/v1/identity/orgs/harbour-pharmacy"))["value"]["role"] == "pharmacy"
    assert (await get(api, "/v1/governance/proposals", after=tx.tx_id.hex()))["proposals"] == []


async def test_evidence_lists_and_proves_absence(
        api: httpx.AsyncClient, demo_node: Node, ledger: Ledger) -> None:
    ledger.commit(ledger.tx(ledger.key("admin"), "ledger.anchor",
                            {"digest": digest(1), "label": "one"}))
    assert await get(api, "/v1/governance/evidence") == {"evidence": [], "next": None}
    unknown = "ab" * 32
    assert (await get(api, f"/v1/governance/evidence/{unknown}", 404))["code"] == "not_found"
    absent = await get(api, f"/v1/governance/evidence/{unknown}", prove="true")
    assert checked(absent, demo_node, f"evidence/{unknown}") is None
    assert (await get(api, "/v1/governance/evidence", 400, start=0))["code"] == "malformed"


# paged lists ---------------------------------------------------------------------------------
async def test_blocks_page_newest_first(api: httpx.AsyncClient, ledger: Ledger) -> None:
    admin = ledger.key("admin")
    for n in range(1, 4):  # blocks 1, 3, 5; each followed by an empty one signing its state
        assert ledger.commit(ledger.tx(admin, "ledger.anchor",
                                       {"digest": digest(n), "label": "x"})) == 2 * n - 1
    first = await get(api, "/v1/blocks", limit=2)
    assert [b["height"] for b in first["blocks"]] == [6, 5] and first["next"] == 5
    empty, block = first["blocks"]
    assert set(block) == {"height", "hash", "time", "tx_count", "proposer"}
    assert block["hash"] == (await get(api, "/v1/blocks/5"))["block_hash"]
    assert (block["tx_count"], empty["tx_count"]) == (1, 0)
    second = await get(api, "/v1/blocks", limit=2, before=first["next"])
    assert [b["height"] for b in second["blocks"]] == [4, 3] and second["next"] == 3
    third = await get(api, "/v1/blocks", limit=2, before=second["next"])
    assert [b["height"] for b in third["blocks"]] == [2, 1] and third["next"] is None
    assert [b["height"] for b in (await get(api, "/v1/blocks", before=10**9))["blocks"]] == [
        6, 5, 4, 3, 2, 1]
    assert (await get(api, "/v1/blocks", 400, before=0))["code"] == "malformed"
    assert (await get(api, "/v1/blocks", 400, limit=101))["code"] == "malformed"


async def test_a_senders_transactions_page_newest_first(
        api: httpx.AsyncClient, ledger: Ledger) -> None:
    admin, other = ledger.key("admin"), ledger.key("northgate")
    ledger.commit(ledger.tx(admin, "ledger.anchor", {"digest": digest(1), "label": "x"}),
                  ledger.tx(admin, "ledger.anchor", {"digest": digest(2), "label": "x"}),
                  ledger.tx(other, "ledger.anchor", {"digest": digest(3), "label": "x"}))
    # both pass admission; the second fails in its block
    ledger.commit(ledger.tx(admin, "ledger.anchor", {"digest": digest(4), "label": "x"}),
                  ledger.tx(admin, "ledger.anchor", {"digest": digest(4), "label": "again"}))
    sender = admin.public_key.hex()
    first = await get(api, "/v1/txs", sender=sender, limit=2)
    assert [(t["height"], t["index"], t["nonce"]) for t in first["txs"]] == [(3, 1, 4),
                                                                            (3, 0, 3)]
    assert [t["code"] for t in first["txs"]] == ["exists", "ok"]
    assert first["txs"][0]["type"] == "ledger.anchor" and first["next"] == "3:0"
    rest = await get(api, "/v1/txs", sender=sender, limit=2, before=first["next"])
    assert [(t["height"], t["index"]) for t in rest["txs"]] == [(1, 1), (1, 0)]
    assert rest["next"] is None
    tx_id = rest["txs"][0]["tx_id"]
    assert (await get(api, f"/v1/txs/{tx_id}"))["tx"]["sender"] == sender
    nobody = await get(api, "/v1/txs", sender=SigningKey.generate().public_key.hex())
    assert nobody == {"txs": [], "next": None}
    for params in ({}, {"sender": "abcd"}, {"sender": sender, "before": "1"},
                   {"sender": sender, "limit": 0}):
        response = await api.get("/v1/txs", params=params)
        assert response.status_code in (400, 422) and response.json()["code"] == "malformed"


# HTTP hygiene --------------------------------------------------------------------------------
ALLOW = {
    ("DELETE", "/v1/txs"): "GET, POST",
    ("GET", "/v1/txs/batch"): "POST",
    ("PUT", "/v1/status"): "GET",
    ("POST", "/v1/blocks/1"): "GET",
    ("PATCH", "/v1/state/anchor/abc"): "GET",
    ("POST", "/v1/identity/orgs/st-mary"): "GET",
    ("DELETE", "/v1/anchor/" + "00" * 32): "GET",
    ("POST", "/"): "GET",
}


@pytest.mark.parametrize(("method", "path"), ALLOW)
async def test_a_wrong_method_is_405_with_allow(
        method: str, path: str, api: httpx.AsyncClient) -> None:
    response = await api.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == ALLOW[method, path]
    assert response.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize("path", [
    "/v1/state/identity/org/st-mary%0A", "/v1/state/identity/org/st-mary%0D",
    "/v1/state/anchor%00/x", "/v1/identity/orgs/st-mary%0A", "/v1/blocks/1%0A",
    "/v1/txs/" + "00" * 32 + "%0A",
])
async def test_a_control_character_in_a_path_is_refused(
        path: str, api: httpx.AsyncClient, ledger: Ledger) -> None:
    ledger.commit(ledger.tx(ledger.key("admin"), "ledger.anchor",
                            {"digest": digest(1), "label": "one"}))
    assert (await get(api, "/v1/state/identity/org/st-mary"))["value"]["id"] == "st-mary"
    refusal = await get(api, path, 400)
    assert refusal["code"] == "malformed" and "control character" in refusal["message"]


async def test_the_index_names_the_node_and_links_its_docs(api: httpx.AsyncClient) -> None:
    index = await get(api, "/")
    assert (index["name"], index["chain_id"]) == ("medledger", CHAIN)
    assert {index["links"][k] for k in ("docs", "openapi", "status")} == {
        "/docs", "/openapi.json", "/v1/status"}
    page = await api.get("/", headers={"accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")
    assert 'href="/docs"' in page.text and CHAIN in page.text


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_the_docs_load_nothing_from_outside_the_node(
        path: str, api: httpx.AsyncClient) -> None:
    page = await api.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.findall(r"https?://", page.text), "the page names an outside URL"
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', page.text)
    assert assets, "the page loads its script from the node"
    for asset in assets:
        assert (await api.get(asset)).status_code == 200, asset
    if path == "/docs":
        assert '"validatorUrl": null' in page.text  # no badge fetched from swagger.io
        assert "'/openapi.json'" in page.text


# the OpenAPI document ------------------------------------------------------------------------
@pytest.fixture
async def document(api: httpx.AsyncClient) -> dict[str, Any]:
    return await get(api, "/openapi.json")  # type: ignore[no-any-return]


async def test_every_success_answer_declares_a_schema(document: dict[str, Any]) -> None:
    missing = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if not status.startswith("2"):
                    continue
                content = response.get("content") or {}
                schemas = [c.get("schema") for c in content.values()]
                if not schemas or not all(schemas):
                    missing.append(f"{method.upper()} {path} {status}")
    assert not missing
    post = document["paths"]["/v1/txs"]["post"]["responses"]
    assert {"200", "202"} <= set(post)
    for name in ("Answer", "ListAnswer", "Header", "SignedHeader", "SparseProof", "Error"):
        assert document["components"]["schemas"][name]


async def test_path_parameters_have_bounds_or_patterns(document: dict[str, Any]) -> None:
    loose = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "path":
                    continue
                schema = parameter["schema"]
                if not ({"pattern", "minimum", "maxLength"} & set(schema)):
                    loose.append(f"{method.upper()} {path} {parameter['name']}")
    assert not loose


async def test_refusal_codes_are_listed_with_their_statuses(
        document: dict[str, Any], demo_node: Node) -> None:
    registry = demo_node.chain.registry
    assert document["x-refusal-codes"] == registry.codes
    assert document["x-refusal-codes"]["key_suspended"] == 403
    tags = {t["name"]: t for t in document["tags"]}
    submit = document["paths"]["/v1/txs"]["post"]
    assert submit["x-refusal-codes"] == registry.codes
    for code, status in registry.codes.items():
        assert f"`{code}`" in submit["responses"][str(status)]["description"], code
    for app in registry.apps:
        assert tags[app.name]["x-refusal-codes"] == dict(app.codes)
        for code, status in app.codes.items():
            assert f"`{code}` ({status})" in tags[app.name]["description"]
        operations = [op for path, ops in document["paths"].items()
                      if path.startswith(f"/v1/{app.name}/") for op in ops.values()]
        assert operations, f"{app.name} serves no route"
        for operation in operations:
            assert operation["tags"] == [app.name]
            assert operation["x-refusal-codes"] == dict(app.codes)
            assert {"400", "422"} <= set(operation["responses"])
