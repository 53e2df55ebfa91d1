"""The identity app: organisations, their members, and patients.

State keys (each made by one function here, used everywhere)::

    identity/org/<org id>            org_key      {"id", "name", "role", "status"}
    identity/key/<public key hex>    key_key      {"kind": "admin"|"member"|"patient", "org",
                                                  "role", "status": "active"|"suspended"
                                                  |"rotated", "name", "enc_key", "enc_suite",
                                                  "replaced_by", "pseudonym"}
    identity/patient/<pseudonym>     patient_key  {"key", "enc_key", "enc_suite", "height",
                                                  "rotated": null | {"from", "height"}}
    identity/members/<org id>/...    MEMBERS      a provable list of the keys an organisation
                                                  registered (its admins first), key hex each

Organisations and their first admin keys come from genesis, or from governance's
``org_admit`` through :func:`admit_organisation`. An organisation's admins (genesis admins
and members with role ``admin``) register, suspend and rotate members. Patients register
themselves; their pseudonym is derived from their first key, and stays theirs when they
rotate to new keys (after recovering a lost keystore with their guardians, say).

Who may send what: every identity transaction but a patient's own registration must be
signed by an active key (:func:`active_sender`, which other apps declare for their own
types too); a suspended or rotated key can no longer sign anything.

Events: ``identity.member_registered {org, member, role}``, ``identity.member_suspended
{org, member}``, ``identity.member_rotated {org, member, new_key}``,
``identity.patient_registered {pseudonym, key}``, ``identity.patient_rotated {pseudonym,
key, new_key}``, ``identity.org_admitted {org, role}``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from medledger.apps.base import (
    App,
    BlockContext,
    DemoTx,
    Event,
    GenesisDoc,
    Rejected,
    TxType,
    owned,
)
from medledger.apps.body import Hex, OneOf, Text
from medledger.apps.lists import ProvableList
from medledger.codec import decode_trusted, pseudonym
from medledger.crypto import DEFAULT_SUITE, SUITES, EncryptionKey, SigningKey, public_key_size
from medledger.ledger import Transaction
from medledger.state import StateView

__all__ = [
    "MEMBERS", "MEMBER_ROLES", "NODES", "NODE_ADD", "ORG_ROLES", "PATIENT_ROTATE",
    "IdentityApp", "PatientRotateBody", "NodeBody", "active_sender",
    "admit_organisation", "anyone", "check_organisation", "check_sender", "key_entry",
    "key_key", "node_key", "node_member", "org_entry", "org_key", "organisation_writes",
    "patient_entry", "patient_key", "pseudonym_of",
]

ORG_ROLES = ("hospital", "manufacturer", "wholesaler", "pharmacy", "insurer", "bank", "regulator")
MEMBER_ROLES = ("clinician", "emergency_clinician", "pharmacist", "claims_officer", "auditor",
                "admin")
_ORG_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
_NODE_ID = re.compile(r"[0-9a-f]{40}")
MAX_NODES = 16
REGISTER, SUSPEND, ROTATE, PATIENT, PATIENT_ROTATE, NODE_ADD = (
    "identity.member.register", "identity.member.suspend", "identity.member.rotate",
    "identity.patient.register", "identity.patient.rotate", "identity.node.add",
)
PREFIX = "identity/"
MEMBERS = ProvableList("identity", "members")
"""The keys each organisation registered, in order (owner: the organisation id)."""
NODES = ProvableList("identity", "nodes")
"""The node IDs each organisation added after genesis, in order (owner: the organisation)."""


# state keys and public reads ----------------------------------------------------------------
def org_key(org_id: str) -> str:
    """The state key of an organisation."""
    return f"{PREFIX}org/{org_id}"


def node_key(node_id: str) -> str:
    """The state key of a member node (its CometBFT node ID, 40 lower-case hex)."""
    return f"{PREFIX}node/{node_id}"


def node_member(view: StateView, node_id: str) -> bool:
    """True when ``node_id`` is the node of an active organisation."""
    if not _NODE_ID.fullmatch(node_id):
        return False
    entry = view.get(node_key(node_id))
    if entry is None:
        return False
    org = org_entry(view, entry["org"])
    return org is not None and org["status"] == "active"


def key_key(public_key: bytes | str) -> str:
    """The state key of a registered signing key (bytes, or 64 lower-case hex)."""
    text = public_key if isinstance(public_key, str) else public_key.hex()
    return f"{PREFIX}key/{text}"


def patient_key(pseudonym: str) -> str:
    """The state key of a patient, by pseudonym."""
    return f"{PREFIX}patient/{pseudonym}"


def pseudonym_of(public_key: bytes) -> str:
    """A patient's pseudonym: 16 bytes of a tagged hash of their signing key, in hex."""
    return pseudonym(public_key)


