"""GS1 identifiers (medledger.standards.gs1): published vectors, every refused input named
with its exact fault, round trips through every format, and cross-checks against
python-stdnum, biip and epcpy."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
import stdnum.ean
import stdnum.gs1_128
from epcpy.epc_schemes.lgtin import LGTIN as EpcLGTIN
from epcpy.epc_schemes.sgtin import SGTIN as EpcSGTIN
from epcpy.epc_schemes.sscc import SSCC as EpcSSCC
from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.standards import gs1
from medledger.standards.gs1 import (
    LGTIN,
    SGTIN,
    SSCC,
    GS1Error,
    Scan,
    check_digit,
    datamatrix_content,
    digital_link,
    element_string,
    gtin14,
    lgtin_urn,
    parse_code,
    parse_epc,
    sgtin_urn,
    sscc_urn,
)

#: Pins the GS1 century rule (General Specifications 7.12): YY 77-99 are 19YY, 00-76 20YY.
YEAR = 2026
GTIN = "09506000134352"
SSCC_DIGITS = "106141412345678908"
SET_82 = ("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
          "abcdefghijklmnopqrstuvwxyz")
KEY_CHARS = re.compile(r"[0-9A-Za-z._~%-]+")
SUPPORTED = "supported: (00) (01) (10) (17) (21)"
FAST = settings(max_examples=80, deadline=None)


def test_set_82_has_82_characters() -> None:
    assert len(set(SET_82)) == 82


def test_public_names() -> None:
    assert sorted(gs1.__all__) == sorted([
        "LGTIN", "SGTIN", "SSCC", "SUPPORTED_AIS", "GS1Error", "Scan", "check_digit", "gtin14",
        "parse_code", "parse_epc", "element_string", "datamatrix_content", "digital_link",
        "sgtin_urn", "lgtin_urn", "sscc_urn"])


# -- published vectors -----------------------------------------------------------------------

CHECK_DIGITS: dict[str, tuple[str, int]] = {
    "GS1 General Specifications, GTIN-13 example": ("629104150021", 3),
    "GS1 General Specifications, SSCC example": ("37610425002123456", 9),
    "EPC Tag Data Standard SGTIN example, GTIN 10614141123459": ("1061414112345", 9),
    "EPC Tag Data Standard SSCC example": ("10614141234567890", 8),
    "GS1 example GTIN 09506000134352": ("0950600013435", 2),
    "GS1 DataMatrix Guideline example GTIN": ("0950110102091", 7),
    "leading zeros change nothing (GTIN-8 in 14 digits)": ("0000009638507", 4),
}


@pytest.mark.parametrize(("digits", "expected"), CHECK_DIGITS.values(), ids=CHECK_DIGITS)
def test_check_digit_vectors(digits: str, expected: int) -> None:
    assert check_digit(digits) == expected
    assert stdnum.ean.calc_check_digit(digits) == str(expected)


GTIN_FORMS: dict[str, tuple[str, str]] = {
    "GTIN-8": ("96385074", "00000096385074"),
    "GTIN-12 (UPC-A)": ("614141123452", "00614141123452"),
    "GTIN-13": ("9506000134352", GTIN),
    "GTIN-14": ("10614141123459", "10614141123459"),
}


@pytest.mark.parametrize(("text", "expected"), GTIN_FORMS.values(), ids=GTIN_FORMS)
def test_gtin14(text: str, expected: str) -> None:
    assert gtin14(text) == expected


PUBLISHED_CODES: dict[str, tuple[str, Scan]] = {
    "GS1 DataMatrix Guideline example, (AI) form": (
        "(01)09501101020917(17)190508(10)ABCD1234(21)10",
        Scan(gtin="09501101020917", expiry="2019-05-08", lot="ABCD1234", serial="10")),
    "the same, GS1 DataMatrix content with ]d2 and FNC1": (
        "]d2010950110102091717190508" "10ABCD1234\x1d2110",
        Scan(gtin="09501101020917", expiry="2019-05-08", lot="ABCD1234", serial="10")),
    "element strings, (AI) form": (
        "(01)09506000134352(17)201225(10)ABC123(21)12345",
        Scan(gtin=GTIN, serial="12345", lot="ABC123", expiry="2020-12-25")),
    "Digital Link on id.gs1.org": (
        "https://id.gs1.org/01/09506000134352/10/ABC123/21/12345?17=201225",
        Scan(gtin=GTIN, serial="12345", lot="ABC123", expiry="2020-12-25")),
    "Digital Link on another host with a path prefix": (
        "https://example.com/pharma/01/09506000134352/21/12345",
        Scan(gtin=GTIN, serial="12345")),
    "Digital Link in capitals (QR alphanumeric mode)": (
        "HTTPS://ID.GS1.ORG/01/09506000134352", Scan(gtin=GTIN)),
    "Digital Link with a GTIN-13 in the path": (
        "https://id.gs1.org/01/9506000134352", Scan(gtin=GTIN)),
    "Digital Link of an SSCC": (
        "https://id.gs1.org/00/106141412345678908", Scan(sscc=SSCC_DIGITS)),
    "Digital Link with an unrelated query parameter": (
        "https://id.gs1.org/01/09506000134352?linkType=gs1:epil", Scan(gtin=GTIN)),
    "EPC Tag Data Standard SGTIN example": (
        "urn:epc:id:sgtin:0614141.112345.400", Scan(gtin="10614141123459", serial="400")),
    "EPC Tag Data Standard SSCC example": (
        "urn:epc:id:sscc:0614141.1234567890", Scan(sscc=SSCC_DIGITS)),
    "EPC Tag Data Standard LGTIN example": (
        "urn:epc:class:lgtin:4012345.012345.998877",
        Scan(gtin="04012345123456", lot="998877")),
    "EPC URN with an escaped serial": (
        "urn:epc:id:sgtin:0614141.112345.A%2FB%25", Scan(gtin="10614141123459", serial="A/B%")),
    "EPC URN whose serial starts with an escape (epcpy alone refuses it)": (
        "urn:epc:id:sgtin:0614141.112345.%2Fx", Scan(gtin="10614141123459", serial="/x")),
    "SSCC, (AI) form": ("(00)106141412345678908", Scan(sscc=SSCC_DIGITS)),
    "EAN-13 alone": ("9506000134352", Scan(gtin=GTIN)),
    "EAN-13 with its symbology identifier ]E0": ("]E09506000134352", Scan(gtin=GTIN)),
    "scanner line end": ("(01)09506000134352\r\n", Scan(gtin=GTIN)),
    "spaces between pairs": ("(01) 09506000134352 (10) AB", Scan(gtin=GTIN, lot="AB")),
    "same lot twice": ("(01)09506000134352(10)AB(10)AB", Scan(gtin=GTIN, lot="AB")),
    "DD 00 is the last day: February of a leap year": (
        "(01)09506000134352(17)200200", Scan(gtin=GTIN, expiry="2020-02-29")),
    "DD 00 in a common year, DataMatrix": (
        "01095060001343521721020010X", Scan(gtin=GTIN, expiry="2021-02-28", lot="X")),
}


@pytest.mark.parametrize(("text", "expected"), PUBLISHED_CODES.values(), ids=PUBLISHED_CODES)
def test_parse_code_reads(text: str, expected: Scan) -> None:
    assert parse_code(text, current_year=YEAR) == expected


# -- faults, by name ---------------------------------------------------------------------------

BAD_CODES: dict[str, tuple[str, str]] = {
    "GTIN check digit, (AI) form": (
        "(01)09506000134353", "AI (01): check digit should be 2, not 3"),
    "GTIN check digit, DataMatrix": (
        "]d2010950600013435317201225", "AI (01): check digit should be 2, not 3"),
    "GTIN check digit, Digital Link": (
        "https://id.gs1.org/01/09506000134353", "AI (01): check digit should be 2, not 3"),
    "GTIN check digit, EAN-13 alone": ("9506000134353", "AI (01): check digit should be 2, not 3"),
    "GTIN of 13 digits, (AI) form": (
        "(01)0950600013435", "AI (01): '0950600013435' is not 14 digits"),
    "SSCC check digit": ("(00)106141412345678909", "AI (00): check digit should be 8, not 9"),
    "month 13, (AI) form": ("(01)09506000134352(17)201332", "AI (17): 201332 is not a date"),
    "month 13, DataMatrix": ("01095060001343521720133210ABC", "AI (17): 201332 is not a date"),
    "month 13, Digital Link": (
        "https://id.gs1.org/01/09506000134352?17=201332", "AI (17): 201332 is not a date"),
    "month 00": ("(01)09506000134352(17)200015", "AI (17): 200015 is not a date"),
    "29 February 2021": ("(01)09506000134352(17)210229", "AI (17): 210229 is not a date"),
    "expiry of 4 digits, (AI) form": (
        "(01)09506000134352(17)2012", "AI (17): '2012' is not YYMMDD"),
    "expiry of 4 digits, DataMatrix": ("0109506000134352172012", "AI (17): '2012' is not YYMMDD"),
    "AI unknown to GS1, (AI) form": ("(01)09506000134352(89)X", "unknown AI (89)"),
    "AI unknown to GS1, DataMatrix": ("0109506000134352891234", "unknown AI at '891234'"),
    "GS1 DataMatrix holding a bare GTIN": ("]d209506000134352", "unknown AI at '09506000'"),
    "company internal AI (99)": ("(01)09506000134352(99)X", f"unsupported AI (99); {SUPPORTED}"),
    "net weight AI (3103)": (
        "(01)09506000134352(3103)000195", f"unsupported AI (3103); {SUPPORTED}"),
    "national healthcare reimbursement number AI (714)": (
        "(01)09506000134352(714)1234567", f"unsupported AI (714); {SUPPORTED}"),
    "GS1 Digital Link standard example with content and count": (
        "https://id.gs1.org/00/106141412345678908?02=00614141123452&37=25&10=ABC123",
        f"unsupported AI (02); {SUPPORTED}"),
    "serial of 21 characters": (
        "(01)09506000134352(21)ABCDEFGHIJKLMNOPQRSTU", "AI (21): 21 characters, at most 20"),
    "serial outside set 82, Digital Link": (
        "https://id.gs1.org/01/09506000134352/21/A%C3%A9",
        "AI (21): 'é' is not in GS1 character set 82"),
    "serial with a space (biip would read AB)": (
        "(01)09506000134352(21)A B", "element string: whitespace inside a value"),
    "lot with parentheses (biip would read A)": (
        "(01)09506000134352(10)A(B)C(21)1", "element string: cannot read '(B)C(21)1'"),
    "AI with no value": ("(01)09506000134352(10)", "element string: cannot read '(10)'"),
    "text before the first AI": ("x(01)09506000134352", "unknown AI at 'x(01)095'"),
    "lot twice with other values": (
        "(01)09506000134352(10)AB(10)AC", "AI (10): appears twice with different values"),
    "lot in the path and the query": (
        "https://id.gs1.org/01/09506000134352/10/A?10=B",
        "AI (10): appears twice with different values"),
    "expiry twice in the query (biip would keep the last)": (
        "https://id.gs1.org/01/09506000134352?17=201225&17=211225",
        "AI (17): appears twice with different values"),
    "blank expiry in the query (biip would drop it)": (
        "https://id.gs1.org/01/09506000134352?17=", "AI (17): empty"),
    "serial without a GTIN": ("(21)12345", "AI (21): needs AI (01)"),
    "expiry alone": ("(17)201225", "AI (17): needs AI (01)"),
    "lot with only an SSCC": ("(00)106141412345678908(10)ABC", "AI (10): needs AI (01)"),
    "Digital Link short names in the path": (
        "https://id.gs1.org/gtin/09506000134352/lot/ABC",
        "Digital Link: short name /gtin/ is deprecated since Digital Link 1.2; write /01/"),
    "Digital Link short name exp (biip would drop it)": (
        "https://id.gs1.org/01/09506000134352?exp=201225",
        "Digital Link: short name ?exp= is deprecated since Digital Link 1.2; write ?17="),
    "Digital Link serial before lot": (
        "https://id.gs1.org/01/09506000134352/21/S/10/L",
        "Digital Link: /10/ is out of place; after /01/ the path takes /10/ then /21/"),
    "Digital Link without a primary key": (
        "https://id.gs1.org/foo/bar",
        "Digital Link: Expected a primary identifier in the path, got '/foo/bar'."),
    "Digital Link with an odd path": (
        "https://id.gs1.org/01/09506000134352/10",
        "Digital Link: Expected even number of path segments, got '/01/09506000134352/10'."),
    "URI of another scheme": (
        "ftp://id.gs1.org/01/09506000134352",
        "Digital Link: Expected URI scheme to be 'http' or 'https', got 'ftp'."),
    "malformed host": ("https://[::1/01/09506000134352", "Digital Link: Invalid IPv6 URL"),
    "EPC URN escaping a letter (epcpy would read '%41')": (
        "urn:epc:id:sgtin:0614141.112345.%41",
        "EPC URN: only \" % & / < > ? are escaped, as %22 %25 %26 %2F %3C %3E %3F"),
    "EPC URN with a lower-case escape": (
        "urn:epc:id:sgtin:0614141.112345.A%2fB",
        "EPC URN: only \" % & / < > ? are escaped, as %22 %25 %26 %2F %3C %3E %3F"),
    "EPC URN without a serial": (
        "urn:epc:id:sgtin:0614141.112345.",
        "EPC URN: Invalid SGTIN URI urn:epc:id:sgtin:0614141.112345."),
    "EPC URN of 12 digits": (
        "urn:epc:id:sgtin:0614141.11234.400",
        "EPC URN: Invalid SGTIN URI urn:epc:id:sgtin:0614141.11234.400 | Company prefix +"
        " item reference must be 13 digits"),
    "EPC URN of a location (SGLN)": (
        "urn:epc:id:sgln:0614141.12345.0",
        "EPC URN: 'urn:epc:id:sgln:0614141.' is not one of urn:epc:id:sgtin:,"
        " urn:epc:id:sscc:, urn:epc:class:lgtin:"),
    "cut-off EPC URN (epcpy would raise IndexError)": (
        "urn:epc:id", "EPC URN: 'urn:epc:id' is not one of urn:epc:id:sgtin:,"
        " urn:epc:id:sscc:, urn:epc:class:lgtin:"),
    "nothing": ("  \r\n", "nothing to read"),
    "unknown symbology identifier": ("]!0123", "unknown symbology identifier ']!0'"),
}


@pytest.mark.parametrize(("text", "message"), BAD_CODES.values(), ids=BAD_CODES)
def test_parse_code_refuses(text: str, message: str) -> None:
    with pytest.raises(GS1Error) as caught:
        parse_code(text, current_year=YEAR)
    assert str(caught.value) == message


def _sgtin(serial: str) -> SGTIN:
    return SGTIN(GTIN, serial)


BAD_VALUES: dict[str, tuple[Callable[[], object], str]] = {
    "GTIN-13 where the 14-digit form is due": (
        lambda: SGTIN("9506000134352", "1"), "AI (01): '9506000134352' is not 14 digits"),
    "empty serial": (lambda: _sgtin(""), "AI (21): empty"),
    "serial with a space": (lambda: _sgtin("A B"), "AI (21): ' ' is not in GS1 character set 82"),
    "serial with a tilde (safe in URIs, not in set 82)": (
        lambda: _sgtin("A~B"), "AI (21): '~' is not in GS1 character set 82"),
    "lot of 21 characters": (lambda: LGTIN(GTIN, "x" * 21), "AI (10): 21 characters, at most 20"),
    "SSCC of 17 digits": (lambda: SSCC("10614141234567890"),
                          "AI (00): '10614141234567890' is not 18 digits"),
    "SSCC check digit": (lambda: SSCC("106141412345678909"),
                         "AI (00): check digit should be 8, not 9"),
    "scan naming nothing": (Scan, "no AI (01) or AI (00)"),
    "scan expiry as YYYYMMDD": (lambda: Scan(gtin=GTIN, expiry="20201225"),
                                "AI (17): '20201225' is not a date YYYY-MM-DD"),
    "scan expiry 30 February": (lambda: Scan(gtin=GTIN, expiry="2021-02-30"),
                                "AI (17): '2021-02-30' is not a date YYYY-MM-DD"),
    "scan serial without a GTIN": (lambda: Scan(sscc=SSCC_DIGITS, serial="1"),
                                   "AI (21): needs AI (01)"),
    "gtin14 of 11 digits": (lambda: gtin14("12345678901"),
                            "AI (01): '12345678901' is not a GTIN-8, -12, -13 or -14"),
    "gtin14 with a letter": (lambda: gtin14("950600013435X"),
                             "AI (01): '950600013435X' is not a GTIN-8, -12, -13 or -14"),
    "check_digit of a letter": (lambda: check_digit("12a"), "'12a' is not a string of digits"),
    "check_digit of Arabic-Indic digits (str.isdigit says yes)": (
        lambda: check_digit("\u0661\u0662"), "'\u0661\u0662' is not a string of digits"),
    "check_digit of nothing": (lambda: check_digit(""), "'' is not a string of digits"),
    "SGTIN key without its dot": (
        lambda: SGTIN.from_key("09506000134352X1"),
        "'09506000134352X1' is not an SGTIN key (<gtin14>.<percent-encoded text>)"),
    "SGTIN key escaping a letter": (
        lambda: SGTIN.from_key("09506000134352.%41"),
        "'09506000134352.%41' is not an SGTIN key (<gtin14>.<percent-encoded text>)"),
    "SGTIN key with a lower-case escape": (
        lambda: SGTIN.from_key("09506000134352.A%2fB"),
        "'09506000134352.A%2fB' is not an SGTIN key (<gtin14>.<percent-encoded text>)"),
    "SGTIN key that is not UTF-8": (
        lambda: SGTIN.from_key("09506000134352.%FF"),
        "'09506000134352.%FF' is not an SGTIN key (<gtin14>.<percent-encoded text>)"),
    "SGTIN key with a bad GTIN": (
        lambda: SGTIN.from_key("09506000134353.1"), "AI (01): check digit should be 2, not 3"),
    "LGTIN key without a lot": (
        lambda: LGTIN.from_key("09506000134352."),
        "'09506000134352.' is not an LGTIN key (<gtin14>.<percent-encoded text>)"),
    "SSCC key of 16 digits": (lambda: SSCC.from_key("1061414123456789"),
                              "AI (00): '1061414123456789' is not 18 digits"),
    "URN with a 5-digit company prefix": (
        lambda: sgtin_urn(_sgtin("1"), 5), "EPC URN: a company prefix has 6 to 12 digits, not 5"),
    "URN with a 13-digit company prefix": (
        lambda: sscc_urn(SSCC(SSCC_DIGITS), 13),
        "EPC URN: a company prefix has 6 to 12 digits, not 13"),
    "(AI) form of a serial with a parenthesis": (
        lambda: element_string(Scan(gtin=GTIN, serial="A(1)")),
        "AI (21): 'A(1)' holds a parenthesis, which the (AI) form cannot carry"),
    "Digital Link of a GTIN and an SSCC": (
        lambda: digital_link(Scan(gtin=GTIN, sscc=SSCC_DIGITS)),
        "Digital Link: a link has one primary key, this scan has AI (01) and (00)"),
    "Digital Link host with a query": (
        lambda: digital_link(Scan(gtin=GTIN), "https://example.com/?a=1"),
        "Digital Link: 'https://example.com/?a=1' is not a host such as https://id.gs1.org"),
    "Digital Link host whose path reads as an AI": (
        lambda: digital_link(Scan(gtin=GTIN), "https://example.com/01"),
        "Digital Link: 'https://example.com/01' is not a host such as https://id.gs1.org"),
    "EPC URN read by parse_epc, not a URN": (
        lambda: parse_epc("(01)09506000134352"),
        "EPC URN: '(01)09506000134352' is not one of urn:epc:id:sgtin:, urn:epc:id:sscc:,"
        " urn:epc:class:lgtin:"),
}


@pytest.mark.parametrize(("make", "message"), BAD_VALUES.values(), ids=BAD_VALUES)
def test_values_refuse(make: Callable[[], object], message: str) -> None:
    with pytest.raises(GS1Error) as caught:
        make()
    assert str(caught.value) == message


def test_error_names_its_ai() -> None:
    with pytest.raises(ValueError) as caught:
        parse_code("(01)09506000134352(17)201332")
    assert isinstance(caught.value, GS1Error) and caught.value.ai == "17"


# -- the century rule and the registered company prefix ---------------------------------------

CENTURIES: dict[str, tuple[int, str, str]] = {
    "50 years ahead stays in this century": (2026, "761231", "2076-12-31"),
    "51 years ahead is last century": (2026, "770101", "1977-01-01"),
    "50 years back is next century": (2060, "100101", "2110-01-01"),
    "49 years back stays in this century": (2060, "110101", "2011-01-01"),
    "2000 was a leap year": (2026, "000200", "2000-02-29"),
}


@pytest.mark.parametrize(("year", "yymmdd", "iso"), CENTURIES.values(), ids=CENTURIES)
def test_century_rule(year: int, yymmdd: str, iso: str) -> None:
    assert parse_code(f"(01){GTIN}(17){yymmdd}", current_year=year).expiry == iso


def test_2100_is_not_a_leap_year() -> None:
    with pytest.raises(GS1Error, match=r"^AI \(17\): 000229 is not a date$"):
        parse_code(f"(01){GTIN}(17)000229", current_year=2060)


def test_unpinned_year_is_biips_clock() -> None:
    """Without current_year biip's date is taken; inside the window both agree."""
    code = f"(01){GTIN}(17)201225"
    assert parse_code(code) == parse_code(code, current_year=YEAR)


