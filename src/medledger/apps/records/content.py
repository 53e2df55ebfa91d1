"""Records themselves: ``records.add`` (a new record or an amendment) and ``records.erase``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from medledger.apps import identity
from medledger.apps.base import BlockContext, Event, Rejected
from medledger.apps.body import B64, MAX_SAFE_INT, Hex, Items, OneOf, Range
from medledger.apps.records.state import (
    AUTHOR_ROLES,
    BY_PATIENT,
    CATEGORIES,
    active_grant,
    break_glass_entry,
    delegate_entry,
    digest_key,
    grantee_index_key,
    grantee_matches,
    live_record,
    patient_of,
    reader_key,
    record_entry,
    record_key,
)
from medledger.ledger import Transaction
from medledger.state import StateView

__all__ = ["AddBody", "EraseBody", "ReaderKey", "RecordKey"]

Id = Annotated[str, Hex(32)]
Key = Annotated[str, Hex(32)]
Pseudonym = Annotated[str, Hex(16)]
Wrapped = Annotated[str, B64(4096)]  # a wrapped key or share: base64url, 1-4096 bytes
_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ReaderKey:
    """The content key wrapped (HPKE) for one reader's key."""

    reader: Key
    wrapped: Wrapped


@dataclass(frozen=True, slots=True)
class RecordKey:
    """A live record's content key wrapped (HPKE) for a key the sender names elsewhere in
    the body (the patient's emergency key, or the patient's own new key)."""

    record: Id
    wrapped: Wrapped


@dataclass(frozen=True, slots=True)
class AddBody:
    """``records.add``: a record's metadata and its content key wrapped per reader."""

    patient: Pseudonym
    category: Annotated[str, OneOf(CATEGORIES)]
    digest: Annotated[str, Hex(32)]
    size: Annotated[int, Range(1, MAX_SAFE_INT)]
    keys: Annotated[list[ReaderKey], Items(1, 32)]
    previous: Any | None = None  # a record id, or null (checked in validate)

    def validate(self) -> None:
        if self.previous is not None and (type(self.previous) is not str
                                          or not _ID.fullmatch(self.previous)):
            raise Rejected("malformed", "previous must be a record id (64 hex) or null")
        readers = [k.reader for k in self.keys]
        if len(set(readers)) != len(readers):
            raise Rejected("malformed", "keys name a reader twice")


def _author_org(view: StateView, sender: bytes) -> str:
    entry = identity.key_entry(view, sender)
    if entry is None or entry["kind"] != "member" or entry["role"] not in AUTHOR_ROLES:
        raise Rejected("role_not_allowed", "only a member with role "
                                           f"{' or '.join(AUTHOR_ROLES)} may add a record")
    return entry["org"]  # type: ignore[no-any-return]


def _reader_allowed(view: StateView, b: AddBody, reader: str, time: int) -> bool:
    """A reader besides the patient and the author: a delegate, or covered by an active
    grant of the patient for the record's category."""
    if delegate_entry(view, b.patient, reader) is not None:
        return True
    org = (identity.key_entry(view, reader) or {}).get("org")
    for grantee in (reader, f"org:{org}") if org else (reader,):
        for grant_id in view.get(grantee_index_key(b.patient, grantee)) or ():
            try:
                grant = active_grant(view, grant_id, time)
            except Rejected:
                continue
            if b.category in grant["categories"] and grantee_matches(view, grantee, reader):
                return True
    return False


def _check_readers(view: StateView, tx: Transaction, b: AddBody, patient: dict[str, Any],
                   ctx: BlockContext) -> None:
    readers = [k.reader for k in b.keys]
    escrow = break_glass_entry(view, b.patient)
    emergency = None if escrow is None else escrow["reader"]
    needs = [(patient["key"], "the patient's"), (tx.sender.hex(), "the author's")]
    if emergency is not None:
        needs.append((emergency, "the patient's emergency"))
    for needed, who in needs:
        if needed not in readers:
            raise Rejected("missing_reader", f"keys must include {who} key")
    for reader in readers:
        if reader == emergency:
            continue  # the patient's emergency key: no registered key, never a blob reader
        entry = identity.key_entry(view, reader)
        if entry is None or entry["status"] != "active":
            raise Rejected("unknown_reader", f"reader {reader} is not an active registered key")
        if reader not in (patient["key"], tx.sender.hex()) and not _reader_allowed(
                view, b, reader, ctx.time):
            raise Rejected("reader_not_allowed", f"reader {reader} is neither a delegate nor "
                                                 f"granted {b.category} records")


def add_check(view: StateView, tx: Transaction, b: AddBody, ctx: BlockContext) -> None:
    """Who may add, and what the record must not clash with."""
    _author_org(view, tx.sender)
    patient = patient_of(view, b.patient)
    if view.get_raw(digest_key(b.digest)) is not None:
        raise Rejected("exists", f"a record with digest {b.digest} exists")
    if b.previous is not None:
        previous = live_record(view, b.previous, b.patient)
        if previous["amended_by"] is not None:
            raise Rejected("already_amended", f"record {b.previous} was amended by "
                                              f"{previous['amended_by']}")
    _check_readers(view, tx, b, patient, ctx)


def add_apply(view: StateView, tx: Transaction, b: AddBody,
              ctx: BlockContext) -> tuple[Event, ...]:
    """Write the record, its wrapped keys, its digest index and its place in the list."""
    record_id, author = tx.tx_id.hex(), tx.sender.hex()
    org = _author_org(view, tx.sender)
    view.put(record_key(record_id), {
        "amended_by": None, "author": author, "category": b.category, "digest": b.digest,
        "erased": None, "height": ctx.height, "id": record_id, "org": org,
        "patient": b.patient, "previous": b.previous,
        "readers": sorted(k.reader for k in b.keys), "size": b.size, "time": ctx.time,
    })
    for k in b.keys:
        view.put(reader_key(record_id, k.reader),
                 {"grant": None, "height": ctx.height, "wrapped": k.wrapped})
    view.put(digest_key(b.digest), record_id)
    seq = BY_PATIENT.append(view, b.patient, record_id)
    if b.previous is not None:
        previous = record_entry(view, b.previous)
        assert previous is not None
        view.put(record_key(b.previous), {**previous, "amended_by": record_id})
    attrs = [("record", record_id), ("patient", b.patient), ("author", author), ("org", org),
             ("category", b.category), ("digest", b.digest), ("seq", str(seq))]
    if b.previous is not None:
        attrs.append(("previous", b.previous))
    return (Event("records.added", attrs),)


# records.erase --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EraseBody:
    """``records.erase``: the patient erases a record's content."""

    record: Id


def erase_check(view: StateView, tx: Transaction, b: EraseBody, ctx: BlockContext) -> None:
    """Only the patient erases, and only a live record."""
    record = record_entry(view, b.record)
    if record is None:
        raise Rejected("unknown_record", f"no record {b.record}")
    if patient_of(view, record["patient"])["key"] != tx.sender.hex():
        raise Rejected("not_patient", "only the patient may erase a record")
    live_record(view, b.record)


def erase_apply(view: StateView, tx: Transaction, b: EraseBody,
                ctx: BlockContext) -> tuple[Event, ...]:
    """Mark the record erased: its digest and metadata stay; blob stores drop the content."""
    record = live_record(view, b.record)
    view.put(record_key(b.record), {**record, "erased": {"height": ctx.height,
                                                         "time": ctx.time}})
    return (Event("records.erased", (("record", b.record), ("patient", record["patient"]),
                                     ("digest", record["digest"]))),)
