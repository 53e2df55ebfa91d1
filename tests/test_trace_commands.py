"""``medledger drugs ...`` (and ``medledger trace ...``) through typer's CliRunner, in
process, and the ``/v1/trace`` routes, against a node on a local chain
(``tests/localchain.py``) whose API sits behind ``httpx.MockTransport`` (``Served`` of
``tests/test_records_commands.py``: a submission with ``wait=true`` commits its block at
once).

The genesis holds the organisations of ``tests/test_trace_app.py`` (``acme`` the drug maker,
``medisupply`` the wholesaler, the pharmacies ``corner`` and ``other``, ``authority`` the
regulator, ``rival`` a second maker), each admin key in the home's keys/ folder. The module's
node tells the story of that file through the command line once: master data, the raw lots
and the finished lot, six packs in two cases on a pallet, the pallet to the wholesaler, case
1 to ``corner``, pack 1 dispensed; besides, a lot that is recalled and two spare packs that
tests add events to. Each test uses objects of its own or leaves the state as it found it.
A node that lies is a client whose answers a test edits.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

import medledger.cli.host as cli_host
import medledger.cli.main as cli
from medledger.apps.base import Rejected
from medledger.apps.body import decode_body
from medledger.apps.trace.capture import MAX_EVENTS, CaptureBody
from medledger.apps.trace.state import HISTORY, LOT_PACKS, REPORTS
from medledger.apps.trace.verify import REASONS, verdict
from medledger.client import (
    Client,
    VerificationFailed,
    verify_list_answer,
    verify_state_answer,
)
from medledger.codec import decode
from medledger.crypto import Keystore
from medledger.ledger import Transaction
from medledger.ledger.block import MAX_EVENTS as MAX_RESULT_EVENTS
from medledger.node import PASSPHRASE_ENV, Genesis, Home
from medledger.standards import epcis
from medledger.standards.gs1 import (
    LGTIN,
    SGTIN,
    Scan,
    datamatrix_content,
    digital_link,
    element_string,
)
from medledger.store import EventQuery
from tests.conftest import FAST_KDF
from tests.localchain import LocalNode, open_local
from tests.localworld import Served, serve_cli
from tests.test_trace_app import (
    CASE_1,
    CASE_2,
    COMMITMENT,
    CP,
    DRUG,
    EXPIRY,
    LOT,
    ORGS,
    OTHER_DRUG,
    PACKS,
    PALLET,
    RAW_A,
    RAW_B,
    START,
    commission,
    end,
    gln,
    pack,
    receive,
    receive_raw,
    ship,
    transform,
    unpack,
    urn,
)

CHAIN_ID = "trace-cli"
PASSPHRASE = "correct horse battery staple"
API = "node.test:80"
CREATED = "2026-01-01T00:00:00.000Z"
RECALLED = LGTIN(DRUG, "L2026R")
RECALLED_PACKS = [SGTIN(DRUG, "R0001"), SGTIN(DRUG, "R0002")]
SPARE_LOT = "L2026S"
SPARE, SPARE_TOO = SGTIN(DRUG, "S0100"), SGTIN(DRUG, "S0200")  # tests add events to these
NEVER = SGTIN(DRUG, "S9999")
BAD_DRUG = DRUG[:-1] + str((int(DRUG[-1]) + 1) % 10)  # DRUG with a wrong check digit
PARTIES = ("acme", "medisupply", "corner", "other")


# the node, its home and the story -------------------------------------------------------------
@dataclass
class World:
    home: Home
    node: LocalNode
    served: Served
    folder: Path
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # the story's, by name
    said: list[str] = field(default_factory=list)  # what each story command printed
    before_recall: dict[str, Any] = field(default_factory=dict)  # RECALLED's proven entry

    def http(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.served.handle),
                            base_url=f"http://{API}")

    def get(self, key: str) -> Any:
        return self.node.chain.view().get(key)

    def trace_state(self) -> dict[str, Any]:
        """Every committed entry of the trace app."""
        return {k: decode(v) for k, v in self.node.store.iter_prefix("trace/")}

    def history(self, owner: str) -> list[str]:
        return list(HISTORY.items(self.node.chain.view(), owner, 1, 1000))


def _home(path: Path) -> Home:
    """A one-validator home whose genesis adds the trace organisations to the local one,
    each admin keystore saved as keys/<org>.key."""
    home = Home.init(path, CHAIN_ID, kdf_params=FAST_KDF, genesis_time=START)
    genesis = home.genesis()
    orgs = list(genesis.organisations)
    for org, role in ORGS.items():
        keys = Keystore.generate()
        keys.save(home.key_path(org), PASSPHRASE, kdf_params=FAST_KDF)
        orgs.append({"admins": [keys.signing.public_key.hex()], "id": org, "name": org,
                     "role": role})
    Genesis(genesis.chain_id, genesis.genesis_time, genesis.validators, tuple(orgs)).save(
        home.genesis_path)
    return home


def drugs(runner: CliRunner, world: World, *args: str | Path, group: str = "drugs",
          home: bool = True) -> Result:
    words = [group, *(str(a) for a in args), "--api", API]
    if home:
        words += ["--home", str(world.home.path)]
    return runner.invoke(cli.app, words)


def flat(text: str) -> str:
    """Output with any line wrapping undone."""
    return " ".join(text.split())


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def refused(result: Result, says: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.output  # no traceback
    assert "Traceback" not in result.output
    assert says in flat(result.output), result.output


def write_document(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(epcis.document(events, created=CREATED)))
    return path


def raw_document(path: Path, events: list[Any]) -> Path:
    """A document as a partner might send it, its events as they are (none checked)."""
    path.write_text(json.dumps({"@context": [epcis.EPCIS_CONTEXT], "type": "EPCISDocument",
                                "schemaVersion": "2.0", "creationDate": CREATED,
                                "epcisBody": {"eventList": events}}))
    return path


def hashes(*events: dict[str, Any]) -> list[str]:
    """The CBV 2.0 event hashes, as the ledger's lists hold them (hex)."""
    return [epcis.event_hash(e).split(";", 1)[1].split("?", 1)[0] for e in events]


