"""The records app's state: its keys (each made by one function here), its provable lists,
its public reads, and the rules every path shares (who a patient's delegates are, whether a
basis covers a read at a block time, whether a key may fetch a blob).

Everything here is pure: reads and writes go through the view handed in.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from medledger.apps import identity
from medledger.apps.base import Rejected
from medledger.apps.lists import ProvableList
from medledger.state import StateView

__all__ = [
    "ACCESS_LOG", "ACCESS_WINDOW_MS", "AUTHOR_ROLES", "BREAK_GLASS_REASONS", "BY_PATIENT",
    "CATEGORIES", "CURSOR_KEY", "EMERGENCIES", "EMERGENCY_COVER_MS", "EMERGENCY_ROLES",
    "GRANTS", "JUSTIFY_MS", "PREFIX", "basis_covers", "break_glass_entry", "break_glass_key",
    "delegate_entry", "delegate_key", "digest_key", "emergency_entry", "emergency_key",
    "emergency_reader", "grant_entry", "grant_key", "grantee_index_key", "may_read",
    "overdue_key", "patient_of", "reader_key", "record_entry", "record_key", "release_entry",
    "release_key", "window_key",
]

PREFIX = "records/"

CATEGORIES = ("encounter", "observation", "condition", "medication", "allergy",
              "immunization", "procedure", "imaging", "lab", "care-plan", "appointment",
              "document")
"""A record's coarse category: what every member may see of it besides its size."""

AUTHOR_ROLES = ("clinician", "emergency_clinician")
"""Member roles that may author (add, amend) a record."""

EMERGENCY_ROLES = ("emergency_clinician",)
"""Member roles that may break the glass (``records.emergency``): an organisation registers
its emergency clinicians as such (identity's ``emergency_clinician``)."""

BREAK_GLASS_REASONS = ("BTG", "ETREAT", "ERTREAT")
"""HL7 v3 ActReason codes (http://terminology.hl7.org/CodeSystem/v3-ActReason), as FHIR's
AuditEvent carries them: break the glass, emergency treatment, emergency room treatment."""

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
ACCESS_WINDOW_MS = 5 * MINUTE_MS
"""How long (block time) a ``records.access`` lets its reader fetch the records' blobs."""
EMERGENCY_COVER_MS = 24 * HOUR_MS
"""How long an emergency is a basis for its organisation's reads of its records."""
JUSTIFY_MS = 72 * HOUR_MS
"""When an emergency without a justification is flagged, after its block time."""

BY_PATIENT = ProvableList("records", "by_patient")
"""Each patient's record ids, in the order they were added (owner: the pseudonym)."""
GRANTS = ProvableList("records", "grants")
"""Each patient's grant ids, in order (owner: the pseudonym)."""
ACCESS_LOG = ProvableList("records", "access")
"""Each patient's access log (owner: the pseudonym): ``{"reader", "org", "records",
"basis", "time", "height", "tx"}``."""
EMERGENCIES = ProvableList("records", "emergencies")
"""Every emergency id, in block order (owner: ``all``): the queue the end-block hook walks."""
EMERGENCY_QUEUE = "all"
CURSOR_KEY = f"{PREFIX}flag_cursor"
"""The position in :data:`EMERGENCIES` of the first emergency not yet due."""

_READER_DOMAIN = b"medledger:emergency-reader\x00"

_BASIS = re.compile(r"(grant|emergency):([0-9a-f]{64})")


# keys -----------------------------------------------------------------------------------------
def record_key(record_id: str) -> str:
    """A record's metadata."""
    return f"{PREFIX}record/{record_id}"


def digest_key(digest: str) -> str:
    """The record whose ciphertext has SHA-256 ``digest`` (64 hex): the blob store's index."""
    return f"{PREFIX}digest/{digest}"


def reader_key(record_id: str, reader: str) -> str:
    """A record's content key wrapped for ``reader`` (a signing key, 64 hex)."""
    return f"{PREFIX}key/{record_id}/{reader}"


def grant_key(grant_id: str) -> str:
    """A grant."""
    return f"{PREFIX}grant/{grant_id}"


