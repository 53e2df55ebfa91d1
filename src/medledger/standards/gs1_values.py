"""GS1 value types of medicines: check digits, the checked fields of the supported AIs,
and the SGTIN, LGTIN, SSCC and Scan values with their ledger keys."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote

#: The AIs read and written, fixed-length ones first: the order writers put them in, so
#: that a DataMatrix needs as few FNC1 separators as possible.
SUPPORTED_AIS = ("00", "01", "17", "10", "21")
_FIXED_LENGTH = {"00": 18, "01": 14, "17": 6}
_DIGITS = re.compile(r"[0-9]+")
_NOT_SET_82 = re.compile(r'[^!"%-?A-Z_a-z]')  # %-? is % & ' ( ) * + , - . / 0-9 : ; < = > ?
_TEXT_MAX = 20
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_GTIN_ALONE = re.compile(r"[0-9]{8}|[0-9]{12,14}")


class GS1Error(ValueError):
    """A code, key or value that is not valid GS1, or not one this module reads.

    ``ai`` is the Application Identifier at fault (``"17"``), ``None`` when the fault
    is not one AI's (a malformed URI, an empty code).
    """

    def __init__(self, message: str, *, ai: str | None = None) -> None:
        self.ai = ai
        super().__init__(message)


def _fault(ai: str, reason: str) -> GS1Error:
    return GS1Error(f"AI ({ai}): {reason}", ai=ai)


# -- check digits and fields ---------------------------------------------------------------


def check_digit(digits_without_check: str) -> int:
    """The GS1 mod-10 check digit of a key's other digits (General Specifications 7.9)."""
    if not _DIGITS.fullmatch(digits_without_check):
        raise GS1Error(f"{digits_without_check!r} is not a string of digits")
    total = sum(int(d) * (3 if i % 2 == 0 else 1)
                for i, d in enumerate(reversed(digits_without_check)))
    return -total % 10


def gtin14(text: str) -> str:
    """The 14-digit form of a GTIN-8/12/13/14, its check digit checked: the one spelling
    the ledger keys by, since the same item may be printed as a GTIN-13 or a GTIN-14."""
    if not _GTIN_ALONE.fullmatch(text):
        raise _fault("01", f"{text!r} is not a GTIN-8, -12, -13 or -14")
    return _key("01", text.zfill(14))


def _key(ai: str, text: str) -> str:
    """A GTIN-14 (AI 01) or SSCC (AI 00), length and check digit checked."""
    length = _FIXED_LENGTH[ai]
    if len(text) != length or not _DIGITS.fullmatch(text):
        raise _fault(ai, f"{text!r} is not {length} digits")
    expected = check_digit(text[:-1])
    if int(text[-1]) != expected:
        raise _fault(ai, f"check digit should be {expected}, not {text[-1]}")
    return text


def _text(ai: str, text: str) -> str:
    """A serial (AI 21) or lot (AI 10): 1 to 20 characters of GS1 character set 82."""
    if not text:
        raise _fault(ai, "empty")
    if bad := _NOT_SET_82.search(text):
        raise _fault(ai, f"{bad.group()!r} is not in GS1 character set 82")
    if len(text) > _TEXT_MAX:
        raise _fault(ai, f"{len(text)} characters, at most {_TEXT_MAX}")
    return text


def _yymmdd(ai: str, text: str) -> str:
    """The shape of an AI (17) date, without the century (that needs the current year)."""
    if len(text) != 6 or not _DIGITS.fullmatch(text):
        raise _fault(ai, f"{text!r} is not YYMMDD")
    if not (1 <= int(text[2:4]) <= 12 and int(text[4:]) <= 31):
        raise _fault(ai, f"{text} is not a date")
    return text


_FIELD_CHECKS: dict[str, Callable[[str, str], str]] = {
    "00": _key, "01": _key, "17": _yymmdd, "10": _text, "21": _text,
}


def _iso_date(text: str) -> str:
    """``Scan.expiry``: exactly ``YYYY-MM-DD`` (``date.fromisoformat`` takes more)."""
    if _ISO_DATE.fullmatch(text):
        try:
            dt.date.fromisoformat(text)
            return text
        except ValueError:
            pass
    raise _fault("17", f"{text!r} is not a date YYYY-MM-DD")


def _expiry_iso(yymmdd: str, current_year: int) -> str:
    """AI (17) as an ISO date, the century by General Specifications 7.12 from
    ``current_year``, DD 00 read as the last day of the month."""
    _yymmdd("17", yymmdd)
    year = current_year - current_year % 100 + int(yymmdd[:2])
    if year - current_year >= 51:
        year -= 100
    elif year - current_year <= -50:
        year += 100
    month, day = int(yymmdd[2:4]), int(yymmdd[4:])
    try:
        return dt.date(year, month, day or calendar.monthrange(year, month)[1]).isoformat()
    except ValueError:
        raise _fault("17", f"{yymmdd} is not a date") from None


