"""The trace app's queries, served under ``/v1/trace`` (read-only).

=========================================  ==================================================
``GET /verify?code=&scanner=``             GENUINE or SUSPECT with every reason, and the
                                           proofs of the pack's entry (or of its absence)
                                           and of its lot's
``GET /pack?code=``                        a pack (any code that names one)
``GET /container?sscc=``                   a case or a pallet, and what it holds
``GET /lot?gtin=&lot=``                    a lot: inputs, custodian, recall
``GET /product?gtin=``                     a product
``GET /events/{hash}``                     a captured event (its CBV 2.0 hash, hex)
``GET /history?code=`` / ``?gtin=&lot=``   a pack's, container's or lot's events
                                           (provable list)
``GET /lot/packs?gtin=&lot=``              the packs of a lot (provable list)
``GET /lot/outputs?gtin=&lot=``            the lots made from a lot (provable list)
``GET /back?code=``                        backward trace: a pack to its raw lots, with
                                           every custodian and time
``GET /forward?gtin=&lot=``                forward trace: a lot to every lot and pack made
                                           from it, and where each pack is now
``GET /recalls``, ``GET /reports``         recalls and suspect-product reports (provable
                                           lists)
``GET /reports/{id}``                      a report and its answer
``GET /overdue?after=&limit=``             reports flagged unanswered past their DSCSA
                                           clock
=========================================  ==================================================

Codes are anything :func:`medledger.standards.gs1.parse_code` reads: DataMatrix content,
element strings, Digital Link URIs, EPC URNs. A code that does not parse is a 400 naming
the fault. The traces are the node's word assembled from provable parts: each entry and
list they are made of has its own route with ``?prove=true``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from medledger.apps.host import QueryError, QueryHost
from medledger.apps.queries import (
    ERROR,
    HEX32_PATTERN,
    MAX_PAGE,
    NOT_FOUND,
    Limit,
    Prove,
    after_param,
    entry,
    json_response,
    scan_page,
    start_param,
)
from medledger.apps.trace.events import deref, ref
from medledger.apps.trace.state import (
    ALL,
    HISTORY,
    LOT_PACKS,
    OUTPUTS,
    PREFIX,
    RECALLS,
    REPORTS,
    container_key,
    event_key,
    history_owner,
    lot_key,
    object_key,
    overdue_key,
    pack_key,
    product_key,
    report_key,
)
from medledger.apps.trace.verify import verdict
from medledger.standards.gs1 import LGTIN, SGTIN, SSCC, GS1Error, Scan, gtin14, parse_code

__all__ = ["router"]

ORG_PATTERN = "^[a-z0-9][a-z0-9-]{1,62}$"
MAX_TRACE = 1000  # objects one trace answer lists
Code = Annotated[str, Query(min_length=1, max_length=512,
                            description="DataMatrix content, element string, Digital Link "
                                        "or EPC URN")]
Gtin = Annotated[str, Query(pattern="^[0-9]{8,14}$", description="GTIN-8/12/13/14")]
Lot = Annotated[str, Query(min_length=1, max_length=20, description="lot or batch")]
Start = start_param("the first item, from 1")
PageLimit = Annotated[int, Query(ge=0, le=MAX_PAGE)]
OverdueAfter = after_param(HEX32_PATTERN)
OBJECT = {"type": "object"}
ANSWER = json_response({"$ref": "#/components/schemas/Answer"}, "the entry (null: absent, "
                                                                 "proven)")
BAD = {400: json_response(ERROR, "a code, GTIN, lot or SSCC that does not parse (the "
                                 "message names the fault)")}
LIST = {200: json_response({"$ref": "#/components/schemas/ListAnswer"},
                           "a page of the list, with its count"), **BAD}


def _scan(code: str) -> Scan:
    try:
        return parse_code(code)
    except GS1Error as e:
        raise QueryError(400, "malformed", f"code: {e}") from None


def _pack_of(code: str) -> tuple[Scan, SGTIN]:
    scan = _scan(code)
    if scan.serial is None:
        raise QueryError(400, "malformed", "code names no serialised pack (no AI (21))")
    return scan, SGTIN(scan.gtin, scan.serial)


def _lot(gtin: str, lot: str) -> LGTIN:
    try:
        return LGTIN(gtin14(gtin), lot)
    except GS1Error as e:
        raise QueryError(400, "malformed", str(e)) from None


def router(host: QueryHost) -> APIRouter:
    """The trace app's routes over ``host``."""
    api = APIRouter()
    _verify(api, host)
    _entries(api, host)
    _lists(api, host)
    _traces(api, host)
    return api


