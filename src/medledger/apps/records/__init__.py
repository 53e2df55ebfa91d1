"""The records app: patient-controlled medical records, ledger side.

Record content never reaches the ledger. A client encrypts a FHIR resource or bundle with a
fresh content key, stores the ciphertext in the nodes' blob store, and sends the ledger the
metadata and the content key wrapped (HPKE) for each reader. Consent (grants, revocations,
delegates), every read and every emergency access are ledger state, and the blob store asks
:meth:`RecordsApp.may_read_blob` before it serves a ciphertext. The model and its limits:
docs/records.md.

Transactions (every sender an active registered key; ids are transaction ids, hex; a
wrapped key or share is unpadded base64url, ``medledger.codec.b64``)::

    records.add        {"patient": <pseudonym>, "category": <CATEGORIES>, "digest": <64 hex,
                        SHA-256 of the ciphertext>, "size": int > 0, "previous": <record id>
                        | null, "keys": [{"reader": <key hex>, "wrapped": <b64url>}, ...]}
                       by a member with an AUTHOR_ROLES role (the author); keys include the
                       patient's and the author's; any other reader is a delegate of the
                       patient or covered by an active grant for the category
    records.grant      {"patient", "grantee": <member key hex> | "org:<org id>",
                        "categories": [...], "purpose": text <= 64, "expires": ms (block
                        time), "keys": [{"record", "reader", "wrapped"}, ...]}
                       by the patient or a delegate
    records.revoke     {"grant": <grant id>}                  by the patient or a delegate
    records.delegate   {"patient", "delegate": <key hex>, "role": text <= 32}  by the patient
    records.undelegate {"patient", "delegate": <key hex>}                      by the patient
    records.access     {"records": [<record id>, ...], "basis": "grant:<id>" |
                        "emergency:<id>"}                      by a member (the reader)
    records.emergency  {"patient", "reason": <BREAK_GLASS_REASONS>, "records": [...]}
                       by a member with an EMERGENCY_ROLES role
    records.justify    {"emergency": <id>, "text": text <= 500}  by the emergency's org
    records.erase      {"record": <record id>}                  by the patient
    records.emergency_key {"patient", "enc_key": <HPKE public key hex>, "enc_suite",
                        "threshold": k, "shares": [{"org", "holder": <admin key hex>,
                        "wrapped": <b64url>}, ...] (1-16), "keys": [{"record", "wrapped"}, ...]}
                       by the patient: k-of-n SLIP-39 shares of the emergency private key,
                       each wrapped for an admin of a hospital (k >= 2 unless n = 1); keys
                       re-wrap live records for the new key
    records.release    {"emergency": <id>, "share": <b64url, the share re-wrapped for the
                        emergency clinician>}  by an admin of a share-holding organisation,
                       while the emergency covers reads, once per organisation
    records.rewrap     {"patient", "keys": [{"record", "wrapped"}, ...] (1-64)}
                       by the patient's current key, after ``identity.patient.rotate``:
                       the patient's live records re-wrapped for the new keys

State keys (each made by one function in ``records.state``)::

    records/record/<id>               record_key    {"id", "patient", "category", "digest",
                                                    "size", "author", "org", "previous",
                                                    "amended_by", "readers", "erased":
                                                    null | {"height", "time"}, "height",
                                                    "time"}
    records/digest/<digest>           digest_key    the record id (the blob store's index)
    records/key/<record>/<reader>     reader_key    {"wrapped", "grant": null | grant id,
                                                    "height"}; <reader> is a key, or the
                                                    patient's emergency_reader
    records/emergency_key/<pseudonym> break_glass_key {"patient", "enc_key", "enc_suite",
                                                    "reader", "threshold", "shares": {org:
                                                    {"holder", "wrapped"}}, "by", "height",
                                                    "time"}
    records/release/<emergency>/<org> release_key   {"emergency", "org", "by", "to",
                                                    "reader", "share", "height", "time"}
    records/by_patient/<pseudonym>/.. BY_PATIENT    provable list of record ids
    records/grant/<id>                grant_key     {"id", "patient", "grantee",
                                                    "categories", "purpose", "expires",
                                                    "records", "by", "revoked": null |
                                                    {"by", "height", "time"}, "height",
                                                    "time"}
    records/grants/<pseudonym>/..     GRANTS        provable list of grant ids
    records/grantee/<pseudonym>/<g>   grantee_index_key  grant ids to grantee g
    records/delegate/<pseudonym>/<k>  delegate_key  {"role", "height", "time"}
    records/window/<record>/<reader>  window_key    {"basis", "from", "until"}
    records/access/<pseudonym>/..     ACCESS_LOG    provable list of {"reader", "org",
                                                    "records", "basis", "time", "height",
                                                    "tx"}
    records/emergency/<id>            emergency_key {"id", "patient", "reader", "org",
                                                    "reason", "records", "time", "height",
                                                    "due", "justification": null | {"by",
                                                    "text", "height", "time"}, "flagged":
                                                    null | {"height", "time"}}
    records/emergencies/all/..        EMERGENCIES   provable list of emergency ids, in order
    records/flag_cursor               CURSOR_KEY    the first queued emergency not yet due
    records/overdue/<id>              overdue_key   {"id", "patient", "org", "reader", "due",
                                                    "flagged"} while unjustified past due

Read windows: ``records.access`` and ``records.emergency`` let the reader fetch the records'
blobs for :data:`ACCESS_WINDOW_MS` of block time, while the basis still covers them (a
revoked or expired grant closes its windows at once). An emergency covers its records for
its organisation for :data:`EMERGENCY_COVER_MS`; :data:`JUSTIFY_MS` after it, the end-block
hook flags it if no justification came.

Events: ``records.added {record, patient, author, org, category, digest, seq[, previous]}``,
``records.granted {grant, patient, grantee, categories, expires}``, ``records.revoked
{grant, patient, by}``, ``records.delegated {patient, delegate, role}``,
``records.undelegated {patient, delegate}``, ``records.accessed {patient, reader, record,
basis}`` (one per record), ``records.emergency {emergency, patient, reader, org, reason,
due}``, ``records.emergency_key {patient, reader, threshold, orgs}``, ``records.released
{emergency, patient, org, by, to}``, ``records.justified {emergency, patient, org, late}``,
``records.erased {record, patient, digest}``, ``records.rewrapped {patient, reader,
records}``, ``records.unjustified_emergency {emergency, patient, org, due}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from medledger.apps import identity
from medledger.apps.base import App, BlockContext, Event, TxType
from medledger.apps.records.access import (
    AccessBody,
    EmergencyBody,
    JustifyBody,
    access_apply,
    access_check,
    emergency_apply,
    emergency_check,
    flag_overdue,
    justify_apply,
    justify_check,
)
from medledger.apps.records.break_glass import (
    EmergencyKeyBody,
    ReleaseBody,
    emergency_key_apply,
    emergency_key_check,
    release_apply,
    release_check,
)
from medledger.apps.records.consent import (
    DelegateBody,
    GrantBody,
    RevokeBody,
    UndelegateBody,
    delegate_apply,
    delegate_check,
    grant_apply,
    grant_check,
    revoke_apply,
    revoke_check,
    undelegate_apply,
    undelegate_check,
)
from medledger.apps.records.content import (
    AddBody,
    EraseBody,
    add_apply,
    add_check,
    erase_apply,
    erase_check,
)
from medledger.apps.records.rotation import RewrapBody, rewrap_apply, rewrap_check
from medledger.apps.records.state import (
    ACCESS_LOG,
    ACCESS_WINDOW_MS,
    AUTHOR_ROLES,
    BREAK_GLASS_REASONS,
    BY_PATIENT,
    CATEGORIES,
    EMERGENCIES,
    EMERGENCY_COVER_MS,
    EMERGENCY_ROLES,
    GRANTS,
    JUSTIFY_MS,
    PREFIX,
    break_glass_key,
    delegate_key,
    digest_key,
    emergency_key,
    emergency_reader,
    grant_key,
    may_read,
    overdue_key,
    reader_key,
    record_entry,
    record_key,
    release_key,
    window_key,
)
from medledger.state import StateView

__all__ = [
    "ACCESS_LOG", "ACCESS_WINDOW_MS", "AUTHOR_ROLES", "BREAK_GLASS_REASONS", "BY_PATIENT",
    "CATEGORIES", "CODES", "EMERGENCIES", "EMERGENCY_COVER_MS", "EMERGENCY_ROLES", "GRANTS",
    "JUSTIFY_MS", "PREFIX", "RecordsApp", "break_glass_key", "delegate_key", "digest_key",
    "emergency_key", "emergency_reader", "grant_key", "overdue_key", "reader_key",
    "record_entry", "record_key", "release_key", "window_key",
]

CODES: dict[str, int] = {
    "unknown_patient": 404, "unknown_record": 404, "unknown_reader": 404,
    "unknown_grantee": 404, "unknown_delegate": 404, "no_grant": 404, "no_emergency": 404,
    "not_patient": 403, "not_delegate": 403, "not_grantee": 403, "role_not_allowed": 403,
    "reader_not_allowed": 403, "grant_expired": 403, "grant_revoked": 403,
    "category_not_granted": 403, "wrong_org": 403, "not_in_emergency": 403,
    "emergency_over": 403, "wrong_patient": 409, "already_amended": 409,
    "already_justified": 409, "missing_reader": 400, "bad_expiry": 400, "erased": 410,
    "unknown_org": 404, "no_emergency_key": 404, "not_hospital": 403, "not_admin": 403,
    "no_share": 403, "already_released": 409,
}
"""Each refusal code of the records app, with its HTTP status."""

ADD, GRANT, REVOKE, DELEGATE, UNDELEGATE, ACCESS, EMERGENCY, JUSTIFY, ERASE = (
    "records.add", "records.grant", "records.revoke", "records.delegate",
    "records.undelegate", "records.access", "records.emergency", "records.justify",
    "records.erase",
)
EMERGENCY_KEY, RELEASE, REWRAP = "records.emergency_key", "records.release", "records.rewrap"


class RecordsApp(App):
    """Patient-controlled records: metadata, wrapped keys, consent, reads, break-glass."""

    name: ClassVar[str] = "records"
    prefixes: ClassVar[tuple[str, ...]] = (PREFIX,)
    codes: ClassVar[dict[str, int]] = CODES
    summary: ClassVar[str] = "Patient-controlled medical records: metadata, consent, reads."
    shortcuts: ClassVar[dict[str, str]] = {"guardians": "guardians"}

    def transactions(self) -> Sequence[TxType[Any]]:
        sender = identity.active_sender
        return (
            TxType(ADD, AddBody, sender, add_check, add_apply,
                   summary="A clinician adds (or amends) a patient's encrypted record"),
            TxType(GRANT, GrantBody, sender, grant_check, grant_apply,
                   summary="A patient or delegate grants a member or organisation reads"),
            TxType(REVOKE, RevokeBody, sender, revoke_check, revoke_apply,
                   summary="A patient or delegate revokes a grant"),
            TxType(DELEGATE, DelegateBody, sender, delegate_check, delegate_apply,
                   summary="A patient names a delegate (a guardian, say)"),
            TxType(UNDELEGATE, UndelegateBody, sender, undelegate_check, undelegate_apply,
                   summary="A patient withdraws a delegate"),
            TxType(ACCESS, AccessBody, sender, access_check, access_apply,
                   summary="A reader reads records on a grant or an emergency"),
            TxType(EMERGENCY, EmergencyBody, sender, emergency_check, emergency_apply,
                   summary="A clinician breaks the glass on a patient's records"),
            TxType(JUSTIFY, JustifyBody, sender, justify_check, justify_apply,
                   summary="The emergency's organisation justifies it"),
            TxType(ERASE, EraseBody, sender, erase_check, erase_apply,
                   summary="A patient erases a record's content"),
            TxType(EMERGENCY_KEY, EmergencyKeyBody, sender, emergency_key_check,
                   emergency_key_apply,
                   summary="A patient splits an emergency key among hospitals (k of n)"),
            TxType(RELEASE, ReleaseBody, sender, release_check, release_apply,
                   summary="A hospital's admin releases its share to an emergency"),
            TxType(REWRAP, RewrapBody, sender, rewrap_check, rewrap_apply,
                   summary="A patient re-wraps their records for their new keys"),
        )

    def end_block(self, view: StateView, ctx: BlockContext) -> Iterable[Event]:
        return flag_overdue(view, ctx)

    def may_read_blob(self, view: StateView, digest: bytes, reader: bytes, time_ms: int
                      ) -> bool:
        return may_read(view, digest, reader, time_ms)

    def may_store_blob(self, view: StateView, digest: bytes) -> bool:
        """Not the ciphertext of an erased record: erasure is for good."""
        record_id = view.get(digest_key(digest.hex()))
        record = None if record_id is None else record_entry(view, record_id)
        return record is None or not record.get("erased")

    def erased_blobs(self, events: Sequence[Event]) -> Sequence[bytes]:
        """The ciphertext of each record a ``records.erased`` event names."""
        out = []
        for event in events:
            digest = event.attr("digest") if event.type == "records.erased" else None
            if digest is not None:
                out.append(bytes.fromhex(digest))
        return out
