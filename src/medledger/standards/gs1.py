"""GS1 identifiers of medicines: check digits, packs, lots and logistic units, what a
scanned code says, and the codes written back.

The traceability app keys its state by the values made here, so whatever a scanner or a
partner sends is read once, at this edge, into small values that check themselves. GS1's
grammars are left to ``biip`` (element strings, GS1 DataMatrix, Digital Link) and ``epcpy``
(EPC URNs); what those libraries let through silently is refused here (see "Guards").

What each function accepts
--------------------------
``check_digit(digits)``
    the digits of a GS1 key without its check digit (GTIN-8/12/13/14, SSCC, ...): the
    GS1 mod-10 digit. Weights run 3, 1, 3, ... from the right, so leading zeros never
    change it and one function serves every key length.
``gtin14(text)``
    a GTIN-8, -12, -13 or -14 with its check digit; returns the 14-digit form.
``SGTIN(gtin, serial)``, ``LGTIN(gtin, lot)``, ``SSCC(sscc)``
    ``gtin`` in its 14-digit form (pass ``gtin14(text)``), ``serial`` (AI 21) and ``lot``
    (AI 10) 1 to 20 characters of GS1 character set 82, ``sscc`` 18 digits. ``.key`` is
    ``<gtin14>.<serial or lot>`` with every character outside ``[0-9A-Za-z._~-]``
    percent-encoded (``%2F``), or the 18 SSCC digits; ``from_key`` reads a key back and
    refuses any other spelling of it. Keys are injective within a type, not across SGTIN
    and LGTIN: give each type its own state-key prefix.
``Scan(gtin, serial, lot, expiry, sscc)``
    what one code says: a GTIN-14 and/or an 18-digit SSCC, and with a GTIN a serial, a lot
    and an expiry date (ISO ``YYYY-MM-DD``); ``.sgtin`` and ``.lgtin`` are the pack and the
    lot it names, or ``None``.
``parse_code(text, prefix_length=None, *, current_year=None)``
    one scanned code, of any of these forms, told apart by their first characters:

    - ``urn:epc:id:sgtin:...``, ``urn:epc:id:sscc:...``, ``urn:epc:class:lgtin:...``
      (EPC URNs, read by ``epcpy``);
    - ``http(s)://any.host[/prefix]/01/{gtin}[/10/{lot}][/21/{serial}][?17=YYMMDD]``
      (GS1 Digital Link with numeric AIs, read by ``biip``). The short names of Digital
      Link 1.1 (``/gtin/``, ``/lot/``, ``/ser/``, ``?exp=``), deprecated since Digital
      Link 1.2, are refused with a message naming the numeric AI to use: biip refuses the
      paths, and drops ``exp=`` silently, which would lose the expiry;
    - ``(01)09506000134352(17)201225(10)ABC123(21)12345`` (element strings in
      parentheses, as printed under a barcode);
    - GS1 DataMatrix / GS1-128 content: element strings with FNC1 sent as ``\\x1d``,
      optionally after a symbology identifier such as ``]d2``;
    - 8, 12, 13 or 14 digits alone: the GTIN of a linear EAN/UPC/ITF-14 barcode.

    Supported AIs: (00) SSCC, (01) GTIN, (10) lot, (17) expiry, (21) serial. AI (17) is
    YYMMDD; DD 00 means the month's last day; the century follows GS1 General
    Specifications 7.12 (YY lies from 49 years before to 50 years after the current
    year). The current year is biip's reading of the UTC clock unless ``current_year`` is
    given: pass the block's year wherever the result must be the same on every node.
    ``prefix_length(key)``, if given, is asked for the company prefix length registered
    for the URN's GTIN-14 (or 18-digit SSCC); a URN drawn with another length is refused.
``element_string(scan)``, ``datamatrix_content(scan)``, ``digital_link(scan, host)``
    write a scan: ``(01)...`` text; DataMatrix content with fixed-length AIs first and
    ``\\x1d`` after a variable-length value that is not last; a canonical Digital Link
    ``{host}/01/{gtin14}/10/{lot}/21/{serial}?17=YYMMDD`` (or ``{host}/00/{sscc}``).
``sgtin_urn``, ``lgtin_urn``, ``sscc_urn`` (value, prefix_length) and ``parse_epc(urn)``
    EPC pure identity URNs, by ``epcpy``; the company prefix length is 6 to 12.

Faults
------
Everything refused raises :class:`GS1Error` (a ``ValueError``); ``.ai`` names the AI at
fault, or is ``None``. Messages::

    AI (01): check digit should be 2, not 3          AI (00) likewise
    AI (01): '0950600013435' is not 14 digits          AI (00): ... is not 18 digits
    AI (01): '12345' is not a GTIN-8, -12, -13 or -14
    AI (17): 201332 is not a date                      a YYMMDD that names no day
    AI (17): '2012' is not YYMMDD
    AI (17): '2020-12-25T00:00' is not a date YYYY-MM-DD   (Scan.expiry)
    AI (10): empty                                     AI (21) likewise
    AI (21): 'é' is not in GS1 character set 82
    AI (21): 21 characters, at most 20
    AI (21): needs AI (01)                             also (10), (17)
    AI (17): appears twice with different values
    AI (21): 'A(1)' holds a parenthesis, which the (AI) form cannot carry
    unknown AI (89)                                    (AI)value text
    unknown AI at '891234'                             element strings without parentheses
    unsupported AI (3103); supported: (00) (01) (10) (17) (21)
    no AI (01) or AI (00)
    nothing to read                                    an empty code
    element string: cannot read '(B)C(21)1'
    element string: whitespace inside a value
    Digital Link: short name /gtin/ is deprecated since Digital Link 1.2; write /01/
    Digital Link: ...                                  biip's reason, for other URI faults
    EPC URN: ...                                       epcpy's reason, or what is wrong

Guards
------
biip and epcpy accept some input silently that would lose or change data; each is
refused here. biip's (AI)value reader skips text it cannot pair (lot ``A(B)C`` reads as
``A``) and joins a value across whitespace (``(21)A B`` reads as ``AB``); its Digital
Link reader drops ``?exp=``, blank values and all but the last of a repeated key. epcpy
reads ``%41`` in a serial as the three characters ``%41`` (only ``%22 %25 %26 %2F %3C
%3E %3F`` are escapes in an EPC URN), refuses a valid serial or lot that starts with
``/ < > ?`` and goes on, and its ``LGTIN.from_gs1_element_string`` fails on a lot such
as ``A(12)``.
"""

