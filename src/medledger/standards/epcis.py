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

The code is kept in smaller modules, re-exported here: :mod:`.epcis_terms` (the error, the
vocabularies and the standard prefixes), :mod:`.epcis_ids` (identifiers and scalar values in
canonical form), :mod:`.epcis_hash` (the JSON-LD context, the pre-hash string and the hash)
and :mod:`.epcis_check` (the subset the ledger accepts).

Errors::

    EPCISError (ValueError)   a document or event the ledger refuses (.index, .event_id,
                              .field, .reason, .document); the message names them
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, NoReturn

from medledger.standards.epcis_check import (
    _KNOWN_FIELDS,
    _STORED_ORDER,
    EVENT_TYPES,
    _Checker,
)
from medledger.standards.epcis_hash import (
    _EPC_LISTS,
    _PARTY_LISTS,
    _QUANTITY_LISTS,
    _Context,
    _inline_prefixes,
    _mapping,
    event_hash,
    prehash,
)
from medledger.standards.epcis_ids import _decimal, _decimal_text, _identifier, _utc_millis
from medledger.standards.epcis_terms import (
    CBV_VERSION,
    EPCIS_CONTEXT,
    VOCABULARIES,
    EPCISError,
    Vocabulary,
    _fail,
    _fail_document,
)

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
