"""FHIR at the edge (medledger.standards.fhir): validation, categories, bundles.

Valid input: carebundle's synthetic R4 US Core bundles, every profile, several seeds (R4
resources that validate as R4B), and FHIR's published R4 examples when they are on the
machine. Invalid input: a named scenario table, each row the path and reason the error
must name. Everything here is synthetic and held in memory; values that must never be
echoed are canary strings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import carebundle
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medledger.standards import (
    CATEGORIES,
    Bundle,
    FhirError,
    Resource,
    StandardsError,
    canonical_bytes,
    category,
    join_bundle,
    split_bundle,
    validate,
)

PROFILES = sorted(carebundle.PROFILES)
SEEDS = [1, 42]
CANARY = "CANARY-7f3a"
CONTEXT = {"Patient", "Practitioner"}  # carebundle's entries that carry no category


def bundle_bytes(profile: str, seed: int) -> bytes:
    return carebundle.to_json(carebundle.generate_bundle(profile=profile, seed=seed)).encode()


def resources_of(raw: bytes) -> list[dict[str, Any]]:
    return [e["resource"] for e in json.loads(raw)["entry"]]


# --- valid input -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("profile", PROFILES)
def test_carebundle_bundles_validate(profile: str, seed: int) -> None:
    raw = bundle_bytes(profile, seed)
    bundle = validate(raw)
    assert isinstance(bundle, Bundle)
    assert len(bundle.entry or ()) == len(resources_of(raw))
    assert validate(json.loads(raw)) == bundle  # bytes and parsed JSON give the same model
    for entry in resources_of(raw):  # and every entry validates on its own
        assert validate(entry).get_resource_type() == entry["resourceType"]


@pytest.mark.parametrize("profile", PROFILES)
def test_canonical_bytes_are_stable(profile: str) -> None:
    raw = bundle_bytes(profile, 7)
    first = canonical_bytes(validate(raw))
    assert canonical_bytes(validate(raw)) == first  # equal input, equal bytes
    assert canonical_bytes(validate(first)) == first  # a fixed point
    assert canonical_bytes(validate(json.loads(raw))) == first
    assert json.loads(first)["resourceType"] == "Bundle"


EXAMPLES = Path(__file__).resolve().parents[1] / ".tools" / "fhir-examples" / "package"
R4B_VALID_AT_LEAST = 5_230  # CONFORMANCE.md: the R4 examples that validate as R4B


def _published_examples() -> list[Path]:
    """FHIR's R4 examples (npm ``hl7.fhir.r4.examples@4.0.1``, unpacked by ``make setup``,
    or wherever ``MEDLEDGER_FHIR_EXAMPLES`` points)."""
    folder = Path(os.environ.get("MEDLEDGER_FHIR_EXAMPLES") or EXAMPLES)
    found = sorted(folder.glob("**/*.json"))
    assert found, f"no FHIR examples in {folder}: `make setup` fetches them"
    return found


def test_published_r4_examples_validate_as_r4b_and_refusals_name_a_path() -> None:
    """Nearly all of FHIR's own R4 examples validate with the R4B models. The rest are
    what R4B changed (Evidence restructured, types dropped, a primitive's extension in a
    few v2 code systems): each is refused with the path of what failed."""
    valid, refused = 0, []
    for path in _published_examples():
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict) or "resourceType" not in data:
            continue  # the package's index and manifest files
        try:
            validate(path.read_bytes())
            valid += 1
        except FhirError as e:
            refused.append((path.name, e))
    assert valid >= R4B_VALID_AT_LEAST, (valid, [str(e)[:200] for _, e in refused[:10]])
    for name, error in refused:
        assert error.path and error.reason and error.problems, name


# --- invalid input: a named scenario table ---------------------------------------------------
PATIENT = {"resourceType": "Patient"}
OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": CANARY}}

INVALID: dict[str, tuple[Any, str, str]] = {
    "birth date with month 13": (
        {**PATIENT, "birthDate": "1990-13-45"}, "Patient.birthDate", "invalid date"),
    "birth date 30 February": (
        {**PATIENT, "birthDate": "1990-02-30"}, "Patient.birthDate", "invalid date"),
    "birth date that is a canary": (
        {**PATIENT, "birthDate": CANARY}, "Patient.birthDate", "invalid date"),
    "dateTime with a time but no zone": (
        {**PATIENT, "deceasedDateTime": "2020-01-01T10:00:00"},
        "Patient.deceasedDateTime", "invalid dateTime"),
    "name given as a string": (
        {**PATIENT, "name": CANARY}, "Patient.name", "must be an array"),
    "family name as an array": (
        {**PATIENT, "name": [{"family": [CANARY]}]}, "Patient.name[0].family",
        "must be a string"),
    "an element the type does not have": (
        {**PATIENT, "favouriteColour": CANARY}, "Patient.favouriteColour",
        "not an element of this type"),
    "id with a space": (
        {**PATIENT, "id": "bad id"}, "Patient.id", "not in the format of its type"),
    "integer with a fraction": (
        {**PATIENT, "multipleBirthInteger": 1.5}, "Patient.multipleBirthInteger",
        "must be an integer"),
    "observation without a code": (
        {"resourceType": "Observation", "status": "final"}, "Observation.code",
        "required, missing"),
    "observation without a status": (
        {"resourceType": "Observation", "code": {"text": CANARY}}, "Observation.status",
        "required, missing"),
    "two values of a choice element": (
        {**OBSERVATION, "valueString": CANARY, "valueBoolean": True}, "Observation.value[x]",
        "more than one type given"),
    "decimal that is not a number": (
        {**OBSERVATION, "valueQuantity": {"value": CANARY}}, "Observation.valueQuantity.value",
        "invalid decimal"),
    "instant that is only a year": (
        {**OBSERVATION, "effectiveInstant": "2020"}, "Observation.effectiveInstant",
        "invalid instant"),
    "bundle without a type": (
        {"resourceType": "Bundle"}, "Bundle.type", "required, missing"),
    "bundle entry with a bad date": (
        {"resourceType": "Bundle", "type": "collection",
         "entry": [{"resource": {**PATIENT, "birthDate": CANARY}}]},
        "Bundle.entry[0].resource.birthDate", "invalid date"),
    "bundle entry of an unknown type": (
        {"resourceType": "Bundle", "type": "collection",
         "entry": [{"resource": {"resourceType": "Canary"}}]},
        "Bundle.entry[0].resource.resourceType", "unknown resource type"),
    "contained data type that is no resource": (
        {**PATIENT, "contained": [{"resourceType": "HumanName"}]},
        "Patient.contained[0].resourceType", "unknown resource type"),
    "unknown resource type": (
        {"resourceType": "Canary"}, "resourceType", "unknown resource type"),
    "a data type, not a resource": (
        {"resourceType": "HumanName", "family": CANARY}, "resourceType",
        "unknown resource type"),
    "no resourceType": ({"id": "x"}, "resourceType", "missing"),
    "resourceType not a string": ({"resourceType": 5}, "resourceType", "missing or not"),
    "bytes that are not JSON": (b"{not json", "$", "not JSON"),
    "bytes that are not UTF-8": (b"\xff\xfe", "$", "not UTF-8"),
    "a JSON array": (b"[1, 2]", "$", "not a JSON object"),
    "a key twice (two parsers could read two resources)": (
        b'{"resourceType": "Patient", "id": "a", "id": "b"}', "$", "appears twice"),
    "NaN": ((b'{"resourceType": "Observation", "status": "final", "code": {},'
             b' "valueQuantity": {"value": NaN}}'), "$", "NaN is not a JSON number"),
    "neither bytes nor an object": ("{}", "$", "expected JSON bytes or an object"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_input_is_refused_with_its_path(name: str) -> None:
    data, path, reason = INVALID[name]
    with pytest.raises(FhirError) as caught:
        validate(data)
    error = caught.value
    assert error.path == path, f"{name}: path {error.path!r}, want {path!r}"
    assert reason in error.reason, f"{name}: reason {error.reason!r}, want {reason!r}"
    assert str(error).startswith(f"{path}: ")
    assert (error.path, error.reason) == error.problems[0]
    assert isinstance(error, (StandardsError, ValueError))


@pytest.mark.parametrize("name", sorted(INVALID))
def test_errors_read_as_sentences_and_never_echo_content(name: str) -> None:
    with pytest.raises(FhirError) as caught:
        validate(INVALID[name][0])
    message = str(caught.value)
    assert CANARY not in message and CANARY.lower() not in message.lower()
    for trace in ("pydantic", "validation error for", "For further information", "Traceback",
                  "input_value", "type="):
        assert trace not in message, f"{name}: {message!r}"
    assert "\n" not in message
    cause = caught.value.__cause__
    assert cause is None or "pydantic" not in type(cause).__module__


def test_every_problem_is_listed_and_the_message_shows_the_first_few() -> None:
    bad = {**PATIENT, "birthDate": "x", "gender": 5, "active": [], "name": "x", "id": "a b"}
    with pytest.raises(FhirError) as caught:
        validate(bad)
    paths = {p for p, _ in caught.value.problems}
    assert {"Patient.birthDate", "Patient.gender", "Patient.name", "Patient.id"} <= paths
    assert "more)" in str(caught.value)


# --- categories ------------------------------------------------------------------------------
def _coded(system: str, code: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": system, "code": code}]}]


OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
REF = {"reference": "Patient/p"}
CODE = {"text": "x"}

CATEGORY: dict[str, tuple[dict[str, Any], str]] = {
    "encounter": ({"resourceType": "Encounter", "status": "finished",
                   "class": {"code": "AMB"}}, "encounter"),
    "laboratory observation": ({**OBSERVATION, "category": _coded(OBS_CAT, "laboratory")},
                               "lab"),
    "vital signs observation": ({**OBSERVATION, "category": _coded(OBS_CAT, "vital-signs")},
                                "observation"),
    "imaging observation": ({**OBSERVATION, "category": _coded(OBS_CAT, "imaging")},
                            "imaging"),
    "observation without a category": (OBSERVATION, "observation"),
    "observation both laboratory and vital signs": (
        {**OBSERVATION, "category": _coded(OBS_CAT, "vital-signs")
         + _coded(OBS_CAT, "laboratory")}, "lab"),
    "laboratory report": ({"resourceType": "DiagnosticReport", "status": "final", "code": CODE,
                           "category": _coded(V2_0074, "LAB")}, "lab"),
    "haematology report": ({"resourceType": "DiagnosticReport", "status": "final",
                            "code": CODE, "category": _coded(V2_0074, "HM")}, "lab"),
    "radiology report": ({"resourceType": "DiagnosticReport", "status": "final", "code": CODE,
                          "category": _coded(V2_0074, "RAD")}, "imaging"),
    "radiology report by LOINC part": (
        {"resourceType": "DiagnosticReport", "status": "final", "code": CODE,
         "category": _coded("http://loinc.org", "LP29684-5")}, "imaging"),
    "imaging study": ({"resourceType": "ImagingStudy", "status": "available", "subject": REF},
                      "imaging"),
    "condition": ({"resourceType": "Condition", "subject": REF}, "condition"),
    "medication request": ({"resourceType": "MedicationRequest", "status": "active",
                            "intent": "order", "subject": REF,
                            "medicationCodeableConcept": CODE}, "medication"),
    "medication statement": ({"resourceType": "MedicationStatement", "status": "active",
                              "subject": REF, "medicationCodeableConcept": CODE},
                             "medication"),
    "allergy": ({"resourceType": "AllergyIntolerance", "patient": REF}, "allergy"),
    "immunization": ({"resourceType": "Immunization", "status": "completed",
                      "vaccineCode": CODE, "patient": REF,
                      "occurrenceDateTime": "2024-01-02"}, "immunization"),
    "procedure": ({"resourceType": "Procedure", "status": "completed", "subject": REF},
                  "procedure"),
    "care plan": ({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                   "subject": REF}, "care-plan"),
    "appointment": ({"resourceType": "Appointment", "status": "booked",
                     "participant": [{"status": "accepted", "actor": REF}]}, "appointment"),
    "document reference": ({"resourceType": "DocumentReference", "status": "current",
                            "content": [{"attachment": {"contentType": "text/plain"}}]},
                           "document"),
    "document bundle": ({"resourceType": "Bundle", "type": "document"}, "document"),
    "bundle of labs only": ({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {**PATIENT, "id": "p"}},
        {"resource": {**OBSERVATION, "category": _coded(OBS_CAT, "laboratory")}},
        {"resource": {"resourceType": "DiagnosticReport", "status": "final", "code": CODE,
                      "category": _coded(V2_0074, "LAB")}}]}, "lab"),
}

NO_CATEGORY: dict[str, tuple[dict[str, Any], str]] = {
    "a patient": (PATIENT, "Patient"),
    "a practitioner": ({"resourceType": "Practitioner"}, "Practitioner"),
    "a report of another service": (
        {"resourceType": "DiagnosticReport", "status": "final", "code": CODE,
         "category": _coded(V2_0074, "EC")}, "DiagnosticReport.category"),
    "a report without a category": (
        {"resourceType": "DiagnosticReport", "status": "final", "code": CODE},
        "DiagnosticReport.category"),
    "a bundle that mixes categories": ({"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": OBSERVATION},
                                                  {"resource": CATEGORY["condition"][0]}]},
                                       "Bundle.entry"),
    "a bundle of context only": ({"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": PATIENT}]}, "Bundle.entry"),
    "a bundle holding a report without a category": (
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
            "resourceType": "DiagnosticReport", "status": "final", "code": CODE}}]},
        "Bundle.entry[0].resource"),
}


def test_the_category_table_covers_every_category() -> None:
    assert {want for _, want in CATEGORY.values()} == set(CATEGORIES)


@pytest.mark.parametrize("name", sorted(CATEGORY))
def test_category(name: str) -> None:
    resource, want = CATEGORY[name]
    assert category(validate(resource)) == want


@pytest.mark.parametrize("name", sorted(NO_CATEGORY))
def test_no_category(name: str) -> None:
    resource, path = NO_CATEGORY[name]
    with pytest.raises(FhirError) as caught:
        category(validate(resource))
    assert caught.value.path == path


@pytest.mark.parametrize("profile", PROFILES)
def test_carebundle_entries_each_have_a_category(profile: str) -> None:
    for resource in split_bundle(bundle_bytes(profile, 1)):
        if resource.get_resource_type() in CONTEXT:
            continue
        assert category(resource) in CATEGORIES
    with pytest.raises(FhirError, match="more than one category"):
        category(validate(bundle_bytes(profile, 1)))


# --- split and join --------------------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_split_then_join_round_trips_resource_for_resource(profile: str) -> None:
    raw = bundle_bytes(profile, 42)
    bundle = validate(raw)
    assert isinstance(bundle, Bundle)
    resources = split_bundle(bundle)
    originals = resources_of(raw)
    assert [r.get_resource_type() for r in resources] == [o["resourceType"] for o in originals]
    assert resources == [validate(o) for o in originals]  # in order, equal to the input
    assert split_bundle(raw) == resources == split_bundle(json.loads(raw))

    urls = [e.fullUrl for e in bundle.entry or ()]
    joined = join_bundle(resources, full_urls=urls)
    assert joined.type == "collection"
    assert [e.fullUrl for e in joined.entry or ()] == urls
    assert validate(canonical_bytes(joined)) == joined
    again = split_bundle(joined)
    assert again == resources
    assert [canonical_bytes(r) for r in again] == [canonical_bytes(r) for r in resources]


def test_join_without_full_urls_and_of_nothing() -> None:
    resources = [validate(OBSERVATION), validate({**PATIENT, "id": "p"})]
    joined = join_bundle(resources)
    assert all(e.fullUrl is None for e in joined.entry or ())
    assert split_bundle(joined) == resources
    empty = join_bundle([])
    assert empty.type == "collection" and not empty.entry and split_bundle(empty) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_selection_of_resources_round_trips(data: st.DataObject) -> None:
    pool = _pool()
    picked = data.draw(st.lists(st.sampled_from(range(len(pool))), max_size=8))
    chosen: list[Resource] = [pool[i] for i in picked]
    assert split_bundle(join_bundle(chosen)) == chosen


_POOL: list[Resource] = []


def _pool() -> list[Resource]:
    if not _POOL:
        _POOL.extend(split_bundle(bundle_bytes("type2_diabetes", 3)))
    return _POOL


BAD_SPLIT_JOIN: dict[str, tuple[Any, str]] = {
    "split a patient": (lambda: split_bundle({**PATIENT}), "expected a Bundle"),
    "split an entry without a resource": (
        lambda: split_bundle({"resourceType": "Bundle", "type": "collection",
                              "entry": [{"fullUrl": "urn:uuid:x"}]}), "required, missing"),
    "join something that is no resource": (lambda: join_bundle([{"resourceType": "Patient"}]),
                                           "not a FHIR resource model"),
    "join with too few full URLs": (
        lambda: join_bundle([validate(PATIENT)], full_urls=[]), "0 full URLs for 1"),
}


@pytest.mark.parametrize("name", sorted(BAD_SPLIT_JOIN))
def test_bad_split_and_join(name: str) -> None:
    call, reason = BAD_SPLIT_JOIN[name]
    with pytest.raises(FhirError, match=reason):
        call()
