"""The trace app: medicine traceability after EPCIS 2.0 and CBV 2.0, from raw-material lots
to the patient, and the verification that catches counterfeit and diverted packs.

Transactions (every sender an active member key)::

    trace.prefix   {"prefix": 6-12 digits}          by an admin of a drug maker
    trace.party    {"gln": 13 digits}               by an admin: the organisation's party GLN
    trace.product  {"gtin", "name", "ndc"?}         by a member of the prefix's owner
    trace.capture  {"events": [<EPCIS 2.0 event>, ...] (1-64), "commitment"?: <64 hex>}
                   by a member; applied in order, all or none; the rules of
                   :mod:`medledger.apps.trace.capture`
    trace.recall   {"gtin", "lot", "reason"}        by the lot's maker or a regulator
    trace.report   {"gtin", "serial", "reason", "note"?}  by any member: a suspect product
    trace.answer   {"report", "finding", "note"}    by the product's maker or a regulator

State keys (each made by one function in ``trace.state``)::

    trace/prefix/<prefix>          {"org", "height"}
    trace/prefix_stem/<start>      the registered prefix that starts so
    trace/party/<gln>              {"org", "height"};  trace/org_party/<org>: the GLN
    trace/product/<gtin14>         {"gtin", "name", "ndc", "org", "height"}
    trace/pack/<sgtin key>         {"kind": "pack", "gtin", "serial", "lot", "expiry",
                                    "custodian", "status": "active" | "dispensed" |
                                    "decommissioned" | "destroyed", "parent": ref | null,
                                    "transit": null | {"from", "to"}, "commissioned",
                                    "dispensed": null | {"commitment", "height", "time"},
                                    "height", "time"}
    trace/container/<sscc>         {"kind": "container", "sscc", "custodian", "status",
                                    "parent", "children": [ref, ...], "transit", ...}
    trace/lot/<lgtin key>          {"kind": "raw" | "finished", "gtin", "lot", "expiry",
                                    "custodian", "maker", "inputs": [ref, ...], "recalled":
                                    null | {"by", "reason", "height", "time", "tx"}, "made",
                                    "height", "time"}
    trace/event/<hash hex>         {"hash", "event", "org", "sender", "step", "tx",
                                    "height", "time"}
    trace/report/<id>              a suspect-product report and its answer
    trace/overdue/<id>             a report flagged unanswered past its due time
    trace/history/<owner>/..       HISTORY   provable list: each object's event hashes
    trace/lot_packs/<lot key>/..   LOT_PACKS provable list: the packs of a lot
    trace/outputs/<lot key>/..     OUTPUTS   provable list: the lots made from a lot
    trace/recalls/all/..           RECALLS   provable list: recalled lots
    trace/reports/all/..           REPORTS   provable list: report ids

A ref is ``sgtin:<key>``, ``sscc:<key>`` or ``lgtin:<key>``; a history owner
``pack.<key>``, ``container.<key>`` or ``lot.<key>``.

Events: ``trace.prefix_registered``, ``trace.party_registered``,
``trace.product_registered``, ``trace.captured {event, org, step, objects}``,
``trace.recalled {gtin, lot, by}``, ``trace.recall_notice {commitment, gtin, lot}`` (one
per dispensed pack of the lot, from the end-block hook), ``trace.reported {report, gtin, reason, by, maker}``,
``trace.answered {report, finding, by, late}``, ``trace.report_overdue {report, maker,
due}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from medledger.apps import identity
from medledger.apps.base import App, BlockContext, DemoTx, Event, TxType
from medledger.apps.trace.capture import CaptureBody, capture_apply, capture_check
from medledger.apps.trace.master import (
    PartyBody,
    PrefixBody,
    ProductBody,
    party_apply,
    party_check,
    prefix_apply,
    prefix_check,
    product_apply,
    product_check,
)
from medledger.apps.trace.state import PREFIX
from medledger.apps.trace.supervision import (
    AnswerBody,
    RecallBody,
    ReportBody,
    answer_apply,
    answer_check,
    flag_overdue,
    recall_apply,
    recall_check,
    report_apply,
    report_check,
    send_notices,
)
from medledger.state import StateView

__all__ = ["CODES", "TraceApp"]

CODES: dict[str, int] = {
    "not_member": 403, "not_admin": 403, "not_maker": 403, "not_owner": 403,
    "not_custodian": 403, "not_addressee": 403, "not_dispenser": 403,
    "prefix_taken": 409, "party_taken": 409, "already_commissioned": 409,
    "lot_exists": 409, "already_packed": 409, "duplicate_event": 409, "answered": 409,
    "unknown_prefix": 404, "unknown_product": 404, "unknown_party": 404,
    "unknown_object": 404, "unknown_lot": 404, "unknown_report": 404,
    "lot_mismatch": 409, "recalled": 409, "in_transit": 409, "in_container": 409,
    "not_in_container": 409, "not_active": 409, "expired": 409, "cycle": 409,
    "unsupported_event": 422,
}
"""Each refusal code of the trace app, with its HTTP status."""


class TraceApp(App):
    """Medicines: GS1 master data, EPCIS events under custody rules, recalls, reports."""

    name: ClassVar[str] = "trace"
    prefixes: ClassVar[tuple[str, ...]] = (PREFIX,)
    codes: ClassVar[dict[str, int]] = CODES
    summary: ClassVar[str] = "Medicines: traceability, verification, recalls."
    shortcuts: ClassVar[dict[str, str]] = {"drugs": ""}

    def transactions(self) -> Sequence[TxType[Any]]:
        sender = identity.active_sender
        return (
            TxType("trace.prefix", PrefixBody, sender, prefix_check, prefix_apply,
                   summary="A drug maker registers its GS1 company prefix"),
            TxType("trace.party", PartyBody, sender, party_check, party_apply,
                   summary="An organisation registers its party GLN"),
            TxType("trace.product", ProductBody, sender, product_check, product_apply,
                   summary="A drug maker registers a product (GTIN, name, NDC)"),
            TxType("trace.capture", CaptureBody, sender, capture_check, capture_apply,
                   summary="A supply-chain event (EPCIS 2.0) under the custody rules"),
            TxType("trace.recall", RecallBody, sender, recall_check, recall_apply,
                   summary="The maker or a regulator recalls a lot"),
            TxType("trace.report", ReportBody, sender, report_check, report_apply,
                   summary="A member reports a suspect product"),
            TxType("trace.answer", AnswerBody, sender, answer_check, answer_apply,
                   summary="The maker or a regulator answers a suspect-product report"),
        )

    def end_block(self, view: StateView, ctx: BlockContext) -> Iterable[Event]:
        return (*flag_overdue(view, ctx), *send_notices(view, ctx))

    def demo(self, orgs: Sequence[str]) -> Sequence[DemoTx]:
        """A small supply chain from Acme Pharma to two hospitals (:mod:`.demo`)."""
        from medledger.apps.trace.demo import demo_transactions  # only when seeding

        return demo_transactions(orgs)