PREFIX_CHECKS: dict[str, tuple[str, int | None, str | None]] = {
    "registered length agrees": ("urn:epc:id:sgtin:0614141.112345.400", 7, None),
    "prefix not registered": ("urn:epc:id:sgtin:0614141.112345.400", None, None),
    "URN drawn with another partition": (
        "urn:epc:id:sgtin:061414.1112345.400", 7,
        "EPC URN: company prefix 061414 has 6 digits; the prefix registered for"
        " 10614141123459 has 7"),
    "SSCC asked by its 18 digits": (
        "urn:epc:id:sscc:061414123456.17890", 7,
        "EPC URN: company prefix 061414123456 has 12 digits; the prefix registered for"
        " 106141412345678908 has 7"),
}


@pytest.mark.parametrize(("urn", "registered", "fault"), PREFIX_CHECKS.values(),
                         ids=PREFIX_CHECKS)
def test_registered_prefix_length(urn: str, registered: int | None, fault: str | None) -> None:
    asked: list[str] = []

    def prefix_length(key: str) -> int | None:
        asked.append(key)
        return registered

    if fault is None:
        assert parse_code(urn, prefix_length) == parse_code(urn)
    else:
        with pytest.raises(GS1Error) as caught:
            parse_code(urn, prefix_length)
        assert str(caught.value) == fault
    assert len(asked) == 1 and len(asked[0]) in (14, 18)


