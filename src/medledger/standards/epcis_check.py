"""The subset of EPCIS 2.0 the ledger accepts, and the checker that names the field at
fault in an event outside it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from medledger.standards.epcis_hash import (
    _EPC_LISTS,
    _ORDER,
    _PARTY_LISTS,
    _QUANTITY_LISTS,
    _Context,
    _items,
    _mapping,
    _only,
)
from medledger.standards.epcis_ids import (
    _ABSOLUTE_URI,
    _OFFSET,
    _decimal,
    _epc_to_digital_link,
    _utc_millis,
)
from medledger.standards.epcis_terms import _CBV, VOCABULARIES, _fail


# -- the ledger's subset ------------------------------------------------------------------

EVENT_TYPES = ("ObjectEvent", "AggregationEvent", "TransformationEvent")
_UNSUPPORTED_TYPES = ("TransactionEvent", "AssociationEvent")
_ACTIONS = ("ADD", "OBSERVE", "DELETE")
_UNSUPPORTED_FIELDS = {
    "sensorElementList": "sensor data is not supported by the ledger",
    "errorDeclaration": "error declarations are not supported by the ledger",
    "certificationInfo": "not supported by the ledger: the CBV 2.0 event hash does not "
                         "cover it",
}
_STORED_ORDER = ("type", "eventID", *_ORDER)
_KNOWN_FIELDS = frozenset({"type", "@context", "eventID", "recordTime", "eventHash", *_ORDER})


class _Checker:
    """Checks one event against the subset the ledger accepts, naming the field at fault.

    Fields are checked in canonical order, so the error does not depend on key order.
    """

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event, self.context = event, _Context.of(event)
        self.type = event.get("type")

    def check(self) -> None:
        self.check_type()
        self.check_times()
        rank = {name: i for i, name in enumerate(_STORED_ORDER)}
        for name in sorted(self.event, key=lambda n: (rank.get(n, len(rank)), n)):
            self.check_field(name, self.event[name])
        self.check_what()

    def check_type(self) -> None:
        if self.type in _UNSUPPORTED_TYPES:
            _fail("type", f"{self.type} is not supported by the ledger (supported: "
                          f"{', '.join(EVENT_TYPES)})")
        if self.type not in EVENT_TYPES:
            _fail("type", f"expected one of {', '.join(EVENT_TYPES)}")

    def check_times(self) -> None:
        moment = self.event.get("eventTime")
        if not isinstance(moment, str):
            _fail("eventTime", "missing")
        if not _utc_millis(moment):
            _fail("eventTime", "expected a timestamp with a time zone, such as "
                               "2024-05-01T10:00:00.000+02:00")
        offset = self.event.get("eventTimeZoneOffset")
        if not isinstance(offset, str) or not _OFFSET.match(offset):
            _fail("eventTimeZoneOffset", "missing" if offset is None
                  else "expected an offset such as +02:00")

    def check_field(self, name: str, value: Any) -> None:
        if name in _UNSUPPORTED_FIELDS:
            _fail(name, _UNSUPPORTED_FIELDS[name])
        if name in _EPC_LISTS:
            for i, epc in enumerate(_items(name, value)):
                _check_epc(f"{name}[{i}]", epc)
        elif name in _QUANTITY_LISTS:
            for i, item in enumerate(_items(name, value)):
                _check_quantity(f"{name}[{i}]", item)
        elif name in _PARTY_LISTS:
            for i, entry in enumerate(_items(name, value)):
                self.check_party(f"{name}[{i}]", name, entry)
        elif name in ("parentID", "transformationID"):
            _check_epc(name, value)
        elif name in ("bizStep", "disposition"):
            self.check_term(name, value, name)
        elif name in ("readPoint", "bizLocation"):
            self.check_place(name, value)
        elif name in ("action", "ilmd", "persistentDisposition", "eventID"):
            getattr(self, f"check_{name.lower()}")(name, value)
        elif name not in _KNOWN_FIELDS:
            self.check_extension(name, name)

    def check_eventid(self, name: str, value: Any) -> None:
        if not isinstance(value, str) or not _ABSOLUTE_URI.match(value):
            _fail(name, "expected a URI")

    def check_action(self, name: str, value: Any) -> None:
        if self.type == "TransformationEvent":
            _fail(name, "a TransformationEvent has no action")
        if value not in _ACTIONS:
            _fail(name, f"expected one of {', '.join(_ACTIONS)}")

    def check_place(self, name: str, value: Any) -> None:
        place = _mapping(name, value)
        if not isinstance(place.get("id"), str) or not _ABSOLUTE_URI.match(place["id"]):
            _fail(f"{name}.id", "expected an SGLN URN or a URI")
        for key in place:
            if key != "id":
                self.check_extension(f"{name}.{key}", key)

    def check_ilmd(self, name: str, value: Any) -> None:
        for key in _mapping(name, value):
            self.check_extension(f"{name}.{key}", key)
        expiry = value.get("cbvmda:itemExpirationDate")
        if expiry is not None and not (isinstance(expiry, str)
                                       and re.fullmatch(r"\d{4}-\d{2}-\d{2}", expiry)):
            _fail(f"{name}.cbvmda:itemExpirationDate", "expected a date such as 2026-12-31")

    def check_persistentdisposition(self, name: str, value: Any) -> None:
        _only(name, _mapping(name, value), ("set", "unset"))
        for key in ("set", "unset"):
            for i, term in enumerate(_items(f"{name}.{key}", value.get(key, []))):
                self.check_term(f"{name}.{key}[{i}]", term, "disposition")

    def check_party(self, where: str, name: str, entry: Any) -> None:
        key, vocabulary = _PARTY_LISTS[name]
        _only(where, _mapping(where, entry), ("type", key))
        _check_epc(f"{where}.{key}", entry.get(key), kind="an identifier")
        if "type" in entry or name != "bizTransactionList":
            self.check_term(f"{where}.type", entry.get("type"), vocabulary)

    def check_term(self, where: str, value: Any, vocabulary: str) -> None:
        """A CBV term in any of its forms, or a URI outside the CBV namespaces."""
        if not isinstance(value, str) or not value.strip():
            _fail(where, "missing")
        vocab, iri = VOCABULARIES[vocabulary], self.context.iri(value.strip())
        if vocab.short(iri):
            return
        if iri.startswith((_CBV, "urn:epcglobal:cbv:")) or not _ABSOLUTE_URI.match(iri):
            _fail(where, f"{value!r} is neither a CBV 2.0 {_TERM_NAMES[vocabulary]} nor a "
                         "URI outside the CBV")

    def check_extension(self, where: str, key: str) -> None:
        if self.context.key(key) is None:
            _fail(where, "unknown field: neither an EPCIS field the ledger accepts nor an "
                         "extension with a namespace prefix defined in @context")

    def check_what(self) -> None:
        """The fields each event type needs for its "what" and "how" (EPCIS 2.0 7.4)."""
        has = {name for name in (*_EPC_LISTS, *_QUANTITY_LISTS, "parentID",
                                 "transformationID") if self.event.get(name)}
        action = self.event.get("action")
        if self.type != "TransformationEvent" and not action:
            _fail("action", "missing")
        if self.type == "ObjectEvent":
            _need(has, ("epcList", "quantityList"), "epcList",
                  "an ObjectEvent needs epcList or quantityList")
        elif self.type == "AggregationEvent":
            if action in ("ADD", "DELETE"):
                _need(has, ("parentID",), "parentID", f"required when action is {action}")
            if action in ("ADD", "OBSERVE"):
                _need(has, ("childEPCs", "childQuantityList"), "childEPCs",
                      "an AggregationEvent needs childEPCs or childQuantityList")
        elif "transformationID" in has:
            _need(has, _INPUTS + _OUTPUTS, "inputEPCList",
                  "a TransformationEvent needs an input or an output")
        else:
            _need(has, _INPUTS, "inputEPCList", "a TransformationEvent without "
                  "transformationID needs inputEPCList or inputQuantityList")
            _need(has, _OUTPUTS, "outputEPCList", "a TransformationEvent without "
                  "transformationID needs outputEPCList or outputQuantityList")


_INPUTS = ("inputEPCList", "inputQuantityList")
_OUTPUTS = ("outputEPCList", "outputQuantityList")
_TERM_NAMES = {"bizStep": "business step", "disposition": "disposition",
               "bizTransactionType": "business transaction type",
               "sourceDestType": "source/destination type"}


def _need(has: set[str], any_of: Iterable[str], field: str, reason: str) -> None:
    if not has.intersection(any_of):
        _fail(field, reason)


def _check_epc(where: str, value: Any, kind: str = "an EPC") -> None:
    if not isinstance(value, str) or not _ABSOLUTE_URI.match(value.strip()):
        _fail(where, f"expected {kind}: an EPC URN, a GS1 Digital Link URI or another URI")
    if value.startswith("urn:epc:") and not _epc_to_digital_link(value.strip()):
        _fail(where, f"{value!r} is not a well-formed EPC URN of a GS1 key")


def _check_quantity(where: str, item: Any) -> None:
    _only(where, _mapping(where, item), ("epcClass", "quantity", "uom"))
    _check_epc(f"{where}.epcClass", item.get("epcClass"), kind="an EPC class")
    if "quantity" in item:
        number = _decimal(item["quantity"])
        if number is None or number < 0 or number != number.to_integral_value():
            _fail(f"{where}.quantity", "expected a whole number of at least 0 (give a "
                                       "fractional amount in a smaller unit)")
    if "uom" in item and ("quantity" not in item or not isinstance(item["uom"], str)):
        _fail(f"{where}.uom", "a unit of measure needs a quantity and is a UN/CEFACT code")
