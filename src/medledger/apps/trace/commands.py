"""``medledger drugs ...`` (also ``medledger trace ...``): medicine traceability on the
command line.

Master data (``prefix``, ``party``, ``product``), EPCIS 2.0 capture and export
(``capture``, ``export``), verification with proofs checked here (``verify``), traces
(``back``, ``forward``) and supervision (``recall``, ``report``, ``answer``). Who signs is
``--key`` (a key name in ``--home``'s keys folder or a keystore file), or ``--as ORG`` for
an organisation's admin key kept in the home.
"""

# No `from __future__ import annotations`: Typer reads the commands' annotations as objects.

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from medledger.apps.base import Rejected
from medledger.apps.body import decode_body
from medledger.apps.host import CommandHost
from medledger.apps.options import (
    NODE_HOME,
    ApiOpt,
    GenesisOpt,
    JsonOpt,
    ReadHomeOpt,
    committed,
    write_home_option,
)
from medledger.apps.trace import privacy
from medledger.apps.trace.capture import MAX_EVENTS, CaptureBody
from medledger.apps.trace.events import deref
from medledger.apps.trace.master import PartyBody, PrefixBody, ProductBody
from medledger.apps.trace.state import lot_key, pack_key
from medledger.apps.trace.supervision import REPORT_REASONS, AnswerBody, RecallBody, ReportBody
from medledger.apps.trace.verify import GENUINE, verdict
from medledger.standards import epcis
from medledger.standards.gs1 import LGTIN, SGTIN, GS1Error, Scan, parse_code

__all__ = ["SUSPECT_EXIT", "commands"]

SUSPECT_EXIT = 3
"""``drugs verify``'s exit status for a SUSPECT pack (0: GENUINE, 2: a proof failed)."""

HomeOpt = write_home_option("A node's home directory: its config names the API (unless "
                            "--api), its keys/ folder holds --key or --as by name.")
KeyOpt = Annotated[str | None, typer.Option(
    "--key", help="Who signs: a key name in --home's keys/ folder, or a keystore file.")]
AsOpt = Annotated[str | None, typer.Option(
    "--as", help="Sign as this organisation's admin key kept in --home (same as --key ORG).")]
CodeArg = Annotated[str, typer.Argument(
    help="The pack's code: GS1 DataMatrix content, an element string like "
         "(01)...(21)..., a GS1 Digital Link URI, or an EPC URN.")]
GtinOpt = Annotated[str, typer.Option("--gtin", help="The product's GTIN.")]
LotOpt = Annotated[str, typer.Option("--lot", help="The lot (batch) number.")]


def commands(host: CommandHost) -> typer.Typer:
    group = typer.Typer(no_args_is_help=True, help=__doc__.split("\n\n")[0])
    _master_commands(group, host)
    _capture_commands(group, host)
    _read_commands(group, host)
    _supervision_commands(group, host)
    _patient_commands(group, host)
    _regulator_commands(group, host)
    return group


def _checked(host: CommandHost, cls: type, body: dict[str, Any]) -> dict[str, Any]:
    try:
        decode_body(cls, body)
    except Rejected as e:
        host.fail(e.message)
    return body


def _signer(host: CommandHost, home: Path, key: str | None, as_: str | None) -> Any:
    return host.keys(home, key or as_).signing


def _scan(host: CommandHost, code: str) -> Scan:
    try:
        return parse_code(code)
    except GS1Error as e:
        host.fail(f"cannot read the code: {e}")


