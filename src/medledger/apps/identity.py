"""The identity app: organisations, their members, and patients.

State keys::

    identity/org/<org id>        {"id", "name", "role", "status"}
    identity/key/<public key>    {"kind": "admin"|"member"|"patient", "org", "role",
                                  "status": "active"|"suspended"|"rotated", "name",
                                  "enc_key", "enc_suite", "replaced_by", "pseudonym"}
    identity/patient/<pseudonym> {"key", "enc_key", "enc_suite", "height"}

Organisations and their first admin keys come from genesis (later: governance). An
organisation's admins (genesis admins and members with role ``admin``) register, suspend
and rotate members. Patients register themselves; their pseudonym is derived from their key.
Every transaction but a patient's own registration must be signed by an active key:
a suspended or rotated key can no longer sign anything (:func:`authorize`). Governance and
evidence transactions (:data:`DELEGATED_PREFIXES`) are authorised by their own app, since
validators sign them and validators are not identity members; that app calls
:func:`check_sender` for a sender that is not a validator.
"""

from __future__ import annotations

import re
from typing import Any

from medledger.apps.base import AppRegistry, BlockContext, Handler, Rejected
from medledger.apps.fields import body_keys, hex_field, str_field
from medledger.codec import Tag, decode_trusted, tagged_hash
from medledger.crypto import SUITES, public_key_size
from medledger.ledger import Transaction
from medledger.state import StateView

__all__ = [
    "DELEGATED_PREFIXES", "MEMBER_ROLES", "ORG_ROLES", "authorize", "check_organisation",
    "check_sender", "genesis_writes", "key_entry", "org_entry", "organisation_writes",
    "pseudonym_of", "register",
]

ORG_ROLES = ("hospital", "manufacturer", "wholesaler", "pharmacy", "insurer", "bank", "regulator")
MEMBER_ROLES = ("clinician", "pharmacist", "claims_officer", "auditor", "admin")
_ORG_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
REGISTER, SUSPEND, ROTATE, PATIENT = (
    "identity.member.register", "identity.member.suspend", "identity.member.rotate",
    "identity.patient.register",
)


def pseudonym_of(public_key: bytes) -> str:
    """A patient's pseudonym: 16 bytes of a tagged hash of their signing key, in hex."""
    return tagged_hash(Tag.PSEUDONYM, public_key)[:16].hex()


def org_entry(view: StateView, org_id: str) -> dict[str, Any] | None:
    return view.get(f"identity/org/{org_id}")  # type: ignore[no-any-return]


def key_entry(view: StateView, public_key: bytes) -> dict[str, Any] | None:
    return view.get(f"identity/key/{public_key.hex()}")  # type: ignore[no-any-return]


def _check_enc_key(body: dict[str, Any], key_field: str, suite_field: str) -> None:
    suite = body.get(suite_field)
    if suite not in SUITES:
        raise Rejected("malformed", f"{suite_field} must be one of {', '.join(SUITES)}")
    hex_field(body, key_field, public_key_size(suite))


_STATUS_MEMO: dict[bytes, str] = {}


def _status(raw: bytes) -> str:
    """The ``status`` of a key entry, memoised by the entry's bytes (a pure function)."""
    status = _STATUS_MEMO.get(raw)
    if status is None:
        status = decode_trusted(raw)["status"]
        if len(_STATUS_MEMO) >= 10_000:
            _STATUS_MEMO.clear()
        _STATUS_MEMO[raw] = status
    return status


DELEGATED_PREFIXES = ("governance.", "evidence.")
"""Transaction types whose sender the owning app authorises (see the module docstring)."""


def authorize(view: StateView, tx: Transaction) -> None:
    """Refuse a transaction whose sender is unknown, suspended or rotated (except a
    patient's own registration and the types of :data:`DELEGATED_PREFIXES`)."""
    if tx.type == PATIENT or tx.type.startswith(DELEGATED_PREFIXES):
        return
    check_sender(view, tx)