def _verify(api: APIRouter, host: QueryHost) -> None:
    @api.get("/verify", summary="Verify a scanned pack: GENUINE or SUSPECT",
             responses={200: json_response(OBJECT, "the verdict with the proven entries"), **BAD})
    async def verify(code: Code, scanner: Annotated[str | None, Query(
            pattern=ORG_PATTERN, description="the scanning organisation (custody is "
                                             "checked against it)")] = None) -> Any:
        """The verdict on the pack the code names, with every reason that applies, and the
        proofs it rests on: the pack's entry (or its absence) and its lot's, at one proven
        height. ``medledger drugs verify`` checks both proofs and computes the verdict
        again itself."""
        scan, pack = _pack_of(code)
        for _attempt in range(3):  # both answers at one height (a block may land between)
            pack_answer = host.answer(pack_key(pack), prove=True)
            lot_no = (pack_answer["value"] or {}).get("lot") or scan.lot or ""
            lot_answer = host.answer(lot_key(LGTIN(pack.gtin, lot_no)), prove=True) \
                if lot_no else None
            if lot_answer is None or lot_answer["height"] == pack_answer["height"]:
                break
        time = int(pack_answer["header"]["time"]) if "header" in pack_answer else 0
        found = verdict(scan.lot, scan.expiry, pack_answer["value"],
                        None if lot_answer is None else lot_answer["value"], scanner, time)
        return {**found.to_dict(), "code": code, "scanner": scanner,
                "scan": {"gtin": scan.gtin, "serial": scan.serial, "lot": scan.lot,
                         "expiry": scan.expiry},
                "pack": pack_answer, "lot": lot_answer}


def _entries(api: APIRouter, host: QueryHost) -> None:
    @api.get("/pack", summary="A pack", responses={200: ANSWER, **NOT_FOUND, **BAD})
    async def pack(code: Code, prove: Prove = False) -> Any:
        """Its GTIN, serial, lot, expiry, custodian, status, container and transit."""
        _, sgtin = _pack_of(code)
        return entry(host, pack_key(sgtin), prove, f"no pack {sgtin.gtin} {sgtin.serial}")

    @api.get("/container", summary="A case or a pallet", responses={200: ANSWER, **NOT_FOUND, **BAD})
    async def container(sscc: Annotated[str, Query(pattern="^[0-9]{18}$")],
                        prove: Prove = False) -> Any:
        """Its custodian, transit, the container it is in, and what it holds."""
        try:
            ident = SSCC(sscc)
        except GS1Error as e:
            raise QueryError(400, "malformed", str(e)) from None
        return entry(host, container_key(ident), prove, f"no container {sscc}")

    @api.get("/lot", summary="A lot", responses={200: ANSWER, **NOT_FOUND, **BAD})
    async def lot(gtin: Gtin, lot: Lot, prove: Prove = False) -> Any:
        """Raw or finished, expiry, custodian, maker, input lots, recall."""
        return entry(host, lot_key(_lot(gtin, lot)), prove, f"no lot {lot} of {gtin}")

    @api.get("/product", summary="A product", responses={200: ANSWER, **NOT_FOUND, **BAD})
    async def product(gtin: Gtin, prove: Prove = False) -> Any:
        """Name, NDC and the drug maker that registered it."""
        try:
            full = gtin14(gtin)
        except GS1Error as e:
            raise QueryError(400, "malformed", str(e)) from None
        return entry(host, product_key(full), prove, f"no product {gtin}")

    @api.get("/events/{event_hash}", summary="A captured event",
             responses={200: ANSWER, **NOT_FOUND, **BAD})
    async def event(event_hash: Annotated[str, Path(pattern=HEX32_PATTERN)],
                    prove: Prove = False) -> Any:
        """The EPCIS 2.0 event as captured, who captured it, in which transaction."""
        return entry(host, event_key(event_hash), prove, f"no event {event_hash}")

    @api.get("/reports/{report_id}", summary="A suspect-product report",
             responses={200: ANSWER, **NOT_FOUND, **BAD})
    async def report(report_id: Annotated[str, Path(pattern=HEX32_PATTERN)],
                     prove: Prove = False) -> Any:
        """What was reported, by whom, when the answer is due, the answer, the flag."""
        return entry(host, report_key(report_id), prove, f"no report {report_id}")

    @api.get("/overdue", summary="Reports unanswered past their DSCSA clock",
             responses={200: json_response(OBJECT, "a page of overdue reports")})
    async def overdue(after: OverdueAfter = None, limit: Limit = 20) -> Any:
        """What the regulator follows up, in id order; ``next`` is the next page's
        ``after``."""
        return scan_page(host, f"{PREFIX}overdue/", after, limit, "overdue", overdue_key)


