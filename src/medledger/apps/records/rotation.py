"""``records.rewrap``: after a patient rotates to new keys (``identity.patient.rotate``,
typically once their guardians helped them recover a lost keystore), their client unwraps
each record's content key with the old keys and wraps it for the new ones.

The ledger cannot check a wrapped key (it is ciphertext to every node); it checks that the
patient's current key sends it and that each record is the patient's and live. The old
key's wrapped keys stay: they are only ciphertext for a key that can no longer sign, and so
can no longer fetch a blob.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from medledger.apps.base import BlockContext, Event, Rejected
from medledger.apps.body import Items
from medledger.apps.records.consent import require_patient
from medledger.apps.records.content import Pseudonym, RecordKey
from medledger.apps.records.state import live_record, reader_key
from medledger.ledger import Transaction
from medledger.state import StateView

__all__ = ["MAX_REWRAP", "RewrapBody", "rewrap_apply", "rewrap_check"]

MAX_REWRAP = 64
"""Content keys in one ``records.rewrap`` (a client sends a patient's records in pages)."""


@dataclass(frozen=True, slots=True)
class RewrapBody:
    """``records.rewrap``: content keys of the patient's live records, each wrapped for
    the patient's current encryption key."""

    patient: Pseudonym
    keys: Annotated[list[RecordKey], Items(1, MAX_REWRAP)]

    def validate(self) -> None:
        records = [k.record for k in self.keys]
        if len(set(records)) != len(records):
            raise Rejected("malformed", "two entries name the same record")


def rewrap_check(view: StateView, tx: Transaction, b: RewrapBody, ctx: BlockContext) -> None:
    """The patient's current key; only the patient's live records."""
    require_patient(view, tx, b.patient)
    for k in b.keys:
        live_record(view, k.record, b.patient)


def rewrap_apply(view: StateView, tx: Transaction, b: RewrapBody,
                 ctx: BlockContext) -> tuple[Event, ...]:
    """Write each content key for the sender (the patient's current key)."""
    reader = tx.sender.hex()
    for k in b.keys:
        view.put(reader_key(k.record, reader),
                 {"grant": None, "height": ctx.height, "wrapped": k.wrapped})
    return (Event("records.rewrapped", (("patient", b.patient), ("reader", reader),
                                        ("records", str(len(b.keys))))),)