def check_sender(view: StateView, tx: Transaction) -> None:
    """Refuse ``tx`` unless its sender is a registered, active key."""
    raw = view.get_raw(f"identity/key/{tx.sender.hex()}")
    if raw is None:
        raise Rejected("unknown_sender", "the sending key is not registered")
    status = _status(raw)
    if status == "suspended":
        raise Rejected("key_suspended", "the sending key is suspended")
    if status == "rotated":
        raise Rejected("key_rotated", "the sending key was rotated and can no longer sign")


def _require_admin(view: StateView, sender: bytes, org_id: str) -> None:
    entry = key_entry(view, sender)
    if entry is None or entry["org"] != org_id or entry["role"] != "admin":
        raise Rejected("unauthorized", f"only an admin of {org_id} may do this")
    org = org_entry(view, org_id)
    if org is None or org["status"] != "active":
        raise Rejected("not_found", f"organisation {org_id} is not active")


def _member_entry(org: str, role: str, name: str, enc_key: str, enc_suite: str) -> dict[str, Any]:
    return {
        "enc_key": enc_key, "enc_suite": enc_suite, "kind": "member", "name": name,
        "org": org, "pseudonym": None, "replaced_by": None, "role": role, "status": "active",
    }


# identity.member.register -----------------------------------------------------------------
def _register_stateless(tx: Transaction) -> None:
    body_keys(tx.body, {"org", "key", "role", "name", "enc_key", "enc_suite"})
    str_field(tx.body, "org", 63)
    hex_field(tx.body, "key", 32)
    if tx.body["role"] not in MEMBER_ROLES:
        raise Rejected("malformed", f"role must be one of {', '.join(MEMBER_ROLES)}")
    str_field(tx.body, "name", 128)
    _check_enc_key(tx.body, "enc_key", "enc_suite")


