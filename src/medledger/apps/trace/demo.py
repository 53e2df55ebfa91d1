"""The trace app's demo data: a small supply chain that ``make run`` seeds, for a newcomer
to scan.

Acme Pharma (a drug maker) registers company prefix 0950110 and the product Cardiozol
10 mg, receives two raw-material lots, makes lot CZ2611 from them, commissions six packs,
packs them into two cases on a pallet and ships the pallet to St Mary's; St Mary's
receives it, unpacks it and ships the second case on to Northgate, who receives and
unpacks it. St Mary's dispenses pack CZ0001 to the records demo's patient Ana, recording
her commitment. :data:`TRY` lists codes to scan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from medledger.apps.base import DemoTx
from medledger.apps.trace import privacy
from medledger.codec import pseudonym
from medledger.crypto import SigningKey
from medledger.standards.gs1 import LGTIN, SGTIN, SSCC, check_digit, lgtin_urn, sgtin_urn, sscc_urn

__all__ = ["DEMO_ORGS", "PACKS", "TRY", "demo_transactions"]

MAKER, FIRST, SECOND = "acme-pharma", "st-mary", "northgate"
DEMO_ORGS = (MAKER, FIRST, SECOND)
PREFIX = "0950110"
_LEN = len(PREFIX)
EXPIRY = "2028-06-30"


def _checked(body: str) -> str:
    return body + str(check_digit(body))


GTIN = _checked("0" + PREFIX + "00101")
RAW = (LGTIN(_checked("0" + PREFIX + "90001"), "API-4471"),
       LGTIN(_checked("0" + PREFIX + "90002"), "EXC-0932"))
LOT = LGTIN(GTIN, "CZ2611")
PACKS = tuple(SGTIN(GTIN, f"CZ{i:04d}") for i in range(1, 7))
CASES = tuple(SSCC(_checked("3" + PREFIX + f"{n:09d}")) for n in (1, 2))
PALLET = SSCC(_checked("3" + PREFIX + f"{3:09d}"))
GLNS = {org: _checked(PREFIX + f"{n:05d}") for n, org in enumerate(DEMO_ORGS, 1)}

TRY = {
    "genuine at St Mary's": f"(01){GTIN}(17)280630(10)CZ2611(21)CZ0002",
    "dispensed already": f"(01){GTIN}(17)280630(10)CZ2611(21)CZ0001",
    "diverted (Northgate's pack scanned at St Mary's)":
        f"(01){GTIN}(17)280630(10)CZ2611(21)CZ0005",
    "never issued": f"(01){GTIN}(17)280630(10)CZ2611(21)CZ9999",
    "relabelled lot": f"(01){GTIN}(17)280630(10)CZ2612(21)CZ0002",
}
"""Codes to scan with ``medledger drugs verify CODE --scanner st-mary``, and what each
shows."""

_ANA_SEED = hashlib.sha256(b"medledger demo records patient-ana").digest()
"""The seed of the records demo's patient ``patient-ana`` (public: demo data only)."""


def _event(kind: str, step: str, minute: int, action: str | None = None,
           **fields: Any) -> dict[str, Any]:
    event = {"type": kind, "eventTime": f"2026-11-02T08:{minute:02d}:00.000Z",
             "eventTimeZoneOffset": "+00:00", "bizStep": step, **fields}
    if action is not None:
        event["action"] = action
    return event


def _ship(minute: int, what: SSCC, to: str) -> dict[str, Any]:
    return _event("ObjectEvent", "shipping", minute, "OBSERVE",
                  epcList=[sscc_urn(what, _LEN)],
                  destinationList=[{"type": "owning_party",
                                    "destination": f"https://id.gs1.org/417/{GLNS[to]}"}])


def _making() -> list[dict[str, Any]]:
    lots = [{"epcClass": lgtin_urn(r, _LEN), "quantity": 25, "uom": "KGM"} for r in RAW]
    ilmd = {"cbvmda:lotNumber": LOT.lot, "cbvmda:itemExpirationDate": EXPIRY}
    return [
        _event("ObjectEvent", "receiving", 0, "ADD", epcList=[], quantityList=lots),
        _event("TransformationEvent", "commissioning", 1, inputQuantityList=lots,
               outputQuantityList=[{"epcClass": lgtin_urn(LOT, _LEN), "quantity": 600}],
               ilmd=ilmd),
        _event("ObjectEvent", "commissioning", 2, "ADD",
               epcList=[sgtin_urn(p, _LEN) for p in PACKS], ilmd=ilmd),
        *(_event("AggregationEvent", "packing", 3 + i, "ADD", parentID=sscc_urn(case, _LEN),
                 childEPCs=[sgtin_urn(p, _LEN) for p in PACKS[3 * i:3 * i + 3]])
          for i, case in enumerate(CASES)),
        _event("AggregationEvent", "packing", 5, "ADD", parentID=sscc_urn(PALLET, _LEN),
               childEPCs=[sscc_urn(c, _LEN) for c in CASES]),
    ]


def _ana_commitment() -> str:
    ana = SigningKey.from_seed(_ANA_SEED)
    return privacy.commitment(privacy.patient_secret(_ANA_SEED), pseudonym(ana.public_key),
                              PACKS[0])


def demo_transactions(orgs: Sequence[str]) -> tuple[DemoTx, ...]:
    """The demo supply chain, when the consortium has the three organisations."""
    if not set(DEMO_ORGS) <= set(orgs):
        return ()
    pallet = [sscc_urn(PALLET, _LEN)]
    case = [sscc_urn(CASES[1], _LEN)]

    def capture(org: str, *events: dict[str, Any], **extra: Any) -> DemoTx:
        return DemoTx(org, "trace.capture", {"events": list(events), **extra})

    return (
        DemoTx(MAKER, "trace.prefix", {"prefix": PREFIX}),
        *(DemoTx(org, "trace.party", {"gln": GLNS[org]}) for org in DEMO_ORGS),
        DemoTx(MAKER, "trace.product", {"gtin": GTIN, "name": "Cardiozol 10 mg",
                                        "ndc": "0777-3105-02"}),
        capture(MAKER, *_making()),
        capture(MAKER, _ship(10, PALLET, FIRST)),
        capture(FIRST, _event("ObjectEvent", "receiving", 20, "OBSERVE", epcList=pallet),
                _event("AggregationEvent", "unpacking", 21, "DELETE",
                       parentID=pallet[0], childEPCs=[]),
                _ship(22, CASES[1], SECOND)),
        capture(SECOND, _event("ObjectEvent", "receiving", 30, "OBSERVE", epcList=case),
                _event("AggregationEvent", "unpacking", 31, "DELETE", parentID=case[0],
                       childEPCs=[])),
        capture(FIRST, _event("AggregationEvent", "unpacking", 40, "DELETE",
                              parentID=sscc_urn(CASES[0], _LEN), childEPCs=[]),
                _event("ObjectEvent", "dispensing", 41, "OBSERVE",
                       epcList=[sgtin_urn(PACKS[0], _LEN)]),
                commitment=_ana_commitment()),
    )
