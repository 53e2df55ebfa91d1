"""EPCIS 2.0 basics shared by the modules of :mod:`medledger.standards.epcis`: the error,
the CBV 2.0 vocabularies and the standard JSON-LD prefixes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn


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