def _master_commands(group: typer.Typer, host: CommandHost) -> None:
    @group.command("prefix")
    def prefix(prefix: Annotated[str, typer.Argument(help="The GS1 company prefix, 6-12 "
                                                          "digits.")],
               key: KeyOpt = None, as_: AsOpt = None, home: HomeOpt = NODE_HOME,
               api: ApiOpt = None) -> None:
        """Register the GS1 company prefix your organisation (a drug maker) was allocated,
        signed by one of its admins: only it may then commission GTINs carrying it."""
        body = _checked(host, PrefixBody, {"prefix": prefix})
        committed(f"registered prefix {prefix}", host.submit(
            home, api, _signer(host, home, key, as_), "trace.prefix", body))

    @group.command("party")
    def party(gln: Annotated[str, typer.Argument(help="Your organisation's party GLN, 13 "
                                                      "digits.")],
              key: KeyOpt = None, as_: AsOpt = None, home: HomeOpt = NODE_HOME,
              api: ApiOpt = None) -> None:
        """Register the party GLN events name your organisation by (as a shipment's
        destination), signed by one of its admins."""
        body = _checked(host, PartyBody, {"gln": gln})
        committed(f"registered party {gln}", host.submit(
            home, api, _signer(host, home, key, as_), "trace.party", body))

    @group.command("product")
    def product(gtin: Annotated[str, typer.Argument(help="The product's GTIN.")],
                name: Annotated[str, typer.Option("--name", help="Its name.")],
                ndc: Annotated[str | None, typer.Option("--ndc", help="Its NDC, if it has "
                                                                      "one.")] = None,
                key: KeyOpt = None, as_: AsOpt = None, home: HomeOpt = NODE_HOME,
                api: ApiOpt = None) -> None:
        """Register a product of your organisation under a GTIN carrying its prefix."""
        body = {"gtin": gtin, "name": name} | ({"ndc": ndc} if ndc else {})
        _checked(host, ProductBody, body)
        committed(f"registered product {gtin}", host.submit(
            home, api, _signer(host, home, key, as_), "trace.product", body))


def _capture_commands(group: typer.Typer, host: CommandHost) -> None:
    @group.command("capture")
    def capture(file: Annotated[Path, typer.Argument(help="An EPCIS 2.0 JSON-LD document "
                                                          "(or one event); - for stdin.")],
                commitment: Annotated[str | None, typer.Option(
                    "--commitment", help="For a dispensing: the patient's commitment (64 "
                                         "hex) from their own device.")] = None,
                key: KeyOpt = None, as_: AsOpt = None, home: HomeOpt = NODE_HOME,
                api: ApiOpt = None) -> None:
        """Capture the document's events, in order. Every event is checked first, and an
        invalid one refuses the whole document, naming it, before anything is sent; up to
        64 events go in one transaction, all or none."""
        data = sys.stdin.buffer.read() if str(file) == "-" else _read(host, file)
        try:
            events = epcis.parse_document(data)
        except ValueError as e:
            host.fail(f"{file}: {e} (nothing was captured)")
        if not events:
            host.fail(f"{file} holds no events (nothing was captured)")
        signer = _signer(host, home, key, as_)
        chunks = [events[i:i + MAX_EVENTS] for i in range(0, len(events), MAX_EVENTS)]
        for n, chunk in enumerate(chunks, 1):
            if len(chunks) > 1:
                host.progress(f"[{n}/{len(chunks)}] capturing events "
                              f"{(n - 1) * MAX_EVENTS + 1}-{(n - 1) * MAX_EVENTS + len(chunk)}"
                              f" of {len(events)}")
            body = {"events": chunk} | ({"commitment": commitment} if commitment else {})
            _checked(host, CaptureBody, body)
            done = host.submit(home, api, signer, "trace.capture", body)
        committed(f"captured {len(events)} events", done)

    @group.command("export")
    def export(code: Annotated[str | None, typer.Argument(
                   help="A pack's or container's code (or give --gtin and --lot).")] = None,
               gtin: Annotated[str | None, typer.Option(
                   "--gtin", help="A lot's GTIN (with --lot).")] = None,
               lot: Annotated[str | None, typer.Option(
                   "--lot", help="The lot number (with --gtin).")] = None,
               out: Annotated[Path | None, typer.Option("--out", help="Write here instead "
                                                                     "of stdout.")] = None,
               home: ReadHomeOpt = None, api: ApiOpt = None) -> None:
        """Export a pack's, container's or lot's history as an EPCIS 2.0 document."""
        params = {"code": code} if code else {"gtin": gtin, "lot": lot}
        if not code and not (gtin and lot):
            host.fail("give a CODE, or --gtin and --lot")
        with host.client(home, api) as client:
            hashes = _all_items(client, "/v1/trace/history", params)
            events = [client.get(f"/v1/trace/events/{h}")["value"]["event"] for h in hashes]
            created = _iso(client.status().get("latest_block_time") or 0)
        document = json.dumps(epcis.document(events, created=created), indent=2) + "\n"
        if out is None:
            sys.stdout.write(document)
        else:
            out.write_text(document)
            host.progress(f"wrote {len(events)} events to {out}")


