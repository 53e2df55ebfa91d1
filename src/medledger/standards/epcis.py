"""EPCIS 2.0 JSON-LD events for the medicines traceability app, and their CBV 2.0 event hash.

The event hash is the "EPCIS Event Hash ID" of GS1 CBV 2.0: a canonical *pre-hash string*
(:func:`prehash`) digested with SHA-256 and written as an RFC 6920 ``ni`` URI
(``ni:///sha-256;<hex>?ver=CBV2.0``, :func:`event_hash`). Two serialisations of one event
hash alike: key order (at every level, list entries included), list order, whitespace
around values, CBV short names against their URN and Web URI forms, CURIEs against full
IRIs, EPC URNs against GS1 Digital Link URIs (any domain, any query string, short or
numeric key names) and timestamps in any time zone or precision all reduce to one form.

How this implementation reads the algorithm where the published reference examples
(``tests/data/epcis``, from the algorithm's upstream repository) are more precise than its
prose, each confirmed by those examples:

- the type of a business transaction, source or destination comes *before* its value, and
  the entries of a list are sorted as whole strings;
- ``sensorElementList`` contributes its ``sensorElement`` entries without its own name;
- ``certificationInfo``, ``eventID``, ``recordTime`` and ``errorDeclaration`` are not hashed;
- extension fields found inside a standard field (``readPoint``, ``bizLocation``, a
  sensor element) are hashed under that field's name after the standard fields, sorted
  together with the event's own extension fields;
- an extension key's namespace is the IRI its prefix stands for; the standard ``cbvmda``
  prefix stands for its XML namespace ``urn:epcglobal:cbv:mda`` (so that the XML and JSON
  forms of an event hash alike), a prefix the document defines itself stands for exactly
  what the document says;
- a value that is a decimal number (a JSON number or a string such as ``"23.0"``) is
  written without leading or trailing zeros, exactly (never through a binary float);
- a fraction of a second past the millisecond rounds the millisecond up from 5.

Where the newest upstream examples disagree with the algorithm's text, the text wins: the
``gs1:`` prefix stands for ``https://gs1.org/voc/`` (CBV 2.0 rule 15 and the EPCIS 2.0
JSON-LD context), not ``https://ref.gs1.org/voc/`` (an EPCIS 2.1 change upstream applied to
its CBV 2.0 examples too). ``tests/test_epcis.py`` marks those examples and checks that
they differ in that namespace and nothing else.

The ledger accepts a subset of EPCIS (:func:`parse_document`): ObjectEvent,
AggregationEvent and TransformationEvent, without sensor data, error declarations or
certification info (the last is not covered by the hash, so a stored copy could change
without the hash noticing). :func:`normalise` turns an accepted event into the dict the
app stores, and :func:`document` turns stored events back into an EPCIS document.

Quantities are whole numbers, stored as ``int``s (``452.0`` is 452): medicines are counted
in packs, units or doses, and a bulk quantity can be given in a smaller unit (``GRM``, not
``0.5 KGM``). A fractional quantity is refused rather than stored as a float or as a string
that an EPCIS document could not carry as a number. JSON numbers are read as exact
decimals; a fractional number in ``ilmd`` or an extension is stored as its decimal string,
which hashes exactly as the number does.

Errors::

    EPCISError (ValueError)   a document or event the ledger refuses (.index, .event_id,
                              .field, .reason, .document); the message names them
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

__all__ = [
    "CBV_VERSION",
    "EPCIS_CONTEXT",
    "EVENT_TYPES",
    "EPCISError",
    "VOCABULARIES",
    "Vocabulary",
    "document",
    "event_hash",
    "normalise",
    "parse_document",
    "prehash",
]

CBV_VERSION = "CBV2.0"
EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/epcis-context.jsonld"
_CBV = "https://ref.gs1.org/cbv/"
_GS1_ID = "https://id.gs1.org/"


class EPCISError(ValueError):
    """An EPCIS document or event the ledger refuses.

    ``index`` is the event's position in its document (``None`` for a lone event, and for
    the document itself: then ``document`` is true), ``event_id`` its ``eventID`` when it
    has one, ``field`` the path of the offending field and ``reason`` what is wrong with it.
    """

    def __init__(self, field: str, reason: str, index: int | None = None,
                 event_id: str | None = None, *, document: bool = False) -> None:
        self.field, self.reason, self.index, self.event_id = field, reason, index, event_id
        self.document = document
        where = "document" if document else "event" if index is None else f"event {index}"
        if event_id:
            where += f" ({event_id})"
        super().__init__(f"{where}: {field}: {reason}")


def _fail(field: str, reason: str) -> NoReturn:
    raise EPCISError(field, reason)


def _fail_document(field: str, reason: str) -> NoReturn:
    raise EPCISError(field, reason, document=True)


# -- vocabularies -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Vocabulary:
    """One CBV 2.0 vocabulary: its short names and the Web URI and URN each stands for."""

    web: str
    urn: str
    terms: frozenset[str]

    def uri(self, value: str) -> str | None:
        """The Web URI of a short name, URN or Web URI of this vocabulary, else None."""
        if value in self.terms:
            return self.web + value
        for prefix in (self.urn, self.web):
            if value.startswith(prefix):
                return self.web + value[len(prefix):]
        return None

    def short(self, value: str) -> str | None:
        """The short name of a value of this vocabulary in any of its forms, else None."""
        uri = self.uri(value)
        term = uri[len(self.web):] if uri else None
        return term if term in self.terms else None


def _vocabulary(name: str, urn: str, terms: str) -> Vocabulary:
    return Vocabulary(f"{_CBV}{name}-", f"urn:epcglobal:cbv:{urn}:", frozenset(terms.split()))


VOCABULARIES: dict[str, Vocabulary] = {
    "bizStep": _vocabulary("BizStep", "bizstep", """
        accepting arriving assembling collecting commissioning consigning
        creating_class_instance cycle_counting decommissioning departing destroying
        disassembling dispensing encoding entering_exiting holding inspecting installing
        killing loading other packing picking receiving removing repackaging repairing
        replacing reserving retail_selling sampling sensor_reporting shipping
        staging_outbound stock_taking stocking storing transporting unloading unpacking
        void_shipping"""),
    "disposition": _vocabulary("Disp", "disp", """
        active available completeness_inferred completeness_verified conformant
        container_closed container_open damaged destroyed dispensed disposed encoded
        expired in_progress in_transit inactive mismatch_class mismatch_instance
        mismatch_quantity needs_replacement no_pedigree_match non_conformant
        non_sellable_other partially_dispensed recalled reserved retail_sold returned
        sellable_accessible sellable_not_accessible stolen unavailable unknown"""),
    "bizTransactionType": _vocabulary("BTT", "btt", """
        bol cert desadv inv pedigree po poc prodorder recadv rma testprd testres upevt"""),
    "sourceDestType": _vocabulary("SDT", "sdt", "owning_party possessing_party location"),
    "errorReason": _vocabulary("ER", "er", "did_not_occur incorrect_data"),
    "component": _vocabulary("Comp", "comp", """
        x y z axial_distance azimuth height spherical_radius polar_angle elevation_angle
        easting northing latitude longitude altitude"""),
}
"""The CBV 2.0 vocabularies, by the role of the field that holds them."""

_STANDARD_PREFIXES = {
    "epcis": "https://ref.gs1.org/epcis/", "cbv": _CBV, "cbvmda": "urn:epcglobal:cbv:mda:",
    "gs1": "https://gs1.org/voc/", "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#", "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dcterms": "http://purl.org/dc/terms/",
}
_XML_NAMESPACES = {"cbvmda": "urn:epcglobal:cbv:mda"}
_CBV_URNS = tuple((v.urn, v.web) for v in VOCABULARIES.values())


# -- identifiers: EPC URNs and GS1 Digital Link ---------------------------------------------

def _check_digit(digits: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str(-total % 10)


def _keyed(digits: str, length: int) -> str | None:
    """A GS1 key of ``length`` digits: the digits before its check digit, and the check."""
    ok = digits.isdigit() and len(digits) == length - 1
    return digits + _check_digit(digits) if ok else None


def _gtin(cp: str, indicator_item: str) -> str | None:
    """The GTIN-14 of an EPC: the indicator digit moves in front of the company prefix."""
    return _keyed(indicator_item[:1] + cp + indicator_item[1:], 14) if indicator_item else None


def _serialised(ai: str, key: str | None, serial: str) -> str | None:
    return f"{ai}/{key}{serial}" if key and serial else None


def _epc_path(scheme: str, parts: list[str]) -> str | None:
    """The Digital Link path of an EPC (``urn:epc:id``/``class``/``idpat``) without its host."""
    cp, rest = parts[0], parts[1:]
    match scheme, rest:
        case ("sgtin", [item, serial]) if serial != "*":
            return _join("01", _gtin(cp, item), "21", serial)
        case ("sgtin", [item, "*"]):
            return _join("01", _gtin(cp, item))
        case ("lgtin", [item, lot]):
            return _join("01", _gtin(cp, item), "10", lot)
        case ("upui", [item, tpx]):
            return _join("01", _gtin(cp, item), "235", tpx)
        case ("sscc", [serial]):
            return _join("00", _keyed(serial[:1] + cp + serial[1:], 18))
        case ("sgln", [location, extension]):
            return _join("414", _keyed(cp + location, 13),
                         *(("254", extension) if extension not in ("0", "") else ()))
        case ("pgln", [party]):
            return _join("417", _keyed(cp + party, 13))
        case ("grai", [kind, serial]):
            key = _keyed("0" + cp + kind, 14)
            return _join("8003", key) if serial == "*" else _serialised("8003", key, serial)
        case ("gdti" | "sgcn", [kind, serial]):
            ai, key = ("253" if scheme == "gdti" else "255"), _keyed(cp + kind, 13)
            return _join(ai, key) if serial == "*" else _serialised(ai, key, serial)
        case ("giai" | "ginc", [reference]) if reference and cp.isdigit():
            return f"{'8004' if scheme == 'giai' else '401'}/{cp}{reference}"
        case ("gsrn" | "gsrnp", [reference]):
            return _join("8018" if scheme == "gsrn" else "8017", _keyed(cp + reference, 18))
        case ("gsin", [reference]):
            return _join("402", _keyed(cp + reference, 17))
        case ("cpi", [reference, serial]) if reference and cp.isdigit():
            return f"8010/{cp}{reference}" + ("" if serial == "*" else f"/8011/{serial}")
        case ("itip", [item, piece, total, serial]):
            gtin = _gtin(cp, item)
            key = gtin + piece + total if gtin and (piece + total).isdigit() else None
            return _join("8006", key, *(() if serial == "*" else ("21", serial)))
    return None


def _join(*segments: str | None) -> str | None:
    return None if not all(segments) else "/".join(s for s in segments if s)


_EPC_URN = re.compile(r"urn:epc:(?:id|class|idpat):([a-z]+):(.+)\Z")
# Components of each scheme's URN body: the last may itself hold dots (a serial may).
_COMPONENTS = {"sgtin": 3, "lgtin": 3, "upui": 3, "sscc": 2, "sgln": 3, "pgln": 2, "grai": 3,
               "gdti": 3, "sgcn": 3, "giai": 2, "ginc": 2, "gsrn": 2, "gsrnp": 2, "gsin": 2,
               "cpi": 3, "itip": 5}


def _epc_to_digital_link(value: str) -> str | None:
    """The canonical GS1 Digital Link URI of an EPC URN, or None if it is not one we map.

    Escapes in the URN (``%2F``) stay as they are: both syntaxes percent-encode alike.
    """
    match = _EPC_URN.match(value)
    count = _COMPONENTS.get(match.group(1), 0) if match else 0
    parts = match.group(2).split(".", count - 1) if match and count else []
    path = _epc_path(match.group(1), parts) if len(parts) == count > 0 else None
    return _GS1_ID + path if path else None


# Digital Link: primary keys, their key qualifiers kept by the CBV 2.0 algorithm (most
# fine-grained first), numeric key lengths, and the short names of URI syntax 1.2.
_PRIMARY_KEYS = {"00": (), "01": ("21", "235", "10"), "253": (), "255": (), "401": (),
                 "402": (), "414": ("254",), "417": (), "8003": (), "8004": (),
                 "8006": ("21", "10"), "8010": ("8011",), "8017": (), "8018": ()}
_KEY_LENGTHS = {"00": 18, "01": 14, "414": 13, "417": 13, "402": 17, "8017": 18, "8018": 18}
_SHORT_NAMES = {"gtin": "01", "itip": "8006", "cpv": "22", "lot": "10", "ser": "21",
                "sscc": "00", "gln": "414", "party": "417", "exten": "254", "gsrn": "8018",
                "gsrnp": "8017", "gdti": "253", "gcn": "255", "ginc": "401", "gsin": "402",
                "grai": "8003", "giai": "8004", "cpid": "8010", "cpsn": "8011", "gmn": "8013",
                "upui": "235"}
_WEB_URI = re.compile(r"https?://[^/?#]+(/[^?#]*)")


def _canonical_digital_link(value: str) -> str | None:
    """The constrained canonical form of a GS1 Digital Link URI, or None if not one.

    Any host becomes ``id.gs1.org``; the query string and fragment go; key names become
    numeric; only the primary key and its most fine-grained qualifier stay (CBV 2.0 rule
    18); a short GTIN is padded to 14 digits.
    """
    match = _WEB_URI.match(value)
    segments = match.group(1).strip("/").split("/") if match else []
    codes = [_SHORT_NAMES.get(s, s) for s in segments]
    start = next((i for i, c in enumerate(codes) if c in _PRIMARY_KEYS), None)
    if start is None or (len(codes) - start) % 2:
        return None
    pairs = dict(zip(codes[start::2], segments[start + 1::2], strict=True))
    primary = codes[start]
    key = _padded(primary, pairs[primary])
    if key is None:
        return None
    qualifier = next((q for q in _PRIMARY_KEYS[primary] if pairs.get(q)), None)
    tail = f"/{qualifier}/{pairs[qualifier]}" if qualifier else ""
    return f"{_GS1_ID}{primary}/{key}{tail}"


def _padded(ai: str, key: str) -> str | None:
    length = _KEY_LENGTHS.get(ai)
    if length is None:
        return key or None
    if ai == "01" and key.isdigit() and len(key) in (8, 12, 13):
        key = key.zfill(14)
    return key if key.isdigit() and len(key) == length else None


def _identifier(value: str) -> str:
    """An EPC URN or Digital Link URI in canonical Digital Link form; anything else as is."""
    return _epc_to_digital_link(value) or _canonical_digital_link(value) or value


# -- scalar values ------------------------------------------------------------------------

_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})\Z")
_OFFSET = re.compile(r"[+-](?:0\d|1[0-4]):[0-5]\d\Z")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)\Z")
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+\Z")


def _utc_millis(value: str) -> str | None:
    """A timestamp with a time zone in UTC at millisecond precision, or None if malformed.

    Digits past the millisecond round it up from 5 (CBV 2.0 rule 9).
    """
    match = _TIME.match(value)
    if not match:
        return None
    whole, fraction, zone = match.groups()
    fraction = fraction or ""
    millis = int((fraction + "000")[:3]) + (len(fraction) > 3 and fraction[3] >= "5")
    try:
        moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    moment = (moment + timedelta(milliseconds=millis)).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _decimal(value: Any) -> Decimal | None:
    """A JSON number (or a float from a caller) as an exact decimal; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _decimal_text(number: Decimal) -> str:
    """A decimal without leading or trailing zeros and without an exponent (rule 6)."""
    return "0" if number.is_zero() else format(number.normalize(), "f")


