"""Healthcare and supply-chain standards at the edge of the ledger.

- :mod:`~medledger.standards.fhir`: FHIR R4B resources and bundles (R4 accepted where it
  validates as R4B): validation with a person-readable path for each problem, the coarse
  record category of a resource, splitting and joining bundles, canonical bytes.

The layer sits between state and the apps. It imports codec- and crypto-level modules and
third-party libraries only, never apps, node, api or client.

Errors::

    StandardsError              root of everything raised here
    └── FhirError (ValueError)  a resource that is not valid FHIR or cannot be used as asked
                                (.path, .reason, .problems)

Exceptions from ``fhir.resources``, pydantic and the JSON decoder are wrapped at this
boundary; their messages never carry a value of the resource.
"""

from medledger.standards.fhir import (
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
