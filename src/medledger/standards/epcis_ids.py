"""Identifiers and scalar values of EPCIS 2.0 events in the canonical form of the CBV 2.0
event hash: EPC URNs and GS1 Digital Link URIs, timestamps and exact decimals."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from medledger.standards.epcis_terms import _CBV_URNS, _GS1_ID


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
