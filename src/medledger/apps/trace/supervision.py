"""Supervision: recalls (``trace.recall``), suspect-product reports (``trace.report``) and
the drug maker's answer (``trace.answer``), with the end-block hook that flags a report
left unanswered past its DSCSA clock.

A recall is lot state that every later scan, shipment and dispensing sees. It reaches each
patient who received a pack of the lot as a ``trace.recall_notice`` event (from the
end-block hook :func:`send_notices`, in the recall's block or the next few) carrying the
commitment made at dispensing: the patient's client recognises its own commitments, and no
one else can tell whose they are (docs/medicines.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from medledger.apps.base import BlockContext, Event, Rejected
from medledger.apps.body import OneOf, Text
from medledger.apps.trace.events import deref
from medledger.apps.trace.state import (
    ALL,
    CURSOR_KEY,
    LOT_PACKS,
    RECALLS,
    REPORTS,
    RESPOND_MS,
    SUPERVISORS,
    lot_key,
    member_org,
    object_entry,
    overdue_key,
    owner_of_gtin,
    report_key,
)
from medledger.ledger import Transaction
from medledger.standards.gs1 import LGTIN, SGTIN, GS1Error, gtin14
from medledger.state import StateView

__all__ = ["REPORT_REASONS", "AnswerBody", "RecallBody", "ReportBody", "flag_overdue",
           "send_notices"]

REPORT_REASONS = ("suspect_counterfeit", "suspect_diverted", "suspect_tampered",
                  "unverified", "other")
FINDINGS = ("legitimate", "illegitimate")
MAX_FLAGS_PER_BLOCK = 100
MAX_NOTICE_SCAN = 1000
"""Packs of recalled lots the notice hook looks at in one block."""
NOTICE_CURSOR = "trace/notice_cursor"
"""Where the notice hook goes on: ``{"recall": seq in RECALLS, "pack": seq in LOT_PACKS}``."""


def _lot(gtin: str, lot: str) -> LGTIN:
    try:
        return LGTIN(gtin14(gtin), lot)
    except GS1Error as e:
        raise Rejected("malformed", f"{e}") from None


# trace.recall ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RecallBody:
    """A lot to recall and why."""

    gtin: Annotated[str, Text(14, 8)]
    lot: Annotated[str, Text(20)]
    reason: Annotated[str, Text(200)]


def _recallable(view: StateView, tx: Transaction, b: RecallBody) -> tuple[LGTIN, dict[str, Any],
                                                                          str]:
    org, role = member_org(view, tx.sender)
    lot = _lot(b.gtin, b.lot)
    entry = view.get(lot_key(lot))
    if entry is None:
        raise Rejected("unknown_lot", f"lot {b.lot} of {lot.gtin} is not on the ledger")
    if role not in SUPERVISORS and owner_of_gtin(view, lot.gtin) != org:
        raise Rejected("not_owner", "only the drug maker or a regulator recalls a lot")
    if entry["recalled"] is not None:
        raise Rejected("recalled", f"lot {b.lot} is recalled already")
    return lot, entry, org


def recall_check(view: StateView, tx: Transaction, b: RecallBody, ctx: BlockContext) -> None:
    _recallable(view, tx, b)


def recall_apply(view: StateView, tx: Transaction, b: RecallBody,
                 ctx: BlockContext) -> tuple[Event, ...]:
    """Mark the lot recalled; tell each patient who received a pack of it."""
    lot, entry, org = _recallable(view, tx, b)
    view.put(lot_key(lot), {**entry, "recalled": {
        "by": org, "reason": b.reason, "height": ctx.height, "time": ctx.time,
        "tx": tx.tx_id.hex()}})
    RECALLS.append(view, ALL, lot.key)
    return (Event("trace.recalled", (("gtin", lot.gtin), ("lot", lot.lot), ("by", org))),)


def send_notices(view: StateView, ctx: BlockContext) -> list[Event]:
    """The end-block hook that tells patients: for each recalled lot in recall order, a
    ``trace.recall_notice`` for each pack of it that was dispensed, carrying the
    commitment recorded then. It walks at most :data:`MAX_NOTICE_SCAN` packs a block, so
    a large lot's notices go out over a few blocks."""
    cursor = view.get(NOTICE_CURSOR) or {"recall": 1, "pack": 1}
    start, events, scanned = dict(cursor), [], 0
    total = RECALLS.count(view, ALL)
    while cursor["recall"] <= total and scanned < MAX_NOTICE_SCAN:
        lot = LGTIN.from_key(RECALLS.get(view, ALL, cursor["recall"]))
        count = LOT_PACKS.count(view, lot.key)
        while cursor["pack"] <= count and scanned < MAX_NOTICE_SCAN:
            pack = deref(LOT_PACKS.get(view, lot.key, cursor["pack"]))
            dispensed = (object_entry(view, pack) or {}).get("dispensed")
            if dispensed is not None:
                events.append(Event("trace.recall_notice", (
                    ("commitment", dispensed["commitment"]), ("gtin", lot.gtin),
                    ("lot", lot.lot))))
            cursor["pack"] += 1
            scanned += 1
        if cursor["pack"] > count:
            cursor = {"recall": cursor["recall"] + 1, "pack": 1}
    if cursor != start:
        view.put(NOTICE_CURSOR, cursor)
    return events