STORY: list[tuple[str, str, list[str], str]] = [
    # (file, signer, event names, what the command says)
    ("materials", "acme", ["raw", "made"], "captured 2 events"),
    ("packs", "acme", ["commissioned", "case_1", "case_2", "pallet", "recalled_packs",
                       "spares"], "captured 6 events"),
    ("ship", "acme", ["shipped"], "captured 1 events"),
    ("receive", "medisupply", ["received", "unpacked", "case_shipped"], "captured 3 events"),
    ("arrive", "corner", ["case_received", "case_unpacked"], "captured 2 events"),
]


def _story(runner: CliRunner, w: World) -> None:
    def step(*args: str | Path) -> None:
        w.said.append(ok(drugs(runner, w, *args)).stdout)

    step("prefix", CP, "--as", "acme")
    for org in PARTIES:
        step("party", gln(org), "--as", org)
    step("product", DRUG, "--name", "Cardiozol 10 mg", "--ndc", "0777-3105-02", "--key",
         w.home.key_path("acme"))  # a keystore file
    step("product", OTHER_DRUG, "--name", "Pulmosin 5 mg", "--key", "acme")  # a key's name
    w.events.update(
        raw=receive_raw([RAW_A, RAW_B]), made=transform([RAW_A, RAW_B], LOT),
        commissioned=commission(PACKS), case_1=pack(CASE_1, PACKS[:3]),
        case_2=pack(CASE_2, PACKS[3:]), pallet=pack(PALLET, [CASE_1, CASE_2]),
        recalled_packs=commission(RECALLED_PACKS, lot=RECALLED.lot),
        spares=commission([SPARE, SPARE_TOO], lot=SPARE_LOT),
        shipped=ship([PALLET], "medisupply"), received=receive([PALLET]),
        unpacked=unpack(PALLET), case_shipped=ship([CASE_1], "corner"),
        case_received=receive([CASE_1]), case_unpacked=unpack(CASE_1),
        dispensed=end("dispensing", [PACKS[0]], "OBSERVE"))
    for name, signer, events, _ in STORY:
        step("capture", write_document(w.folder / f"{name}.json",
                                       [w.events[e] for e in events]), "--as", signer)
    step("capture", write_document(w.folder / "dispense.json", [w.events["dispensed"]]),
         "--commitment", COMMITMENT, "--as", "corner")
    with w.http() as http:
        w.before_recall = http.get("/v1/trace/lot", params={
            "gtin": DRUG, "lot": RECALLED.lot, "prove": "true"}).json()
    step("recall", "--gtin", DRUG, "--lot", RECALLED.lot, "--reason", "contamination",
         "--as", "acme")


def _open(root: Path, m: pytest.MonkeyPatch) -> World:
    """A new home and its node, the command line's client pointed at it."""
    m.setenv(PASSPHRASE_ENV, PASSPHRASE)
    home = _home(root / "node")
    node = open_local(home)
    return World(home, node, serve_cli(node, m), root)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as m:
        w = _open(tmp_path_factory.mktemp("trace"), m)
        _story(CliRunner(), w)
        yield w
        w.node.close()


@pytest.fixture(autouse=True)
def passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# 1. the story ---------------------------------------------------------------------------------
def test_the_story_through_the_command_line(world: World) -> None:
    said = [re.fullmatch(r"(.*) in block \d+: tx [0-9a-f]{64}\n", text) for text in world.said]
    assert all(said), world.said
    assert [m[1] for m in said if m] == [
        f"registered prefix {CP}", *(f"registered party {gln(org)}" for org in PARTIES),
        f"registered product {DRUG}", f"registered product {OTHER_DRUG}",
        *(what for *_, what in STORY), "captured 1 events",
        f"recalled lot {RECALLED.lot} of {DRUG}"]
    assert world.get(f"trace/prefix/{CP}")["org"] == "acme"
    assert {org: world.get(f"trace/org_party/{org}") for org in PARTIES} == {
        org: gln(org) for org in PARTIES}
    assert {k: world.get(f"trace/product/{DRUG}")[k] for k in ("name", "ndc", "org")} == {
        "name": "Cardiozol 10 mg", "ndc": "0777-3105-02", "org": "acme"}

    def row(p: SGTIN) -> tuple[Any, ...]:
        entry = world.get(f"trace/pack/{p.key}")
        return (p.serial, entry["lot"], entry["custodian"], entry["status"], entry["parent"],
                entry["transit"])
    assert [row(p) for p in [*PACKS, *RECALLED_PACKS, SPARE]] == [
        ("S0001", LOT.lot, "corner", "dispensed", None, None),
        ("S0002", LOT.lot, "corner", "active", None, None),
        ("S0003", LOT.lot, "corner", "active", None, None),
        ("S0004", LOT.lot, "medisupply", "active", f"sscc:{CASE_2.key}", None),
        ("S0005", LOT.lot, "medisupply", "active", f"sscc:{CASE_2.key}", None),
        ("S0006", LOT.lot, "medisupply", "active", f"sscc:{CASE_2.key}", None),
        ("R0001", RECALLED.lot, "acme", "active", None, None),
        ("R0002", RECALLED.lot, "acme", "active", None, None),
        ("S0100", SPARE_LOT, "acme", "active", None, None)]
    assert world.get(f"trace/pack/{PACKS[0].key}")["dispensed"]["commitment"] == COMMITMENT
    assert list(LOT_PACKS.items(world.node.chain.view(), LOT.key, 1, 100)) == [
        f"sgtin:{p.key}" for p in PACKS]
    lot = world.get(f"trace/lot/{LOT.key}")
    assert (lot["kind"], lot["inputs"]) == ("finished", [f"lgtin:{RAW_A.key}",
                                                         f"lgtin:{RAW_B.key}"])
    recalled = world.get(f"trace/lot/{RECALLED.key}")["recalled"]
    assert (recalled["by"], recalled["reason"]) == ("acme", "contamination")
    before = world.before_recall  # the lot's proven entry, read before the recall
    assert (before["key"], before["value"]["recalled"]) == (f"trace/lot/{RECALLED.key}", None)