def _scalar_text(value: Any) -> str:
    """Any scalar value as the algorithm writes it, whatever field holds it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    number = _decimal(value)
    if number is not None:
        return _decimal_text(number)
    text = str(value).strip()
    for urn, web in _CBV_URNS:
        if text.startswith(urn):
            return web + text[len(urn):]
    if _DECIMAL.match(text):
        return _decimal_text(Decimal(text))
    return _identifier(text)


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


# -- what the app stores --------------------------------------------------------------------

def normalise(event: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical form of an accepted event, as the app stores it, with its hash.

    Business steps, dispositions and source, destination and transaction types become
    CBV short names; EPCs given as URNs stay URNs, Digital Link URIs become canonical;
    lists are sorted; ``eventTime`` is written in UTC at millisecond precision;
    ``recordTime`` is dropped (the ledger's block time is the record time); ``eventID`` is
    kept, though CBV 2.0 does not hash it (copies of an event that differ only there have
    one hash). Values are strings, ints and bools, never floats (see the module's note on
    quantities). ``@context`` keeps the document's own prefix definitions that the event
    uses. ``eventHash`` is the CBV 2.0 event hash, the same for the event and its normal
    form; normalising twice gives the same dict, and an ``eventHash`` already present must
    match.
    """
    _checked(event)
    context = _Context.of(event)
    stored: dict[str, Any] = {}
    for name in _STORED_ORDER:
        if name in event and (value := _stored(name, event[name], context)) not in ([], "", {}):
            stored[name] = value
    for name in sorted(set(event) - _KNOWN_FIELDS):
        stored[name] = _plain(event[name])
    used = _used_prefixes(event, context)
    if used:
        stored["@context"] = used
    stored["eventHash"] = event_hash(stored)
    if event.get("eventHash", stored["eventHash"]) != stored["eventHash"]:
        _fail("eventHash", f"does not match the event, whose hash is {stored['eventHash']}")
    return stored