def _read(host: CommandHost, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        host.fail(f"cannot read {path}: {e.strerror}")


def _all_items(client: Any, path: str, params: dict[str, Any]) -> list[Any]:
    items, start = [], 1
    while True:
        page = client.get(path, {**params, "start": start, "limit": 100})
        items += [item["value"] for item in page["items"]]
        if len(page["items"]) < 100:
            return items
        start += 100


def _iso(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def _read_commands(group: typer.Typer, host: CommandHost) -> None:
    @group.command("verify")
    def verify(code: CodeArg,
               scanner: Annotated[str | None, typer.Option(
                   "--scanner", help="Your organisation: custody is checked against it.")]
               = None,
               home: ReadHomeOpt = None, genesis: GenesisOpt = None, api: ApiOpt = None,
               as_json: JsonOpt = False) -> None:
        """GENUINE or SUSPECT, with every reason. The node's answer carries the proofs of
        the pack's entry (or of its absence: never issued) and of its lot's; both are
        checked here against the trusted validators, and the verdict is computed again
        here from the proven entries. Exit 0 GENUINE, 3 SUSPECT, 2 a proof failed."""
        scan = _scan(host, code)
        if scan.serial is None:
            host.fail("the code names no serialised pack (no AI (21))")
        pack = SGTIN(scan.gtin, scan.serial)
        with host.client(home, api) as client:
            answer = client.get("/v1/trace/verify", {"code": code, "scanner": scanner}
                                if scanner else {"code": code})
            pack_value = host.verify(answer["pack"], home, genesis, client, key=pack_key(pack))
            lot_value = None
            if pack_value is not None:
                _same_height(host, answer)
                lot_value = host.verify(answer["lot"], home, genesis, client,
                                        key=lot_key(LGTIN(pack.gtin, pack_value["lot"])))
            elif answer["lot"] is not None and scan.lot is not None:  # the label's lot
                lot_value = host.verify(answer["lot"], home, genesis, client,
                                        key=lot_key(LGTIN(pack.gtin, scan.lot)))
        time = int(answer["pack"]["header"]["time"])
        mine = verdict(scan.lot, scan.expiry, pack_value, lot_value, scanner, time)
        if (mine.verdict, list(mine.reasons)) != (answer["verdict"], answer["reasons"]):
            host.progress(f"the node said {answer['verdict']} {answer['reasons']}; the proven "
                          f"entries say {mine.verdict} {list(mine.reasons)}")
        result = {**mine.to_dict(), "code": code, "gtin": pack.gtin, "serial": pack.serial,
                  "custodian": (pack_value or {}).get("custodian")}
        host.show(result, as_json=as_json, title="verdict")
        if mine.verdict != GENUINE:
            raise typer.Exit(SUSPECT_EXIT)

    @group.command("back")
    def back(code: CodeArg, home: ReadHomeOpt = None, api: ApiOpt = None,
             as_json: JsonOpt = False) -> None:
        """Trace a pack back: its events (who held it, when), its lot, and every lot it
        was made from, down to the raw materials."""
        with host.client(home, api) as client:
            found = client.get("/v1/trace/back", {"code": code})
        if as_json:
            host.show(found, as_json=True)
            return
        host.show([{"step": e["step"], "org": e["org"], "time": e["time"]}
                   for e in found["pack"]["events"]], as_json=False, title="pack")
        host.show([{"lot": lot["lot"], "gtin": lot["gtin"], "kind": lot["kind"],
                    "custodian": lot["custodian"], "recalled": bool(lot["recalled"])}
                   for lot in found["lots"]], as_json=False, title="lots")

    @group.command("forward")
    def forward(gtin: GtinOpt, lot: LotOpt, home: ReadHomeOpt = None, api: ApiOpt = None,
                as_json: JsonOpt = False) -> None:
        """Trace a lot forward: every lot made from it and every pack of each, with where
        each pack is now."""
        with host.client(home, api) as client:
            found = client.get("/v1/trace/forward", {"gtin": gtin, "lot": lot})
        if as_json:
            host.show(found, as_json=True)
            return
        host.show([{"gtin": p["gtin"], "serial": p["serial"], "lot": p["lot"],
                    "status": p["status"], "custodian": p["custodian"]}
                   for p in found["packs"]], as_json=False, title="packs")


def _same_height(host: CommandHost, answer: dict[str, Any]) -> None:
    """The lot's proof must come with the pack's, of the same height: a node that left it
    out, or sent one from before a recall, would hide the recall (exit 2)."""
    lot = answer.get("lot")
    pack_at, lot_at = _header_height(answer["pack"]), _header_height(lot)
    if lot is None or lot_at != pack_at:
        why = "left out the proof of the pack's lot" if lot is None else (
            f"proved the lot at height {lot_at} and the pack at {pack_at}")
        host.progress(f"NOT VERIFIED: the node {why}: a recall could be hidden")
        raise typer.Exit(2)


def _header_height(answer: dict[str, Any] | None) -> Any:
    """The height of the header an answer is proven under (what the proof check binds),
    not the answer's own ``height`` field, which nothing checks."""
    return ((answer or {}).get("header") or {}).get("height")


def _supervision_commands(group: typer.Typer, host: CommandHost) -> None:
    @group.command("recall")
    def recall(gtin: GtinOpt, lot: LotOpt,
               reason: Annotated[str, typer.Option("--reason", help="Why.")],
               key: KeyOpt = None, as_: AsOpt = None, home: HomeOpt = NODE_HOME,
               api: ApiOpt = None) -> None:
        """Recall a lot (its maker or a regulator): every later scan says SUSPECT, no pack
        of it ships or is dispensed, and each patient who received one is told."""
        body = _checked(host, RecallBody, {"gtin": gtin, "lot": lot, "reason": reason})
        committed(f"recalled lot {lot} of {gtin}", host.submit(
            home, api, _signer(host, home, key, as_), "trace.recall", body))

    @group.command("report")
    def report(code: CodeArg,
               reason: Annotated[str, typer.Option(
                   "--reason", help=f"One of {', '.join(REPORT_REASONS)}.")],
               note: Annotated[str | None, typer.Option(
                   "--note", help="What was seen (at most 500 characters; no patient "
                                  "details).")] = None,
               key: KeyOpt = None, as_: AsOpt = None, home: HomeOpt = NODE_HOME,
               api: ApiOpt = None) -> None:
        """Report a suspect product: its maker must answer within 24 hours of block time,
        or the report is flagged to the regulator."""
        scan = _scan(host, code)
        if scan.serial is None:
            host.fail("the code names no serialised pack (no AI (21))")
        body = {"gtin": scan.gtin, "serial": scan.serial, "reason": reason} | (
            {"note": note} if note else {})
        _checked(host, ReportBody, body)
        committed("reported", host.submit(home, api, _signer(host, home, key, as_),
                                          "trace.report", body))

    @group.command("answer")
    def answer(report_id: Annotated[str, typer.Argument(help="The report's id.")],
               finding: Annotated[str, typer.Option("--finding",
                                                    help="legitimate or illegitimate")],
               note: Annotated[str, typer.Option(
                   "--note", help="What the investigation found (at most 500 characters).")],
               key: KeyOpt = None, as_: AsOpt = None, home: HomeOpt = NODE_HOME,
               api: ApiOpt = None) -> None:
        """Answer a suspect-product report (the product's maker or a regulator)."""
        body = _checked(host, AnswerBody, {"report": report_id, "finding": finding,
                                           "note": note})
        committed(f"answered report {report_id}", host.submit(
            home, api, _signer(host, home, key, as_), "trace.answer", body))


def _patient_commands(group: typer.Typer, host: CommandHost) -> None:
    @group.command("commitment")
    def commitment(code: CodeArg, key: Annotated[str, typer.Option(
                       "--key", help="The patient's keystore file.")],
                   home: ReadHomeOpt = None, api: ApiOpt = None) -> None:
        """On the patient's device: the commitment to give the pharmacy that dispenses
        this pack (its `drugs capture --commitment`). Only this keystore can later
        recognise it in a recall notice; it tells no one else who you are."""
        scan = _scan(host, code)
        if scan.serial is None:
            host.fail("the code names no serialised pack (no AI (21))")
        keys = host.keystore(Path(key))
        with host.client(home, api) as client:
            pseudonym = _pseudonym(host, client, keys)
        secret = privacy.patient_secret(keys.signing.seed)
        print(privacy.commitment(secret, pseudonym, SGTIN(scan.gtin, scan.serial)))

    @group.command("notices")
    def notices(key: Annotated[str, typer.Option(
                    "--key", help="The patient's keystore file.")],
                home: ReadHomeOpt = None, api: ApiOpt = None,
                as_json: JsonOpt = False) -> None:
        """On the patient's device: the recalls that concern you. Every recall notice
        carries the commitment a pharmacy recorded when it dispensed a pack of the lot;
        this recomputes, here, your commitment for every pack of each recalled lot and
        lists the packs that were yours."""
        keys = host.keystore(Path(key))
        secret = privacy.patient_secret(keys.signing.seed)
        found = []
        with host.client(home, api) as client:
            pseudonym = _pseudonym(host, client, keys)
            by_lot: dict[tuple[str, str], set[str]] = {}
            for attrs in _events(client, "trace.recall_notice"):
                by_lot.setdefault((attrs["gtin"], attrs["lot"]), set()).add(
                    attrs["commitment"])
            for (gtin, lot), commitments in sorted(by_lot.items()):
                packs = _all_items(client, "/v1/trace/lot/packs", {"gtin": gtin, "lot": lot})
                recall = client.get("/v1/trace/lot", {"gtin": gtin, "lot": lot})["value"]
                for ref_ in packs:
                    pack = deref(ref_)
                    if privacy.commitment(secret, pseudonym, pack) in commitments:
                        found.append({"gtin": gtin, "serial": pack.serial, "lot": lot,
                                      "reason": recall["recalled"]["reason"],
                                      "time": recall["recalled"]["time"]})
        host.show(found, as_json=as_json, title="recalled packs you received")
        if not found and not as_json:
            host.progress("no recall concerns the packs dispensed to you")


def _pseudonym(host: CommandHost, client: Any, keys: Any) -> str:
    entry = client.get(f"/v1/identity/keys/{keys.signing.public_key.hex()}",
                       {"prove": True})["value"]
    if entry is None or entry.get("pseudonym") is None:
        host.fail("--key is not a registered patient's keystore")
    return str(entry["pseudonym"])


def _events(client: Any, type_: str) -> list[dict[str, str]]:
    out, after = [], 0
    for _page in range(10_000):  # bounded: 100 events a page
        page = client.get("/v1/events", {"type": type_, "after": after, "limit": 100})
        out += [e["attrs"] for e in page["events"]]
        if not page.get("next"):
            break
        after = page["next"]
    return out


def _regulator_commands(group: typer.Typer, host: CommandHost) -> None:
    @group.command("supervise")
    def supervise(home: ReadHomeOpt = None, api: ApiOpt = None,
                  as_json: JsonOpt = False) -> None:
        """The regulator's view: every recall, every suspect-product report with its
        answer (or none yet), and the reports flagged unanswered past their 24 hours."""
        with host.client(home, api) as client:
            recalls = [client.get("/v1/trace/lot", dict(zip(
                ("gtin", "lot"), _lot_of_key(key), strict=True)))["value"]
                for key in _all_items(client, "/v1/trace/recalls", {})]
            reports = [client.get(f"/v1/trace/reports/{rid}")["value"]
                       for rid in _all_items(client, "/v1/trace/reports", {})]
            overdue = client.get("/v1/trace/overdue", {"limit": 100})["overdue"]
        view = {
            "recalls": [{"gtin": r["gtin"], "lot": r["lot"], "by": r["recalled"]["by"],
                         "reason": r["recalled"]["reason"], "time": r["recalled"]["time"]}
                        for r in recalls],
            "reports": [{"id": r["id"], "gtin": r["gtin"], "serial": r["serial"],
                         "reason": r["reason"], "by": r["by"], "maker": r["maker"],
                         "due": r["due"], "answer": (r["answer"] or {}).get("finding"),
                         "flagged": r["flagged"] is not None} for r in reports],
            "overdue": [{"id": o["id"], "gtin": o["gtin"], "maker": o["maker"],
                         "due": o["due"]} for o in overdue]}
        if as_json:
            host.show(view, as_json=True)
            return
        for name, rows in view.items():
            host.show(rows, as_json=False, title=name)


def _lot_of_key(key: str) -> tuple[str, str]:
    lot = LGTIN.from_key(key)
    return lot.gtin, lot.lot
