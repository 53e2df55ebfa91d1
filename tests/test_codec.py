"""Canonical JSON (RFC 8785, restricted) and tagged hashes."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medledger.codec import (
    MAX_SAFE_INT,
    CodecError,
    Tag,
    decode,
    decode_canonical_list,
    encode,
    is_canonical,
    tagged_hash,
)
from medledger.codec.b64 import b64url, from_b64url, is_b64url

# RFC 8785 section 3.2.2 / appendix examples, restricted to our value types.
CANONICAL = {
    "key order": ({"b": 1, "a": 2, "aa": 3, "A": 4}, b'{"A":4,"a":2,"aa":3,"b":1}'),
    "nested": ({"z": [3, {"y": None, "x": True}], "a": False}, b'{"a":false,"z":[3,{"x":true,"y":null}]}'),
    "control escapes": ({"s": "\b\t\n\f\r\x01\x1f"}, b'{"s":"\\b\\t\\n\\f\\r\\u0001\\u001f"}'),
    "quote and backslash": ({"s": 'a"b\\c'}, b'{"s":"a\\"b\\\\c"}'),
    "non-ASCII raw UTF-8": ({"s": "\u20ac\U0001f600é"}, '{"s":"\u20ac\U0001f600é"}'.encode()),
    "DEL and slash unescaped": ({"s": "\x7f/"}, b'{"s":"\x7f/"}'),
    "largest safe integers": ([MAX_SAFE_INT, -MAX_SAFE_INT, 0], b"[9007199254740991,-9007199254740991,0]"),
    "empty containers": ({"a": {}, "b": []}, b'{"a":{},"b":[]}'),
}


@pytest.mark.parametrize("value,expected", CANONICAL.values(), ids=CANONICAL.keys())
def test_canonical_bytes(value: object, expected: bytes) -> None:
    assert encode(value) == expected
    assert decode(expected) == value
    assert is_canonical(expected)


REFUSED_VALUES = {
    "float": 1.5,
    "float in list": [1, 2.0],
    "integer above 2^53": MAX_SAFE_INT + 1,
    "integer below -2^53": -(MAX_SAFE_INT + 1),
    "non-ASCII key": {"é": 1},
    "non-string key": {1: 2},
    "bytes": b"x",
    "set": {1},
    "lone surrogate": "\ud800",
}


@pytest.mark.parametrize("value", REFUSED_VALUES.values(), ids=REFUSED_VALUES.keys())
def test_encode_refuses(value: object) -> None:
    with pytest.raises(CodecError):
        encode(value)


REFUSED_BYTES = {
    "duplicate keys": b'{"a":1,"a":2}',
    "float": b'{"a":1.0}',
    "exponent": b"1e3",
    "big integer": b"9007199254740992",
    "NaN": b"NaN",
    "Infinity": b"[Infinity]",
    "non-UTF-8": b'"\xff"',
    "non-ASCII key": '{"é":1}'.encode(),
    "truncated": b'{"a":',
    "trailing garbage": b"{} x",
    "deep nesting": b"[" * 100 + b"]" * 100,
}


@pytest.mark.parametrize("data", REFUSED_BYTES.values(), ids=REFUSED_BYTES.keys())
def test_decode_refuses_with_clear_error(data: bytes) -> None:
    with pytest.raises(CodecError) as info:
        decode(data)
    assert info.value.reason


def test_non_canonical_input_is_detected() -> None:
    assert not is_canonical(b'{"b":1, "a":2}')
    assert is_canonical(b'{"a":2,"b":1}')


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_SAFE_INT, MAX_SAFE_INT) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127), max_size=8), children,
                      max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_round_trip_and_agreement_with_json(value: object) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data
    assert json.loads(data) == value


@given(json_values)
def test_reencoding_any_formatting_gives_the_same_bytes(value: object) -> None:
    pretty = json.dumps(value, indent=2, ensure_ascii=True).encode()
    assert encode(decode(pretty)) == encode(value)


@given(st.lists(json_values, max_size=6))
def test_canonical_list_fast_path_agrees_with_strict_decode(items: list[object]) -> None:
    data = b"[" + b",".join(encode(item) for item in items) + b"]"
    pairs = decode_canonical_list(data)
    assert pairs is not None
    assert [item for item, _ in pairs] == decode(data)
    assert [raw for _, raw in pairs] == [encode(item) for item in items]


@given(st.lists(json_values, min_size=1, max_size=6))
def test_canonical_list_fast_path_declines_other_formatting(items: list[object]) -> None:
    pretty = json.dumps(items, indent=1, ensure_ascii=True).encode()
    canonical = b"[" + b",".join(encode(item) for item in items) + b"]"
    assert (decode_canonical_list(pretty) is not None) == (pretty == canonical)


NOT_CANONICAL_LISTS = {
    "not a list": b'{"a":1}',
    "space after comma": b'[{"a":1}, {"b":2}]',
    "duplicate keys": b'[{"a":1,"a":1}]',
    "unsorted keys": b'[{"b":1,"a":2}]',
    "float": b"[1.0]",
    "big integer": b"[9007199254740992]",
    "NaN": b"[NaN]",
    "needless escape": b'["\\u0041"]',
    "lone surrogate": b'["\\ud800"]',
    "non-UTF-8": b'["\xff"]',
    "deep nesting": b"[" * 100 + b"]" * 100,
    "truncated": b"[1,",
}


@pytest.mark.parametrize("data", NOT_CANONICAL_LISTS.values(), ids=NOT_CANONICAL_LISTS.keys())
def test_canonical_list_fast_path_declines(data: bytes) -> None:
    assert decode_canonical_list(data) is None


def test_tagged_hashes_are_domain_separated() -> None:
    data = b"same bytes"
    digests = {tagged_hash(tag, data) for tag in Tag}
    assert len(digests) == len(Tag)
    assert hashlib.sha256(data).digest() not in digests
    assert tagged_hash(Tag.TX, data) == hashlib.sha256(b"medledger:tx\x00" + data).digest()


# base64url, the text form of wrapped keys ----------------------------------------------------
@given(st.binary(max_size=200))
def test_b64url_round_trips_and_is_the_one_form(data: bytes) -> None:
    text = b64url(data)
    assert from_b64url(text) == data
    assert "=" not in text and "+" not in text and "/" not in text
    assert is_b64url(text)


B64_REFUSED = {
    "padding": "AAA=", "standard alphabet": "+/8", "unused bits set": "AB",
    "a length of 4k+1": "AAAAA", "a space": "AA A", "not a string": b"AAAA",
}


@pytest.mark.parametrize("case", sorted(B64_REFUSED))
def test_b64url_refuses_every_other_form(case: str) -> None:
    with pytest.raises(ValueError):
        from_b64url(B64_REFUSED[case])  # type: ignore[arg-type]
    assert not is_b64url(B64_REFUSED[case])