# -- round trips -------------------------------------------------------------------------------

digits = st.text("0123456789", min_size=1, max_size=17)
texts = st.text(SET_82, min_size=1, max_size=20)
plain_texts = texts.filter(lambda t: "(" not in t and ")" not in t)
gtins = st.text("0123456789", min_size=13, max_size=13).map(
    lambda d: d + stdnum.ean.calc_check_digit(d))
ssccs = st.text("0123456789", min_size=17, max_size=17).map(
    lambda d: d + stdnum.ean.calc_check_digit(d))
expiries = st.dates(dt.date(YEAR - 49, 1, 1), dt.date(YEAR + 50, 12, 31)).map(
    dt.date.isoformat)
prefix_lengths = st.integers(6, 12)


@st.composite
def scans(draw: st.DrawFn, text: st.SearchStrategy[str] = texts,
          both_keys: bool = True) -> Scan:
    gtin = draw(st.none() | gtins)
    if gtin is None:
        return Scan(sscc=draw(ssccs))
    return Scan(gtin=gtin, serial=draw(st.none() | text), lot=draw(st.none() | text),
                expiry=draw(st.none() | expiries),
                sscc=draw(st.none() | ssccs) if both_keys else None)


@FAST
@given(scans(text=plain_texts))
def test_element_string_round_trip(scan: Scan) -> None:
    assert parse_code(element_string(scan), current_year=YEAR) == scan


