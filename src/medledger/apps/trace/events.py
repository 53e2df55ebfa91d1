"""What the trace app reads of an EPCIS 2.0 event: its kind, action and CBV business step,
the GS1 identifiers it names in each role, the lot and expiry its ILMD gives, and the party
it is shipped to. :func:`facts_of` is the stateless check of ``trace.capture``: an event the
ledger cannot read is refused (``malformed``) with the field that failed.

The event itself is checked and normalised by :mod:`medledger.standards.epcis`, which also
computes its CBV 2.0 event hash, the event's key on the ledger.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from medledger.apps.base import Rejected
from medledger.standards import epcis
from medledger.standards.gs1 import LGTIN, SGTIN, SSCC, GS1Error, check_digit, parse_code, parse_epc

__all__ = ["Facts", "facts_of", "ref", "deref"]

Ident = SGTIN | SSCC | LGTIN
_PGLN_URN = re.compile(r"urn:epc:id:pgln:([0-9]+)\.([0-9]*)")
_GLN_LINK = re.compile(r"https?://[^/]+/417/([0-9]{13})")
_PARTY_TYPES = ("possessing_party", "owning_party")
_LOT_FIELDS = ("cbvmda:lotNumber", "lotNumber")
_EXPIRY_FIELDS = ("cbvmda:itemExpirationDate", "itemExpirationDate")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ANY_YEAR = 2000
"""The year a Digital Link's AI (17) is read against here: an identifier's expiry is never
used, and a fixed year keeps the reading the same on every node (never the clock)."""


@dataclass(frozen=True, slots=True)
class Facts:
    """An event as the rules read it."""

    hash: str  # the CBV 2.0 event hash, ni:///sha-256;<hex>?ver=CBV2.0
    kind: str  # ObjectEvent, AggregationEvent, TransformationEvent
    action: str | None  # ADD, OBSERVE, DELETE (None for a TransformationEvent)
    step: str  # the CBV business step's short name (commissioning, shipping, ...)
    epcs: tuple[Ident, ...]  # epcList
    classes: tuple[LGTIN, ...]  # quantityList classes
    parent: SSCC | None  # parentID
    children: tuple[Ident, ...]  # childEPCs
    inputs: tuple[LGTIN, ...]  # inputQuantityList classes
    outputs: tuple[LGTIN, ...]  # outputQuantityList classes
    lot: str | None  # ILMD lot number
    expiry: str | None  # ILMD item expiration date, YYYY-MM-DD
    destination: str | None  # the party GLN shipped to
    event: dict[str, Any]  # the normalised event, as stored

    @property
    def hash_hex(self) -> str:
        return self.hash.split(";", 1)[1].split("?", 1)[0]

    def named(self) -> tuple[Ident, ...]:
        """Every identifier the event names, each once, in order."""
        seen = dict.fromkeys((*self.epcs, *self.classes, *((self.parent,) if self.parent
                                                            else ()),
                              *self.children, *self.inputs, *self.outputs))
        return tuple(seen)


def ref(ident: Ident) -> str:
    """An identifier as state stores it: ``sgtin:<key>``, ``sscc:<key>``, ``lgtin:<key>``."""
    kind = "sgtin" if isinstance(ident, SGTIN) else "sscc" if isinstance(ident, SSCC) \
        else "lgtin"
    return f"{kind}:{ident.key}"


def deref(text: str) -> Ident:
    """The identifier :func:`ref` stored."""
    kind, key = text.split(":", 1)
    cls = {"sgtin": SGTIN, "sscc": SSCC, "lgtin": LGTIN}[kind]
    return cls.from_key(key)  # type: ignore[no-any-return, attr-defined]


def facts_of(event: Any) -> Facts:
    """The facts of a captured event; Rejected ``malformed`` naming what the ledger cannot
    read."""
    if not isinstance(event, dict):
        raise Rejected("malformed", "event must be an EPCIS 2.0 event object")
    try:
        normal = epcis.normalise(event)
        hashed = epcis.event_hash(event)
    except ValueError as e:
        raise Rejected("malformed", f"event: {e}") from None
    try:
        return _read(normal, hashed)
    except GS1Error as e:
        raise Rejected("malformed", f"event: {e}") from None


def _read(event: dict[str, Any], hashed: str) -> Facts:
    ilmd = event.get("ilmd") or {}
    lot = _first(ilmd, _LOT_FIELDS)
    expiry = _first(ilmd, _EXPIRY_FIELDS)
    if expiry is not None and not _is_date(expiry):
        raise Rejected("malformed", "ilmd item expiration date must be a date, YYYY-MM-DD")
    parent = event.get("parentID")
    parent_ident = _ident(parent, "parentID") if parent is not None else None
    if parent_ident is not None and not isinstance(parent_ident, SSCC):
        raise Rejected("malformed", "parentID must be an SSCC (a case or a pallet)")
    return Facts(
        hash=hashed, kind=str(event["type"]), action=event.get("action"),
        step=str(event.get("bizStep") or ""),
        epcs=_idents(event.get("epcList"), "epcList"),
        classes=_classes(event.get("quantityList"), "quantityList"),
        parent=parent_ident,  # type: ignore[arg-type]
        children=_idents(event.get("childEPCs"), "childEPCs"),
        inputs=_classes(event.get("inputQuantityList"), "inputQuantityList"),
        outputs=_classes(event.get("outputQuantityList"), "outputQuantityList"),
        lot=None if lot is None else str(lot), expiry=None if expiry is None else expiry[:10],
        destination=_destination(event.get("destinationList")), event=event)


def _is_date(value: Any) -> bool:
    if not (isinstance(value, str) and _DATE.fullmatch(value[:10])):
        return False
    try:
        datetime.date.fromisoformat(value[:10])
    except ValueError:
        return False
    return True


def _first(mapping: dict[str, Any], names: tuple[str, ...]) -> Any:
    return next((mapping[n] for n in names if n in mapping), None)


def _ident(text: Any, field: str) -> Ident:
    if not isinstance(text, str):
        raise Rejected("malformed", f"{field} must hold identifiers (strings)")
    if text.startswith("urn:epc:"):
        return parse_epc(text)  # type: ignore[no-any-return]
    scan = parse_code(text, current_year=_ANY_YEAR)
    if scan.sscc is not None:
        return SSCC(scan.sscc)
    if scan.serial is not None:
        return SGTIN(scan.gtin, scan.serial)
    if scan.lot is not None:
        return LGTIN(scan.gtin, scan.lot)
    raise Rejected("malformed", f"{field}: {text} names no pack, container or lot")


def _idents(values: Any, field: str) -> tuple[Ident, ...]:
    if values is None:
        return ()
    if not isinstance(values, list):
        raise Rejected("malformed", f"{field} must be a list")
    found = tuple(_ident(v, field) for v in values)
    if len(set(found)) != len(found):
        raise Rejected("malformed", f"{field} names an identifier twice")
    return found


def _classes(values: Any, field: str) -> tuple[LGTIN, ...]:
    if values is None:
        return ()
    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
        raise Rejected("malformed", f"{field} must be a list of quantity elements")
    found = tuple(_ident(v.get("epcClass"), f"{field} epcClass") for v in values)
    if not all(isinstance(c, LGTIN) for c in found):
        raise Rejected("malformed", f"{field}: each epcClass must be a lot (LGTIN)")
    if len(set(found)) != len(found):
        raise Rejected("malformed", f"{field} names a lot twice")
    return found  # type: ignore[return-value]


def _destination(values: Any) -> str | None:
    if not values:
        return None
    parties = {d.get("type"): d.get("destination") for d in values if isinstance(d, dict)}
    for kind in _PARTY_TYPES:
        if parties.get(kind) is not None:
            return _gln(str(parties[kind]))
    return None


def _gln(text: str) -> str:
    """The GLN of a party named by a PGLN URN or a Digital Link (AI 417)."""
    link = _GLN_LINK.fullmatch(text)
    if link is not None:
        return link.group(1)
    urn = _PGLN_URN.fullmatch(text)
    if urn is None or len(urn.group(1) + urn.group(2)) != 12:
        raise Rejected("malformed", f"destination {text} is not a party GLN (a PGLN URN or "
                                    "a Digital Link with AI 417)")
    body = urn.group(1) + urn.group(2)
    return body + str(check_digit(body))