def _yymmdd_of(iso: str) -> str:
    return iso[2:4] + iso[5:7] + iso[8:10]


# -- values --------------------------------------------------------------------------------


def _encode(text: str) -> str:
    """Percent-encode all but ``[0-9A-Za-z._~-]``, ``%`` included, so that it is injective."""
    return quote(text, safe="")


def _split_key(kind: str, key: str) -> tuple[str, str]:
    """``<gtin14>.<encoded text>`` -> (gtin, text); any other spelling is refused so that
    one value has one key."""
    gtin, dot, encoded = key[:14], key[14:15], key[15:]
    try:
        text = unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        text = ""
    if dot != "." or not text or _encode(text) != encoded:
        raise GS1Error(f"{key!r} is not an {kind} key (<gtin14>.<percent-encoded text>)")
    return gtin, text


@dataclass(frozen=True, slots=True)
class SGTIN:
    """A serialised pack: GTIN + serial (AI 21), the unit the ledger tracks one by one."""

    gtin: str
    serial: str

    def __post_init__(self) -> None:
        _key("01", self.gtin)
        _text("21", self.serial)

    @property
    def key(self) -> str:
        """``<gtin14>.<percent-encoded serial>``: safe in a ledger state key."""
        return f"{self.gtin}.{_encode(self.serial)}"

    @classmethod
    def from_key(cls, key: str) -> SGTIN:
        """The SGTIN whose :attr:`key` is ``key``."""
        return cls(*_split_key("SGTIN", key))


@dataclass(frozen=True, slots=True)
class LGTIN:
    """A lot (batch) of a GTIN (AI 10): what a recall or an expiry applies to."""

    gtin: str
    lot: str

    def __post_init__(self) -> None:
        _key("01", self.gtin)
        _text("10", self.lot)

    @property
    def key(self) -> str:
        """``<gtin14>.<percent-encoded lot>``: safe in a ledger state key."""
        return f"{self.gtin}.{_encode(self.lot)}"

    @classmethod
    def from_key(cls, key: str) -> LGTIN:
        """The LGTIN whose :attr:`key` is ``key``."""
        return cls(*_split_key("LGTIN", key))


@dataclass(frozen=True, slots=True)
class SSCC:
    """A logistic unit (AI 00): a case or pallet, 18 digits with a check digit."""

    sscc: str

    def __post_init__(self) -> None:
        _key("00", self.sscc)

    @property
    def key(self) -> str:
        """The 18 digits: already safe in a ledger state key."""
        return self.sscc

    @classmethod
    def from_key(cls, key: str) -> SSCC:
        """The SSCC whose :attr:`key` is ``key``."""
        return cls(key)


@dataclass(frozen=True, slots=True)
class Scan:
    """What one scanned code says. Checked as a whole, so that every reader and writer
    in :mod:`.gs1_codes` sees only codes GS1 allows: a GTIN or an SSCC, and serial, lot and
    expiry only with a GTIN (the General Specifications' mandatory associations)."""

    gtin: str | None = None
    serial: str | None = None
    lot: str | None = None
    expiry: str | None = None
    sscc: str | None = None

    def __post_init__(self) -> None:
        for ai, value in self._fields():
            if ai == "17":
                _iso_date(value)
            else:
                _FIELD_CHECKS[ai](ai, value)
        if self.gtin is None:
            needing = [ai for ai, _ in self._fields() if ai != "00"]
            if needing:
                raise _fault(needing[0], "needs AI (01)")
            if self.sscc is None:
                raise GS1Error("no AI (01) or AI (00)")

    def _fields(self) -> list[tuple[str, str]]:
        """(AI, value) of the fields present, in :data:`SUPPORTED_AIS` order."""
        values = (self.sscc, self.gtin, self.expiry, self.lot, self.serial)
        return [(ai, v) for ai, v in zip(SUPPORTED_AIS, values) if v is not None]

    @property
    def sgtin(self) -> SGTIN | None:
        """The serialised pack named, if the code has a GTIN and a serial."""
        return SGTIN(self.gtin, self.serial) if self.gtin and self.serial else None

    @property
    def lgtin(self) -> LGTIN | None:
        """The lot named, if the code has a GTIN and a lot."""
        return LGTIN(self.gtin, self.lot) if self.gtin and self.lot else None