# trace.report, trace.answer -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReportBody:
    """A suspect product found in a scan: the pack as its label reads, and why."""

    gtin: Annotated[str, Text(14, 8)]
    serial: Annotated[str, Text(20)]
    reason: Annotated[str, OneOf(REPORT_REASONS)]
    note: Annotated[str, Text(500)] | None = None


def report_check(view: StateView, tx: Transaction, b: ReportBody, ctx: BlockContext) -> None:
    member_org(view, tx.sender)
    try:
        SGTIN(gtin14(b.gtin), b.serial)
    except GS1Error as e:
        raise Rejected("malformed", str(e)) from None


def report_apply(view: StateView, tx: Transaction, b: ReportBody,
                 ctx: BlockContext) -> tuple[Event, ...]:
    """Open the report; the maker must answer within :data:`RESPOND_MS` of block time."""
    org, _ = member_org(view, tx.sender)
    gtin = gtin14(b.gtin)
    report_id = tx.tx_id.hex()
    maker = owner_of_gtin(view, gtin)
    view.put(report_key(report_id), {
        "id": report_id, "gtin": gtin, "serial": b.serial, "reason": b.reason,
        "note": b.note, "by": org, "maker": maker, "time": ctx.time, "height": ctx.height,
        "due": ctx.time + RESPOND_MS, "answer": None, "flagged": None})
    REPORTS.append(view, ALL, report_id)
    return (Event("trace.reported", (("report", report_id), ("gtin", gtin),
                                     ("reason", b.reason), ("by", org),
                                     ("maker", maker or ""))),)


@dataclass(frozen=True, slots=True)
class AnswerBody:
    """The drug maker's (or a regulator's) finding on a report."""

    report: Annotated[str, Text(64, 64)]
    finding: Annotated[str, OneOf(FINDINGS)]
    note: Annotated[str, Text(500)]


def _answerable(view: StateView, tx: Transaction, b: AnswerBody) -> tuple[dict[str, Any], str]:
    org, role = member_org(view, tx.sender)
    report = view.get(report_key(b.report))
    if report is None:
        raise Rejected("unknown_report", f"no report {b.report}")
    if role not in SUPERVISORS and report["maker"] != org:
        raise Rejected("not_owner", "only the product's maker or a regulator answers")
    if report["answer"] is not None:
        raise Rejected("answered", f"report {b.report} is answered already")
    return report, org


def answer_check(view: StateView, tx: Transaction, b: AnswerBody, ctx: BlockContext) -> None:
    _answerable(view, tx, b)


def answer_apply(view: StateView, tx: Transaction, b: AnswerBody,
                 ctx: BlockContext) -> tuple[Event, ...]:
    report, org = _answerable(view, tx, b)
    late = ctx.time >= report["due"]
    view.put(report_key(b.report), {**report, "answer": {
        "by": org, "finding": b.finding, "note": b.note, "time": ctx.time,
        "height": ctx.height, "late": late}})
    view.delete(overdue_key(b.report))
    return (Event("trace.answered", (("report", b.report), ("finding", b.finding),
                                     ("by", org), ("late", str(late).lower()))),)


# the DSCSA clock ------------------------------------------------------------------------------
def flag_overdue(view: StateView, ctx: BlockContext) -> Iterable[Event]:
    """Flag each report whose answer is due by this block's time and has not come, in
    report order, at most :data:`MAX_FLAGS_PER_BLOCK` a block."""
    cursor = view.get(CURSOR_KEY) or 1
    count = REPORTS.count(view, ALL)
    events = []
    while cursor <= count and len(events) < MAX_FLAGS_PER_BLOCK:
        report_id = REPORTS.get(view, ALL, cursor)
        report = view.get(report_key(report_id))
        if report["due"] > ctx.time:
            break
        if report["answer"] is None:
            flagged = {"height": ctx.height, "time": ctx.time}
            view.put(report_key(report_id), {**report, "flagged": flagged})
            view.put(overdue_key(report_id), {
                "id": report_id, "gtin": report["gtin"], "by": report["by"],
                "maker": report["maker"], "due": report["due"], "flagged": flagged})
            events.append(Event("trace.report_overdue", (
                ("report", report_id), ("maker", report["maker"] or ""),
                ("due", str(report["due"])))))
        cursor += 1
    if cursor != (view.get(CURSOR_KEY) or 1):
        view.put(CURSOR_KEY, cursor)
    return events