def _lists(api: APIRouter, host: QueryHost) -> None:
    @api.get("/history", summary="A pack's, container's or lot's events", responses=LIST)
    async def history(code: Annotated[str | None, Query(max_length=512)] = None,
                      gtin: Annotated[str | None, Query(pattern="^[0-9]{8,14}$")] = None,
                      lot: Annotated[str | None, Query(max_length=20)] = None,
                      start: Start = 1, limit: PageLimit = MAX_PAGE,
                      prove: Prove = False) -> Any:
        """Event hashes in order: the provable list ``trace/history/<owner>`` of the pack
        or container a code names, or of a lot (``gtin`` and ``lot``)."""
        owner = history_owner(_named(code, gtin, lot))
        return host.list_answer(HISTORY, owner, start, limit, prove=prove)

    @api.get("/lot/packs", summary="The packs of a lot", responses=LIST)
    async def lot_packs(gtin: Gtin, lot: Lot, start: Start = 1, limit: PageLimit = MAX_PAGE,
                        prove: Prove = False) -> Any:
        return host.list_answer(LOT_PACKS, _lot(gtin, lot).key, start, limit, prove=prove)

    @api.get("/lot/outputs", summary="The lots made from a lot", responses=LIST)
    async def lot_outputs(gtin: Gtin, lot: Lot, start: Start = 1,
                          limit: PageLimit = MAX_PAGE, prove: Prove = False) -> Any:
        return host.list_answer(OUTPUTS, _lot(gtin, lot).key, start, limit, prove=prove)

    @api.get("/recalls", summary="Recalled lots", responses=LIST)
    async def recalls(start: Start = 1, limit: PageLimit = MAX_PAGE,
                      prove: Prove = False) -> Any:
        return host.list_answer(RECALLS, ALL, start, limit, prove=prove)

    @api.get("/reports", summary="Suspect-product reports", responses=LIST)
    async def reports(start: Start = 1, limit: PageLimit = MAX_PAGE,
                      prove: Prove = False) -> Any:
        return host.list_answer(REPORTS, ALL, start, limit, prove=prove)


def _named(code: str | None, gtin: str | None, lot: str | None) -> SGTIN | SSCC | LGTIN:
    if code is not None:
        scan = _scan(code)
        if scan.sscc is not None:
            return SSCC(scan.sscc)
        if scan.serial is not None:
            return SGTIN(scan.gtin, scan.serial)
        if scan.lot is not None:
            return LGTIN(scan.gtin, scan.lot)
    if gtin is not None and lot is not None:
        return _lot(gtin, lot)
    raise QueryError(400, "malformed", "give a code, or a gtin and a lot")


def _traces(api: APIRouter, host: QueryHost) -> None:
    @api.get("/back", summary="Backward trace of a pack",
             responses={200: json_response(OBJECT, "the pack's custody and its lots"),
                        **NOT_FOUND, **BAD})
    async def back(code: Code) -> Any:
        """The pack's events (who held it, when), its lot, and every lot the lot was made
        from, down to the raw materials, each with its events."""
        _, pack = _pack_of(code)
        view = host.view()
        entry_ = view.get(pack_key(pack))
        if entry_ is None:
            raise QueryError(404, "not_found", f"no pack {pack.gtin} {pack.serial}")
        return {"pack": {**entry_, "events": _events(view, pack)},
                "lots": _lots_back(view, LGTIN(pack.gtin, entry_["lot"]))}

    @api.get("/forward", summary="Forward trace of a lot",
             responses={200: json_response(OBJECT, "every lot and pack made from the lot"),
                        **NOT_FOUND, **BAD})
    async def forward(gtin: Gtin, lot: Lot) -> Any:
        """Every lot made from this one (at any depth) and every pack of each, with its
        status and custodian now."""
        view = host.view()
        start = _lot(gtin, lot)
        if view.get(lot_key(start)) is None:
            raise QueryError(404, "not_found", f"no lot {lot} of {gtin}")
        lots, packs = [], []
        queue, seen = [start], {start}
        while queue and len(packs) < MAX_TRACE:
            current = queue.pop(0)
            lots.append({**view.get(lot_key(current)), "key": ref(current)})
            for made in OUTPUTS.items(view, current.key, 1, MAX_TRACE):
                ident = deref(made)
                if ident not in seen:
                    seen.add(ident)
                    queue.append(ident)  # type: ignore[arg-type]
            for item in LOT_PACKS.items(view, current.key, 1, MAX_TRACE - len(packs)):
                packs.append({**view.get(object_key(deref(item))), "key": item})
        return {"lots": lots, "packs": packs, "complete": not queue and len(packs) < MAX_TRACE}


def _events(view: Any, ident: SGTIN | SSCC | LGTIN) -> list[dict[str, Any]]:
    owner = history_owner(ident)
    hashes = HISTORY.items(view, owner, 1, MAX_TRACE)
    out = []
    for hex_ in hashes:
        stored = view.get(event_key(hex_))
        out.append({"hash": stored["hash"], "step": stored["step"], "org": stored["org"],
                    "time": stored["time"], "height": stored["height"]})
    return out


def _lots_back(view: Any, lot: LGTIN) -> list[dict[str, Any]]:
    out, queue, seen = [], [lot], {lot}
    while queue and len(out) < MAX_TRACE:
        current = queue.pop(0)
        found = view.get(lot_key(current))
        if found is None:
            continue
        out.append({**found, "key": ref(current), "events": _events(view, current)})
        for source in found["inputs"]:
            ident = deref(source)
            if ident not in seen:
                seen.add(ident)
                queue.append(ident)  # type: ignore[arg-type]
    return out
