"""Consent: ``records.grant``, ``records.revoke``, ``records.delegate`` and
``records.undelegate``, each signed by the patient (or, for grants and revocations, by a
delegate the patient named)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from medledger.apps import identity
from medledger.apps.base import BlockContext, Event, Rejected
from medledger.apps.body import MAX_SAFE_INT, Items, OneOf, Range, Text
from medledger.apps.records.content import Id, Key, Pseudonym, Wrapped
from medledger.apps.records.state import (
    CATEGORIES,
    GRANTS,
    delegate_entry,
    delegate_key,
    grant_entry,
    grant_key,
    grantee_index_key,
    grantee_matches,
    live_record,
    patient_of,
    reader_key,
)
from medledger.ledger import Transaction
from medledger.state import StateView

__all__ = ["DelegateBody", "GrantBody", "GrantKey", "RevokeBody", "UndelegateBody",
           "require_patient", "require_patient_or_delegate"]

_GRANTEE = re.compile(r"[0-9a-f]{64}|org:[a-z0-9][a-z0-9-]{1,62}")


def require_patient(view: StateView, tx: Transaction, pseudonym: str) -> None:
    """Refuse ``not_patient`` unless the patient signed ``tx``."""
    if patient_of(view, pseudonym)["key"] != tx.sender.hex():
        raise Rejected("not_patient", "only the patient may do this")


def require_patient_or_delegate(view: StateView, tx: Transaction, pseudonym: str) -> str:
    """Refuse ``not_delegate`` unless the patient or a delegate signed ``tx``; return
    ``patient`` or ``delegate``."""
    if patient_of(view, pseudonym)["key"] == tx.sender.hex():
        return "patient"
    if delegate_entry(view, pseudonym, tx.sender.hex()) is None:
        raise Rejected("not_delegate", "only the patient or a delegate the patient named may "
                                       "do this")
    return "delegate"


# records.grant --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GrantKey:
    """A covered record's content key wrapped for the grantee (or one of its members)."""

    record: Id
    reader: Key
    wrapped: Wrapped


@dataclass(frozen=True, slots=True)
class GrantBody:
    """``records.grant``: who may read which categories, why, and until when."""

    patient: Pseudonym
    grantee: Annotated[str, Text(68)]
    categories: Annotated[list[Annotated[str, OneOf(CATEGORIES)]], Items(1, len(CATEGORIES))]
    purpose: Annotated[str, Text(64)]
    expires: Annotated[int, Range(1, MAX_SAFE_INT)]
    keys: Annotated[list[GrantKey], Items(0, 64)]

    def validate(self) -> None:
        if not _GRANTEE.fullmatch(self.grantee):
            raise Rejected("malformed", "grantee must be a member key (64 hex) or "
                                        "org:<organisation id>")
        if len(set(self.categories)) != len(self.categories):
            raise Rejected("malformed", "categories name a category twice")
        pairs = [(k.record, k.reader) for k in self.keys]
        if len(set(pairs)) != len(pairs):
            raise Rejected("malformed", "keys name a (record, reader) twice")


def _check_grantee(view: StateView, grantee: str) -> None:
    if grantee.startswith("org:"):
        org = identity.org_entry(view, grantee.removeprefix("org:"))
        if org is None or org["status"] != "active":
            raise Rejected("unknown_grantee", f"no active organisation {grantee[4:]}")
        return
    entry = identity.key_entry(view, grantee)
    if entry is None or entry["kind"] == "patient" or entry["status"] != "active":
        raise Rejected("unknown_grantee", f"{grantee} is not an active member key")


def grant_check(view: StateView, tx: Transaction, b: GrantBody, ctx: BlockContext) -> None:
    """The patient or a delegate grants an existing member or organisation, for the future,
    with keys only for the patient's live records in the granted categories."""
    require_patient_or_delegate(view, tx, b.patient)
    _check_grantee(view, b.grantee)
    if b.expires <= ctx.time:
        raise Rejected("bad_expiry", f"expires ({b.expires}) must be after the block time "
                                     f"({ctx.time})")
    for k in b.keys:
        record = live_record(view, k.record, b.patient)
        if record["category"] not in b.categories:
            raise Rejected("category_not_granted", f"record {k.record} is a "
                                                   f"{record['category']} record, not granted")
        if not grantee_matches(view, b.grantee, k.reader):
            raise Rejected("not_grantee", f"reader {k.reader} is not the grantee nor an "
                                          "active member of it")