def test_master_data_refusals_name_the_code(runner: CliRunner, world: World) -> None:
    refused(drugs(runner, world, "prefix", "0999999", "--as", "medisupply"),
            "not_maker: a wholesaler does not register a company prefix")
    refused(drugs(runner, world, "prefix", CP + "1", "--as", "rival"),
            f"prefix_taken: prefix {CP} is registered to acme")
    refused(drugs(runner, world, "party", gln("acme"), "--as", "rival"),
            f"party_taken: GLN {gln('acme')} is acme's")
    refused(drugs(runner, world, "product", DRUG, "--name", "Fake", "--as", "rival"),
            f"not_owner: GTIN {DRUG} is acme's, not rival's")
    refused(drugs(runner, world, "prefix", "06141ab", "--as", "acme"),
            "prefix must be 6 to 12 digits")
    refused(drugs(runner, world, "party", gln("acme")[:-1] + "0", "--as", "rival"),
            "gln must be 13 digits with a valid check digit")
    refused(drugs(runner, world, "product", DRUG, "--name", "X", "--as", "nobody"),
            "no key 'nobody'")


# 2. verify: each kind of fake, each form of code ----------------------------------------------
FORMS: dict[str, Callable[[SGTIN, str], str]] = {
    "element string": lambda p, lot: element_string(Scan(p.gtin, p.serial, lot, EXPIRY)),
    "DataMatrix": lambda p, lot: datamatrix_content(Scan(p.gtin, p.serial, lot, EXPIRY)),
    "Digital Link": lambda p, lot: digital_link(Scan(p.gtin, p.serial, lot, EXPIRY)),
    "EPC URN": lambda p, lot: urn(p),  # a URN names no lot and no expiry
}
FAKES: dict[str, tuple[SGTIN, str, str, list[str], str | None]] = {
    # pack, the label's lot, the scanner, the reasons, the custodian
    "genuine": (PACKS[1], LOT.lot, "corner", [], "corner"),
    "never issued": (NEVER, LOT.lot, "corner", ["never_issued"], None),
    "dispensed": (PACKS[0], LOT.lot, "corner", ["dispensed"], "corner"),
    "recalled": (RECALLED_PACKS[0], RECALLED.lot, "acme", ["recalled"], "acme"),
    "label lot mismatch": (PACKS[2], "L2027Z", "corner", ["label_lot_mismatch"], "corner"),
    "diverted": (PACKS[4], LOT.lot, "other", ["not_in_custody"], "medisupply"),
}


@pytest.mark.parametrize("fake, form", [
    (fake, form) for fake in FAKES for form in FORMS
    if (fake, form) != ("label lot mismatch", "EPC URN")])  # a URN has no lot to mismatch
def test_verify_each_fake_in_each_form(runner: CliRunner, world: World, fake: str,
                                       form: str) -> None:
    p, label_lot, scanner, reasons, custodian = FAKES[fake]
    code = FORMS[form](p, label_lot)
    assert ("\x1d" in code) == (form == "DataMatrix")
    result = drugs(runner, world, "verify", code, "--scanner", scanner, "--json")
    assert result.exit_code == (3 if reasons else 0), result.output
    assert json.loads(result.stdout) == {
        "verdict": "SUSPECT" if reasons else "GENUINE", "reasons": reasons,
        "explained": [REASONS[r] for r in reasons], "code": code, "gtin": DRUG,
        "serial": p.serial, "custodian": custodian}
    said = flat(result.stderr)
    state = "absent" if fake == "never issued" else "present"
    assert f"verified: trace/pack/{p.key} is {state} at height" in said
    if fake == "never issued":  # the lot the label names, if it names one
        lot_no = None if form == "EPC URN" else label_lot
    else:  # the lot the proven pack entry names
        lot_no = world.get(f"trace/pack/{p.key}")["lot"]
    assert (f"verified: trace/lot/{DRUG}.{lot_no} is present" in said) == (lot_no is not None)
    assert "the node said" not in said  # the node's verdict is the one computed here


def test_verify_prints_a_readable_verdict(runner: CliRunner, world: World) -> None:
    genuine = ok(drugs(runner, world, "verify", FORMS["Digital Link"](PACKS[1], LOT.lot),
                       "--scanner", "corner"))
    assert "GENUINE" in genuine.stdout and "SUSPECT" not in genuine.stdout
    dispensed = drugs(runner, world, "verify", urn(PACKS[0]))  # no scanner: a patient
    assert dispensed.exit_code == 3
    assert "SUSPECT" in dispensed.stdout and REASONS["dispensed"] in flat(dispensed.stdout)
    # trusted validators from a genesis file, the API named by --api alone
    by_genesis = runner.invoke(cli.app, ["drugs", "verify", urn(PACKS[1]), "--genesis",
                                         str(world.home.genesis_path), "--api", API])
    assert ok(by_genesis).stdout.count("GENUINE") == 1
    assert "warning" not in by_genesis.stderr


