"""Governance and evidence: validator-set changes, organisation admission, double-sign evidence.

Transaction types::

    governance.propose  {"kind": "validator_add"|"validator_remove"|"validator_power"
                                 |"org_admit",
                         "change": {...}, "effective_height": int}
    governance.approve  {"proposal": "<64 hex proposal id>"}
    evidence.submit     {"evidence": DuplicateVoteEvidence.to_dict()}

``change`` by kind::

    validator_add     {"public_key": hex, "power": int, "name": str}
                      (+ optional "certificate": the node's TLS certificate, DER hex)
    validator_remove  {"public_key": hex}                  (+ optional "evidence": hash hex)
    validator_power   {"public_key": hex, "power": int}    (+ optional "evidence": hash hex)
    org_admit         {"id", "name", "role", "admins": [hex]}   (a genesis organisation)

State keys::

    validators/current           the set in force (ValidatorSet.to_list()); genesis writes it
    validators/pending/<h:016d>  a set that comes into force at height h
    validators/schedule          the heights with a pending set, ascending (absent if none)
    validators/at/<h:016d>       the set that came into force at height h (h > 1), written
                                 by the promotion in block h and never changed after
    validators/cert/<key hex>    the TLS certificate (DER hex) a validator_add carried; nodes
                                 take it for that validator's transport identity once they
                                 have checked it is self-signed by that key
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

Evidence may be submitted by a validator or by any active registered key; it is checked
against the set in force and the chain id, recorded once, and refused when its offence is
more than :data:`EVIDENCE_MAX_AGE` heights old. A ``validator_remove`` or
``validator_power`` change may cite it by hash; the cited evidence must name that validator.

The node must call :func:`begin_block` at the start of each block's execution (before its
first transaction, on the block's overlay) and take the validators of height ``h`` from
:func:`validators_at` on the state committed at ``h - 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medledger.apps import identity
from medledger.apps.base import AppRegistry, BlockContext, Handler, Rejected, Stateful
from medledger.apps.fields import body_keys, hex_field, str_field
from medledger.ledger import (
    DuplicateVoteEvidence,
    IntegrityError,
    MalformedError,
    Transaction,
    Validator,
    ValidatorSet,
)
from medledger.ledger.validators import MAX_POWER, MAX_TOTAL_POWER
from medledger.state import StateView

__all__ = [
    "APPROVE", "EVIDENCE_MAX_AGE", "KINDS", "MAX_CERTIFICATE", "MAX_TOTAL_POWER", "PROPOSE",
    "SUBMIT", "begin_block", "cert_key", "evidence_entry", "genesis_writes", "list_evidence", "pending_key",
    "promote_pending", "proposal_entry", "proposal_expired", "register", "set_key",
    "validators_at",
]

PROPOSE, APPROVE, SUBMIT = "governance.propose", "governance.approve", "evidence.submit"
KINDS = ("validator_add", "validator_remove", "validator_power", "org_admit")
EVIDENCE_MAX_AGE = 100_000

CURRENT = "validators/current"
SCHEDULE = "validators/schedule"
EVIDENCE_COUNT = "evidence/count"
MAX_CERTIFICATE = 2048


def cert_key(public_key: bytes) -> str:
    """The state key of the TLS certificate a ``validator_add`` carried for ``public_key``."""
    return f"validators/cert/{public_key.hex()}"


def pending_key(height: int) -> str:
    """The state key of the set scheduled to come into force at ``height``."""
    return f"validators/pending/{height:016d}"


def set_key(height: int) -> str:
    """The state key of the set that came into force at ``height`` (append-only)."""
    return f"validators/at/{height:016d}"


_pending_key = pending_key


def _proposal_key(proposal_id: str) -> str:
    return f"governance/proposal/{proposal_id}"


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
    key = _pending_key(due[-1]) if due else CURRENT
    return ValidatorSet.from_list(view.get(key))


def promote_pending(view: StateView, height: int) -> ValidatorSet | None:
    """Make the latest set scheduled at or below ``height`` current, record it as the set
    of ``height`` (``validators/at/<height>``), and drop the scheduled sets it supersedes.
    Returns the new current set, or None when nothing was due."""
    schedule = _schedule(view)
    due = [h for h in schedule if h <= height]
    if not due:
        return None
    promoted = view.get(_pending_key(due[-1]))
    view.put(CURRENT, promoted)
    view.put(set_key(height), promoted)
    for h in due:
        view.delete(_pending_key(h))
    rest = schedule[len(due):]
    if rest:
        view.put(SCHEDULE, rest)
    else:
        view.delete(SCHEDULE)
    return ValidatorSet.from_list(promoted)


def begin_block(view: StateView, ctx: BlockContext) -> ValidatorSet | None:
    """What the node runs at the start of block ``ctx.height``: :func:`promote_pending`."""
    return promote_pending(view, ctx.height)


# stateless checks -------------------------------------------------------------------------
def _power_field(change: dict[str, Any]) -> None:
    power = change.get("power")
    if type(power) is not int or not 1 <= power <= MAX_POWER:
        raise Rejected("malformed", f"power must be an integer from 1 to {MAX_POWER}")


def _check_change(kind: str, change: Any) -> None:
    if type(change) is not dict:
        raise Rejected("malformed", "change must be an object")
    if kind == "org_admit":
        try:
            identity.check_organisation(change)
        except ValueError as e:
            raise Rejected("malformed", str(e)) from None
        admins = change["admins"]
        if any(admin != admin.lower() for admin in admins) or len(set(admins)) != len(admins):
            raise Rejected("malformed", "admin keys must be lower-case hex, each once")
        str_field(change, "name", 128)
        return
    shape = {
        "validator_add": ({"public_key", "power", "name"}, {"certificate"}),
        "validator_remove": ({"public_key"}, {"evidence"}),
        "validator_power": ({"public_key", "power"}, {"evidence"}),
    }[kind]
    body_keys(change, *shape)
    hex_field(change, "public_key", 32)
    if "power" in change:
        _power_field(change)
    if "name" in change:
        str_field(change, "name", 64)
    if "evidence" in change:
        hex_field(change, "evidence", 32)
    if "certificate" in change:
        hex_field(change, "certificate", max_size=MAX_CERTIFICATE)


def _propose_stateless(tx: Transaction) -> None:
    body_keys(tx.body, {"kind", "change", "effective_height"})
    if tx.body["kind"] not in KINDS:
        raise Rejected("malformed", f"kind must be one of {', '.join(KINDS)}")
    height = tx.body["effective_height"]
    if type(height) is not int or not 1 <= height < 10**16:
        raise Rejected("malformed", "effective_height must be a positive integer")
    _check_change(tx.body["kind"], tx.body["change"])


def _approve_stateless(tx: Transaction) -> None:
    body_keys(tx.body, {"proposal"})
    hex_field(tx.body, "proposal", 32)


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
    writes = {_pending_key(effective): _changed(validators_at(view, effective), kind, change)}
    for h in schedule:
        if h > effective:
            later = ValidatorSet.from_list(view.get(_pending_key(h)))
            writes[_pending_key(h)] = _changed(later, kind, change)
    heights = sorted(set(schedule) | {effective})
    out: dict[str, Any] = {**{k: s.to_list() for k, s in writes.items()}, SCHEDULE: heights}
    if kind == "validator_add" and "certificate" in change:
        out[cert_key(bytes.fromhex(change["public_key"]))] = change["certificate"]
    return out


def _org_writes(view: StateView, org: dict[str, Any]) -> dict[str, Any]:
    if identity.org_entry(view, org["id"]) is not None:
        raise Rejected("exists", f"organisation {org['id']} already exists")
    writes = identity.organisation_writes(org)
    for key in writes:
        if key.startswith("identity/key/") and view.get(key) is not None:
            raise Rejected("exists", f"admin key {key.removeprefix('identity/key/')} is "
                                     "already registered")
    return writes


def _enactment(view: StateView, kind: str, change: dict[str, Any],
               effective: int) -> dict[str, Any]:
    """The writes that enact a change, or Rejected if it cannot be enacted now."""
    if kind == "org_admit":
        return _org_writes(view, change)
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
    return view.get(_proposal_key(proposal_id))  # type: ignore[no-any-return]


def proposal_expired(proposal: dict[str, Any], height: int) -> bool:
    """Whether an open proposal can no longer be approved in a block at ``height``."""
    return height >= proposal["effective_height"]


def _require_validator(view: StateView, sender: bytes, ctx: BlockContext) -> ValidatorSet:
    validators = validators_at(view, ctx.height)
    if validators.power_of(sender) == 0:
        raise Rejected("not_validator", "only a current validator may do this")
    return validators


def _approved(validators: ValidatorSet, approvals: list[str]) -> bool:
    power = sum(validators.power_of(bytes.fromhex(k)) for k in approvals)
    return 3 * power > 2 * validators.total_power


def _settle(view: StateView, proposal: dict[str, Any], validators: ValidatorSet,
            ctx: BlockContext) -> dict[str, Any]:
    """The writes of recording ``proposal`` as it now stands, enacting it if approved."""
    writes: dict[str, Any] = {}
    if _approved(validators, proposal["approvals"]):
        writes = _enactment(view, proposal["kind"], proposal["change"],
                            proposal["effective_height"])
        proposal = {**proposal, "status": "approved", "approved_height": ctx.height}
    return {**writes, _proposal_key(proposal["id"]): proposal}


def _new_proposal(tx: Transaction, ctx: BlockContext) -> dict[str, Any]:
    b = tx.body
    return {
        "approvals": [tx.sender.hex()], "approved_height": None, "change": b["change"],
        "effective_height": b["effective_height"], "height": ctx.height, "id": tx.tx_id.hex(),
        "kind": b["kind"], "proposer": tx.sender.hex(), "status": "open",
    }


def _propose_writes(view: StateView, tx: Transaction, ctx: BlockContext) -> dict[str, Any]:
    validators = _require_validator(view, tx.sender, ctx)
    if tx.body["effective_height"] <= ctx.height + 1:
        raise Rejected("too_soon", f"effective_height must be above {ctx.height + 1}")
    # refuse now what could never be enacted as things stand
    _enactment(view, tx.body["kind"], tx.body["change"], tx.body["effective_height"])
    return _settle(view, _new_proposal(tx, ctx), validators, ctx)


def _approve_writes(view: StateView, tx: Transaction, ctx: BlockContext) -> dict[str, Any]:
    validators = _require_validator(view, tx.sender, ctx)
    proposal = proposal_entry(view, tx.body["proposal"])
    if proposal is None:
        raise Rejected("not_found", "no such proposal")
    if proposal["status"] != "open":
        raise Rejected("closed", f"the proposal is already {proposal['status']}")
    if proposal_expired(proposal, ctx.height):
        raise Rejected("expired", f"the proposal expired at height "
                                  f"{proposal['effective_height']}")
    sender = tx.sender.hex()
    if sender in proposal["approvals"]:
        raise Rejected("already_approved", "this validator already approved the proposal")
    approvals = sorted([*proposal["approvals"], sender])
    return _settle(view, {**proposal, "approvals": approvals}, validators, ctx)


def _put_all(view: StateView, writes: dict[str, Any]) -> None:
    for key in sorted(writes):
        view.put(key, writes[key])


# evidence.submit --------------------------------------------------------------------------
def evidence_entry(view: StateView, evidence_hash: str) -> dict[str, Any] | None:
    """The committed evidence with hash ``evidence_hash`` (64 hex), or None."""
    return view.get(f"evidence/{evidence_hash}")  # type: ignore[no-any-return]


def list_evidence(view: StateView, start: int = 1, limit: int = 100) -> list[dict[str, Any]]:
    """Committed evidence entries in commit order, from the ``start``-th (1-based)."""
    end = min(view.get(EVIDENCE_COUNT) or 0, start + limit - 1)
    hashes = [view.get(f"evidence/seq/{n:016d}") for n in range(max(start, 1), end + 1)]
    return [view.get(f"evidence/{h}") for h in hashes]


def _evidence_of(tx: Transaction) -> DuplicateVoteEvidence:
    try:
        return DuplicateVoteEvidence.from_dict(tx.body["evidence"])
    except MalformedError as e:
        raise Rejected("malformed", f"evidence: {e}") from None


def _submit_stateless(tx: Transaction) -> None:
    body_keys(tx.body, {"evidence"})
    _evidence_of(tx)


def _submit_stateful(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    validators = validators_at(view, ctx.height)
    if validators.power_of(tx.sender) == 0:
        identity.check_sender(view, tx)
    evidence = _evidence_of(tx)
    if evidence_entry(view, evidence.hash().hex()) is not None:
        raise Rejected("exists", "this evidence is already on the ledger")
    if evidence.height + EVIDENCE_MAX_AGE < ctx.height:
        raise Rejected("expired", f"the offence is more than {EVIDENCE_MAX_AGE} heights old")
    if evidence.height > ctx.height:
        raise Rejected("invalid_evidence", "the offence is at a height not yet reached")
    try:
        evidence.verify(ctx.chain_id, validators)
    except IntegrityError as e:
        raise Rejected("invalid_evidence", str(e)) from None


def _submit_apply(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    evidence = _evidence_of(tx)
    digest = evidence.hash().hex()
    seq = (view.get(EVIDENCE_COUNT) or 0) + 1
    view.put(f"evidence/{digest}", {
        "evidence": evidence.to_dict(), "hash": digest, "height": ctx.height,
        "offence_height": evidence.height, "seq": seq, "validator": evidence.validator.hex(),
    })
    view.put(f"evidence/seq/{seq:016d}", digest)
    view.put(EVIDENCE_COUNT, seq)


Writes = Callable[[StateView, Transaction, BlockContext], dict[str, Any]]


def _checked(writes: Writes) -> Stateful:
    """A stateful check made of a writes function: compute the writes, keep none."""
    def stateful(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
        writes(view, tx, ctx)
    return stateful


def _applied(writes: Writes) -> Stateful:
    """An apply made of a writes function: compute the writes and put them, in key order."""
    def apply(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
        _put_all(view, writes(view, tx, ctx))
    return apply


def register(registry: AppRegistry) -> None:
    """Register the governance and evidence transaction types."""
    registry.register(PROPOSE, Handler(_propose_stateless, _checked(_propose_writes),
                                       _applied(_propose_writes)))
    registry.register(APPROVE, Handler(_approve_stateless, _checked(_approve_writes),
                                       _applied(_approve_writes)))
    registry.register(SUBMIT, Handler(_submit_stateless, _submit_stateful, _submit_apply))
