"""Governance and evidence: validator-set changes, organisation admission, and the
misbehavior CometBFT reports (double signing), recorded as evidence.

Transaction types::

    governance.propose  {"kind": "validator_add"|"validator_remove"|"validator_power"
                                 |"org_admit",
                         "change": {...}, "effective_height": int}
    governance.approve  {"proposal": "<64 hex proposal id>"}

``change`` by kind::

    validator_add     {"public_key": hex, "power": int, "name": str}
    validator_remove  {"public_key": hex}                  (+ optional "evidence": hash hex)
    validator_power   {"public_key": hex, "power": int}    (+ optional "evidence": hash hex)
    org_admit         {"id", "name", "role", "admins": [hex], "nodes"?: [node id]}
                      (a genesis organisation; its nodes may join the consortium's network)

State keys::

    validators/current           the set in force (ValidatorSet.to_list()); genesis writes it
    validators/pending/<h:016d>  a set that comes into force at height h
    validators/schedule          the heights with a pending set, ascending (absent if none)
    validators/at/<h:016d>       the set that came into force at height h (h > 1), written
                                 by the promotion in block h and never changed after
    governance/proposal/<id>     {"id", "kind", "change", "effective_height", "proposer",
                                  "approvals": [key hex, sorted], "status": "open"|"approved",
                                  "height", "approved_height"}
    evidence/<hash hex>          {"evidence", "hash", "height" (committed at), "validator",
                                  "offence_height", "seq"}
    evidence/count               how many pieces of evidence are committed
    evidence/seq/<n:016d>        the hash hex of the n-th (from 1), in commit order

Rules. Only a validator of the set in force at the block's height proposes or approves;
the proposer's proposal is its own first approval. A proposal is enacted by the approval
that brings its approvers' power above 2/3 of the total power in force at that height
(one transaction suffices when the proposer alone holds more). ``effective_height`` must be
at least two above the proposing block's height, and a proposal can be approved only in a
block below its ``effective_height``: after that it is expired. A validator change writes
the set in force at ``effective_height`` with the change applied (and applies the change to
every set already scheduled after it) to ``validators/pending/<effective_height>``; an
``org_admit`` writes the organisation and its admin keys at once, as genesis does. An
open proposal whose effective height is reached stays ``"open"`` in state; it is expired by
rule (:func:`proposal_expired`), since nothing writes to it any more.

Evidence is what CometBFT reports with a block (``misbehavior`` in FinalizeBlock: a
duplicate vote, a light-client attack), which the engine has verified: the begin-block hook
records each report once, naming the offender by its key in the set of the offence's
height. A ``validator_remove`` or ``validator_power`` change may cite it by hash; the cited
evidence must name that validator.

Events: ``governance.proposed {proposal, kind, proposer}``, ``governance.approval
{proposal, approver}``, ``governance.approved_proposal {proposal, kind, effective_height}``
(then, for ``org_admit``, identity's ``identity.org_admitted``),
``governance.evidence_recorded {hash, validator, offence_height}``, and at block start
``governance.validators_changed {height, hash, total_power}``.

This app is the registry's validator authority: its begin-block hook promotes the set due
at the block's height, and the node takes the validators of height ``h`` from
:func:`validators_at` on the state committed at ``h - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from medledger.apps import identity
from medledger.apps.base import App, BlockContext, Event, GenesisDoc, Rejected, TxType
from medledger.apps.body import Hex, OneOf, Range, Text, decode_body
from medledger.codec import Tag, encode, tagged_hash
from medledger.ledger import (
    Transaction,
    Validator,
    ValidatorSet,
)
from medledger.ledger.validators import MAX_POWER, MAX_TOTAL_POWER
from medledger.state import StateView

__all__ = [
    "APPROVE", "KINDS", "MAX_TOTAL_POWER", "PROPOSE",
    "GovernanceApp", "begin_block", "evidence_entry", "evidence_key",
    "genesis_writes", "list_evidence", "pending_key", "promote_pending", "proposal_entry",
    "proposal_expired", "proposal_key", "set_key", "validators_at",
]

PROPOSE, APPROVE = "governance.propose", "governance.approve"
KINDS = ("validator_add", "validator_remove", "validator_power", "org_admit")

CURRENT = "validators/current"
SCHEDULE = "validators/schedule"
EVIDENCE_COUNT = "evidence/count"


def pending_key(height: int) -> str:
    """The state key of the set scheduled to come into force at ``height``."""
    return f"validators/pending/{height:016d}"


def set_key(height: int) -> str:
    """The state key of the set that came into force at ``height`` (append-only)."""
    return f"validators/at/{height:016d}"



def proposal_key(proposal_id: str) -> str:
    """The state key of a governance proposal (its id: 64 hex)."""
    return f"governance/proposal/{proposal_id}"


def evidence_key(evidence_hash: str) -> str:
    """The state key of committed evidence (its hash: 64 hex)."""
    return f"evidence/{evidence_hash}"


def _evidence_seq_key(seq: int) -> str:
    return f"evidence/seq/{seq:016d}"



# the validator set in state ---------------------------------------------------------------
def genesis_writes(validators: ValidatorSet) -> dict[str, Any]:
    """The state entries of the genesis validator set."""
    return {CURRENT: validators.to_list()}


def _schedule(view: StateView) -> list[int]:
    return view.get(SCHEDULE) or []


def validators_at(view: StateView, height: int) -> ValidatorSet:
    """The set in force at ``height``: the latest set scheduled at or below ``height``,
    else ``validators/current``. Correct whether or not :func:`promote_pending` has run."""
    due = [h for h in _schedule(view) if h <= height]
    key = pending_key(due[-1]) if due else CURRENT
    return ValidatorSet.from_list(view.get(key))


def promote_pending(view: StateView, height: int) -> ValidatorSet | None:
    """Make the latest set scheduled at or below ``height`` current, record it as the set
    of ``height`` (``validators/at/<height>``), and drop the scheduled sets it supersedes.
    Returns the new current set, or None when nothing was due."""
    schedule = _schedule(view)
    due = [h for h in schedule if h <= height]
    if not due:
        return None
    promoted = view.get(pending_key(due[-1]))
    view.put(CURRENT, promoted)
    view.put(set_key(height), promoted)
    for h in due:
        view.delete(pending_key(h))
    rest = schedule[len(due):]
    if rest:
        view.put(SCHEDULE, rest)
    else:
        view.delete(SCHEDULE)
    return ValidatorSet.from_list(promoted)


def begin_block(view: StateView, ctx: BlockContext) -> ValidatorSet | None:
    """What runs at the start of block ``ctx.height``: :func:`promote_pending`."""
    return promote_pending(view, ctx.height)


# stateless checks -------------------------------------------------------------------------
_Key = Annotated[str, Hex(32)]
_Power = Annotated[int, Range(1, MAX_POWER)]


@dataclass(frozen=True, slots=True)
class AddChange:
    public_key: _Key
    power: _Power
    name: Annotated[str, Text(64)]


@dataclass(frozen=True, slots=True)
class RemoveChange:
    public_key: _Key
    evidence: _Key | None = None


@dataclass(frozen=True, slots=True)
class PowerChange:
    public_key: _Key
    power: _Power
    evidence: _Key | None = None


_CHANGES: dict[str, type] = {
    "validator_add": AddChange, "validator_remove": RemoveChange,
    "validator_power": PowerChange,
}


def _check_change(kind: str, change: Any) -> None:
    if type(change) is not dict:
        raise Rejected("malformed", "change must be an object")
    if kind != "org_admit":
        decode_body(_CHANGES[kind], change)
        return
    try:
        identity.check_organisation(change)
    except ValueError as e:
        raise Rejected("malformed", str(e)) from None
    admins = change["admins"]
    if any(admin != admin.lower() for admin in admins) or len(set(admins)) != len(admins):
        raise Rejected("malformed", "admin keys must be lower-case hex, each once")
    decode_body(_OrgName, {"name": change["name"]})


@dataclass(frozen=True, slots=True)
class _OrgName:
    name: Annotated[str, Text(128)]


@dataclass(frozen=True, slots=True)
class ProposeBody:
    kind: Annotated[str, OneOf(KINDS)]
    change: dict[str, Any]
    effective_height: Annotated[int, Range(1, 10**16 - 1)]

    def validate(self) -> None:
        _check_change(self.kind, self.change)


@dataclass(frozen=True, slots=True)
class ApproveBody:
    proposal: Annotated[str, Hex(32)]


# applying a change ------------------------------------------------------------------------
def _changed(validators: ValidatorSet, kind: str, change: dict[str, Any]) -> ValidatorSet:
    """``validators`` with ``change`` applied; Rejected when it does not apply."""
    key = bytes.fromhex(change["public_key"])
    others = [v for v in validators.validators if v.public_key != key]
    present = len(others) != len(validators.validators)
    if kind == "validator_add":
        if present:
            raise Rejected("exists", "that key is already a validator")
        others.append(Validator(key, change["power"], change["name"]))
    elif not present:
        raise Rejected("not_found", "that key is not a validator")
    elif kind == "validator_power":
        others.append(Validator(key, change["power"], _name_of(validators, key)))
    if not others:
        raise Rejected("empty_set", "the change would leave no validators")
    result = ValidatorSet.of(others)
    if result.total_power > MAX_TOTAL_POWER:
        raise Rejected("too_much_power", f"total power would exceed {MAX_TOTAL_POWER}")
    return result


def _name_of(validators: ValidatorSet, key: bytes) -> str:
    return next(v.name for v in validators.validators if v.public_key == key)


def _validator_writes(view: StateView, kind: str, change: dict[str, Any],
                      effective: int) -> dict[str, Any]:
    """The pending sets a validator change writes: its own, and each later one updated."""
    schedule = _schedule(view)
    writes = {pending_key(effective): _changed(validators_at(view, effective), kind, change)}
    for h in schedule:
        if h > effective:
            later = ValidatorSet.from_list(view.get(pending_key(h)))
            writes[pending_key(h)] = _changed(later, kind, change)
    heights = sorted(set(schedule) | {effective})
    out: dict[str, Any] = {**{k: s.to_list() for k, s in writes.items()}, SCHEDULE: heights}
    return out


def _check_org_admit(view: StateView, org: dict[str, Any]) -> None:
    if identity.org_entry(view, org["id"]) is not None:
        raise Rejected("exists", f"organisation {org['id']} already exists")
    for admin in org["admins"]:
        if identity.key_entry(view, admin) is not None:
            raise Rejected("exists", f"admin key {admin} is already registered")


def _enactment(view: StateView, kind: str, change: dict[str, Any],
               effective: int) -> dict[str, Any]:
    """The writes that enact a change (none of its own for ``org_admit``, which identity
    writes when the proposal is approved), or Rejected if it cannot be enacted now."""
    if kind == "org_admit":
        _check_org_admit(view, change)
        return {}
    if "evidence" in change:
        entry = evidence_entry(view, change["evidence"])
        if entry is None:
            raise Rejected("not_found", "the cited evidence is not on the ledger")
        if entry["validator"] != change["public_key"]:
            raise Rejected("evidence_mismatch", "the cited evidence names another validator")
    return _validator_writes(view, kind, change, effective)


# governance.propose / governance.approve --------------------------------------------------
def proposal_entry(view: StateView, proposal_id: str) -> dict[str, Any] | None:
    """The stored proposal ``proposal_id`` (64 hex), or None."""
    return view.get(proposal_key(proposal_id))  # type: ignore[no-any-return]


def proposal_expired(proposal: dict[str, Any], height: int) -> bool:
    """Whether an open proposal can no longer be approved in a block at ``height``."""
    return height >= proposal["effective_height"]


def _approved(validators: ValidatorSet, approvals: list[str]) -> bool:
    power = sum(validators.power_of(bytes.fromhex(k)) for k in approvals)
    return 3 * power > 2 * validators.total_power


def _settle(view: StateView, proposal: dict[str, Any], validators: ValidatorSet,
            ctx: BlockContext) -> tuple[dict[str, Any], bool]:
    """The writes of recording ``proposal`` as it now stands, enacting it if approved, and
    whether it was approved."""
    writes: dict[str, Any] = {}
    approved = _approved(validators, proposal["approvals"])
    if approved:
        writes = _enactment(view, proposal["kind"], proposal["change"],
                            proposal["effective_height"])
        proposal = {**proposal, "status": "approved", "approved_height": ctx.height}
    return {**writes, proposal_key(proposal["id"]): proposal}, approved


def _new_proposal(tx: Transaction, b: ProposeBody, ctx: BlockContext) -> dict[str, Any]:
    return {
        "approvals": [tx.sender.hex()], "approved_height": None, "change": b.change,
        "effective_height": b.effective_height, "height": ctx.height, "id": tx.tx_id.hex(),
        "kind": b.kind, "proposer": tx.sender.hex(), "status": "open",
    }


def validator_sender(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    """``auth``: only a validator of the set in force at the block's height."""
    if validators_at(view, ctx.height).power_of(tx.sender) == 0:
        raise Rejected("not_validator", "only a current validator may do this")