def test_verify_refuses_a_code_it_cannot_read(runner: CliRunner, world: World) -> None:
    refused(drugs(runner, world, "verify", f"(01){BAD_DRUG}(21)S0001"),
            "cannot read the code: AI (01): check digit should be")
    refused(drugs(runner, world, "verify", f"(01){DRUG}(10){LOT.lot}"),
            "the code names no serialised pack (no AI (21))")


# 3. a node that lies --------------------------------------------------------------------------
def lying(monkeypatch: pytest.MonkeyPatch, world: World,
          edit: Callable[[str, Any, Client], Any]) -> None:
    """Every ``get`` the commands make is answered with ``edit(path, answer, client)``."""

    class LyingClient(Client):
        def get(self, path: str, params: Any = None) -> Any:
            return edit(path, super().get(path, params), self)

    monkeypatch.setattr(cli_host, "Client", functools.partial(
        LyingClient, transport=httpx.MockTransport(world.served.handle)))


def _on_verify(change: Callable[[dict[str, Any], Client], dict[str, Any]]
               ) -> Callable[[str, Any, Client], Any]:
    return lambda path, a, c: change(a, c) if path == "/v1/trace/verify" else a


LIES: dict[str, tuple[SGTIN, str, Callable[[dict[str, Any], Client], dict[str, Any]], str]] = {
    "a dispensed pack said active": (PACKS[0], "corner", lambda a, c: {
        **a, "verdict": "GENUINE", "reasons": [], "pack": {**a["pack"], "value": {
            **a["pack"]["value"], "status": "active", "dispensed": None}}},
        "NOT VERIFIED: the proof of the key's value does not lead to the state root"),
    "a diverted pack said in the scanner's custody": (PACKS[4], "other", lambda a, c: {
        **a, "verdict": "GENUINE", "reasons": [], "pack": {**a["pack"], "value": {
            **a["pack"]["value"], "custodian": "other", "parent": None}}},
        "NOT VERIFIED: the proof of the key's value"),
    "a serial never issued said commissioned": (NEVER, "corner", lambda a, c: {
        **a, "verdict": "GENUINE", "reasons": [], "pack": {**a["pack"], "value": {
            **Client.get(c, "/v1/trace/pack", {"code": urn(PACKS[1])})["value"],
            "serial": NEVER.serial}}},
        "NOT VERIFIED: the proof of the key's value"),
    "a recalled lot said not recalled": (RECALLED_PACKS[0], "acme", lambda a, c: {
        **a, "verdict": "GENUINE", "reasons": [], "lot": {**a["lot"], "value": {
            **a["lot"]["value"], "recalled": None}}},
        "NOT VERIFIED: the proof of the key's value"),
    "the answer for another pack": (NEVER, "corner", lambda a, c: Client.get(
        c, "/v1/trace/verify", {"code": urn(PACKS[1]), "scanner": "corner"}),
        "NOT VERIFIED: the node answered for another key than the one asked for"),
}


@pytest.mark.parametrize("lie", LIES)
def test_verify_catches_a_node_that_lies(runner: CliRunner, world: World,
                                         monkeypatch: pytest.MonkeyPatch, lie: str) -> None:
    p, scanner, change, says = LIES[lie]
    lying(monkeypatch, world, _on_verify(change))
    result = drugs(runner, world, "verify", urn(p), "--scanner", scanner)
    refused(result, says, code=2)
    assert "GENUINE" not in result.stdout and result.stdout == ""


HIDDEN_RECALLS: dict[str, Callable[[World], Callable[[dict[str, Any], Client], dict[str, Any]]]] = {
    "the lot's proof left out": lambda w: lambda a, c: {
        **a, "verdict": "GENUINE", "reasons": [], "lot": None},
    "the lot's proof from before its recall": lambda w: lambda a, c: {
        **a, "verdict": "GENUINE", "reasons": [], "lot": w.before_recall},
}


@pytest.mark.parametrize("lie", HIDDEN_RECALLS)
def test_verify_catches_a_node_that_hides_a_recall(runner: CliRunner, world: World,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   lie: str) -> None:
    lying(monkeypatch, world, _on_verify(HIDDEN_RECALLS[lie](world)))
    result = drugs(runner, world, "verify", urn(RECALLED_PACKS[1]), "--scanner", "acme")
    assert result.exit_code in (2, 3), result.output
    assert "GENUINE" not in result.stdout


# 4. capture: all or none, and progress --------------------------------------------------------
def _inspect(p: SGTIN) -> dict[str, Any]:
    return end("inspecting", [p], "OBSERVE")