@FAST
@given(scans(), st.sampled_from(["", "]d2", "]C1"]))
def test_datamatrix_round_trip(scan: Scan, symbology: str) -> None:
    content = datamatrix_content(scan)
    assert parse_code(symbology + content, current_year=YEAR) == scan
    assert not content.endswith("\x1d")


@FAST
@given(scans(both_keys=False),
       st.sampled_from(["https://id.gs1.org", "https://example.com/dl/", "http://x.test/a/b"]))
def test_digital_link_round_trip(scan: Scan, host: str) -> None:
    link = digital_link(scan, host)
    assert link.startswith(host.rstrip("/") + "/0")
    assert parse_code(link, current_year=YEAR) == scan


@FAST
@given(gtins, texts, ssccs, prefix_lengths)
def test_epc_round_trip(gtin: str, text: str, sscc: str, prefix_length: int) -> None:
    for value, urn in ((SGTIN(gtin, text), sgtin_urn(SGTIN(gtin, text), prefix_length)),
                       (LGTIN(gtin, text), lgtin_urn(LGTIN(gtin, text), prefix_length)),
                       (SSCC(sscc), sscc_urn(SSCC(sscc), prefix_length))):
        assert parse_epc(urn) == value


@FAST
@given(gtins, texts, texts, ssccs)
def test_keys_round_trip_and_are_safe(gtin: str, text: str, other: str, sscc: str) -> None:
    for value in (SGTIN(gtin, text), LGTIN(gtin, text), SSCC(sscc)):
        assert KEY_CHARS.fullmatch(value.key) and value.key.isascii()
        assert type(value).from_key(value.key) == value
    assert (SGTIN(gtin, text).key == SGTIN(gtin, other).key) == (text == other)


