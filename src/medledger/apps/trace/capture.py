"""``trace.capture``: EPCIS 2.0 events (up to 64), each checked against the custody,
aggregation and transformation rules after those before it, and applied all or none.

Each rule works on a :class:`Plan`: it reads the state (and what it has planned so far),
refuses with a stable code what the rules forbid, and plans its writes. The stateful check
runs the rule and drops the plan; apply runs it again and writes it, so that check and
apply can never disagree.

The rules, each with its refusal code (docs/medicines.md has them as a table):

- ``commissioning`` (ObjectEvent ADD): only the company prefix's owner commissions its
  GTINs (``not_owner``, ``unknown_prefix``, ``unknown_product``); a serial once
  (``already_commissioned``); the ILMD gives the lot and expiry, and a lot keeps one expiry
  (``lot_mismatch``); no pack of a recalled lot (``recalled``).
- ``receiving`` of lots (ObjectEvent ADD, a quantityList): raw-material lots received by a
  drug maker (``lot_exists``).
- ``commissioning`` or ``creating_class_instance`` (TransformationEvent; CBV 2.0 has no
  ``transforming``): input lots in the maker's custody
  (``unknown_lot``, ``not_custodian``, ``recalled``) become new lots of its own GTINs.
- ``packing`` / ``unpacking`` (AggregationEvent ADD / DELETE): the custodian packs what it
  holds, each child into one container (``already_packed``, ``not_in_container``), never a
  container into itself or its contents (``cycle``).
- ``shipping`` (ObjectEvent OBSERVE): only the current custodian ships (``not_custodian``),
  to a registered party (``unknown_party``), nothing in transit (``in_transit``), nothing in
  a container on its own (``in_container``), nothing of a recalled lot (``recalled``); a
  container's contents move with it.
- ``receiving`` (ObjectEvent OBSERVE): only the addressee (``not_addressee``).
- ``dispensing`` (ObjectEvent OBSERVE or DELETE): a pack the pharmacy holds, not recalled,
  not expired (``expired``), with the patient's commitment; its life ends.
- ``decommissioning``, ``destroying`` (ObjectEvent DELETE): the custodian ends a pack's
  life.
- ``inspecting`` (ObjectEvent OBSERVE): on the history of what it names.

A pack whose life has ended moves no more (``not_active``). An event is captured once: its
CBV 2.0 event hash is its key (``duplicate_event``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from medledger.apps.base import BlockContext, Event, Rejected
from medledger.apps.body import Hex, Items
from medledger.apps.lists import ProvableList
from medledger.apps.trace.events import Facts, deref, facts_of, ref
from medledger.apps.trace.master import MAKER_ROLES
from medledger.apps.trace.state import (
    HISTORY,
    LOT_PACKS,
    OUTPUTS,
    event_key,
    history_owner,
    lot_key,
    member_org,
    object_key,
    org_of_party,
    owner_of_gtin,
    product_key,
)
from medledger.ledger import Transaction
from medledger.ledger.block import MAX_EVENTS as MAX_RESULT_EVENTS
from medledger.standards.gs1 import LGTIN, SGTIN, SSCC
from medledger.state import StateView

__all__ = ["DISPENSER_ROLES", "MAX_EVENTS", "RULES", "CaptureBody", "Plan", "capture_apply",
           "capture_check"]

DISPENSER_ROLES = ("pharmacy", "hospital")
"""Organisation roles that dispense packs to patients."""
Ident = SGTIN | SSCC | LGTIN


MAX_EVENTS = MAX_RESULT_EVENTS
"""Events in one ``trace.capture``: applied in order, all or none. Each makes one
``trace.captured`` event, and a transaction's result holds at most
:data:`medledger.ledger.block.MAX_EVENTS` (64): one with more could not be read back."""


@dataclass(frozen=True)
class CaptureBody:
    """``trace.capture``: EPCIS 2.0 events, applied in order, all or none; for a
    dispensing, the patient's commitment (a salted hash only the patient can open:
    docs/medicines.md).

    :meth:`validate` reads each event's facts once (normalising and hashing an event is
    most of a capture's cost) and keeps them in ``facts``; the node keeps a decoded body
    from admission to its block, so the checks and the apply that follow reuse them."""

    events: Annotated[list[dict[str, Any]], Items(1, MAX_EVENTS)]
    commitment: Annotated[str, Hex(32)] | None = None

    def validate(self) -> None:
        facts = tuple(_facts(i, e) for i, e in enumerate(self.events))
        hashes = [f.hash for f in facts]
        if len(set(hashes)) != len(hashes):
            raise Rejected("malformed", "the same event is named twice")
        object.__setattr__(self, "facts", facts)  # not a body field: derived, kept

    facts: ClassVar[tuple[Facts, ...]]  # set on each instance by validate


def _facts(index: int, event: Any) -> Facts:
    try:
        return facts_of(event)
    except Rejected as e:
        raise Rejected(e.code, f"events[{index}]: {e.message}") from None


class Plan:
    """Reads through to the view, writes held until :meth:`commit`."""

    def __init__(self, view: StateView, ctx: BlockContext, org: str, role: str,
                 commitment: str | None) -> None:
        self.view, self.ctx, self.org, self.role = view, ctx, org, role
        self.commitment = commitment
        self.puts: dict[str, Any] = {}
        self.appends: list[tuple[ProvableList, str, Any]] = []
        self.done: list[tuple[Facts, dict[str, None]]] = []  # each event, its histories
        self.facts: Facts
        self.history: dict[str, None] = {}  # the current event's history owners, in order

    def run(self, facts: Facts, rule: Callable[[Plan], None]) -> None:
        """Plan one event's effects after those planned before it."""
        self.facts, self.history = facts, {}
        rule(self)
        self.done.append((facts, self.history))

    def get(self, key: str) -> Any:
        return self.puts[key] if key in self.puts else self.view.get(key)

    def put(self, key: str, value: Any) -> None:
        self.puts[key] = value

    def touched(self, ident: Ident) -> None:
        """The event goes on ``ident``'s history."""
        self.history[history_owner(ident)] = None

    def commit(self) -> None:
        for key, value in self.puts.items():
            self.view.put(key, value)
        for lst, owner, value in self.appends:
            lst.append(self.view, owner, value)
        for facts, history in self.done:
            for owner in history:
                HISTORY.append(self.view, owner, facts.hash_hex)

    # reads shared by the rules ----------------------------------------------------------------
    def entry(self, ident: Ident) -> dict[str, Any]:
        found = self.get(object_key(ident))
        if found is None:
            what = "lot" if isinstance(ident, LGTIN) else "object"
            raise Rejected("unknown_lot" if what == "lot" else "unknown_object",
                           f"{_label(ident)} is not on the ledger")
        return found  # type: ignore[no-any-return]

    def held(self, ident: Ident) -> dict[str, Any]:
        """An object (a pack or a container) this organisation holds, active and not in
        transit."""
        if isinstance(ident, LGTIN):
            raise Rejected("malformed", f"{_label(ident)} is a lot: only packs and "
                                        "containers are held, packed and moved")
        entry = self.entry(ident)
        if entry["status"] != "active":
            raise Rejected("not_active", f"{_label(ident)} is {entry['status']}")
        if entry["transit"] is not None:
            raise Rejected("in_transit", f"{_label(ident)} is in transit to "
                                         f"{entry['transit']['to']}")
        if entry["custodian"] != self.org:
            raise Rejected("not_custodian", f"{_label(ident)} is in {entry['custodian']}'s "
                                            f"custody, not {self.org}'s")
        return entry

    def contents(self, ident: Ident) -> Iterator[Ident]:
        """``ident`` and everything packed in it, depth first."""
        yield ident
        if isinstance(ident, SSCC):
            for child in self.entry(ident)["children"]:
                yield from self.contents(deref(child))

    def not_recalled(self, ident: Ident) -> None:
        for item in self.contents(ident):
            if isinstance(item, SGTIN):
                lot = self.get(lot_key(LGTIN(item.gtin, self.entry(item)["lot"])))
                if lot is not None and lot["recalled"] is not None:
                    raise Rejected("recalled", f"{_label(item)} is of recalled lot "
                                               f"{lot['lot']}")

    def stamp(self) -> dict[str, int]:
        return {"height": self.ctx.height, "time": self.ctx.time}


