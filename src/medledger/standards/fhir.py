"""FHIR resources and bundles: validation, coarse category, splitting and joining bundles.

Resources are validated with the R4B (4.3.0) models of ``fhir.resources``. There are no R4
(4.0.1) models for pydantic 2; an R4 resource that validates as R4B is accepted, and R4's
own published examples almost all do (those that do not use resources R4B dropped).

What is checked is what the models check: structure, cardinality, primitive formats (a
``date`` is a date), choice elements (one ``value[x]`` at most). Not checked: code bindings
(``"gender": "robot"`` passes), invariants, profiles; and pydantic's lax mode lets a JSON
string such as ``"yes"`` stand for a boolean.

A problem raises :class:`FhirError` naming the failing path in FHIRPath style
(``Patient.birthDate: invalid date``, ``Bundle.entry[3].resource.status: required, missing``).
Its message never repeats a value of the resource: resources hold medical content, and
error messages end up in logs.

Canonical bytes (:func:`canonical_bytes`) are the resource's JSON as ``fhir.resources``
writes it (``model_dump_json(exclude_none=True)``): the same bytes for equal resources.
They are what a client encrypts. They are not RFC 8785 and nothing on the ledger hashes
them (the ledger holds the digest of the ciphertext), so a library upgrade that changed
them would change only records written after it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn, cast

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

__all__ = [
    "CATEGORIES",
    "Bundle",
    "FhirError",
    "Resource",
    "StandardsError",
    "canonical_bytes",
    "category",
    "join_bundle",
    "split_bundle",
    "validate",
]

CATEGORIES: tuple[str, ...] = (
    "encounter", "observation", "condition", "medication", "allergy", "immunization",
    "procedure", "imaging", "lab", "care-plan", "appointment", "document",
)
"""The coarse categories of records, as grants name them."""

MAX_PROBLEMS_SHOWN = 3


class StandardsError(Exception):
    """Root of the errors raised by :mod:`medledger.standards`."""


class FhirError(StandardsError, ValueError):
    """A FHIR resource that is not valid, or that cannot be used as asked.

    ``path`` is the first failing element in FHIRPath style (``Patient.birthDate``),
    ``reason`` what is wrong with it (``invalid date``), and ``problems`` every
    ``(path, reason)`` found, the first one included. The message shows the first few.
    """

    def __init__(self, path: str, reason: str,
                 problems: Sequence[tuple[str, str]] | None = None) -> None:
        self.path = path
        self.reason = reason
        self.problems: tuple[tuple[str, str], ...] = tuple(problems or ((path, reason),))
        shown = "; ".join(f"{p}: {r}" for p, r in self.problems[:MAX_PROBLEMS_SHOWN])
        more = len(self.problems) - MAX_PROBLEMS_SHOWN
        super().__init__(shown + (f" (and {more} more)" if more > 0 else ""))


# -- validation ---------------------------------------------------------------------------


def validate(data: bytes | bytearray | Mapping[str, Any]) -> Resource:
    """Validate a FHIR resource or Bundle given as JSON bytes or as a parsed JSON object.

    Return the R4B model (a :class:`Resource`; a :class:`Bundle` for a bundle). Raise
    :class:`FhirError` naming the failing path for anything that is not a valid resource:
    bytes that are not JSON, duplicate keys, an unknown ``resourceType``, a structural or
    format error anywhere inside.
    """
    if isinstance(data, (bytes, bytearray)):
        raw = bytes(data)
        parsed = _parse_json(raw)
    elif isinstance(data, Mapping):
        raw, parsed = None, data
    else:
        raise FhirError("$", f"expected JSON bytes or an object, got {type(data).__name__}")
    if not isinstance(parsed, Mapping):
        raise FhirError("$", "not a JSON object")
    kind = _check_resource_types(parsed, "")
    model = _resource_class(kind, "resourceType")
    try:
        if raw is not None:
            return model.model_validate_json(raw)  # type: ignore[no-any-return]
        return model.model_validate(dict(parsed))  # type: ignore[no-any-return]
    except ValidationError as e:
        _raise_problems(kind, e)
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # fhir_core internals
        raise FhirError(kind, f"does not validate ({type(e).__name__})") from e


def canonical_bytes(resource: Resource) -> bytes:
    """The resource's JSON as ``fhir.resources`` writes it, without empty elements."""
    return resource.model_dump_json(exclude_none=True).encode("utf-8")


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constant)
    except UnicodeDecodeError as e:
        raise FhirError("$", "not UTF-8") from e
    except json.JSONDecodeError as e:
        raise FhirError("$", f"not JSON ({e.msg} at line {e.lineno} column {e.colno})") from e


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise FhirError("$", f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> NoReturn:
    raise FhirError("$", f"{name} is not a JSON number")


def _resource_class(kind: object, path: str) -> type[Resource]:
    """The R4B model class of resource type ``kind``; FhirError if it is no resource."""
    if not isinstance(kind, str) or not kind:
        raise FhirError(path, "missing or not a string")
    try:
        model = get_fhir_model_class(kind)
    except (ValueError, KeyError, AttributeError):
        model = None
    if model is None or not issubclass(model, Resource):
        raise FhirError(path, f"unknown resource type {kind!r} (FHIR R4B)")
    return model


def _check_resource_types(value: Any, path: str) -> str:
    """Check every ``resourceType`` in ``value`` names a resource, before the models see
    it (an unknown one nested inside makes ``fhir_core`` raise a bare KeyError). Return
    the top-level resource type."""
    top = path == ""
    if isinstance(value, Mapping):
        if "resourceType" in value or top:
            kind = value.get("resourceType")
            where = f"{path}.resourceType" if path else "resourceType"
            _resource_class(kind, where)
            path = path or str(kind)
        for key, item in value.items():
            if key != "resourceType":
                _check_resource_types(item, f"{path}.{key}")
        return str(value.get("resourceType", ""))
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_resource_types(item, f"{path}[{i}]")
    return ""


# -- turning pydantic's errors into sentences ------------------------------------------------

_FORMAT_ERROR = re.compile(r"(Date|DateTime|Instant|Time|Decimal) value string does not match")
_CHOICE_MULTIPLE = re.compile(r"this list \[([^\]]*)\], but got multiple")
_CHOICE_NONE = re.compile(r"Expect any of field value from this list \[([^\]]*)\]")
_REASONS: dict[str, str] = {
    "missing": "required, missing",
    "model_field_validation.missing": "required, missing",
    "extra_forbidden": "not an element of this type",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "not in the format of its type",
    "list_type": "must be an array",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "decimal_type": "must be a number",
    "greater_than": "out of range",
    "greater_than_equal": "out of range",
    "less_than": "out of range",
    "less_than_equal": "out of range",
    "url_parsing": "not a valid URL",
    "url_type": "not a valid URL",
}
_TEMPORAL = (("datetime", "invalid dateTime"), ("date", "invalid date"), ("time", "invalid time"))


def _raise_problems(kind: str, error: ValidationError) -> NoReturn:
    # ``from None``: pydantic's own message quotes the input values (medical content), and
    # a chained exception would carry them into every logged traceback.
    problems = [_problem(kind, item) for item in error.errors(include_input=False)]
    if not problems:
        raise FhirError(kind, "does not validate") from None
    (path, reason), *_ = problems
    raise FhirError(path, reason, problems) from None


def _problem(kind: str, item: Mapping[str, Any]) -> tuple[str, str]:
    loc = [part for part in item.get("loc", ()) if part != "root"]
    path = kind + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
    error_type = str(item.get("type", ""))
    message = str(item.get("msg", "")).removeprefix("Value error, ")
    if error_type in _REASONS:
        return path, _REASONS[error_type]
    for prefix, reason in _TEMPORAL:
        if error_type.startswith(prefix + "_"):
            return path, reason
    if found := _FORMAT_ERROR.search(message):
        name = found.group(1)
        return path, f"invalid {name[0].lower()}{name[1:]}"
    if "timezone aware" in message:
        return path, "invalid dateTime: a time needs a time zone"
    if found := _CHOICE_MULTIPLE.search(message):
        return f"{path}.{_choice_name(found.group(1))}", "more than one type given"
    if found := _CHOICE_NONE.search(message):
        return f"{path}.{_choice_name(found.group(1))}", "required, missing"
    if error_type == "model_validation_format":
        return path, message.rstrip(".")
    return path, message.rstrip(".") or "invalid"


def _choice_name(fields: str) -> str:
    """``'valueBoolean', 'valueString'`` -> ``value[x]``."""
    names = [f.strip().strip("'\"") for f in fields.split(",") if f.strip()]
    prefix = names[0] if names else ""
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    while prefix and prefix[-1].isupper():  # the common prefix may run into the type name
        prefix = prefix[:-1]
    return f"{prefix}[x]"


# -- categories ---------------------------------------------------------------------------

_BY_TYPE: dict[str, str] = {
    "Encounter": "encounter", "EpisodeOfCare": "encounter",
    "Condition": "condition",
    "MedicationRequest": "medication", "MedicationStatement": "medication",
    "MedicationAdministration": "medication", "MedicationDispense": "medication",
    "AllergyIntolerance": "allergy",
    "Immunization": "immunization", "ImmunizationEvaluation": "immunization",
    "ImmunizationRecommendation": "immunization",
    "Procedure": "procedure",
    "ImagingStudy": "imaging",
    "Specimen": "lab",
    "CarePlan": "care-plan", "CareTeam": "care-plan", "Goal": "care-plan",
    "Appointment": "appointment", "AppointmentResponse": "appointment",
    "DocumentReference": "document", "Composition": "document",
}
#: Resources that give a record its context (who, where, with what) but no category.
_CONTEXT_TYPES = frozenset({
    "Patient", "Practitioner", "PractitionerRole", "Organization", "Location",
    "RelatedPerson", "Device", "Medication", "Provenance",
})
#: Observation category codes (http://terminology.hl7.org/CodeSystem/observation-category).
_OBSERVATION_CATEGORY = {"laboratory": "lab", "imaging": "imaging"}
#: DiagnosticReport category codes: HL7 v2 table 0074 (diagnostic service sections) and
#: the LOINC parts that US Core uses.
_LAB_SECTIONS = frozenset({
    "LAB", "BG", "BLB", "CG", "CH", "CP", "GE", "HLA", "HM", "ICU", "IMM", "MB", "MCB",
    "MYC", "PAR", "PAT", "SP", "SR", "TX", "URN", "VR", "LP29693-6", "LP7839-6",
})
_IMAGING_SECTIONS = frozenset({
    "RAD", "CT", "CUS", "NMR", "NMS", "OUS", "RUS", "RX", "VUS", "XRC", "LP29684-5",
})


def category(resource: Resource) -> str:
    """The coarse category of ``resource``, one of :data:`CATEGORIES`.

    An Observation is ``lab`` (category ``laboratory``), ``imaging`` or ``observation``; a
    DiagnosticReport ``lab`` or ``imaging`` by its category. A Bundle of type ``document``
    is a ``document``; another Bundle takes the one category its entries share (context
    such as Patient or Practitioner aside). Raise :class:`FhirError` for a resource type
    with no category, a DiagnosticReport of another service, or a Bundle that mixes
    categories (split it with :func:`split_bundle`).
    """
    kind = resource.get_resource_type()
    if kind == "Observation":
        return _observation_category(resource)
    if kind == "DiagnosticReport":
        return _report_category(resource)
    if kind == "Bundle":
        return _bundle_category(resource)  # type: ignore[arg-type]
    if kind in _BY_TYPE:
        return _BY_TYPE[kind]
    raise FhirError(kind, "no record category for this resource type")


def _codes(resource: Resource) -> list[str]:
    codes: list[str] = []
    for concept in getattr(resource, "category", None) or ():
        codes.extend(c.code for c in concept.coding or () if c.code)
    return codes


def _observation_category(resource: Resource) -> str:
    found = {_OBSERVATION_CATEGORY[c] for c in _codes(resource) if c in _OBSERVATION_CATEGORY}
    for kind in ("lab", "imaging"):  # laboratory first when an observation has both
        if kind in found:
            return kind
    return "observation"


def _report_category(resource: Resource) -> str:
    codes = set(_codes(resource))
    if codes & _LAB_SECTIONS:
        return "lab"
    if codes & _IMAGING_SECTIONS:
        return "imaging"
    raise FhirError("DiagnosticReport.category", "neither a laboratory nor an imaging service")


def _bundle_category(bundle: Bundle) -> str:
    if bundle.type == "document":
        return "document"
    found: list[str] = []
    for i, entry in enumerate(bundle.entry or ()):
        if entry.resource is None or entry.resource.get_resource_type() in _CONTEXT_TYPES:
            continue
        try:
            found.append(category(entry.resource))
        except FhirError as e:
            raise FhirError(f"Bundle.entry[{i}].resource", e.reason) from e
    kinds = sorted(set(found))
    if not kinds:
        raise FhirError("Bundle.entry", "no entry with a record category")
    if len(kinds) > 1:
        listed = ", ".join(kinds)
        raise FhirError("Bundle.entry", f"entries of more than one category ({listed}); "
                                        "split the bundle and record each category apart")
    return kinds[0]


# -- bundles ------------------------------------------------------------------------------


def split_bundle(bundle: Bundle | bytes | Mapping[str, Any]) -> list[Resource]:
    """The resources of a Bundle's entries, in order, each validated on its own.

    ``bundle`` is a :class:`Bundle` or its JSON (bytes or parsed). Raise
    :class:`FhirError` if it is no valid Bundle or an entry holds no resource.
    """
    if not isinstance(bundle, Bundle):
        model = validate(bundle)
        if not isinstance(model, Bundle):
            raise FhirError("resourceType", f"expected a Bundle, got {model.get_resource_type()}")
        bundle = model
    resources: list[Resource] = []
    for i, entry in enumerate(bundle.entry or ()):
        if entry.resource is None:
            raise FhirError(f"Bundle.entry[{i}].resource", "required, missing")
        try:
            resources.append(validate(canonical_bytes(entry.resource)))
        except FhirError as e:
            raise FhirError(f"Bundle.entry[{i}].resource", e.reason,
                            [(f"Bundle.entry[{i}].resource.{p}", r)
                             for p, r in e.problems]) from e
    return resources


def join_bundle(resources: Iterable[Resource], *,
                full_urls: Sequence[str] | None = None) -> Bundle:
    """A ``collection`` Bundle of ``resources``, in order, validated.

    ``full_urls``, if given, are the entries' ``fullUrl`` (one for each resource), so that
    references between them (``urn:uuid:...``) still resolve.
    """
    items = list(resources)
    if full_urls is not None and len(full_urls) != len(items):
        raise FhirError("Bundle.entry.fullUrl",
                        f"{len(full_urls)} full URLs for {len(items)} resources")
    entries: list[dict[str, Any]] = []
    for i, resource in enumerate(items):
        if not isinstance(resource, Resource):
            raise FhirError(f"Bundle.entry[{i}].resource",
                            f"not a FHIR resource model ({type(resource).__name__})")
        entry: dict[str, Any] = {"resource": json.loads(canonical_bytes(resource))}
        if full_urls is not None:
            entry = {"fullUrl": full_urls[i], **entry}
        entries.append(entry)
    body: dict[str, Any] = {"resourceType": "Bundle", "type": "collection"}
    if entries:
        body["entry"] = entries
    return cast(Bundle, validate(body))