def _checked(event: Mapping[str, Any]) -> None:
    if not isinstance(event, Mapping):
        _fail("event", "expected an object")
    _Checker(event).check()


def _stored(name: str, value: Any, context: _Context) -> Any:
    if name == "eventTime":
        return _utc_millis(value)
    if name in _EPC_LISTS:
        return sorted(_stored_id(v) for v in value)
    if name in ("parentID", "transformationID"):
        return _stored_id(value)
    if name in _QUANTITY_LISTS:
        return _sorted_dicts(_stored_quantity(q) for q in value)
    if name in _PARTY_LISTS:
        return _sorted_dicts(_stored_party(name, e, context) for e in value)
    if name in ("bizStep", "disposition"):
        return _stored_term(name, value, context)
    if name == "persistentDisposition":
        return {k: sorted(_stored_term("disposition", t, context) for t in value[k])
                for k in ("set", "unset") if value.get(k)}
    if name in ("readPoint", "bizLocation"):
        return {"id": value["id"].strip(), **{k: _plain(v) for k, v in sorted(value.items())
                                             if k != "id"}}
    return _plain(value)


def _stored_id(value: str) -> str:
    value = value.strip()
    return value if value.startswith("urn:") else _identifier(value)


def _stored_quantity(item: Mapping[str, Any]) -> dict[str, Any]:
    stored: dict[str, Any] = {"epcClass": _stored_id(item["epcClass"])}
    if "quantity" in item:
        stored["quantity"] = _plain(item["quantity"])
    if "uom" in item:
        stored["uom"] = item["uom"].strip()
    return stored