def org_entry(view: StateView, org_id: str) -> dict[str, Any] | None:
    return view.get(org_key(org_id))  # type: ignore[no-any-return]


def key_entry(view: StateView, public_key: bytes | str) -> dict[str, Any] | None:
    return view.get(key_key(public_key))  # type: ignore[no-any-return]


def patient_entry(view: StateView, pseudonym: str) -> dict[str, Any] | None:
    return view.get(patient_key(pseudonym))  # type: ignore[no-any-return]


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


# who may send ------------------------------------------------------------------------------
def check_sender(view: StateView, tx: Transaction) -> None:
    """Refuse ``tx`` unless its sender is a registered, active key."""
    raw = view.get_raw(key_key(tx.sender))
    if raw is None:
        raise Rejected("unknown_sender", "the sending key is not registered")
    status = _status(raw)
    if status == "suspended":
        raise Rejected("key_suspended", "the sending key is suspended")
    if status == "rotated":
        raise Rejected("key_rotated", "the sending key was rotated and can no longer sign")


def active_sender(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    """``auth`` for a transaction type any active registered key may send."""
    check_sender(view, tx)


def anyone(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    """``auth`` for a transaction type any key may send (its check decides)."""


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


def _check_enc_key(enc_key: str, suite: str) -> None:
    if len(enc_key) != 2 * public_key_size(suite):
        raise Rejected("malformed", f"enc_key must be {public_key_size(suite)} bytes")


_Key = Annotated[str, Hex(32)]
_EncKey = Annotated[str, Hex(max_size=4096)]
_Suite = Annotated[str, OneOf(tuple(SUITES))]
_OrgId = Annotated[str, Text(63)]


# identity.member.register -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RegisterBody:
    org: _OrgId
    key: _Key
    role: Annotated[str, OneOf(MEMBER_ROLES)]
    name: Annotated[str, Text(128)]
    enc_key: _EncKey
    enc_suite: _Suite

    def validate(self) -> None:
        _check_enc_key(self.enc_key, self.enc_suite)


def _register_check(view: StateView, tx: Transaction, b: RegisterBody, ctx: BlockContext) -> None:
    _require_admin(view, tx.sender, b.org)
    if view.get_raw(key_key(b.key)) is not None:
        raise Rejected("exists", "that key is already registered")


def _register_apply(view: StateView, tx: Transaction, b: RegisterBody,
                    ctx: BlockContext) -> tuple[Event, ...]:
    view.put(key_key(b.key), _member_entry(b.org, b.role, b.name, b.enc_key, b.enc_suite))
    MEMBERS.append(view, b.org, b.key)
    return (Event("identity.member_registered",
                  (("org", b.org), ("member", b.key), ("role", b.role))),)


# identity.member.suspend ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SuspendBody:
    org: _OrgId
    key: _Key


def _active_member(view: StateView, org: str, key_hex: str) -> dict[str, Any]:
    entry = key_entry(view, key_hex)
    if entry is None or entry["org"] != org:
        raise Rejected("not_found", f"no member of {org} has that key")
    if entry["status"] != "active":
        raise Rejected("key_" + entry["status"], f"that key is already {entry['status']}")
    return entry


def _suspend_check(view: StateView, tx: Transaction, b: SuspendBody, ctx: BlockContext) -> None:
    _require_admin(view, tx.sender, b.org)
    _active_member(view, b.org, b.key)


def _suspend_apply(view: StateView, tx: Transaction, b: SuspendBody,
                   ctx: BlockContext) -> tuple[Event, ...]:
    entry = _active_member(view, b.org, b.key)
    view.put(key_key(b.key), {**entry, "status": "suspended"})
    return (Event("identity.member_suspended", (("org", b.org), ("member", b.key))),)


# identity.node.add --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NodeBody:
    org: _OrgId
    node_id: Annotated[str, Hex(20)]


def _node_check(view: StateView, tx: Transaction, b: NodeBody, ctx: BlockContext) -> None:
    _require_admin(view, tx.sender, b.org)
    if view.get(node_key(b.node_id)) is not None:
        raise Rejected("exists", f"node {b.node_id} is already a member's")
    listed = view.get(NODES.count_key(b.org)) or 0
    if listed >= MAX_NODES:
        raise Rejected("too_many_nodes", f"{b.org} runs {MAX_NODES} nodes already")


def _node_apply(view: StateView, tx: Transaction, b: NodeBody,
                ctx: BlockContext) -> tuple[Event, ...]:
    _node_check(view, tx, b, ctx)
    view.put(node_key(b.node_id), {"org": b.org})
    NODES.append(view, b.org, b.node_id)
    return (Event("identity.node_added", (("org", b.org), ("node_id", b.node_id))),)


# identity.member.rotate -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RotateBody:
    org: _OrgId
    key: _Key
    new_key: _Key
    enc_key: _EncKey
    enc_suite: _Suite

    def validate(self) -> None:
        _check_enc_key(self.enc_key, self.enc_suite)
        if self.key == self.new_key:
            raise Rejected("malformed", "new_key must differ from key")


def _rotate_check(view: StateView, tx: Transaction, b: RotateBody, ctx: BlockContext) -> None:
    if b.key != tx.sender.hex():
        _require_admin(view, tx.sender, b.org)
    _active_member(view, b.org, b.key)
    if view.get_raw(key_key(b.new_key)) is not None:
        raise Rejected("exists", "the new key is already registered")


def _rotate_apply(view: StateView, tx: Transaction, b: RotateBody,
                  ctx: BlockContext) -> tuple[Event, ...]:
    old = _active_member(view, b.org, b.key)
    view.put(key_key(b.key), {**old, "status": "rotated", "replaced_by": b.new_key})
    view.put(key_key(b.new_key),
             {**old, "enc_key": b.enc_key, "enc_suite": b.enc_suite, "replaced_by": None})
    MEMBERS.append(view, b.org, b.new_key)
    return (Event("identity.member_rotated",
                  (("org", b.org), ("member", b.key), ("new_key", b.new_key))),)


# identity.patient.register ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PatientBody:
    enc_key: _EncKey
    enc_suite: _Suite

    def validate(self) -> None:
        _check_enc_key(self.enc_key, self.enc_suite)


def _patient_check(view: StateView, tx: Transaction, b: PatientBody, ctx: BlockContext) -> None:
    if key_entry(view, tx.sender) is not None:
        raise Rejected("exists", "that key is already registered")


def _patient_apply(view: StateView, tx: Transaction, b: PatientBody,
                   ctx: BlockContext) -> tuple[Event, ...]:
    pseudonym = pseudonym_of(tx.sender)
    view.put(key_key(tx.sender), {
        "enc_key": b.enc_key, "enc_suite": b.enc_suite, "kind": "patient",
        "name": None, "org": None, "pseudonym": pseudonym, "replaced_by": None,
        "role": "patient", "status": "active",
    })
    view.put(patient_key(pseudonym), {
        "enc_key": b.enc_key, "enc_suite": b.enc_suite,
        "height": ctx.height, "key": tx.sender.hex(), "rotated": None,
    })
    return (Event("identity.patient_registered",
                  (("pseudonym", pseudonym), ("key", tx.sender.hex()))),)


# identity.patient.rotate ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PatientRotateBody:
    """A patient's new signing and encryption keys; the pseudonym stays."""

    new_key: _Key
    enc_key: _EncKey
    enc_suite: _Suite

    def validate(self) -> None:
        _check_enc_key(self.enc_key, self.enc_suite)


def _patient_rotate_check(view: StateView, tx: Transaction, b: PatientRotateBody,
                          ctx: BlockContext) -> None:
    entry = key_entry(view, tx.sender)
    if entry is None or entry["kind"] != "patient":
        raise Rejected("unauthorized", "only a patient's own key rotates it")
    if view.get_raw(key_key(b.new_key)) is not None:
        raise Rejected("exists", "the new key is already registered")


def _patient_rotate_apply(view: StateView, tx: Transaction, b: PatientRotateBody,
                          ctx: BlockContext) -> tuple[Event, ...]:
    """The old key can no longer sign; the new one speaks for the same pseudonym."""
    old = key_entry(view, tx.sender)
    assert old is not None
    pseudonym = old["pseudonym"]
    view.put(key_key(tx.sender), {**old, "status": "rotated", "replaced_by": b.new_key})
    view.put(key_key(b.new_key),
             {**old, "enc_key": b.enc_key, "enc_suite": b.enc_suite, "replaced_by": None})
    patient = patient_entry(view, pseudonym)
    assert patient is not None
    view.put(patient_key(pseudonym), {
        **patient, "enc_key": b.enc_key, "enc_suite": b.enc_suite, "key": b.new_key,
        "rotated": {"from": tx.sender.hex(), "height": ctx.height}})
    return (Event("identity.patient_rotated", (("pseudonym", pseudonym),
                                               ("key", tx.sender.hex()),
                                               ("new_key", b.new_key))),)


# organisations ----------------------------------------------------------------------------
def check_organisation(org: Any) -> None:
    """Refuse an organisation entry that can never be valid (ValueError)."""
    if type(org) is not dict or not {"id", "name", "role", "admins"} <= set(org) <= {
            "id", "name", "role", "admins", "nodes"}:
        raise ValueError("an organisation needs exactly: id, name, role, admins (and may "
                         "list its nodes)")
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
    nodes = org.get("nodes", [])
    if (type(nodes) is not list or len(nodes) > MAX_NODES or len(set(nodes)) != len(nodes)
            or not all(type(n) is str and _NODE_ID.fullmatch(n) for n in nodes)):
        raise ValueError(f"organisation {org['id']}: nodes are up to {MAX_NODES} distinct "
                         "node IDs (40 lower-case hex)")


def organisation_writes(org: dict[str, Any]) -> dict[str, Any]:
    """The state entries one organisation creates (checked, ``ValueError`` if malformed):
    its org entry, an active admin key entry per admin, and its member list of those
    admins. Genesis and :func:`admit_organisation` both write exactly these."""
    check_organisation(org)
    writes: dict[str, Any] = {
        org_key(org["id"]): {
            "id": org["id"], "name": org["name"], "role": org["role"], "status": "active",
        },
    }
    for seq, admin in enumerate(org["admins"], start=1):
        key = key_key(admin)
        if key in writes:
            raise ValueError(f"organisation {org['id']}: admin key {admin} appears twice")
        writes[key] = {
            "enc_key": None, "enc_suite": None, "kind": "admin", "name": f"{org['id']} admin",
            "org": org["id"], "pseudonym": None, "replaced_by": None, "role": "admin",
            "status": "active",
        }
        writes[MEMBERS.item_key(org["id"], seq)] = admin
    writes[MEMBERS.count_key(org["id"])] = len(org["admins"])
    for node in org.get("nodes", []):
        writes[node_key(node)] = {"org": org["id"]}
    return writes


def admit_organisation(view: StateView, org: dict[str, Any]) -> tuple[Event, ...]:
    """Admit ``org`` now (governance's ``org_admit``): Rejected when its id or an admin key
    is taken; otherwise writes what :func:`organisation_writes` gives, through a view
    scoped to this app."""
    if org_entry(view, org["id"]) is not None:
        raise Rejected("exists", f"organisation {org['id']} already exists")
    writes = organisation_writes(org)
    for key in writes:
        if key.startswith(f"{PREFIX}key/") and view.get_raw(key) is not None:
            raise Rejected("exists", f"admin key {key.removeprefix(PREFIX + 'key/')} is "
                                     "already registered")
        if key.startswith(f"{PREFIX}node/") and view.get_raw(key) is not None:
            raise Rejected("exists", f"node {key.removeprefix(PREFIX + 'node/')} is "
                                     "already a member's")
    scoped = owned(view, IdentityApp())
    for key in sorted(writes):
        scoped.put(key, writes[key])
    return (Event("identity.org_admitted", (("org", org["id"]), ("role", org["role"]))),)


def genesis_writes(organisations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The state entries that the genesis organisations create."""
    writes: dict[str, Any] = {}
    for org in organisations:
        for key, value in organisation_writes(org).items():
            if key in writes and key.startswith(f"{PREFIX}key/"):
                raise ValueError(f"admin key {key.removeprefix(PREFIX + 'key/')} appears "
                                 "twice in genesis")
            if key in writes and key.startswith(f"{PREFIX}org/"):
                raise ValueError(f"organisation {org['id']} appears twice in genesis")
            if key in writes and key.startswith(f"{PREFIX}node/"):
                raise ValueError(f"node {key.removeprefix(PREFIX + 'node/')} appears twice "
                                 "in genesis")
            writes[key] = value
    return writes


class IdentityApp(App):
    """Organisations, members and patients, and who may sign."""

    name: ClassVar[str] = "identity"
    prefixes: ClassVar[tuple[str, ...]] = (PREFIX,)
    codes: ClassVar[dict[str, int]] = {"key_suspended": 403, "key_rotated": 403,
                                       "too_many_nodes": 409}
    summary: ClassVar[str] = "Organisations, their members, and patients."
    shortcuts: ClassVar[dict[str, str]] = {"patient": "patient"}

    def transactions(self) -> Sequence[TxType[Any]]:
        return (
            TxType(REGISTER, RegisterBody, active_sender, _register_check, _register_apply,
                   summary="An organisation admin registers a member"),
            TxType(SUSPEND, SuspendBody, active_sender, _suspend_check, _suspend_apply,
                   summary="An organisation admin suspends a member's key"),
            TxType(ROTATE, RotateBody, active_sender, _rotate_check, _rotate_apply,
                   summary="A member (or an admin) replaces the member's key"),
            TxType(PATIENT, PatientBody, anyone, _patient_check, _patient_apply,
                   summary="A patient registers under the pseudonym of their key"),
            TxType(PATIENT_ROTATE, PatientRotateBody, active_sender, _patient_rotate_check,
                   _patient_rotate_apply,
                   summary="A patient replaces their keys; the pseudonym stays"),
            TxType(NODE_ADD, NodeBody, active_sender, _node_check, _node_apply,
                   summary="An organisation admin adds a node the organisation runs (its "
                           "CometBFT node ID): the members' nodes then accept it as a peer"),
        )

    def check_genesis(self, genesis: GenesisDoc) -> None:
        genesis_writes(genesis.organisations)

    def admits_peer(self, view: StateView, node_id: str) -> bool:
        return node_member(view, node_id)

    def may_upload_blob(self, view: StateView, uploader: bytes) -> bool:
        """A registered, active key (an admin, a member or a patient) may upload."""
        raw = view.get_raw(key_key(uploader))
        return raw is not None and _status(raw) == "active"

    def genesis(self, genesis: GenesisDoc) -> dict[str, Any]:
        return genesis_writes(genesis.organisations)

    def demo(self, orgs: Sequence[str]) -> Sequence[DemoTx]:
        """A clinician at the first organisation and an auditor at the second, each
        registered by their organisation's admin (demo-only keys from fixed seeds)."""
        people = (("Dr Ada Demo", "clinician"), ("Alan Audit", "auditor"))
        return tuple(DemoTx(org, REGISTER, _demo_member(org, name, role))
                     for org, (name, role) in zip(orgs, people, strict=False))


def _demo_member(org: str, name: str, role: str) -> dict[str, Any]:
    """The body registering demo member ``name``: its signing and encryption keys come from
    fixed seeds, so they are public knowledge -- demo data only, never for real records."""
    seed = hashlib.sha256(f"medledger demo member {org} {role}".encode()).digest()
    signing = SigningKey.from_seed(seed)
    enc = EncryptionKey.from_private_bytes(DEFAULT_SUITE, hashlib.sha256(b"enc " + seed).digest())
    return {"enc_key": enc.public_bytes().hex(), "enc_suite": enc.suite,
            "key": signing.public_key.hex(), "name": name, "org": org, "role": role}