BAD_EVENTS: dict[str, tuple[Callable[[], dict[str, Any]], str]] = {
    "a bad check digit": (lambda: {**_inspect(PACKS[1]), "epcList": [
        f"https://id.gs1.org/01/{BAD_DRUG}/21/S0002"]},
        "events[1]: event: AI (01): check digit should be 2, not 3"),
    "an unknown bizStep": (lambda: {**_inspect(PACKS[1]), "bizStep": "frobnicating"},
                           ("event 1: bizStep: 'frobnicating' is neither a CBV 2.0 business "
                            "step nor a URI outside the CBV (nothing was captured)")),
    "no eventTime": (lambda: {k: v for k, v in _inspect(PACKS[1]).items()
                              if k != "eventTime"},
                     "event 1: eventTime: missing (nothing was captured)"),
    "a parentID that is no container": (lambda: {**pack(CASE_1, [PACKS[1]]),
                                                 "parentID": urn(PACKS[2])},
                                        "events[1]: parentID must be an SSCC"),
    "a step the ledger does not take": (lambda: end("repairing", [PACKS[1]], "OBSERVE"),
                                        ("unsupported_event: events[1]: the ledger takes no "
                                         "ObjectEvent OBSERVE with business step repairing")),
    "a pack another holds": (lambda: ship([PACKS[4]], "other"),
                             "not_custodian: events[1]: pack"),
}


@pytest.mark.parametrize("bad", BAD_EVENTS)
def test_capture_refuses_a_document_with_one_bad_event_whole(
        runner: CliRunner, world: World, tmp_path: Path, bad: str) -> None:
    make, says = BAD_EVENTS[bad]
    before, height = world.trace_state(), world.node.chain.height
    document = raw_document(tmp_path / "bad.json",
                            [_inspect(PACKS[1]), make(), _inspect(PACKS[2])])
    refused(drugs(runner, world, "capture", document, "--as", "corner"), says)
    assert world.trace_state() == before
    assert world.node.chain.height == height  # nothing was committed


def test_capture_refuses_what_is_not_a_document(runner: CliRunner, world: World,
                                                tmp_path: Path) -> None:
    (tmp_path / "junk.json").write_text("{not json")
    refused(drugs(runner, world, "capture", tmp_path / "junk.json", "--as", "corner"),
            "document: data: not valid JSON")
    refused(drugs(runner, world, "capture", tmp_path / "absent.json", "--as", "corner"),
            f"cannot read {tmp_path / 'absent.json'}")
    no_context = tmp_path / "plain.json"
    no_context.write_text(json.dumps({"type": "EPCISDocument", "epcisBody": {
        "eventList": [_inspect(PACKS[1])]}}))
    refused(drugs(runner, world, "capture", no_context, "--as", "corner"),
            "document: @context: must include the EPCIS 2.0 context")
    dispensing = write_document(tmp_path / "d.json", [end("dispensing", [PACKS[1]],
                                                          "OBSERVE")])
    refused(drugs(runner, world, "capture", dispensing, "--commitment", "c0" * 31,
                  "--as", "corner"), "commitment must be 32 bytes")
    refused(drugs(runner, world, "capture", dispensing, "--as", "corner"),
            "malformed: events[0]: dispensing carries the patient's commitment")


def test_a_capture_holds_no_more_events_than_a_result_carries() -> None:
    # each captured event makes one trace.captured event; a transaction's result with more
    # than the ledger's MAX_EVENTS could not be read back (GET /v1/txs, the block history)
    assert MAX_EVENTS <= MAX_RESULT_EVENTS
    one = epcis.normalise(_inspect(SPARE))
    with pytest.raises(Rejected, match="events"):
        decode_body(CaptureBody, {"events": [one] * (MAX_EVENTS + 1)})