def _label(ident: Ident) -> str:
    if isinstance(ident, SGTIN):
        return f"pack {ident.gtin} serial {ident.serial}"
    if isinstance(ident, SSCC):
        return f"container {ident.sscc}"
    return f"lot {ident.lot} of {ident.gtin}"


# the rules ------------------------------------------------------------------------------------
def _commission(p: Plan) -> None:
    f = p.facts
    if p.role not in MAKER_ROLES:
        raise Rejected("not_owner", f"a {p.role} does not commission packs")
    if not f.epcs or f.lot is None or f.expiry is None:
        raise Rejected("malformed", "commissioning names packs in epcList and their lot "
                                    "and expiry in ilmd")
    for pack in f.epcs:
        if not isinstance(pack, SGTIN):
            raise Rejected("malformed", "commissioning names packs (SGTINs) only")
        _own_product(p, pack.gtin)
        if p.get(object_key(pack)) is not None:
            raise Rejected("already_commissioned", f"{_label(pack)} was commissioned before")
        lot = _finished_lot(p, LGTIN(pack.gtin, f.lot), f.expiry)
        p.put(object_key(pack), {
            "kind": "pack", "gtin": pack.gtin, "serial": pack.serial, "lot": f.lot,
            "expiry": f.expiry, "custodian": p.org, "status": "active", "parent": None,
            "transit": None, "commissioned": f.hash_hex, "dispensed": None, **p.stamp()})
        p.appends.append((LOT_PACKS, lot.key, ref(pack)))
        p.touched(pack)
        p.touched(lot)