def _stored_party(name: str, entry: Mapping[str, Any], context: _Context) -> dict[str, Any]:
    key, vocabulary = _PARTY_LISTS[name]
    stored = {key: entry[key].strip()}
    if "type" in entry:
        stored = {"type": _stored_term(vocabulary, entry["type"], context), **stored}
    return stored


def _stored_term(vocabulary: str, value: str, context: _Context) -> str:
    """A CBV short name, or the full IRI of a term outside the CBV."""
    iri = context.iri(value.strip())
    return VOCABULARIES[vocabulary].short(iri) or iri


def _sorted_dicts(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda d: json.dumps(d, sort_keys=True))


def _plain(value: Any) -> Any:
    """A JSON value with its numbers as ints or exact decimal strings, never floats."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    number = _decimal(value)
    if number is None or isinstance(value, int):
        return value.strip() if isinstance(value, str) else value
    return int(number) if number == number.to_integral_value() else _decimal_text(number)


def _used_prefixes(event: Mapping[str, Any], context: _Context) -> dict[str, str]:
    """The document's own prefixes that a key or a value of the event may use."""
    used = set(_prefixes_in(event)) & set(context.inline)
    return {p: context.inline[p] for p in sorted(used)}


def _prefixes_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value.partition(":")[0]
    elif isinstance(value, list):
        for item in value:
            yield from _prefixes_in(item)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key != "@context":
                yield key.partition(":")[0]
                yield from _prefixes_in(item)