def grantee_index_key(pseudonym: str, grantee: str) -> str:
    """The ids of the grants a patient made to ``grantee`` (a key hex or ``org:<id>``)."""
    return f"{PREFIX}grantee/{pseudonym}/{grantee}"


def delegate_key(pseudonym: str, delegate: str) -> str:
    """A patient's delegate (absent: not a delegate)."""
    return f"{PREFIX}delegate/{pseudonym}/{delegate}"


def window_key(record_id: str, reader: str) -> str:
    """The read window ``reader`` holds on a record."""
    return f"{PREFIX}window/{record_id}/{reader}"


def emergency_key(emergency_id: str) -> str:
    """An emergency access."""
    return f"{PREFIX}emergency/{emergency_id}"


def overdue_key(emergency_id: str) -> str:
    """An emergency flagged for want of a justification (deleted when one comes)."""
    return f"{PREFIX}overdue/{emergency_id}"


def break_glass_key(pseudonym: str) -> str:
    """A patient's emergency key: its public half, threshold and the organisations'
    wrapped shares of its private half."""
    return f"{PREFIX}emergency_key/{pseudonym}"


def release_key(emergency_id: str, org: str) -> str:
    """An organisation's share of the emergency key, released for one emergency."""
    return f"{PREFIX}release/{emergency_id}/{org}"


def emergency_reader(enc_key: str, enc_suite: str) -> str:
    """The reader name (64 hex) of a patient's emergency key in ``records/key/<record>/..``:
    SHA-256 of a domain, the suite and the public key. It is no registered key, so it never
    signs, never holds a read window, and :func:`may_read` never serves it a blob."""
    material = _READER_DOMAIN + enc_suite.encode("ascii") + b"\x00" + bytes.fromhex(enc_key)
    return hashlib.sha256(material).hexdigest()


# reads ----------------------------------------------------------------------------------------
def record_entry(view: StateView, record_id: str) -> dict[str, Any] | None:
    """A record's metadata, or None."""
    return view.get(record_key(record_id))  # type: ignore[no-any-return]


def grant_entry(view: StateView, grant_id: str) -> dict[str, Any] | None:
    """A grant, or None."""
    return view.get(grant_key(grant_id))  # type: ignore[no-any-return]


def emergency_entry(view: StateView, emergency_id: str) -> dict[str, Any] | None:
    """An emergency access, or None."""
    return view.get(emergency_key(emergency_id))  # type: ignore[no-any-return]


def break_glass_entry(view: StateView, pseudonym: str) -> dict[str, Any] | None:
    """The patient's emergency key, or None when the patient has set none."""
    return view.get(break_glass_key(pseudonym))  # type: ignore[no-any-return]


def release_entry(view: StateView, emergency_id: str, org: str) -> dict[str, Any] | None:
    """``org``'s share released for an emergency, or None."""
    return view.get(release_key(emergency_id, org))  # type: ignore[no-any-return]


def delegate_entry(view: StateView, pseudonym: str, delegate: str) -> dict[str, Any] | None:
    """``{"role", "height", "time"}`` when ``delegate`` acts for the patient, else None."""
    return view.get(delegate_key(pseudonym, delegate))  # type: ignore[no-any-return]


def patient_of(view: StateView, pseudonym: str) -> dict[str, Any]:
    """The patient's identity entry; Rejected ``unknown_patient`` when none."""
    entry = identity.patient_entry(view, pseudonym)
    if entry is None:
        raise Rejected("unknown_patient", f"no patient is registered as {pseudonym}")
    return entry


def member_org(view: StateView, key: str) -> str | None:
    """The organisation of an active member key (None for any other key)."""
    entry = identity.key_entry(view, key)
    if entry is None or entry["kind"] == "patient" or entry["status"] != "active":
        return None
    return entry["org"]  # type: ignore[no-any-return]


def live_record(view: StateView, record_id: str, pseudonym: str | None = None
                ) -> dict[str, Any]:
    """A record that exists and is not erased (of ``pseudonym``, when given)."""
    record = record_entry(view, record_id)
    if record is None:
        raise Rejected("unknown_record", f"no record {record_id}")
    if pseudonym is not None and record["patient"] != pseudonym:
        raise Rejected("wrong_patient", f"record {record_id} is another patient's")
    if record["erased"] is not None:
        raise Rejected("erased", f"record {record_id} was erased")
    return record