def test_serial_that_epcpy_alone_refuses() -> None:
    """epcpy checks escapes by splitting at % and two decimal digits: %2F then more fails."""
    urn = "urn:epc:id:sgtin:0614141.112345.%2Fx"
    with pytest.raises(ValueError):
        EpcSGTIN(urn)
    assert sgtin_urn(SGTIN("10614141123459", "/x"), 7) == urn


def test_lot_that_breaks_epcpys_own_lgtin_builder() -> None:
    lot = LGTIN(GTIN, "A(12)")
    with pytest.raises(ValueError):
        EpcLGTIN.from_gs1_element_string(f"(01){GTIN}(10)A(12)", 7)
    assert lgtin_urn(lot, 7) == "urn:epc:class:lgtin:9506000.013435.A(12)"
    assert parse_epc(lgtin_urn(lot, 7)) == lot


# -- cross-checks: python-stdnum -------------------------------------------------------------


@FAST
@given(digits)
def test_check_digit_agrees_with_stdnum(text: str) -> None:
    assert str(check_digit(text)) == stdnum.ean.calc_check_digit(text)


@FAST
@given(st.sampled_from([8, 12, 13, 14]).flatmap(
    lambda n: st.text("0123456789", min_size=n, max_size=n)))
def test_gtin14_accepts_what_stdnum_accepts(text: str) -> None:
    try:
        assert gtin14(text) == text.zfill(14)
        accepted = True
    except GS1Error:
        accepted = False
    assert accepted == stdnum.ean.is_valid(text)


