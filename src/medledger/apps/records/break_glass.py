"""The emergency key: ``records.emergency_key`` (the patient publishes it, its private half
split among hospitals) and ``records.release`` (a hospital's admin releases its share to
the emergency clinician of an open emergency).

The ledger cannot check a share (it is ciphertext to every node); it checks who holds one,
who releases it, when, and that each record added later carries a content key for the
emergency key (``records.add``). docs/records.md explains why no single organisation can
read a patient's records alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from medledger.apps import identity
from medledger.apps.base import BlockContext, Event, Rejected
from medledger.apps.body import Hex, Items, OneOf, Range, Text
from medledger.apps.records.consent import require_patient
from medledger.apps.records.content import (
    Id,
    Key,
    Pseudonym,
    RecordKey,
    Wrapped,
)
from medledger.apps.records.state import (
    EMERGENCY_COVER_MS,
    break_glass_entry,
    break_glass_key,
    emergency_entry,
    emergency_reader,
    live_record,
    reader_key,
    release_entry,
    release_key,
)
from medledger.crypto import SUITES, public_key_size
from medledger.ledger import Transaction
from medledger.state import StateView

__all__ = [
    "MAX_SHARES",
    "SHARE_ORG_ROLE",
    "EmergencyKeyBody",
    "EscrowShare",
    "ReleaseBody",
]

MAX_SHARES = 16
"""SLIP-39's limit on the members of a group."""
SHARE_ORG_ROLE = "hospital"
"""The organisations that may hold a share of a patient's emergency key."""


# records.emergency_key ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EscrowShare:
    """One organisation's SLIP-39 share of the emergency private key, wrapped (HPKE) for
    ``holder``: the admin whose encryption key stands for the organisation."""

    org: Annotated[str, Text(63)]
    holder: Key
    wrapped: Wrapped


@dataclass(frozen=True, slots=True)
class EmergencyKeyBody:
    """``records.emergency_key``: the patient's emergency public key, the threshold, one
    wrapped share per hospital, and content keys of existing records for the new key."""

    patient: Pseudonym
    enc_key: Annotated[str, Hex(max_size=4096)]
    enc_suite: Annotated[str, OneOf(tuple(SUITES))]
    threshold: Annotated[int, Range(1, MAX_SHARES)]
    shares: Annotated[list[EscrowShare], Items(1, MAX_SHARES)]
    keys: Annotated[list[RecordKey], Items(0, 64)]  # records added before it

    def validate(self) -> None:
        if len(self.enc_key) != 2 * public_key_size(self.enc_suite):
            raise Rejected("malformed", f"enc_key must be {public_key_size(self.enc_suite)} "
                                        f"bytes for {self.enc_suite}")
        n = len(self.shares)
        if not (2 <= self.threshold <= n or self.threshold == n == 1):
            raise Rejected("malformed", f"threshold must be from 2 to the {n} shares (1 only "
                                        "when one organisation holds the only share)")
        for field, values in (("org", [s.org for s in self.shares]),
                              ("holder", [s.holder for s in self.shares]),
                              ("record", [k.record for k in self.keys])):
            if len(set(values)) != len(values):
                raise Rejected("malformed", f"two entries name the same {field}")


def _check_holder(view: StateView, share: EscrowShare) -> None:
    org = identity.org_entry(view, share.org)
    if org is None or org["status"] != "active":
        raise Rejected("unknown_org", f"no active organisation {share.org}")
    if org["role"] != SHARE_ORG_ROLE:
        raise Rejected("not_hospital", f"{share.org} is a {org['role']}: only a "
                                       f"{SHARE_ORG_ROLE} holds a share")
    entry = identity.key_entry(view, share.holder)
    if (entry is None or entry["org"] != share.org or entry["role"] != "admin"
            or entry["status"] != "active" or not entry.get("enc_key")):
        raise Rejected("not_admin", f"{share.holder} is not an active admin of {share.org} "
                                    "with an encryption key")