from __future__ import annotations

import ast
import calendar
import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from biip import ParseConfig, ParseError
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString, GS1ElementStrings
from biip.gs1_messages import GS1Message
from biip.symbology import GS1Symbology, SymbologyIdentifier
from epcpy import ConvertException
from epcpy.epc_schemes.lgtin import LGTIN as EpcLGTIN
from epcpy.epc_schemes.sgtin import SGTIN as EpcSGTIN
from epcpy.epc_schemes.sscc import SSCC as EpcSSCC
from epcpy.utils.common import replace_uri_escapes as epc_unescape
from epcpy.utils.common import revert_uri_escapes as epc_escape

__all__ = [
    "LGTIN", "SGTIN", "SSCC", "SUPPORTED_AIS", "GS1Error", "Scan",
    "check_digit", "gtin14", "parse_code", "parse_epc",
    "element_string", "datamatrix_content", "digital_link", "sgtin_urn", "lgtin_urn", "sscc_urn",
]

#: The AIs read and written, fixed-length ones first: the order writers put them in, so
#: that a DataMatrix needs as few FNC1 separators as possible.
SUPPORTED_AIS = ("00", "01", "17", "10", "21")
_FIXED_LENGTH = {"00": 18, "01": 14, "17": 6}
_DIGITS = re.compile(r"[0-9]+")
_NOT_SET_82 = re.compile(r'[^!"%-?A-Z_a-z]')  # %-? is % & ' ( ) * + , - . / 0-9 : ; < = > ?
_TEXT_MAX = 20
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_GTIN_ALONE = re.compile(r"[0-9]{8}|[0-9]{12,14}")
_SPACE_IN_VALUE = re.compile(r"[^\s)]\s+[^\s(]")  # biip reads (21)A B as AB
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")  # element strings start with ( or a digit
#: Digital Link 1.1 short names of the supported AIs (deprecated since Digital Link 1.2).
_SHORT_NAMES = {"gtin": "01", "sscc": "00", "lot": "10", "ser": "21", "exp": "17"}
#: Dates are checked here, so that a bad one is named like every other fault.
_BIIP = ParseConfig(gs1_element_strings_verify_date=False)
_SGTIN_URN, _SSCC_URN, _LGTIN_URN = "urn:epc:id:sgtin:", "urn:epc:id:sscc:", "urn:epc:class:lgtin:"
_PREFIX_LENGTHS = range(6, 13)
_STAND_IN = "0"  # a serial epcpy always accepts, see _gtin_urn


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
    below sees only codes GS1 allows: a GTIN or an SSCC, and serial, lot and expiry only
    with a GTIN (the General Specifications' mandatory associations)."""

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


# -- reading codes -------------------------------------------------------------------------


def parse_code(text: str, prefix_length: Callable[[str], int | None] | None = None, *,
               current_year: int | None = None) -> Scan:
    """Read one scanned code of any supported form (module docstring) into a :class:`Scan`."""
    code = text.strip()
    if not code:
        raise GS1Error("nothing to read")
    body, symbology = _without_symbology(code)
    if _URI_SCHEME.match(body):
        if body[:4].lower() == "urn:":
            return _scan_of_epc(_read_urn(body, prefix_length))
        return _scan(_link_elements(body), current_year)
    if body.startswith("("):
        return _scan(_hri_elements(body), current_year)
    if _GTIN_ALONE.fullmatch(body) and symbology not in GS1Symbology.with_gs1_messages():
        return Scan(gtin=gtin14(body))
    try:
        elements = GS1Message.parse(body, config=_BIIP).element_strings
    except ParseError as e:
        raise _from_biip(e, "element string", raw=True) from e
    return _scan(elements, current_year)


def _without_symbology(code: str) -> tuple[str, GS1Symbology | None]:
    """Strip a symbology identifier (``]d2``): scanners may prefix one to what they read."""
    if not code.startswith("]"):
        return code, None
    try:
        identifier = SymbologyIdentifier.extract(code)
    except (ParseError, IndexError, ValueError) as e:
        raise GS1Error(f"unknown symbology identifier {code[:3]!r}") from e
    return code[len(identifier):], identifier.gs1_symbology


def _hri_elements(body: str) -> GS1ElementStrings:
    """``(AI)value`` text by biip, refusing what biip would skip or join without a word."""
    if _SPACE_IN_VALUE.search(body):
        raise GS1Error("element string: whitespace inside a value")
    try:
        elements = GS1Message.parse_hri(body, config=_BIIP).element_strings
    except ParseError as e:
        raise _from_biip(e, "element string") from e
    given, read = "".join(body.split()), "".join(element.as_hri() for element in elements)
    if given != read:
        at = next((i for i, (a, b) in enumerate(zip(given, read)) if a != b), len(read))
        at = given.rfind("(", 0, at + 1)  # biip stopped after a "(": show the pair it skipped
        raise GS1Error(f"element string: cannot read {given[at:]!r}")
    return elements


def _link_elements(uri: str) -> GS1ElementStrings:
    """A Digital Link by biip, after refusing the query keys biip would drop or merge."""
    try:
        parts = urlsplit(uri)
    except ValueError as e:  # a malformed authority such as "[::1"
        raise GS1Error(f"Digital Link: {e}") from e
    _check_query(parts.query)
    try:
        return GS1DigitalLinkURI.parse(uri, config=_BIIP).element_strings
    except ParseError as e:
        short = next((s for s in parts.path.split("/") if s in _SHORT_NAMES), None)
        if short is not None:
            raise _short_name(f"/{short}/", f"/{_SHORT_NAMES[short]}/") from e
        raise _from_biip(e, "Digital Link") from e


def _check_query(query: str) -> None:
    seen: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in _SHORT_NAMES:
            raise _short_name(f"?{key}=", f"?{_SHORT_NAMES[key]}=")
        if key not in SUPPORTED_AIS:
            continue
        if not value:
            raise _fault(key, "empty")
        if seen.setdefault(key, value) != value:
            raise _fault(key, "appears twice with different values")


def _short_name(name: str, numeric: str) -> GS1Error:
    return GS1Error(f"Digital Link: short name {name} is deprecated since Digital Link 1.2;"
                    f" write {numeric}")


_BIIP_MISMATCH = re.compile(r"Failed to match ('.*'|\".*\") with GS1 AI \((\d+)\)")
_BIIP_UNKNOWN = re.compile(r"Unknown GS1 Application Identifier '(\d+)'")
_BIIP_NO_AI = re.compile(r"Failed to get GS1 Application Identifier from ('.*'|\".*\")")
_BIIP_QUALIFIER = re.compile(r"(?:Expected one of .* as|Did not expect a) qualifier, got '(\d+)'")


def _from_biip(error: ParseError, form: str, *, raw: bool = False) -> GS1Error:
    """Name the fault behind a biip ParseError the way this module names it everywhere.

    biip's reason is kept unless it is one of the three below; a value that does not match
    a supported AI's pattern is checked again here to say what is wrong with it (a month
    13 is "not a date", not a pattern). ``raw``: element strings without parentheses,
    where biip's quoted text runs on past a fixed-length value.
    """
    message = str(error)
    if found := _BIIP_UNKNOWN.match(message):
        return GS1Error(f"unknown AI ({found[1]})", ai=found[1])
    if found := _BIIP_NO_AI.match(message):
        return GS1Error(f"unknown AI at {ast.literal_eval(found[1])[:8]!r}")
    if found := _BIIP_QUALIFIER.match(message):
        return GS1Error(f"Digital Link: /{found[1]}/ is out of place; after /01/ the path"
                        " takes /10/ then /21/", ai=found[1])
    if (found := _BIIP_MISMATCH.match(message)) and found[2] in SUPPORTED_AIS:
        ai = found[2]
        value = ast.literal_eval(found[1])[len(ai):]
        try:
            _FIELD_CHECKS[ai](ai, value[:_FIXED_LENGTH[ai]] if raw and ai in _FIXED_LENGTH
                              else value)
        except GS1Error as fault:
            return fault
    return GS1Error(f"{form}: {message}")


def _scan(elements: Iterable[GS1ElementString], current_year: int | None) -> Scan:
    """The scan the element strings say; unsupported AIs and conflicting repeats refused."""
    found: dict[str, GS1ElementString] = {}
    for element in elements:
        ai = element.ai.ai
        if ai not in SUPPORTED_AIS:
            supported = " ".join(f"({a})" for a in sorted(SUPPORTED_AIS))
            raise GS1Error(f"unsupported AI ({ai}); supported: {supported}", ai=ai)
        if found.setdefault(ai, element).value != element.value:
            raise _fault(ai, "appears twice with different values")
    value = {ai: element.value for ai, element in found.items()}
    expiry = found.get("17")
    return Scan(gtin=value.get("01"), serial=value.get("21"), lot=value.get("10"),
                expiry=None if expiry is None else _expiry(expiry, current_year),
                sscc=value.get("00"))


def _expiry(element: GS1ElementString, current_year: int | None) -> str:
    """AI (17) as ISO: biip's date (biip's clock) unless the current year is pinned."""
    if current_year is not None:
        return _expiry_iso(element.value, current_year)
    if element.date is None:
        raise _fault("17", f"{element.value} is not a date")
    return element.date.isoformat()


# -- writing codes -------------------------------------------------------------------------


def _element_strings(scan: Scan) -> GS1ElementStrings:
    """The scan as biip element strings, fixed-length AIs first."""
    return GS1ElementStrings(
        GS1ElementString.parse(ai + (_yymmdd_of(value) if ai == "17" else value), config=_BIIP)
        for ai, value in scan._fields())


def element_string(scan: Scan) -> str:
    """``(01)...(17)...(10)...(21)...``, as printed under a barcode.

    A lot or serial holding ``(`` or ``)`` is refused: read back, it would split there.
    """
    for ai, value in (("10", scan.lot), ("21", scan.serial)):
        if value is not None and ("(" in value or ")" in value):
            raise _fault(ai, f"{value!r} holds a parenthesis, which the (AI) form cannot carry")
    return GS1Message.from_element_strings(_element_strings(scan)).as_hri()


def datamatrix_content(scan: Scan) -> str:
    """The data of a GS1 DataMatrix: FNC1 as ``\\x1d`` after each variable-length value
    but the last, no symbology identifier (a scanner adds ``]d2``)."""
    return GS1Message.from_element_strings(_element_strings(scan)).value


def digital_link(scan: Scan, host: str = "https://id.gs1.org") -> str:
    """The canonical GS1 Digital Link of a scan on ``host`` (``https://name[/path]``):
    ``/01/{gtin14}/10/{lot}/21/{serial}?17=YYMMDD``, or ``/00/{sscc}``."""
    if scan.gtin is not None and scan.sscc is not None:
        raise GS1Error("Digital Link: a link has one primary key, this scan has AI (01) and (00)")
    canonical = GS1DigitalLinkURI.from_element_strings(_element_strings(scan)).as_canonical_uri()
    parts = urlsplit(canonical)
    return _link_base(host) + parts.path + (f"?{parts.query}" if parts.query else "")


def _link_base(host: str) -> str:
    """``host`` without a trailing ``/``; a path segment of digits is refused, since a
    reader would take it for an AI."""
    parts = urlsplit(host)
    if (parts.scheme not in ("http", "https") or not parts.netloc or parts.query
            or parts.fragment or any(s.isdigit() for s in parts.path.split("/"))):
        raise GS1Error(f"Digital Link: {host!r} is not a host such as https://id.gs1.org")
    return host.rstrip("/")


# -- EPC URNs ------------------------------------------------------------------------------


def sgtin_urn(sgtin: SGTIN, prefix_length: int) -> str:
    """``urn:epc:id:sgtin:<company prefix>.<indicator+item ref>.<serial>``."""
    return _gtin_urn(_SGTIN_URN, sgtin.gtin, sgtin.serial, prefix_length)


def lgtin_urn(lgtin: LGTIN, prefix_length: int) -> str:
    """``urn:epc:class:lgtin:<company prefix>.<indicator+item ref>.<lot>``."""
    return _gtin_urn(_LGTIN_URN, lgtin.gtin, lgtin.lot, prefix_length)


def _gtin_urn(scheme: str, gtin: str, text: str, prefix_length: int) -> str:
    """epcpy draws the company prefix and item reference around a stand-in serial; the
    text, escaped by epcpy's own escaping, then takes its place.

    Why the stand-in: epcpy checks an escaped text by splitting it at ``%`` and two decimal
    digits, so a text that starts with ``/ < > ?`` (``%2F%3C%3E%3F``) and goes on fails
    there; and its ``LGTIN.from_gs1_element_string`` splits at every ``(..)`` in a lot.
    The SGTIN and LGTIN URN bodies share one grammar, so one drawing serves both.
    """
    _check_prefix_length(prefix_length)
    numbers: str = EpcSGTIN.from_gtin_plus_serial(gtin, _STAND_IN, prefix_length).epc_uri
    return scheme + numbers.removeprefix(_SGTIN_URN)[:-len(_STAND_IN)] + epc_escape(text)


def sscc_urn(sscc: SSCC, prefix_length: int) -> str:
    """``urn:epc:id:sscc:<company prefix>.<extension digit+serial reference>``."""
    _check_prefix_length(prefix_length)
    urn: str = EpcSSCC.from_gs1_element_string(f"(00){sscc.sscc}", prefix_length).epc_uri
    return urn


def _check_prefix_length(prefix_length: int) -> None:
    if prefix_length not in _PREFIX_LENGTHS:
        raise GS1Error(f"EPC URN: a company prefix has 6 to 12 digits, not {prefix_length}")


def parse_epc(urn: str) -> SGTIN | SSCC | LGTIN:
    """The pack, logistic unit or lot an EPC pure identity URN names.

    Only the canonical spelling is read (escapes exactly ``%22 %25 %26 %2F %3C %3E %3F``),
    so that one identity has one URN.
    """
    value = _from_epcpy(urn)
    length = len(_company_prefix(urn))
    if _urn_of(value, length) != urn:
        raise GS1Error("EPC URN: only \" % & / < > ? are escaped, as %22 %25 %26 %2F %3C %3E"
                       " %3F")
    return value


_EPC_SCHEMES: dict[str, type[EpcSGTIN | EpcLGTIN | EpcSSCC]] = {
    _SGTIN_URN: EpcSGTIN, _SSCC_URN: EpcSSCC, _LGTIN_URN: EpcLGTIN,
}


def _from_epcpy(urn: str) -> SGTIN | SSCC | LGTIN:
    """epcpy reads the numbers (with a stand-in serial or lot, see :func:`_gtin_urn`); the
    text is unescaped by epcpy's own unescaping and checked by SGTIN or LGTIN."""
    scheme = next((s for s in _EPC_SCHEMES if urn.startswith(s)), None)
    if scheme is None:
        raise GS1Error(f"EPC URN: {urn[:24]!r} is not one of {', '.join(_EPC_SCHEMES)}")
    parts = urn.removeprefix(scheme).split(".", 2)
    text = parts[2] if scheme != _SSCC_URN and len(parts) == 3 and parts[2] else None
    numbers = urn if text is None else f"{scheme}{parts[0]}.{parts[1]}.{_STAND_IN}"
    try:
        epc = _EPC_SCHEMES[scheme](numbers)
    except ConvertException as e:
        raise GS1Error(f"EPC URN: {e.message.replace(numbers, urn)}") from e
    if isinstance(epc, EpcSSCC):
        return SSCC(epc.gs1_key())
    kind = SGTIN if isinstance(epc, EpcSGTIN) else LGTIN
    return kind(epc.gtin(), epc_unescape(text or ""))


def _company_prefix(urn: str) -> str:
    return urn.split(":", 4)[4].split(".", 1)[0]


def _urn_of(value: SGTIN | SSCC | LGTIN, prefix_length: int) -> str:
    if isinstance(value, SGTIN):
        return sgtin_urn(value, prefix_length)
    if isinstance(value, LGTIN):
        return lgtin_urn(value, prefix_length)
    return sscc_urn(value, prefix_length)


def _read_urn(urn: str, prefix_length: Callable[[str], int | None] | None
              ) -> SGTIN | SSCC | LGTIN:
    """:func:`parse_epc`, and the URN's company prefix checked against the registered one:
    a tag drawn with another partition names the same item but was encoded wrongly."""
    value = parse_epc(urn)
    if prefix_length is None:
        return value
    key = value.sscc if isinstance(value, SSCC) else value.gtin
    registered, given = prefix_length(key), _company_prefix(urn)
    if registered is not None and registered != len(given):
        raise GS1Error(f"EPC URN: company prefix {given} has {len(given)} digits; the prefix"
                       f" registered for {key} has {registered}")
    return value


def _scan_of_epc(value: SGTIN | SSCC | LGTIN) -> Scan:
    if isinstance(value, SGTIN):
        return Scan(gtin=value.gtin, serial=value.serial)
    if isinstance(value, LGTIN):
        return Scan(gtin=value.gtin, lot=value.lot)
    return Scan(sscc=value.sscc)