@FAST
@given(scans(text=plain_texts).filter(
    lambda s: s.expiry is None or s.expiry[:2] == "20" and s.expiry <= "2068-12-31"))
def test_datamatrix_content_agrees_with_stdnum(scan: Scan) -> None:
    """stdnum strips parentheses and reads YY with strptime's pivot (69 -> 1969), hence the
    filters; within them it reads our content as we do."""
    read = stdnum.gs1_128.info(datamatrix_content(scan), separator="\x1d")
    expected: dict[str, Any] = {ai: v for ai, v in (
        ("00", scan.sscc), ("01", scan.gtin), ("10", scan.lot), ("21", scan.serial)) if v}
    if scan.expiry:
        expected["17"] = dt.date.fromisoformat(scan.expiry)
    assert read == expected


def test_stdnum_reads_yy_with_strptimes_pivot() -> None:
    """A known difference, kept so that a change on either side shows: GS1's window puts
    YY 70 in 2070 (seen from 2026), python-stdnum in 1970."""
    assert stdnum.gs1_128.info("17701231")["17"] == dt.date(1970, 12, 31)
    assert parse_code(f"(01){GTIN}(17)701231", current_year=YEAR).expiry == "2070-12-31"


def test_stdnum_does_not_check_an_sscc() -> None:
    assert stdnum.gs1_128.validate("00106141412345678909")
    with pytest.raises(GS1Error, match="check digit should be 8, not 9"):
        SSCC("106141412345678909")