# -- documents ----------------------------------------------------------------------------

def parse_document(data: bytes) -> list[dict[str, Any]]:
    """The events of an EPCIS 2.0 JSON-LD document (or of a single event), normalised.

    Every event is checked against the subset the ledger accepts; one refused event
    refuses the whole document, with an :class:`EPCISError` naming the event (its index
    and eventID) and the field. JSON numbers are read as exact decimals.
    """
    try:
        root = json.loads(data, parse_float=Decimal, parse_constant=_no_constant)
    except EPCISError:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise EPCISError("data", f"not valid JSON ({e})", document=True) from e
    if not isinstance(root, Mapping):
        _fail_document("data", "expected an object")
    events, prefixes = _events_of(root)
    return [_normalised(i, event, prefixes) for i, event in enumerate(events)]


def _no_constant(name: str) -> NoReturn:
    _fail_document("data", f"{name} is not a JSON number")


def _events_of(root: Mapping[str, Any]) -> tuple[list[Any], dict[str, str]]:
    _check_context(root.get("@context"))
    prefixes = _inline_prefixes(root.get("@context"))
    if root.get("type") == "EPCISQueryDocument":
        _fail_document("type", "EPCISQueryDocument is not supported: send an EPCISDocument")
    if root.get("type") != "EPCISDocument":
        return [root], prefixes
    if str(root.get("schemaVersion", "2.0")).split(".")[:2] != ["2", "0"]:
        _fail_document("schemaVersion", "expected 2.0")
    body = root.get("epcisBody")
    events = body.get("eventList") if isinstance(body, Mapping) else None
    if not isinstance(events, list):
        _fail_document("epcisBody.eventList", "expected a list")
    return events, prefixes