def _own_product(p: Plan, gtin: str) -> None:
    owner = owner_of_gtin(p.view, gtin)
    if owner is None:
        raise Rejected("unknown_prefix", f"GTIN {gtin} carries no registered company prefix")
    if owner != p.org:
        raise Rejected("not_owner", f"GTIN {gtin} is {owner}'s: only its owner commissions it")
    if p.view.get_raw(product_key(gtin)) is None:
        raise Rejected("unknown_product", f"product {gtin} is not registered")


def _finished_lot(p: Plan, lot: LGTIN, expiry: str) -> LGTIN:
    """The lot packs are commissioned in: made by a transformation, or new."""
    entry = p.get(lot_key(lot))
    if entry is None:
        p.put(lot_key(lot), _lot_entry(p, lot, "finished", expiry, []))
        return lot
    if entry["expiry"] != expiry:
        raise Rejected("lot_mismatch", f"lot {lot.lot} expires {entry['expiry']} on the "
                                       f"ledger, not {expiry}")
    if entry["recalled"] is not None:
        raise Rejected("recalled", f"lot {lot.lot} is recalled")
    return lot


def _lot_entry(p: Plan, lot: LGTIN, kind: str, expiry: str | None,
               inputs: list[str]) -> dict[str, Any]:
    return {"kind": kind, "gtin": lot.gtin, "lot": lot.lot, "expiry": expiry,
            "custodian": p.org, "maker": p.org if kind == "finished" else None,
            "inputs": inputs, "recalled": None, "made": p.facts.hash_hex, **p.stamp()}


def _receive_lots(p: Plan) -> None:
    if p.role not in MAKER_ROLES:
        raise Rejected("not_owner", f"a {p.role} does not receive raw materials")
    if not p.facts.classes or p.facts.epcs:
        raise Rejected("malformed", "receiving raw materials (ADD) names their lots in "
                                    "quantityList and nothing in epcList")
    for lot in p.facts.classes:
        if p.get(lot_key(lot)) is not None:
            raise Rejected("lot_exists", f"{_label(lot)} is on the ledger already")
        p.put(lot_key(lot), _lot_entry(p, lot, "raw", p.facts.expiry, []))
        p.touched(lot)


def _transform(p: Plan) -> None:
    f = p.facts
    if not f.inputs or not f.outputs or f.expiry is None:
        raise Rejected("malformed", "a transformation names input and output lots "
                                    "(quantity lists) and the output's expiry in ilmd")
    for lot in f.inputs:
        entry = p.entry(lot)
        if entry["custodian"] != p.org:
            raise Rejected("not_custodian", f"{_label(lot)} is {entry['custodian']}'s")
        if entry["recalled"] is not None:
            raise Rejected("recalled", f"{_label(lot)} is recalled")
        p.touched(lot)
    for out in f.outputs:
        _own_product(p, out.gtin)
        if p.get(lot_key(out)) is not None:
            raise Rejected("lot_exists", f"{_label(out)} is on the ledger already")
        p.put(lot_key(out), _lot_entry(p, out, "finished", f.expiry,
                                       [ref(i) for i in f.inputs]))
        for lot in f.inputs:
            p.appends.append((OUTPUTS, lot.key, ref(out)))
        p.touched(out)