def _propose_check(view: StateView, tx: Transaction, b: ProposeBody, ctx: BlockContext) -> None:
    if b.effective_height <= ctx.height + 1:
        raise Rejected("too_soon", f"effective_height must be above {ctx.height + 1}")
    # refuse now what could never be enacted as things stand
    _enactment(view, b.kind, b.change, b.effective_height)


def _enact(view: StateView, proposal: dict[str, Any], writes: dict[str, Any],
           approved: bool) -> list[Event]:
    """Put ``writes`` in key order; on approval, admit an organisation through identity.
    The events of an approval."""
    for key in sorted(writes):
        view.put(key, writes[key])
    if not approved:
        return []
    events = [Event("governance.approved_proposal", (
        ("proposal", proposal["id"]), ("kind", proposal["kind"]),
        ("effective_height", str(proposal["effective_height"]))))]
    if proposal["kind"] == "org_admit":
        identity.admit_organisation(view, proposal["change"])
    return events


def _propose_apply(view: StateView, tx: Transaction, b: ProposeBody,
                   ctx: BlockContext) -> list[Event]:
    proposal = _new_proposal(tx, b, ctx)
    writes, approved = _settle(view, proposal, validators_at(view, ctx.height), ctx)
    events = [Event("governance.proposed", (("proposal", proposal["id"]), ("kind", b.kind),
                                             ("proposer", tx.sender.hex())))]
    return events + _enact(view, proposal, writes, approved)