def grant_apply(view: StateView, tx: Transaction, b: GrantBody,
                ctx: BlockContext) -> tuple[Event, ...]:
    """Write the grant, its keys, the patient's list and the grantee index."""
    grant_id = tx.tx_id.hex()
    view.put(grant_key(grant_id), {
        "by": tx.sender.hex(), "categories": list(b.categories), "expires": b.expires,
        "grantee": b.grantee, "height": ctx.height, "id": grant_id, "patient": b.patient,
        "purpose": b.purpose, "records": sorted({k.record for k in b.keys}),
        "revoked": None, "time": ctx.time,
    })
    for k in b.keys:
        view.put(reader_key(k.record, k.reader),
                 {"grant": grant_id, "height": ctx.height, "wrapped": k.wrapped})
    GRANTS.append(view, b.patient, grant_id)
    index = grantee_index_key(b.patient, b.grantee)
    view.put(index, [*(view.get(index) or ()), grant_id])
    return (Event("records.granted", (
        ("grant", grant_id), ("patient", b.patient), ("grantee", b.grantee),
        ("categories", ",".join(b.categories)), ("expires", str(b.expires)))),)


# records.revoke -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RevokeBody:
    """``records.revoke``: end a grant now."""

    grant: Id


def _revocable(view: StateView, tx: Transaction, grant_id: str) -> dict[str, Any]:
    grant = grant_entry(view, grant_id)
    if grant is None:
        raise Rejected("no_grant", f"no grant {grant_id}")
    require_patient_or_delegate(view, tx, grant["patient"])
    if grant["revoked"] is not None:
        raise Rejected("grant_revoked", f"grant {grant_id} is already revoked")
    return grant


def revoke_check(view: StateView, tx: Transaction, b: RevokeBody, ctx: BlockContext) -> None:
    """The patient or a delegate revokes a grant not yet revoked."""
    _revocable(view, tx, b.grant)


def revoke_apply(view: StateView, tx: Transaction, b: RevokeBody,
                 ctx: BlockContext) -> tuple[Event, ...]:
    """Mark the grant revoked: every read window it opened closes with it."""
    grant = _revocable(view, tx, b.grant)
    view.put(grant_key(b.grant), {**grant, "revoked": {
        "by": tx.sender.hex(), "height": ctx.height, "time": ctx.time}})
    return (Event("records.revoked", (("grant", b.grant), ("patient", grant["patient"]),
                                      ("by", tx.sender.hex()))),)


# records.delegate, records.undelegate ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DelegateBody:
    """``records.delegate``: the patient names a key that may grant and revoke for them."""

    patient: Pseudonym
    delegate: Key
    role: Annotated[str, Text(32)]


@dataclass(frozen=True, slots=True)
class UndelegateBody:
    """``records.undelegate``: the patient withdraws a delegate."""

    patient: Pseudonym
    delegate: Key


def delegate_check(view: StateView, tx: Transaction, b: DelegateBody,
                   ctx: BlockContext) -> None:
    """The patient names an active registered key other than their own, once."""
    require_patient(view, tx, b.patient)
    if b.delegate == tx.sender.hex():
        raise Rejected("malformed", "a patient cannot be their own delegate")
    entry = identity.key_entry(view, b.delegate)
    if entry is None or entry["status"] != "active":
        raise Rejected("unknown_delegate", f"{b.delegate} is not an active registered key")
    if delegate_entry(view, b.patient, b.delegate) is not None:
        raise Rejected("exists", "that key is already a delegate")


def delegate_apply(view: StateView, tx: Transaction, b: DelegateBody,
                   ctx: BlockContext) -> tuple[Event, ...]:
    """Write the delegation."""
    view.put(delegate_key(b.patient, b.delegate),
             {"height": ctx.height, "role": b.role, "time": ctx.time})
    return (Event("records.delegated", (("patient", b.patient), ("delegate", b.delegate),
                                        ("role", b.role))),)


def undelegate_check(view: StateView, tx: Transaction, b: UndelegateBody,
                     ctx: BlockContext) -> None:
    """The patient withdraws one of their delegates."""
    require_patient(view, tx, b.patient)
    if delegate_entry(view, b.patient, b.delegate) is None:
        raise Rejected("unknown_delegate", f"{b.delegate} is not a delegate of {b.patient}")


def undelegate_apply(view: StateView, tx: Transaction, b: UndelegateBody,
                     ctx: BlockContext) -> tuple[Event, ...]:
    """Remove the delegation (its history is in the events)."""
    view.delete(delegate_key(b.patient, b.delegate))
    return (Event("records.undelegated", (("patient", b.patient),
                                          ("delegate", b.delegate))),)