def _pack(p: Plan) -> None:
    f = p.facts
    if f.parent is None or not f.children:
        raise Rejected("malformed", "packing names the container (parentID) and what goes "
                                    "into it (childEPCs)")
    parent = p.get(object_key(f.parent))
    if parent is None:
        parent = {"kind": "container", "sscc": f.parent.sscc, "custodian": p.org,
                  "status": "active", "parent": None, "children": [], "transit": None,
                  **p.stamp()}
    else:
        parent = p.held(f.parent)
    for child in f.children:
        entry = p.held(child)
        if entry["parent"] is not None:
            raise Rejected("already_packed", f"{_label(child)} is in {entry['parent']}")
        if any(item == f.parent for item in p.contents(child)):
            raise Rejected("cycle", f"{_label(f.parent)} cannot go into itself")
        p.put(object_key(child), {**entry, "parent": ref(f.parent)})
        p.touched(child)
    p.put(object_key(f.parent), {**parent,
                                 "children": [*parent["children"],
                                              *(ref(c) for c in f.children)]})
    p.touched(f.parent)


def _unpack(p: Plan) -> None:
    f = p.facts
    if f.parent is None:
        raise Rejected("malformed", "unpacking names the container (parentID)")
    parent = p.held(f.parent)
    inside = list(parent["children"])
    taken = [ref(c) for c in f.children] if f.children else list(inside)
    for child in taken:
        if child not in inside:
            raise Rejected("not_in_container", f"{_label(deref(child))} is not in "
                                               f"{_label(f.parent)}")
        entry = p.entry(deref(child))
        p.put(object_key(deref(child)), {**entry, "parent": None})
        p.touched(deref(child))
    p.put(object_key(f.parent), {**parent, "children": [c for c in inside if c not in taken]})
    p.touched(f.parent)


def _top_level(p: Plan, ident: Ident) -> dict[str, Any]:
    entry = p.held(ident)
    if entry["parent"] is not None:
        raise Rejected("in_container", f"{_label(ident)} is packed in {entry['parent']}: "
                                       "it moves with its container")
    return entry


def _ship(p: Plan) -> None:
    f = p.facts
    if f.destination is None:
        raise Rejected("malformed", "shipping names the party it goes to (destinationList)")
    to = org_of_party(p.view, f.destination)
    if to == p.org:
        raise Rejected("malformed", f"{p.org} cannot ship to itself")
    _objects_only(f)
    for ident in f.epcs:
        _top_level(p, ident)
        p.not_recalled(ident)
        _move(p, ident, lambda e: {**e, "transit": {"from": p.org, "to": to}})


def _receive(p: Plan) -> None:
    _objects_only(p.facts)
    for ident in p.facts.epcs:
        entry = p.entry(ident)
        transit = entry["transit"]
        if transit is None or transit["to"] != p.org:
            where = "not in transit" if transit is None else f"addressed to {transit['to']}"
            raise Rejected("not_addressee", f"{_label(ident)} is {where}")
        if entry["parent"] is not None:
            raise Rejected("in_container", f"{_label(ident)} is packed in {entry['parent']}")
        _move(p, ident, lambda e: {**e, "transit": None, "custodian": p.org})