def grantee_matches(view: StateView, grantee: str, reader: str) -> bool:
    """True when ``reader`` is the grantee key, or an active member of the grantee org."""
    if grantee.startswith("org:"):
        return member_org(view, reader) == grantee.removeprefix("org:")
    return grantee == reader and member_org(view, reader) is not None


# bases ----------------------------------------------------------------------------------------
def parse_basis(basis: str) -> tuple[str, str]:
    """``("grant"|"emergency", id)``; Rejected ``malformed`` otherwise."""
    match = _BASIS.fullmatch(basis)
    if match is None:
        raise Rejected("malformed", "basis must be grant:<grant id> or emergency:<emergency id>")
    return match.group(1), match.group(2)


def basis_covers(view: StateView, basis: str, reader: str, record: dict[str, Any],
                 time: int) -> None:
    """Refuse (Rejected) unless ``basis`` lets ``reader`` read ``record`` at block ``time``."""
    kind, ident = parse_basis(basis)
    if kind == "grant":
        _grant_covers(view, ident, reader, record, time)
    else:
        _emergency_covers(view, ident, reader, record, time)


def active_grant(view: StateView, grant_id: str, time: int) -> dict[str, Any]:
    """A grant neither revoked nor expired at ``time``."""
    grant = grant_entry(view, grant_id)
    if grant is None:
        raise Rejected("no_grant", f"no grant {grant_id}")
    if grant["revoked"] is not None:
        raise Rejected("grant_revoked", f"grant {grant_id} was revoked")
    if time >= grant["expires"]:
        raise Rejected("grant_expired", f"grant {grant_id} expired at {grant['expires']}")
    return grant


def _grant_covers(view: StateView, grant_id: str, reader: str, record: dict[str, Any],
                  time: int) -> None:
    grant = active_grant(view, grant_id, time)
    if not grantee_matches(view, grant["grantee"], reader):
        raise Rejected("not_grantee", f"grant {grant_id} is not to this reader or its "
                                      "organisation")
    if record["patient"] != grant["patient"]:
        raise Rejected("wrong_patient", f"record {record['id']} is not the grantor's")
    if record["category"] not in grant["categories"]:
        raise Rejected("category_not_granted", f"grant {grant_id} does not cover "
                                               f"{record['category']} records")


def _emergency_covers(view: StateView, emergency_id: str, reader: str,
                      record: dict[str, Any], time: int) -> None:
    emergency = emergency_entry(view, emergency_id)
    if emergency is None:
        raise Rejected("no_emergency", f"no emergency {emergency_id}")
    if member_org(view, reader) != emergency["org"]:
        raise Rejected("wrong_org", f"emergency {emergency_id} was declared by another "
                                    "organisation")
    if record["id"] not in emergency["records"]:
        raise Rejected("not_in_emergency", f"emergency {emergency_id} does not name record "
                                           f"{record['id']}")
    if time >= emergency["time"] + EMERGENCY_COVER_MS:
        raise Rejected("emergency_over", f"emergency {emergency_id} no longer covers reads")


# blobs ----------------------------------------------------------------------------------------
def may_read(view: StateView, digest: bytes, reader: bytes, time_ms: int) -> bool:
    """True when ``reader`` may fetch the ciphertext with SHA-256 ``digest`` at ``time_ms``:
    the record is not erased, the reader's key is active, and the reader is the patient,
    the author, or holds an open read window whose basis still covers the record."""
    record_id = view.get(digest_key(digest.hex()))
    record = None if record_id is None else record_entry(view, record_id)
    if record is None or record["erased"] is not None:
        return False
    key = reader.hex()
    entry = identity.key_entry(view, key)
    if entry is None or entry["status"] != "active":
        return False
    if key == record["author"] or (entry["kind"] == "patient"
                                   and entry["pseudonym"] == record["patient"]):
        return True
    window = view.get(window_key(record_id, key))
    if window is None or not window["from"] <= time_ms < window["until"]:
        return False
    try:
        basis_covers(view, window["basis"], key, record, time_ms)
    except Rejected:
        return False
    return True