def _open_proposal(view: StateView, tx: Transaction, b: ApproveBody,
                   ctx: BlockContext) -> dict[str, Any]:
    proposal = proposal_entry(view, b.proposal)
    if proposal is None:
        raise Rejected("not_found", "no such proposal")
    if proposal["status"] != "open":
        raise Rejected("closed", f"the proposal is already {proposal['status']}")
    if proposal_expired(proposal, ctx.height):
        raise Rejected("expired", f"the proposal expired at height "
                                  f"{proposal['effective_height']}")
    if tx.sender.hex() in proposal["approvals"]:
        raise Rejected("already_approved", "this validator already approved the proposal")
    approvals = sorted([*proposal["approvals"], tx.sender.hex()])
    return {**proposal, "approvals": approvals}


def _approve_check(view: StateView, tx: Transaction, b: ApproveBody, ctx: BlockContext) -> None:
    _settle(view, _open_proposal(view, tx, b, ctx), validators_at(view, ctx.height), ctx)


def _approve_apply(view: StateView, tx: Transaction, b: ApproveBody,
                   ctx: BlockContext) -> list[Event]:
    proposal = _open_proposal(view, tx, b, ctx)
    writes, approved = _settle(view, proposal, validators_at(view, ctx.height), ctx)
    events = [Event("governance.approval", (("proposal", proposal["id"]),
                                            ("approver", tx.sender.hex())))]
    return events + _enact(view, proposal, writes, approved)


