"""GS1 identifiers of medicines: check digits, packs, lots and logistic units, what a
scanned code says, and the codes written back.

The traceability app keys its state by the values made here, so whatever a scanner or a
partner sends is read once, at this edge, into small values that check themselves. GS1's
grammars are left to ``biip`` (element strings, GS1 DataMatrix, Digital Link) and ``epcpy``
(EPC URNs); what those libraries let through silently is refused here (see "Guards").

The value types and their checks are in :mod:`.gs1_values`, the readers and writers of
codes in :mod:`.gs1_codes`; this module re-exports both.

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

from medledger.standards.gs1_codes import (
    datamatrix_content,
    digital_link,
    element_string,
    lgtin_urn,
    parse_code,
    parse_epc,
    sgtin_urn,
    sscc_urn,
)
from medledger.standards.gs1_values import (
    LGTIN,
    SGTIN,
    SSCC,
    SUPPORTED_AIS,
    GS1Error,
    Scan,
    check_digit,
    gtin14,
)

__all__ = [
    "LGTIN", "SGTIN", "SSCC", "SUPPORTED_AIS", "GS1Error", "Scan",
    "check_digit", "gtin14", "parse_code", "parse_epc",
    "element_string", "datamatrix_content", "digital_link", "sgtin_urn", "lgtin_urn", "sscc_urn",
]
