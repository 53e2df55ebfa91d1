"""Reading and writing GS1 codes: element strings, GS1 DataMatrix content and Digital Link
through ``biip``, EPC URNs through ``epcpy``, each guarded against what those libraries let
through silently."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, urlsplit

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

from medledger.standards.gs1_values import (
    _FIELD_CHECKS,
    _FIXED_LENGTH,
    _GTIN_ALONE,
    LGTIN,
    SGTIN,
    SSCC,
    SUPPORTED_AIS,
    GS1Error,
    Scan,
    _expiry_iso,
    _fault,
    _yymmdd_of,
    gtin14,
)

_SPACE_IN_VALUE = re.compile(r"[^\s)]\s+[^\s(]")  # biip reads (21)A B as AB
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")  # element strings start with ( or a digit
#: Digital Link 1.1 short names of the supported AIs (deprecated since Digital Link 1.2).
_SHORT_NAMES = {"gtin": "01", "sscc": "00", "lot": "10", "ser": "21", "exp": "17"}
#: Dates are checked here, so that a bad one is named like every other fault.
_BIIP = ParseConfig(gs1_element_strings_verify_date=False)
_SGTIN_URN, _SSCC_URN, _LGTIN_URN = "urn:epc:id:sgtin:", "urn:epc:id:sscc:", "urn:epc:class:lgtin:"
_PREFIX_LENGTHS = range(6, 13)
_STAND_IN = "0"  # a serial epcpy always accepts, see _gtin_urn


# -- reading codes -------------------------------------------------------------------------


def parse_code(text: str, prefix_length: Callable[[str], int | None] | None = None, *,
               current_year: int | None = None) -> Scan:
    """Read one scanned code of any supported form (:mod:`medledger.standards.gs1`) into a
    :class:`Scan`."""
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