def test_a_large_document_goes_in_parts_with_progress(runner: CliRunner, world: World,
                                                      tmp_path: Path) -> None:
    events = [_inspect(SPARE) for _ in range(450)]
    before = world.history(f"pack.{SPARE.key}")
    result = ok(drugs(runner, world, "capture", write_document(tmp_path / "big.json", events),
                      "--as", "medisupply"))
    parts = -(-450 // MAX_EVENTS)
    assert parts >= 3
    assert result.stderr.splitlines() == [
        f"[{n}/{parts}] capturing events {low + 1}-{min(low + MAX_EVENTS, 450)} of 450"
        for n, low in enumerate(range(0, 450, MAX_EVENTS), 1)]
    assert re.fullmatch(r"captured 450 events in block \d+: tx [0-9a-f]{64}\n", result.stdout)
    assert world.history(f"pack.{SPARE.key}") == before + hashes(*events)
    assert {world.get(f"trace/event/{h}")["org"] for h in hashes(*events)} == {"medisupply"}


def test_a_part_too_large_for_a_transaction_is_refused_plainly(
        runner: CliRunner, world: World, tmp_path: Path) -> None:
    # a transaction is at most 64 KiB: a document of long events is split by its sender
    lot = LGTIN(DRUG, "L2026B")
    events = [commission([SGTIN(DRUG, f"B{e:02d}{i:02d}") for i in range(50)], lot=lot.lot)
              for e in range(30)]
    before, height = world.trace_state(), world.node.chain.height
    refused(drugs(runner, world, "capture", write_document(tmp_path / "bulk.json", events),
                  "--as", "acme"), "error: transaction: larger than 65536 bytes")
    assert world.trace_state() == before and world.node.chain.height == height


def test_a_refusal_in_a_later_part_leaves_the_earlier_parts(runner: CliRunner, world: World,
                                                            tmp_path: Path) -> None:
    events = [_inspect(SPARE_TOO) for _ in range(MAX_EVENTS + 10)]
    events[MAX_EVENTS + 3] = ship([PACKS[4]], "other")  # medisupply's pack, sent by corner
    before = world.history(f"pack.{SPARE_TOO.key}")
    document = write_document(tmp_path / "big.json", events)
    result = drugs(runner, world, "capture", document, "--as", "corner")
    refused(result, "not_custodian: events[3]: pack")  # its index in its own transaction
    assert flat(result.stderr).startswith(f"[1/2] capturing events 1-{MAX_EVENTS} of "
                                          f"{MAX_EVENTS + 10} [2/2] capturing events")
    assert world.history(f"pack.{SPARE_TOO.key}") == before + hashes(*events[:MAX_EVENTS])
    # sent again, the file is refused at its first event: send only the rest
    refused(drugs(runner, world, "capture", document, "--as", "corner"),
            f"duplicate_event: events[0]: event {epcis.event_hash(events[0])} was captured "
            "before")
    rest = write_document(tmp_path / "rest.json", [
        e for i, e in enumerate(events[MAX_EVENTS:], MAX_EVENTS) if i != MAX_EVENTS + 3])
    ok(drugs(runner, world, "capture", rest, "--as", "corner"))
    assert world.history(f"pack.{SPARE_TOO.key}") == before + hashes(*(
        e for i, e in enumerate(events) if i != MAX_EVENTS + 3))


# 5. traces and export -------------------------------------------------------------------------
PACK_2_EVENTS = ["commissioned", "case_1", "shipped", "received", "case_shipped",
                 "case_received", "case_unpacked"]


def test_back_lists_the_pack_s_events_and_its_raw_lots(runner: CliRunner,
                                                       world: World) -> None:
    found = json.loads(ok(drugs(runner, world, "back", element_string(
        Scan(DRUG, PACKS[1].serial, LOT.lot, EXPIRY)), "--json")).stdout)
    assert [(e["hash"], e["step"], e["org"]) for e in found["pack"]["events"]] == [
        (epcis.event_hash(world.events[name]), step, org) for name, step, org in zip(
            PACK_2_EVENTS, ["commissioning", "packing", "shipping", "receiving", "shipping",
                            "receiving", "unpacking"],
            ["acme", "acme", "acme", "medisupply", "medisupply", "corner", "corner"],
            strict=True)]
    assert (found["pack"]["serial"], found["pack"]["custodian"]) == ("S0002", "corner")
    assert [(lot["key"], lot["kind"], lot["custodian"], lot["inputs"], lot["recalled"],
             [e["step"] for e in lot["events"]]) for lot in found["lots"]] == [
        (f"lgtin:{LOT.key}", "finished", "acme", [f"lgtin:{RAW_A.key}", f"lgtin:{RAW_B.key}"],
         None, ["commissioning", "commissioning"]),
        (f"lgtin:{RAW_A.key}", "raw", "acme", [], None, ["receiving", "commissioning"]),
        (f"lgtin:{RAW_B.key}", "raw", "acme", [], None, ["receiving", "commissioning"])]
    table = flat(ok(drugs(runner, world, "back", urn(PACKS[1]))).stdout)
    assert "unpacking" in table and RAW_B.lot in table and "medisupply" in table
    refused(drugs(runner, world, "back", urn(NEVER)), "not_found")


def test_forward_lists_every_pack_made_from_a_raw_lot(runner: CliRunner,
                                                      world: World) -> None:
    found = json.loads(ok(drugs(runner, world, "forward", "--gtin", RAW_A.gtin, "--lot",
                                RAW_A.lot, "--json")).stdout)
    assert [lot["key"] for lot in found["lots"]] == [f"lgtin:{RAW_A.key}", f"lgtin:{LOT.key}"]
    assert [(p["key"], p["lot"], p["status"], p["custodian"]) for p in found["packs"]] == [
        (f"sgtin:{PACKS[0].key}", LOT.lot, "dispensed", "corner"),
        *((f"sgtin:{p.key}", LOT.lot, "active", "corner") for p in PACKS[1:3]),
        *((f"sgtin:{p.key}", LOT.lot, "active", "medisupply") for p in PACKS[3:])]
    assert found["complete"] is True
    table = flat(ok(drugs(runner, world, "forward", "--gtin", RAW_B.gtin, "--lot",
                          RAW_B.lot)).stdout)
    assert all(p.serial in table for p in PACKS) and "dispensed" in table
    refused(drugs(runner, world, "forward", "--gtin", RAW_A.gtin, "--lot", "NOPE"),
            "not_found")


def test_export_gives_back_the_events_as_captured(runner: CliRunner, world: World,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "pack.json"
    result = ok(drugs(runner, world, "export", datamatrix_content(
        Scan(DRUG, PACKS[1].serial, LOT.lot, EXPIRY)), "--out", out))
    assert result.stdout == "" and f"wrote 7 events to {out}" in flat(result.stderr)
    captured = [world.events[name] for name in PACK_2_EVENTS]
    assert [e["eventHash"] for e in epcis.parse_document(out.read_bytes())] == [
        epcis.event_hash(e) for e in captured]
    exported = json.loads(out.read_text())
    assert exported["epcisBody"] == epcis.document(captured, created=CREATED)["epcisBody"]
    assert world.history(f"pack.{PACKS[1].key}") == hashes(*captured)

    # a lot, to stdout
    lot = json.loads(ok(drugs(runner, world, "export", "--gtin", RAW_A.gtin, "--lot",
                              RAW_A.lot)).stdout)
    assert [e["eventHash"] for e in epcis.parse_document(json.dumps(lot).encode())] == [
        epcis.event_hash(world.events[name]) for name in ("raw", "made")]
    refused(drugs(runner, world, "export"), "give a CODE, or --gtin and --lot")


# 6. supervision: recall, report, answer -------------------------------------------------------
def _patient_key(world: World) -> Path:
    """A patient's keystore: a registered key of no organisation."""
    path = world.folder / "patient.key"
    if not path.exists():
        keys = Keystore.generate("x25519")
        keys.save(path, PASSPHRASE, kdf_params=FAST_KDF)
        tx = Transaction.create(keys.signing, CHAIN_ID, "identity.patient.register", 1, {
            "enc_key": keys.encryption.public_bytes().hex(), "enc_suite": "x25519"})
        assert world.node.submit(tx).accepted
        world.node.produce_block()
        assert world.node.store.get_tx(tx.tx_id).code == "ok"
    return path


NOT_MEMBER = "not_member: only a member of an organisation records supply events"


def test_recall_refusals(runner: CliRunner, world: World) -> None:
    args = ("recall", "--gtin", DRUG, "--lot", LOT.lot, "--reason", "contamination")
    before = world.trace_state()
    for org in ("corner", "medisupply", "rival"):
        refused(drugs(runner, world, *args, "--as", org),
                "not_owner: only the drug maker or a regulator recalls a lot")
    refused(drugs(runner, world, *args, "--key", _patient_key(world)), NOT_MEMBER)
    refused(drugs(runner, world, "recall", "--gtin", DRUG, "--lot", RECALLED.lot, "--reason",
                  "again", "--as", "authority"), f"recalled: lot {RECALLED.lot} is recalled "
                                                 "already")
    refused(drugs(runner, world, "recall", "--gtin", DRUG, "--lot", "NOPE", "--reason", "x",
                  "--as", "acme"), f"unknown_lot: lot NOPE of {DRUG} is not on the ledger")
    refused(drugs(runner, world, "recall", "--gtin", BAD_DRUG, "--lot", LOT.lot, "--reason",
                  "x", "--as", "acme"), "malformed: AI (01): check digit should be 2, not 3")
    assert world.trace_state() == before


def test_report_then_answer_and_their_refusals(runner: CliRunner, world: World) -> None:
    code = FORMS["Digital Link"](PACKS[5], LOT.lot)
    refused(drugs(runner, world, "report", code, "--reason", "suspect_counterfeit", "--key",
                  _patient_key(world)), NOT_MEMBER)
    refused(drugs(runner, world, "report", code, "--reason", "gossip", "--as", "other"),
            "reason must be one of suspect_counterfeit, suspect_diverted")
    refused(drugs(runner, world, "report", f"(01){DRUG}(10){LOT.lot}", "--reason", "other",
                  "--as", "other"), "the code names no serialised pack (no AI (21))")
    reports = REPORTS.count(world.node.chain.view(), "all")
    made = ok(drugs(runner, world, "report", code, "--reason", "suspect_diverted", "--note",
                    "sold at a market stall", "--as", "other"))
    report_id = re.fullmatch(r"reported in block \d+: tx ([0-9a-f]{64})\n", made.stdout)[1]  # type: ignore[index]
    assert REPORTS.count(world.node.chain.view(), "all") == reports + 1
    report = world.get(f"trace/report/{report_id}")
    assert {k: report[k] for k in ("gtin", "serial", "reason", "note", "by", "maker",
                                   "answer")} == {
        "gtin": DRUG, "serial": PACKS[5].serial, "reason": "suspect_diverted",
        "note": "sold at a market stall", "by": "other", "maker": "acme", "answer": None}

    answer = ("answer", report_id, "--finding", "illegitimate", "--note", "not shipped there")
    for org in ("corner", "other", "rival"):  # the reporter is not the one to answer
        refused(drugs(runner, world, *answer, "--as", org),
                "not_owner: only the product's maker or a regulator answers")
    refused(drugs(runner, world, "answer", report_id, "--finding", "maybe", "--note", "x",
                  "--as", "acme"), "finding must be one of legitimate, illegitimate")
    refused(drugs(runner, world, "answer", "ab" * 32, "--finding", "legitimate", "--note",
                  "x", "--as", "acme"), f"unknown_report: no report {'ab' * 32}")
    said = ok(drugs(runner, world, *answer, "--as", "acme")).stdout
    assert said.startswith(f"answered report {report_id} in block ")
    assert world.get(f"trace/report/{report_id}")["answer"]["finding"] == "illegitimate"
    refused(drugs(runner, world, *answer, "--as", "authority"),
            f"answered: report {report_id} is answered already")
    # the regulator's view: the recall of the story, this report and its answer
    view = json.loads(ok(drugs(runner, world, "supervise", "--json")).stdout)
    assert {(r["gtin"], r["lot"], r["by"]) for r in view["recalls"]} >= {
        (DRUG, RECALLED.lot, "acme")}
    [mine] = [r for r in view["reports"] if r["id"] == report_id]
    assert (mine["answer"], mine["maker"], mine["flagged"]) == ("illegitimate", "acme", False)
    assert view["overdue"] == []


def test_a_recall_reaches_every_patient_of_a_large_lot(runner: CliRunner, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    w = _open(tmp_path, monkeypatch)  # a node of its own: the recall's block is the test's
    try:
        packs = [SGTIN(DRUG, f"D{i:04d}") for i in range(64)]
        for args in (("prefix", CP, "--as", "acme"),
                     ("party", gln("corner"), "--as", "corner"),
                     ("product", DRUG, "--name", "Cardiozol 10 mg", "--as", "acme")):
            ok(drugs(runner, w, *args))
        for name, org, events in (
                ("made", "acme", [commission(packs, lot="L2026D"), ship(packs, "corner")]),
                ("came", "corner", [receive(packs)])):
            ok(drugs(runner, w, "capture", write_document(tmp_path / f"{name}.json", events),
                     "--as", org))
        ok(drugs(runner, w, "capture", write_document(tmp_path / "dispensed.json", [
            end("dispensing", packs, "OBSERVE")]), "--commitment", COMMITMENT, "--as",
            "corner"))
        result = drugs(runner, w, "recall", "--gtin", DRUG, "--lot", "L2026D", "--reason",
                       "contamination", "--as", "acme")
        assert result.exit_code == 0, result.output
        notices = w.node.store.list_events(EventQuery(type="trace.recall_notice"))
        assert len(list(notices)) == 64
    finally:
        w.node.close()


# 7. the API -----------------------------------------------------------------------------------
def test_api_verify_answers_with_proven_entries(world: World) -> None:
    validators = world.node.chain.genesis.validators
    code = element_string(Scan(DRUG, RECALLED_PACKS[1].serial, RECALLED.lot, EXPIRY))
    with world.http() as http:
        answer = http.get("/v1/trace/verify", params={"code": code, "scanner": "acme"})
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["verdict"], found["reasons"], found["scanner"], found["scan"]) == (
        "SUSPECT", ["recalled"], "acme",
        {"gtin": DRUG, "serial": "R0002", "lot": RECALLED.lot, "expiry": EXPIRY})
    pack_ = verify_state_answer(found["pack"], validators, CHAIN_ID)
    lot = verify_state_answer(found["lot"], validators, CHAIN_ID)
    assert (pack_.key, lot.key) == (f"trace/pack/{RECALLED_PACKS[1].key}",
                                    f"trace/lot/{RECALLED.key}")
    assert pack_.header.height == lot.header.height == found["pack"]["height"]
    again = verdict(RECALLED.lot, EXPIRY, pack_.value, lot.value, "acme", pack_.header.time)
    assert (again.verdict, list(again.reasons)) == (found["verdict"], found["reasons"])

    with world.http() as http:
        never = http.get("/v1/trace/verify", params={"code": urn(NEVER)}).json()
    assert (never["verdict"], never["reasons"], never["lot"]) == (
        "SUSPECT", ["never_issued"], None)
    assert verify_state_answer(never["pack"], validators, CHAIN_ID).value is None


@pytest.mark.parametrize("code, says", [
    (f"(01){BAD_DRUG}(21)S0001", "code: AI (01): check digit should be 2, not 3"),
    (f"(01){DRUG}(21){'A' * 21}", "code: AI (21): 21 characters, at most 20"),
    (f"(01){DRUG}(3103)000189(21)S1", "code: unsupported AI (3103)"),
    (f"https://id.gs1.org/gtin/{DRUG}/ser/S1", "code: Digital Link: short name /gtin/"),
    (f"(01){DRUG}(10){LOT.lot}", "code names no serialised pack (no AI (21))"),
])
def test_api_verify_names_the_fault_of_a_bad_code(world: World, code: str, says: str) -> None:
    with world.http() as http:
        answer = http.get("/v1/trace/verify", params={"code": code})
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "malformed"
    assert answer.json()["message"].startswith(says), answer.json()


def test_api_history_is_a_provable_list(world: World) -> None:
    owner = f"pack.{PACKS[1].key}"
    with world.http() as http:
        answer = http.get("/v1/trace/history", params={
            "code": FORMS["Digital Link"](PACKS[1], LOT.lot), "prove": "true"}).json()
        page = http.get("/v1/trace/history", params={
            "code": urn(PACKS[1]), "start": 3, "limit": 2, "prove": "true"}).json()
        lot = http.get("/v1/trace/history", params={"gtin": RAW_A.gtin, "lot": RAW_A.lot,
                                                    "prove": "true"}).json()
    validators = world.node.chain.genesis.validators
    expected = hashes(*(world.events[name] for name in PACK_2_EVENTS))
    checked = verify_list_answer(answer, validators, CHAIN_ID, "trace", "history", owner)
    assert (checked.count, list(checked.items)) == (7, expected)
    assert list(verify_list_answer(page, validators, CHAIN_ID, "trace", "history", owner,
                                   3, 2).items) == expected[2:4]
    assert list(verify_list_answer(lot, validators, CHAIN_ID, "trace", "history",
                                   f"lot.{RAW_A.key}").items) == hashes(
        world.events["raw"], world.events["made"])
    # the page does not pass for another pack's history
    with pytest.raises(VerificationFailed, match="the answer is for owner"):
        verify_list_answer(answer, validators, CHAIN_ID, "trace", "history",
                           f"pack.{PACKS[2].key}")


# 8. help --------------------------------------------------------------------------------------
COMMANDS = ("prefix", "party", "product", "capture", "export", "verify", "back", "forward",
            "recall", "report", "answer", "supervise", "commitment", "notices")


def _trace_commands() -> list[str]:
    group = next(g.typer_instance for g in cli.app.registered_groups if g.name == "drugs")
    assert group is not None
    return sorted(c.name or "" for c in group.registered_commands)


def test_the_drugs_group_holds_the_promised_commands() -> None:
    assert set(COMMANDS) <= set(_trace_commands())


@pytest.mark.parametrize("command", _trace_commands())
def test_every_drugs_command_has_help_also_as_trace(runner: CliRunner, command: str) -> None:
    def body(group: str) -> str:
        result = runner.invoke(cli.app, [group, command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, result.output
        return result.output.split("Usage:", 1)[1].split("\n", 1)[1]  # past the usage line
    assert body("drugs") == body("trace")


def test_the_group_s_help_lists_its_commands(runner: CliRunner) -> None:
    for group in ("drugs", "trace"):
        shown = ok(runner.invoke(cli.app, [group, "--help"])).output
        assert all(command in shown for command in COMMANDS), shown
