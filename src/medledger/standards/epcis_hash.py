"""The CBV 2.0 event hash of an EPCIS 2.0 JSON-LD event: the JSON-LD context its keys and
CURIEs resolve against, the pre-hash string and its SHA-256 digest."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from medledger.standards.epcis_ids import _scalar_text, _utc_millis
from medledger.standards.epcis_terms import (
    _STANDARD_PREFIXES,
    _XML_NAMESPACES,
    CBV_VERSION,
    VOCABULARIES,
    _fail,
)


# -- the JSON-LD context ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Context:
    """The prefixes an event's keys and CURIEs resolve against."""

    inline: Mapping[str, str]

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> _Context:
        return cls(_inline_prefixes(event.get("@context")))

    def iri(self, value: str) -> str:
        """A CURIE with a known prefix expanded to its IRI (rule 15); anything else as is."""
        prefix, sep, local = value.partition(":")
        base = self.inline.get(prefix, _STANDARD_PREFIXES.get(prefix)) if sep else None
        return base + local if base and not local.startswith("//") else value

    def key(self, key: str) -> str | None:
        """An extension key as ``{namespace}local``, or None if its prefix is unknown."""
        prefix, sep, local = key.partition(":")
        if not sep or not local or local.startswith("//"):
            return None
        if prefix in self.inline:
            return f"{{{self.inline[prefix]}}}{local}"
        namespace = _XML_NAMESPACES.get(prefix, _STANDARD_PREFIXES.get(prefix))
        return f"{{{namespace}}}{local}" if namespace else None


def _inline_prefixes(context: Any) -> dict[str, str]:
    """The prefix definitions an ``@context`` makes itself (remote contexts are not read)."""
    entries = context if isinstance(context, list) else [context]
    prefixes: dict[str, str] = {}
    for entry in entries:
        for name, value in (entry.items() if isinstance(entry, Mapping) else ()):
            iri = value.get("@id") if isinstance(value, Mapping) else value
            if isinstance(iri, str) and not name.startswith("@"):
                prefixes[name] = iri
    return prefixes


# -- the pre-hash string ------------------------------------------------------------------

_EPC_LISTS = ("epcList", "childEPCs", "inputEPCList", "outputEPCList")
_QUANTITY_LISTS = ("quantityList", "childQuantityList", "inputQuantityList",
                   "outputQuantityList")
_PARTY_LISTS = {"bizTransactionList": ("bizTransaction", "bizTransactionType"),
                "sourceList": ("source", "sourceDestType"),
                "destinationList": ("destination", "sourceDestType")}
_SENSOR_METADATA = ("time", "startTime", "endTime", "deviceID", "deviceMetadata", "rawData",
                    "dataProcessingMethod", "bizRules")
_SENSOR_REPORT = ("type", "exception", "deviceID", "deviceMetadata", "rawData",
                  "dataProcessingMethod", "time", "microorganism", "chemicalSubstance",
                  "value", "component", "stringValue", "booleanValue", "hexBinaryValue",
                  "uriValue", "minValue", "maxValue", "meanValue", "sDev", "percRank",
                  "percValue", "uom", "coordinateReferenceSystem")
_TIME_FIELDS = frozenset({"eventTime", "time", "startTime", "endTime"})
_IRI_FIELDS = frozenset({"parentID", "transformationID", "epcClass", "id", "deviceID",
                         "deviceMetadata", "rawData", "dataProcessingMethod", "bizRules",
                         "microorganism", "chemicalSubstance", "uriValue",
                         "coordinateReferenceSystem", *_EPC_LISTS,
                         *(value for value, _ in _PARTY_LISTS.values())})
_GS1_TERMS = frozenset({"type", "exception"})  # sensor report terms of the gs1: vocabulary
_NOT_HASHED = frozenset({"type", "@context", "eventID", "recordTime", "errorDeclaration",
                         "certificationInfo", "eventHash"})