def _register_stateful(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    _require_admin(view, tx.sender, tx.body["org"])
    if view.get(f"identity/key/{tx.body['key']}") is not None:
        raise Rejected("exists", "that key is already registered")


def _register_apply(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    b = tx.body
    view.put(f"identity/key/{b['key']}",
             _member_entry(b["org"], b["role"], b["name"], b["enc_key"], b["enc_suite"]))


# identity.member.suspend ------------------------------------------------------------------
def _suspend_stateless(tx: Transaction) -> None:
    body_keys(tx.body, {"org", "key"})
    str_field(tx.body, "org", 63)
    hex_field(tx.body, "key", 32)


def _active_member(view: StateView, org: str, key_hex: str) -> dict[str, Any]:
    entry = view.get(f"identity/key/{key_hex}")
    if entry is None or entry["org"] != org:
        raise Rejected("not_found", f"no member of {org} has that key")
    if entry["status"] != "active":
        raise Rejected("key_" + entry["status"], f"that key is already {entry['status']}")
    return entry  # type: ignore[no-any-return]


def _suspend_stateful(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    _require_admin(view, tx.sender, tx.body["org"])
    _active_member(view, tx.body["org"], tx.body["key"])


def _suspend_apply(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    entry = _active_member(view, tx.body["org"], tx.body["key"])
    view.put(f"identity/key/{tx.body['key']}", {**entry, "status": "suspended"})


# identity.member.rotate -------------------------------------------------------------------
def _rotate_stateless(tx: Transaction) -> None:
    body_keys(tx.body, {"org", "key", "new_key", "enc_key", "enc_suite"})
    str_field(tx.body, "org", 63)
    hex_field(tx.body, "key", 32)
    hex_field(tx.body, "new_key", 32)
    _check_enc_key(tx.body, "enc_key", "enc_suite")
    if tx.body["key"] == tx.body["new_key"]:
        raise Rejected("malformed", "new_key must differ from key")


def _rotate_stateful(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    b = tx.body
    if b["key"] != tx.sender.hex():
        _require_admin(view, tx.sender, b["org"])
    _active_member(view, b["org"], b["key"])
    if view.get(f"identity/key/{b['new_key']}") is not None:
        raise Rejected("exists", "the new key is already registered")


def _rotate_apply(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    b = tx.body
    old = _active_member(view, b["org"], b["key"])
    view.put(f"identity/key/{b['key']}", {**old, "status": "rotated", "replaced_by": b["new_key"]})
    view.put(f"identity/key/{b['new_key']}",
             {**old, "enc_key": b["enc_key"], "enc_suite": b["enc_suite"], "replaced_by": None})


# identity.patient.register ----------------------------------------------------------------
def _patient_stateless(tx: Transaction) -> None:
    body_keys(tx.body, {"enc_key", "enc_suite"})
    _check_enc_key(tx.body, "enc_key", "enc_suite")


def _patient_stateful(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    if key_entry(view, tx.sender) is not None:
        raise Rejected("exists", "that key is already registered")


def _patient_apply(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    pseudonym = pseudonym_of(tx.sender)
    view.put(f"identity/key/{tx.sender.hex()}", {
        "enc_key": tx.body["enc_key"], "enc_suite": tx.body["enc_suite"], "kind": "patient",
        "name": None, "org": None, "pseudonym": pseudonym, "replaced_by": None,
        "role": "patient", "status": "active",
    })
    view.put(f"identity/patient/{pseudonym}", {
        "enc_key": tx.body["enc_key"], "enc_suite": tx.body["enc_suite"],
        "height": ctx.height, "key": tx.sender.hex(),
    })


# genesis ----------------------------------------------------------------------------------
def check_organisation(org: Any) -> None:
    """Refuse a genesis organisation entry that can never be valid (ValueError)."""
    if type(org) is not dict or set(org) != {"id", "name", "role", "admins"}:
        raise ValueError("an organisation needs exactly: id, name, role, admins")
    if type(org["id"]) is not str or not _ORG_ID.fullmatch(org["id"]):
        raise ValueError(f"organisation id {org['id']!r}: use 2-63 of a-z 0-9 -")
    if org["role"] not in ORG_ROLES:
        raise ValueError(f"organisation {org['id']}: role must be one of {', '.join(ORG_ROLES)}")
    if type(org["admins"]) is not list or not org["admins"]:
        raise ValueError(f"organisation {org['id']}: needs at least one admin key")
    for admin in org["admins"]:
        if type(admin) is not str or len(admin) != 64:
            raise ValueError(f"organisation {org['id']}: admin keys are 64 hex characters")
        bytes.fromhex(admin)


def organisation_writes(org: dict[str, Any]) -> dict[str, Any]:
    """The state entries one organisation creates (checked, ``ValueError`` if malformed):
    its ``identity/org/<id>`` entry and an active admin key entry per admin. Genesis and
    governance's ``org_admit`` both write exactly these."""
    check_organisation(org)
    writes: dict[str, Any] = {
        f"identity/org/{org['id']}": {
            "id": org["id"], "name": org["name"], "role": org["role"], "status": "active",
        },
    }
    for admin in org["admins"]:
        key = f"identity/key/{admin}"
        if key in writes:
            raise ValueError(f"organisation {org['id']}: admin key {admin} appears twice")
        writes[key] = {
            "enc_key": None, "enc_suite": None, "kind": "admin", "name": f"{org['id']} admin",
            "org": org["id"], "pseudonym": None, "replaced_by": None, "role": "admin",
            "status": "active",
        }
    return writes


def genesis_writes(organisations: list[dict[str, Any]]) -> dict[str, Any]:
    """The state entries that the genesis organisations create."""
    writes: dict[str, Any] = {}
    for org in organisations:
        for key, value in organisation_writes(org).items():
            if key in writes and key.startswith("identity/key/"):
                raise ValueError(f"admin key {key.removeprefix('identity/key/')} appears "
                                 "twice in genesis")
            writes[key] = value
    return writes


def register(registry: AppRegistry) -> None:
    registry.register(REGISTER, Handler(_register_stateless, _register_stateful, _register_apply))
    registry.register(SUSPEND, Handler(_suspend_stateless, _suspend_stateful, _suspend_apply))
    registry.register(ROTATE, Handler(_rotate_stateless, _rotate_stateful, _rotate_apply))
    registry.register(PATIENT, Handler(_patient_stateless, _patient_stateful, _patient_apply))
    registry.set_authorizer(authorize)
