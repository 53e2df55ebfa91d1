"""Reads: ``records.access`` (on a grant or an emergency), ``records.emergency`` (break the
glass), ``records.justify``, and the end-block hook that flags emergencies left without a
justification."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from medledger.apps import identity
from medledger.apps.base import BlockContext, Event, Rejected
from medledger.apps.body import Items, OneOf, Text
from medledger.apps.records.content import Id, Pseudonym
from medledger.apps.records.state import (
    ACCESS_LOG,
    ACCESS_WINDOW_MS,
    BREAK_GLASS_REASONS,
    CURSOR_KEY,
    EMERGENCIES,
    EMERGENCY_QUEUE,
    EMERGENCY_ROLES,
    JUSTIFY_MS,
    basis_covers,
    emergency_entry,
    emergency_key,
    live_record,
    overdue_key,
    parse_basis,
    patient_of,
    window_key,
)
from medledger.ledger import Transaction
from medledger.state import StateView

__all__ = ["AccessBody", "EmergencyBody", "JustifyBody", "flag_overdue"]

_Records = Annotated[list[Id], Items(1, 32)]


def _distinct(records: Sequence[str]) -> None:
    if len(set(records)) != len(records):
        raise Rejected("malformed", "records name a record twice")


def _member(view: StateView, sender: bytes) -> dict[str, Any]:
    entry = identity.key_entry(view, sender)
    if entry is None or entry["kind"] == "patient":
        raise Rejected("role_not_allowed", "only a member of an organisation may do this")
    return entry


def _open(view: StateView, tx: Transaction, ctx: BlockContext, patient: str,
          records: Sequence[str], basis: str, org: str) -> tuple[Event, ...]:
    """Open the reader's windows, log the read on the patient's list, and say so."""
    reader = tx.sender.hex()
    window = {"basis": basis, "from": ctx.time, "until": ctx.time + ACCESS_WINDOW_MS}
    for record_id in records:
        view.put(window_key(record_id, reader), window)
    ACCESS_LOG.append(view, patient, {
        "basis": basis, "height": ctx.height, "org": org, "reader": reader,
        "records": list(records), "time": ctx.time, "tx": tx.tx_id.hex(),
    })
    return tuple(Event("records.accessed", (("patient", patient), ("reader", reader),
                                            ("record", r), ("basis", basis)))
                 for r in records)


# records.access -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AccessBody:
    """``records.access``: read records now, on a grant or an emergency."""

    records: _Records
    basis: Annotated[str, Text(80)]

    def validate(self) -> None:
        parse_basis(self.basis)
        _distinct(self.records)


def _covered(view: StateView, tx: Transaction, b: AccessBody, ctx: BlockContext
             ) -> tuple[str, str]:
    """(patient, org) when the basis covers every record for the sender at block time (a
    basis covers one patient's records: a grant its grantor's, an emergency its patient's)."""
    org = _member(view, tx.sender)["org"]
    records = [live_record(view, record_id) for record_id in b.records]
    for record in records:
        basis_covers(view, b.basis, tx.sender.hex(), record, ctx.time)
    return records[0]["patient"], org


def access_check(view: StateView, tx: Transaction, b: AccessBody, ctx: BlockContext) -> None:
    """The basis covers each record for the reader at the block's time."""
    _covered(view, tx, b, ctx)


def access_apply(view: StateView, tx: Transaction, b: AccessBody,
                 ctx: BlockContext) -> tuple[Event, ...]:
    """Open the read windows and append to the patient's access log."""
    patient, org = _covered(view, tx, b, ctx)
    return _open(view, tx, ctx, patient, b.records, b.basis, org)


# records.emergency ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EmergencyBody:
    """``records.emergency``: break the glass on a patient's records, with a reason."""

    patient: Pseudonym
    reason: Annotated[str, OneOf(BREAK_GLASS_REASONS)]
    records: _Records

    def validate(self) -> None:
        _distinct(self.records)


def _emergency_org(view: StateView, tx: Transaction, b: EmergencyBody) -> str:
    entry = _member(view, tx.sender)
    if entry["role"] not in EMERGENCY_ROLES:
        raise Rejected("role_not_allowed", "only a member with role "
                                           f"{' or '.join(EMERGENCY_ROLES)} may break the glass")
    patient_of(view, b.patient)
    for record_id in b.records:
        live_record(view, record_id, b.patient)
    return entry["org"]  # type: ignore[no-any-return]


def emergency_check(view: StateView, tx: Transaction, b: EmergencyBody,
                    ctx: BlockContext) -> None:
    """An emergency role, a registered patient, the patient's live records."""
    _emergency_org(view, tx, b)


def emergency_apply(view: StateView, tx: Transaction, b: EmergencyBody,
                    ctx: BlockContext) -> tuple[Event, ...]:
    """Record the emergency, queue its justification, open the reads and tell the patient."""
    org = _emergency_org(view, tx, b)
    emergency_id, reader = tx.tx_id.hex(), tx.sender.hex()
    view.put(emergency_key(emergency_id), {
        "due": ctx.time + JUSTIFY_MS, "flagged": None, "height": ctx.height,
        "id": emergency_id, "justification": None, "org": org, "patient": b.patient,
        "reader": reader, "reason": b.reason, "records": list(b.records), "time": ctx.time,
    })
    EMERGENCIES.append(view, EMERGENCY_QUEUE, emergency_id)
    told = Event("records.emergency", (
        ("emergency", emergency_id), ("patient", b.patient), ("reader", reader),
        ("org", org), ("reason", b.reason), ("due", str(ctx.time + JUSTIFY_MS))))
    return (told, *_open(view, tx, ctx, b.patient, b.records, f"emergency:{emergency_id}", org))


# records.justify ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class JustifyBody:
    """``records.justify``: the emergency's organisation explains it (a reference or a
    short statement, never clinical detail: every member reads it)."""

    emergency: Id
    text: Annotated[str, Text(500)]


def _justifiable(view: StateView, tx: Transaction, b: JustifyBody) -> dict[str, Any]:
    emergency = emergency_entry(view, b.emergency)
    if emergency is None:
        raise Rejected("no_emergency", f"no emergency {b.emergency}")
    if _member(view, tx.sender)["org"] != emergency["org"]:
        raise Rejected("wrong_org", "only the organisation that broke the glass justifies it")
    if emergency["justification"] is not None:
        raise Rejected("already_justified", f"emergency {b.emergency} is already justified")
    return emergency


def justify_check(view: StateView, tx: Transaction, b: JustifyBody, ctx: BlockContext) -> None:
    """A member of the emergency's organisation, once."""
    _justifiable(view, tx, b)


def justify_apply(view: StateView, tx: Transaction, b: JustifyBody,
                  ctx: BlockContext) -> tuple[Event, ...]:
    """Write the justification; a late one takes the emergency off the overdue list."""
    emergency = _justifiable(view, tx, b)
    late = emergency["flagged"] is not None
    view.put(emergency_key(b.emergency), {**emergency, "justification": {
        "by": tx.sender.hex(), "height": ctx.height, "text": b.text, "time": ctx.time}})
    if late:
        view.delete(overdue_key(b.emergency))
    return (Event("records.justified", (
        ("emergency", b.emergency), ("patient", emergency["patient"]),
        ("org", emergency["org"]), ("late", "true" if late else "false"))),)


# the end-block hook ---------------------------------------------------------------------------
def flag_overdue(view: StateView, ctx: BlockContext) -> tuple[Event, ...]:
    """Flag each emergency whose justification fell due at or before the block's time.

    Emergencies are queued in block order and fall due a fixed time after their block, so
    the queue is in due order: the hook reads from its cursor up to the first one not yet
    due, and writes only when it moves."""
    start = cursor = view.get(CURSOR_KEY) or 1
    count = EMERGENCIES.count(view, EMERGENCY_QUEUE)
    events: list[Event] = []
    while cursor <= count:
        emergency_id = EMERGENCIES.get(view, EMERGENCY_QUEUE, cursor)
        emergency = emergency_entry(view, emergency_id)
        if emergency is None:
            raise LookupError(f"emergency {emergency_id} is queued but not in state")
        if emergency["due"] > ctx.time:
            break
        if emergency["justification"] is None:
            events.append(_flag(view, emergency, ctx))
        cursor += 1
    if cursor != start:
        view.put(CURSOR_KEY, cursor)
    return tuple(events)


def _flag(view: StateView, emergency: dict[str, Any], ctx: BlockContext) -> Event:
    flagged = {"height": ctx.height, "time": ctx.time}
    view.put(emergency_key(emergency["id"]), {**emergency, "flagged": flagged})
    view.put(overdue_key(emergency["id"]), {
        "due": emergency["due"], "flagged": flagged, "id": emergency["id"],
        "org": emergency["org"], "patient": emergency["patient"],
        "reader": emergency["reader"]})
    return Event("records.unjustified_emergency", (
        ("emergency", emergency["id"]), ("patient", emergency["patient"]),
        ("org", emergency["org"]), ("due", str(emergency["due"]))))