def emergency_key_check(view: StateView, tx: Transaction, b: EmergencyKeyBody,
                        ctx: BlockContext) -> None:
    """The patient; each share held by an active admin of an active hospital; keys only
    for the patient's live records."""
    require_patient(view, tx, b.patient)
    for share in b.shares:
        _check_holder(view, share)
    for k in b.keys:
        live_record(view, k.record, b.patient)


def emergency_key_apply(view: StateView, tx: Transaction, b: EmergencyKeyBody,
                        ctx: BlockContext) -> tuple[Event, ...]:
    """Write (or replace) the patient's emergency key and the re-wrapped content keys."""
    reader = emergency_reader(b.enc_key, b.enc_suite)
    view.put(break_glass_key(b.patient), {
        "by": tx.sender.hex(), "enc_key": b.enc_key, "enc_suite": b.enc_suite,
        "height": ctx.height, "patient": b.patient, "reader": reader,
        "shares": {s.org: {"holder": s.holder, "wrapped": s.wrapped} for s in b.shares},
        "threshold": b.threshold, "time": ctx.time,
    })
    for k in b.keys:
        view.put(reader_key(k.record, reader),
                 {"grant": None, "height": ctx.height, "wrapped": k.wrapped})
    orgs = ",".join(sorted(s.org for s in b.shares))
    return (Event("records.emergency_key", (
        ("patient", b.patient), ("reader", reader), ("threshold", str(b.threshold)),
        ("orgs", orgs))),)


# records.release ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReleaseBody:
    """``records.release``: an organisation's share, re-wrapped (HPKE) for the emergency
    clinician's encryption key."""

    emergency: Id
    share: Wrapped


def _releasable(view: StateView, tx: Transaction, b: ReleaseBody, ctx: BlockContext
                ) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(emergency, emergency key, org) when the sender's organisation may release now."""
    emergency = emergency_entry(view, b.emergency)
    if emergency is None:
        raise Rejected("no_emergency", f"no emergency {b.emergency}")
    entry = identity.key_entry(view, tx.sender)
    if entry is None or entry["kind"] == "patient" or entry["role"] != "admin":
        raise Rejected("role_not_allowed", "only an organisation's admin releases its share")
    escrow = break_glass_entry(view, emergency["patient"])
    if escrow is None:
        raise Rejected("no_emergency_key", f"patient {emergency['patient']} has no "
                                           "emergency key")
    org = entry["org"]
    if org not in escrow["shares"]:
        raise Rejected("no_share", f"{org} holds no share of the patient's emergency key")
    if ctx.time >= emergency["time"] + EMERGENCY_COVER_MS:
        raise Rejected("emergency_over", f"emergency {b.emergency} is no longer open")
    if release_entry(view, b.emergency, org) is not None:
        raise Rejected("already_released", f"{org} already released its share for "
                                           f"emergency {b.emergency}")
    return emergency, escrow, org


def release_check(view: StateView, tx: Transaction, b: ReleaseBody,
                  ctx: BlockContext) -> None:
    """An admin of a share-holding organisation, while the emergency is open, once."""
    _releasable(view, tx, b, ctx)


def release_apply(view: StateView, tx: Transaction, b: ReleaseBody,
                  ctx: BlockContext) -> tuple[Event, ...]:
    """Write the released share and tell the patient."""
    emergency, escrow, org = _releasable(view, tx, b, ctx)
    view.put(release_key(b.emergency, org), {
        "by": tx.sender.hex(), "emergency": b.emergency, "height": ctx.height, "org": org,
        "reader": escrow["reader"], "share": b.share, "time": ctx.time,
        "to": emergency["reader"],
    })
    return (Event("records.released", (
        ("emergency", b.emergency), ("patient", emergency["patient"]), ("org", org),
        ("by", tx.sender.hex()), ("to", emergency["reader"]))),)