def _move(p: Plan, ident: Ident, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    for item in list(p.contents(ident)):
        p.put(object_key(item), change(p.entry(item)))
        p.touched(item)


def _objects_only(f: Facts) -> None:
    if not f.epcs or not all(isinstance(i, SGTIN | SSCC) for i in f.epcs):
        raise Rejected("malformed", f"{f.step} names packs or containers in epcList")


def _end_life(status: str, roles: tuple[str, ...] | None = None) -> Callable[[Plan], None]:
    def rule(p: Plan) -> None:
        f = p.facts
        if roles is not None and p.role not in roles:
            raise Rejected("not_dispenser", f"a {p.role} does not dispense to patients")
        if not f.epcs or not all(isinstance(i, SGTIN) for i in f.epcs):
            raise Rejected("malformed", f"{f.step} names packs (SGTINs) in epcList")
        if status == "dispensed" and p.commitment is None:
            raise Rejected("malformed", "dispensing carries the patient's commitment")
        for pack in f.epcs:
            entry = _top_level(p, pack)
            if status == "dispensed":
                p.not_recalled(pack)
                if entry["expiry"] < _date(p.ctx.time):
                    raise Rejected("expired", f"{_label(pack)} expired on {entry['expiry']}")
            ended = {**entry, "status": status}
            if status == "dispensed":
                ended["dispensed"] = {"commitment": p.commitment, **p.stamp()}
            p.put(object_key(pack), ended)
            p.touched(pack)
    return rule


def _inspect(p: Plan) -> None:
    for ident in p.facts.named():
        p.entry(ident)
        p.touched(ident)


def _date(ms: int) -> str:
    """The UTC date of a block time: what expiry dates are compared with."""
    return datetime.datetime.fromtimestamp(ms // 1000, datetime.UTC).date().isoformat()


RULES: dict[tuple[str, str | None, str], Callable[[Plan], None]] = {
    ("ObjectEvent", "ADD", "commissioning"): _commission,
    ("ObjectEvent", "ADD", "receiving"): _receive_lots,
    ("TransformationEvent", None, "commissioning"): _transform,
    ("TransformationEvent", None, "creating_class_instance"): _transform,
    ("AggregationEvent", "ADD", "packing"): _pack,
    ("AggregationEvent", "DELETE", "unpacking"): _unpack,
    ("ObjectEvent", "OBSERVE", "shipping"): _ship,
    ("ObjectEvent", "OBSERVE", "receiving"): _receive,
    ("ObjectEvent", "OBSERVE", "dispensing"): _end_life("dispensed", DISPENSER_ROLES),
    ("ObjectEvent", "DELETE", "dispensing"): _end_life("dispensed", DISPENSER_ROLES),
    ("ObjectEvent", "DELETE", "decommissioning"): _end_life("decommissioned"),
    ("ObjectEvent", "DELETE", "destroying"): _end_life("destroyed"),
    ("ObjectEvent", "OBSERVE", "destroying"): _end_life("destroyed"),
    ("ObjectEvent", "OBSERVE", "inspecting"): _inspect,
}
"""Each supported (event type, action, business step) and its rule."""


def _plan(view: StateView, tx: Transaction, b: CaptureBody, ctx: BlockContext) -> Plan:
    org, role = member_org(view, tx.sender)
    plan = Plan(view, ctx, org, role, b.commitment)
    for index, facts in enumerate(b.facts):
        try:
            plan.run(facts, _rule(view, facts))
        except Rejected as e:
            raise Rejected(e.code, f"events[{index}]: {e.message}") from None
    if b.commitment is not None and all(f.step != "dispensing" for f, _ in plan.done):
        raise Rejected("malformed", "only a dispensing carries a commitment")
    return plan


def _rule(view: StateView, facts: Facts) -> Callable[[Plan], None]:
    if view.get_raw(event_key(facts.hash_hex)) is not None:
        raise Rejected("duplicate_event", f"event {facts.hash} was captured before")
    rule = RULES.get((facts.kind, facts.action, facts.step))
    if rule is None:
        action = f" {facts.action}" if facts.action else ""
        raise Rejected("unsupported_event", f"the ledger takes no {facts.kind}{action} "
                                            f"with business step {facts.step or '(none)'}")
    return rule


def capture_check(view: StateView, tx: Transaction, b: CaptureBody, ctx: BlockContext) -> None:
    """The sender a member; each event new and its rule met, in order (see the module
    docstring)."""
    _plan(view, tx, b, ctx)


def capture_apply(view: StateView, tx: Transaction, b: CaptureBody,
                  ctx: BlockContext) -> tuple[Event, ...]:
    """Write the events, their effects and every history they go on."""
    plan = _plan(view, tx, b, ctx)
    plan.commit()
    events = []
    for f, history in plan.done:
        view.put(event_key(f.hash_hex), {
            "hash": f.hash, "event": f.event, "org": plan.org, "sender": tx.sender.hex(),
            "step": f.step, "tx": tx.tx_id.hex(), **plan.stamp()})
        events.append(Event("trace.captured", (("event", f.hash_hex), ("org", plan.org),
                                               ("step", f.step),
                                               ("objects", str(len(history))))))
    return tuple(events)