# -- cross-checks: epcpy and biip agree on the keys ------------------------------------------

EPC_TABLE: dict[str, tuple[str, str, str]] = {
    "TDS SGTIN": ("urn:epc:id:sgtin:0614141.112345.400", "10614141123459.400",
                  "(01)10614141123459(21)400"),
    "TDS SSCC": ("urn:epc:id:sscc:0614141.1234567890", SSCC_DIGITS, f"(00){SSCC_DIGITS}"),
    "TDS LGTIN": ("urn:epc:class:lgtin:4012345.012345.998877", "04012345123456.998877",
                  "(01)04012345123456(10)998877"),
    "escaped serial": ("urn:epc:id:sgtin:0614141.112345.A%2FB%26C", "10614141123459.A%2FB%26C",
                       "(01)10614141123459(21)A/B&C"),
}


@pytest.mark.parametrize(("urn", "key", "elements"), EPC_TABLE.values(), ids=EPC_TABLE)
def test_epc_table(urn: str, key: str, elements: str) -> None:
    value = parse_epc(urn)
    epc = {"sgtin": EpcSGTIN, "sscc": EpcSSCC, "lgtin": EpcLGTIN}[urn.split(":")[3]](urn)
    assert value.key == key
    assert epc.gs1_element_string() == elements == element_string(parse_code(urn))
    assert _urn(value, len(urn.split(":")[4].split(".")[0])) == urn