def _check_context(context: Any) -> None:
    urls = [c for c in (context if isinstance(context, list) else [context])
            if isinstance(c, str)]
    if not any(u.startswith(("https://ref.gs1.org/standards/epcis/",
                             "https://gs1.github.io/EPCIS/")) for u in urls):
        _fail_document("@context", f"must include the EPCIS 2.0 context {EPCIS_CONTEXT}")


def _normalised(index: int, event: Any, prefixes: Mapping[str, str]) -> dict[str, Any]:
    event_id = event.get("eventID") if isinstance(event, Mapping) else None
    try:
        own = _inline_prefixes(_mapping("event", event).get("@context"))
        return normalise({**event, "@context": {**prefixes, **own}})
    except EPCISError as e:
        raise EPCISError(e.field, e.reason, index,
                         event_id if isinstance(event_id, str) else None) from None


def document(events: Iterable[Mapping[str, Any]], *, created: str) -> dict[str, Any]:
    """An EPCIS 2.0 JSON-LD document of stored events, created at ``created``.

    The events' own prefix definitions move to the document's ``@context``; two events
    defining one prefix differently cannot share a document. ``eventHash`` is left out
    (it is not an EPCIS field); :func:`parse_document` computes it again, and gives back
    the same events.
    """
    if not isinstance(created, str) or not _utc_millis(created):
        _fail_document("creationDate", "expected a timestamp with a time zone")
    prefixes: dict[str, str] = {}
    body = []
    for index, event in enumerate(events):
        stored = _normalised(index, event, {})
        for prefix, iri in stored.pop("@context", {}).items():
            if prefixes.setdefault(prefix, iri) != iri:
                raise EPCISError("@context", f"prefix {prefix!r} is defined two ways",
                                 index, stored.get("eventID"))
        stored.pop("eventHash")
        body.append(stored)
    context: list[Any] = [EPCIS_CONTEXT, *([dict(sorted(prefixes.items()))] if prefixes else [])]
    return {"@context": context, "type": "EPCISDocument", "schemaVersion": "2.0",
            "creationDate": created, "epcisBody": {"eventList": body}}