# evidence --------------------------------------------------------------------------
def evidence_entry(view: StateView, evidence_hash: str) -> dict[str, Any] | None:
    """The committed evidence with hash ``evidence_hash`` (64 hex), or None."""
    return view.get(evidence_key(evidence_hash))  # type: ignore[no-any-return]


def list_evidence(view: StateView, start: int = 1, limit: int = 100) -> list[dict[str, Any]]:
    """Committed evidence entries in commit order, from the ``start``-th (1-based)."""
    end = min(view.get(EVIDENCE_COUNT) or 0, start + limit - 1)
    hashes = [view.get(_evidence_seq_key(n)) for n in range(max(start, 1), end + 1)]
    return [view.get(evidence_key(h)) for h in hashes]


def _record_evidence(view: StateView, ctx: BlockContext, digest: str,
                     evidence: dict[str, Any], validator: bytes,
                     offence_height: int) -> tuple[Event, ...]:
    """Append evidence to the committed list (once per digest)."""
    if view.get(evidence_key(digest)) is not None:
        return ()
    seq = (view.get(EVIDENCE_COUNT) or 0) + 1
    view.put(evidence_key(digest), {
        "evidence": evidence, "hash": digest, "height": ctx.height,
        "offence_height": offence_height, "seq": seq, "validator": validator.hex(),
    })
    view.put(_evidence_seq_key(seq), digest)
    view.put(EVIDENCE_COUNT, seq)
    return (Event("governance.evidence_recorded", (
        ("hash", digest), ("validator", validator.hex()),
        ("offence_height", str(offence_height)))),)