def _urn(value: SGTIN | LGTIN | SSCC, prefix_length: int) -> str:
    if isinstance(value, SGTIN):
        return sgtin_urn(value, prefix_length)
    if isinstance(value, LGTIN):
        return lgtin_urn(value, prefix_length)
    return sscc_urn(value, prefix_length)


@FAST
@given(gtins, texts, prefix_lengths)
def test_biip_and_epcpy_agree_on_keys(gtin: str, text: str, prefix_length: int) -> None:
    """A pack or lot read from its Digital Link (biip) and from its EPC URN (epcpy) has one
    key."""
    pack, lot = SGTIN(gtin, text), LGTIN(gtin, text)
    by_link = parse_code(digital_link(Scan(gtin=gtin, serial=text, lot=text)))
    by_urns = parse_code(sgtin_urn(pack, prefix_length)), parse_code(lgtin_urn(lot, prefix_length))
    assert by_link.sgtin and by_link.lgtin and by_urns[0].sgtin and by_urns[1].lgtin
    assert by_link.sgtin.key == by_urns[0].sgtin.key == pack.key
    assert by_link.lgtin.key == by_urns[1].lgtin.key == lot.key


#: Texts epcpy can check: without / < > ?, whose escapes (%2F %3C %3E %3F) trip it.
epcpy_texts = texts.filter(lambda t: not set(t) & set("/<>?"))


@FAST
@given(gtins, epcpy_texts, prefix_lengths)
def test_epcpy_reads_our_urns(gtin: str, text: str, prefix_length: int) -> None:
    sgtin = EpcSGTIN(sgtin_urn(SGTIN(gtin, text), prefix_length))
    lgtin = EpcLGTIN(lgtin_urn(LGTIN(gtin, text), prefix_length))
    assert sgtin.gtin() == lgtin.gtin() == gtin
    assert sgtin.gs1_element_string() == f"(01){gtin}(21){text}"
    assert lgtin.gs1_element_string() == f"(01){gtin}(10){text}"


@FAST
@given(ssccs, prefix_lengths)
def test_biip_and_epcpy_agree_on_sscc(sscc: str, prefix_length: int) -> None:
    urn = sscc_urn(SSCC(sscc), prefix_length)
    assert EpcSSCC(urn).gs1_key() == sscc
    assert parse_code(urn) == parse_code(digital_link(Scan(sscc=sscc))) == Scan(sscc=sscc)
