"""What a record holds, on the client: a FHIR resource, or the part of a Bundle in one
category; joining records back into one Bundle; and the timeline a patient reads.

A resource on its own is one record, its canonical bytes (:func:`canonical_bytes`). A
Bundle of type ``document`` is one ``document`` record, as it is. Any other Bundle is split
by category (ADR 0011), so that a grant of one category never opens another's content:
each category becomes a ``collection`` Bundle of its entries, in their order, with their
``fullUrl``. Entries that have no category of their own (Patient, Practitioner,
Organization, ...) give the others their context and go into every one of them::

    {"resourceType": "Bundle", "type": "collection",
     "identifier": {"system": "urn:medledger:source", "value": <SHA-256 of the file>},
     "entry": [{"extension": [{"url": "urn:medledger:source-position",
                               "valueInteger": <the entry's index in the file>}],
                "fullUrl": ..., "resource": ...}, ...]}

The source digest and each entry's position are what :func:`join_records` needs to give
back the original Bundle resource for resource, in order, each context entry once.

Everything here is pure; problems raise :class:`~medledger.standards.fhir.FhirError`
naming the failing path and never a value of the resource.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from medledger.standards.fhir import (
    Bundle,
    FhirError,
    Resource,
    canonical_bytes,
    category,
    validate,
)

__all__ = ["POSITION_URL", "SOURCE_SYSTEM", "Part", "join_records", "record_parts",
           "timeline_rows"]

SOURCE_SYSTEM = "urn:medledger:source"
POSITION_URL = "urn:medledger:source-position"


@dataclass(frozen=True, slots=True)
class Part:
    """One record to seal: its ``category``, its ``content`` (canonical FHIR JSON, never
    shown in ``repr``) and how many resources of the category it holds."""

    category: str
    content: bytes = field(repr=False)
    resources: int


# splitting ------------------------------------------------------------------------------------
def record_parts(raw: bytes) -> list[Part]:
    """The records a FHIR file (JSON bytes) becomes, one per category, in the order the
    categories first appear."""
    model = validate(raw)
    if not isinstance(model, Bundle):
        return [Part(category(model), canonical_bytes(model), 1)]
    if model.type == "document":
        return [Part("document", canonical_bytes(model), 1)]
    source = hashlib.sha256(raw).hexdigest()
    context, groups = _grouped(model)
    if not groups:
        raise FhirError("Bundle.entry", "no entry with a record category")
    return [Part(cat, canonical_bytes(_category_bundle(source, context, entries)), len(entries))
            for cat, entries in groups.items()]


def _grouped(bundle: Bundle) -> tuple[list[tuple[int, dict[str, Any]]],
                                      dict[str, list[tuple[int, dict[str, Any]]]]]:
    """(context entries, entries by category), each entry with its position."""
    context: list[tuple[int, dict[str, Any]]] = []
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, entry in enumerate(bundle.entry or ()):
        if entry.resource is None:
            raise FhirError(f"Bundle.entry[{i}].resource", "required, missing")
        kept = {"resource": json.loads(canonical_bytes(entry.resource))}
        if entry.fullUrl is not None:
            kept["fullUrl"] = str(entry.fullUrl)
        try:
            cat = category(entry.resource)
        except FhirError:
            context.append((i, kept))  # no category of its own: context for every record
            continue
        groups.setdefault(cat, []).append((i, kept))
    return context, groups


def _category_bundle(source: str, context: Sequence[tuple[int, dict[str, Any]]],
                     entries: Sequence[tuple[int, dict[str, Any]]]) -> Resource:
    placed = sorted([*context, *entries], key=lambda pair: pair[0])
    return validate({
        "resourceType": "Bundle", "type": "collection",
        "identifier": {"system": SOURCE_SYSTEM, "value": source},
        "entry": [{"extension": [{"url": POSITION_URL, "valueInteger": i}], **entry}
                  for i, entry in placed],
    })


# joining --------------------------------------------------------------------------------------
def join_records(contents: Iterable[bytes]) -> Resource:
    """One ``collection`` Bundle of the records' resources: the entries of a split Bundle
    back in their original order (context once), every other record as one entry, sources
    in the order they are first met. Validated."""
    sources: dict[str, dict[int, dict[str, Any]]] = {}
    order: list[tuple[str, Any]] = []
    for raw in contents:
        model = validate(raw)
        source = _source_of(model)
        if source is None:
            order.append(("entry", {"resource": json.loads(canonical_bytes(model))}))
            continue
        if source not in sources:
            sources[source] = {}
            order.append(("source", source))
        for position, entry in _positioned(model):
            sources[source].setdefault(position, entry)
    entries: list[dict[str, Any]] = []
    for kind, value in order:
        if kind == "entry":
            entries.append(value)
        else:
            entries.extend(entry for _, entry in sorted(sources[value].items()))
    body: dict[str, Any] = {"resourceType": "Bundle", "type": "collection"}
    if entries:
        body["entry"] = entries
    return validate(body)


def _source_of(model: Resource) -> str | None:
    if not isinstance(model, Bundle) or model.identifier is None:
        return None
    ident = model.identifier
    return str(ident.value) if ident.system == SOURCE_SYSTEM and ident.value else None


def _positioned(bundle: Bundle) -> list[tuple[int, dict[str, Any]]]:
    found = []
    for i, entry in enumerate(bundle.entry or ()):
        positions = [x.valueInteger for x in entry.extension or () if x.url == POSITION_URL]
        if len(positions) != 1 or entry.resource is None:
            raise FhirError(f"Bundle.entry[{i}].extension", "a split record's entry needs "
                                                            "exactly one source position")
        kept: dict[str, Any] = {"resource": json.loads(canonical_bytes(entry.resource))}
        if entry.fullUrl is not None:
            kept = {"fullUrl": str(entry.fullUrl), **kept}
        found.append((int(positions[0]), kept))
    return found


# the timeline ---------------------------------------------------------------------------------
_DATES = ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "period.start",
          "start", "occurrenceDateTime", "performedDateTime", "performedPeriod.start",
          "onsetDateTime", "onsetPeriod.start", "authoredOn", "recordedDate", "issued",
          "date", "created", "meta.lastUpdated")


def timeline_rows(records: Iterable[tuple[dict[str, Any], bytes]]) -> list[dict[str, Any]]:
    """One row per clinical resource of the records (``(record metadata, content)``), by
    date (undated last): ``date``, ``record``, ``category``, ``resource``, ``what`` and
    ``status`` (an Appointment's status, a CarePlan's activities done of all)."""
    rows = []
    for meta, content in records:
        for resource in _resources(validate(content)):
            row = _row(meta, resource)
            if row is not None:
                rows.append(row)
    return sorted(rows, key=lambda r: (r["date"] is None, r["date"] or "", r["record"]))


def _resources(model: Resource) -> list[dict[str, Any]]:
    if isinstance(model, Bundle) and model.type != "document":
        return [json.loads(canonical_bytes(e.resource)) for e in model.entry or ()
                if e.resource is not None]
    return [json.loads(canonical_bytes(model))]


def _row(meta: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any] | None:
    try:
        cat = category(validate(resource))
    except FhirError:
        return None  # context (Patient, Practitioner, ...): no line of its own
    kind = resource["resourceType"]
    return {"date": _date(resource), "record": meta["id"], "category": cat,
            "resource": f"{kind}/{resource.get('id', '-')}", "what": _what(resource),
            "status": _status(resource)}


def _get(resource: dict[str, Any], dotted: str) -> Any:
    value: Any = resource
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _date(resource: dict[str, Any]) -> str | None:
    for path in _DATES:
        value = _get(resource, path)
        if isinstance(value, str):
            return value
    return None


def _what(resource: dict[str, Any]) -> str:
    for path in ("code", "medicationCodeableConcept", "vaccineCode", "type", "serviceType"):
        concept = _get(resource, path)
        concept = concept[0] if isinstance(concept, list) and concept else concept
        if isinstance(concept, dict):
            codings = concept.get("coding") or [{}]
            text = concept.get("text") or codings[0].get("display") or codings[0].get("code")
            if text:
                return str(text)
    for path in ("title", "description", "class.display"):
        if isinstance(_get(resource, path), str):
            return str(_get(resource, path))
    return str(resource["resourceType"])


def _status(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "CarePlan":
        activities = resource.get("activity") or []
        done = sum(1 for a in activities if _get(a, "detail.status") == "completed")
        progress = f"{done}/{len(activities)} activities completed"
        return f"{resource.get('status', '-')}, {progress}" if activities else resource.get(
            "status")
    status = resource.get("status")
    return str(status) if status is not None else None