def record_misbehavior(view: StateView, ctx: BlockContext) -> tuple[Event, ...]:
    """Record the offences the consensus engine reports with the block as evidence (the
    engine proved them; its report is the evidence)."""
    events: list[Event] = []
    for offence in ctx.misbehavior:
        report = {"engine": "cometbft", "kind": offence.kind, "height": offence.height,
                  "time": offence.time, "total_power": offence.total_power,
                  "validator": offence.validator.hex()}
        digest = tagged_hash(Tag.EVIDENCE, encode(report)).hex()
        events.extend(_record_evidence(view, ctx, digest, report, offence.validator,
                                       offence.height))
    return tuple(events)


class GovernanceApp(App):
    """Validator-set changes, organisation admission, and double-sign evidence."""

    name: ClassVar[str] = "governance"
    prefixes: ClassVar[tuple[str, ...]] = ("governance/", "validators/", "evidence/")
    codes: ClassVar[dict[str, int]] = {
        "not_validator": 403, "too_soon": 422, "closed": 409, "expired": 409,
        "already_approved": 409, "empty_set": 422, "too_much_power": 422,
        "evidence_mismatch": 422,
    }
    summary: ClassVar[str] = ("Validator-set changes, organisation admission, and a node's "
                              "identity.")

    def transactions(self) -> Sequence[TxType[Any]]:
        return (
            TxType(PROPOSE, ProposeBody, validator_sender, _propose_check, _propose_apply,
                   summary="A validator proposes a change (its own first approval)"),
            TxType(APPROVE, ApproveBody, validator_sender, _approve_check, _approve_apply,
                   summary="A validator approves an open proposal"),
        )

    def genesis(self, genesis: GenesisDoc) -> dict[str, Any]:
        return genesis_writes(genesis.validators)

    def begin_block(self, view: StateView, ctx: BlockContext) -> tuple[Event, ...]:
        recorded = record_misbehavior(view, ctx)
        promoted = promote_pending(view, ctx.height)
        if promoted is None:
            return recorded
        return recorded + (Event("governance.validators_changed", (
            ("height", str(ctx.height)), ("hash", promoted.hash().hex()),
            ("total_power", str(promoted.total_power)))),)

    # the validator authority the node asks (medledger.apps.base.ValidatorAuthority)
    def validator_authority(self) -> GovernanceApp:
        return self

    def validators_at(self, view: StateView, height: int) -> ValidatorSet:
        return validators_at(view, height)

    def pending_key(self, height: int) -> str:
        return pending_key(height)

    def set_key(self, height: int) -> str:
        return set_key(height)

