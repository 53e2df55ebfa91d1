"""What both parts of the trace bench (:mod:`medledger.cli.bench_trace`) make alike: the
drug maker, its product and master data, and EPCIS commissioning events, as plain data;
with the chain's name and how long a node may take to reach a height.
"""

from __future__ import annotations

import datetime
from typing import Any

from medledger.crypto import SigningKey
from medledger.ledger import Transaction
from medledger.standards.gs1 import SGTIN, check_digit, sgtin_urn

CHAIN_ID = "bench"  # the anchor bench's consortium name
MAKER = "bench-maker"
COMPANY_PREFIX = "0614141"  # GS1's example company prefix
PRODUCT = "0" + COMPANY_PREFIX + "12345"
GTIN = PRODUCT + str(check_digit(PRODUCT))
HEIGHT_WAIT_S = 30.0


def _iso(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _urn(serial: str) -> str:
    return sgtin_urn(SGTIN(GTIN, serial), len(COMPANY_PREFIX))


def commissioning(serials: list[str], lot: str, expiry: str, when_ms: int) -> dict[str, Any]:
    """An EPCIS 2.0 ObjectEvent ADD, business step commissioning, of ``serials`` of the
    bench's product in ``lot`` expiring on ``expiry`` (YYYY-MM-DD)."""
    return {"type": "ObjectEvent", "eventTime": _iso(when_ms), "eventTimeZoneOffset": "+00:00",
            "action": "ADD", "bizStep": "commissioning",
            "epcList": [_urn(s) for s in serials],
            "ilmd": {"cbvmda:lotNumber": lot, "cbvmda:itemExpirationDate": expiry}}


def _expiry(genesis_ms: int) -> str:
    """Two years after the chain's start: no pack is expired when verified."""
    start = datetime.datetime.fromtimestamp(genesis_ms / 1000, tz=datetime.UTC).date()
    return start.replace(year=start.year + 2, day=min(start.day, 28)).isoformat()


def _master_data(admin: SigningKey, first_nonce: int) -> list[Transaction]:
    """The maker's company prefix, then its product (two blocks: the product's check reads
    the prefix)."""
    return [Transaction.create(admin, CHAIN_ID, "trace.prefix", first_nonce,
                               {"prefix": COMPANY_PREFIX}),
            Transaction.create(admin, CHAIN_ID, "trace.product", first_nonce + 1,
                               {"gtin": GTIN, "name": "Benchmarin 10 mg tablets",
                                "ndc": "0777-3105-02"})]


def _maker(admins: list[SigningKey]) -> dict[str, Any]:
    return {"id": MAKER, "name": "Bench drug maker", "role": "manufacturer",
            "admins": [k.public_key.hex() for k in admins]}