_ORDER = ("eventTime", "eventTimeZoneOffset", "epcList", "parentID", "inputEPCList",
          "childEPCs", *_QUANTITY_LISTS[:3], "outputEPCList", "outputQuantityList", "action",
          "transformationID", "bizStep", "disposition", "persistentDisposition", "readPoint",
          "bizLocation", *_PARTY_LISTS, "sensorElementList", "ilmd")


class _PreHash:
    """Writes one event's pre-hash string: its standard fields in canonical order, then
    everything else (extensions, and extensions inside standard fields) sorted."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event, self.context = event, _Context.of(event)
        self.tail: list[str] = []

    def string(self) -> str:
        event_type = self.event.get("type")
        if not isinstance(event_type, str) or not event_type:
            _fail("type", "missing")
        head = [f"eventType={event_type}"]
        for name, value in self.event.items():
            if name not in _NOT_HASHED and name not in _ORDER:
                self.tail.extend(self.generic(self.extension_key(name), value))
        head.extend(self.field(name, self.event[name]) for name in _ORDER if name in self.event)
        return "".join(head) + "".join(sorted(self.tail))

    def field(self, name: str, value: Any) -> str:
        if name in _EPC_LISTS:
            return self.listed(name, [f"epc={self.value(name, v)}" for v in _items(name, value)])
        if name in _QUANTITY_LISTS:
            return self.listed(name, [self.quantity(name, q) for q in _items(name, value)])
        if name in _PARTY_LISTS:
            return self.listed(name, [self.party(name, e) for e in _items(name, value)])
        if name in ("readPoint", "bizLocation"):
            return self.place(name, value)
        if name == "persistentDisposition":
            return self.persistent(value)
        if name == "sensorElementList":
            return "".join(sorted(self.sensor_element(e) for e in _items(name, value)))
        if name == "ilmd":
            return self.listed("ilmd", self.extensions(_mapping(name, value)))
        text = self.value(name, value)
        return f"{name}={text}" if text else ""

    def value(self, field: str, value: Any, vocabulary: str | None = None) -> str:
        """A standard field's value: its time, vocabulary term or IRI in canonical form."""
        if isinstance(value, (Mapping, list)):
            _fail(field, "expected a single value")
        text = value.strip() if isinstance(value, str) else value
        if isinstance(text, str) and field in _TIME_FIELDS:
            return _utc_millis(text) or text
        vocabulary = vocabulary or (field if field in VOCABULARIES else None)
        if isinstance(text, str) and vocabulary:
            text = VOCABULARIES[vocabulary].uri(text) or self.context.iri(text)
        elif isinstance(text, str) and field in _GS1_TERMS:
            text = self.context.iri(text if ":" in text else f"gs1:{text}")
        elif isinstance(text, str) and field in _IRI_FIELDS:
            text = self.context.iri(text)
        return _scalar_text(text)

    def listed(self, name: str, entries: list[str]) -> str:
        return name + "".join(sorted(entries)) if entries else ""

    def ordered(self, item: Mapping[str, Any], order: Iterable[str]) -> str:
        texts = ((k, self.value(k, item[k])) for k in order if k in item)
        return "".join(f"{k}={text}" for k, text in texts if text)

    def quantity(self, name: str, item: Any) -> str:
        item = _mapping(name, item)
        _only(name, item, ("epcClass", "quantity", "uom"))
        return "quantityElement" + self.ordered(item, ("epcClass", "quantity", "uom"))

    def party(self, name: str, entry: Any) -> str:
        key, vocabulary = _PARTY_LISTS[name]
        entry = _mapping(name, entry)
        _only(name, entry, ("type", key))
        kind = f"type={self.value(name, entry['type'], vocabulary)}" if "type" in entry else ""
        return kind + (f"{key}={self.value(key, entry[key])}" if key in entry else "")

    def place(self, name: str, value: Any) -> str:
        value = _mapping(name, value)
        self.leftover(name, value, ("id",))
        return f"{name}id={self.value('id', value['id'])}" if "id" in value else ""

    def persistent(self, value: Any) -> str:
        value = _mapping("persistentDisposition", value)
        _only("persistentDisposition", value, ("set", "unset"))
        parts = [p for k in ("set", "unset") for p in sorted(
            f"{k}={self.value(k, v, 'disposition')}" for v in _items(k, value.get(k, [])))]
        return "persistentDisposition" + "".join(parts) if parts else ""

    def sensor_element(self, element: Any) -> str:
        element = _mapping("sensorElement", element)
        metadata = _mapping("sensorMetadata", element.get("sensorMetadata", {}))
        reports = [_mapping("sensorReport", r) for r in _items("sensorReport",
                                                               element.get("sensorReport", []))]
        rest = {k: v for k, v in element.items() if k not in ("sensorMetadata", "sensorReport")}
        leftover = [*(["sensorMetadata" + e] if (e := self.extras(metadata, _SENSOR_METADATA))
                      else []),
                    *("sensorReport" + e for r in reports if (e := self.extras(r, _SENSOR_REPORT))),
                    *self.extensions(rest)]
        if leftover:
            self.tail.append("sensorElement" + "".join(sorted(leftover)))
        head = "sensorMetadata" + self.ordered(metadata, _SENSOR_METADATA)
        body = sorted("sensorReport" + self.ordered(r, _SENSOR_REPORT)
                      for r in reports)
        return "sensorElement" + (head if metadata else "") + "".join(body)

    def extras(self, item: Mapping[str, Any], standard: Iterable[str]) -> str:
        return "".join(sorted(self.extensions({k: v for k, v in item.items()
                                               if k not in standard})))

    def leftover(self, name: str, value: Mapping[str, Any], standard: Iterable[str]) -> None:
        extensions = self.extras(value, standard)
        if extensions:
            self.tail.append(name + extensions)

    def extensions(self, fields: Mapping[str, Any]) -> list[str]:
        return [s for k, v in fields.items() for s in self.generic(self.extension_key(k), v)]

    def extension_key(self, key: str) -> str:
        expanded = self.context.key(key)
        if expanded is None:
            _fail(key, "not an EPCIS field, nor an extension with a known namespace prefix")
        return expanded

    def generic(self, label: str, value: Any) -> list[str]:
        """An extension element: ``label=value``, or the label followed by its children
        sorted; each entry of a list is an element of its own (rules 19 and 20)."""
        if value is None:
            return []
        if isinstance(value, list):
            return [s for item in value for s in self.generic(label, item)]
        if isinstance(value, Mapping):
            return [label + "".join(sorted(self.extensions(value)))]
        text = _scalar_text(value)
        return [f"{label}={text}" if text else label]


def _mapping(field: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _fail(field, "expected an object")
    return value


def _items(field: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        _fail(field, "expected a list")
    return value


def _only(field: str, value: Mapping[str, Any], allowed: Iterable[str]) -> None:
    extra = sorted(set(value) - set(allowed))
    if extra:
        _fail(f"{field}.{extra[0]}", "not allowed here")


def prehash(event: Mapping[str, Any]) -> str:
    """The CBV 2.0 pre-hash string of an EPCIS 2.0 JSON-LD event.

    Prefixes come from the event's own ``@context`` (which :func:`parse_document` gives
    each event from its document) and the EPCIS context. Nothing is silently left out: a
    key that is neither an EPCIS field nor an extension with a known prefix raises
    :class:`EPCISError`, since a field the hash skipped could change unnoticed.
    """
    return _PreHash(event).string()


def event_hash(event: Mapping[str, Any]) -> str:
    """The CBV 2.0 EPCIS event hash: ``ni:///sha-256;<hex>?ver=CBV2.0``."""
    digest = hashlib.sha256(prehash(event).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver={CBV_VERSION}"
