"""The client side of encrypted records (medledger.client.records).

Round trips for each HPKE suite; every way of opening a record that should fail does
(wrong reader, altered bytes, another patient or category, a key replayed onto another
record); canaries: the plaintext never appears in what leaves the client; SLIP-39 key
recovery 3 of 5. Plaintexts are synthetic, with canary strings, and held in memory.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.client import records
from medledger.client.records import (
    CONTENT_KEY_SIZE,
    NONCE_SIZE,
    ContentDecryptionError,
    DigestMismatch,
    KeyUnwrapError,
    RecordError,
    RecoveryError,
    SealedRecord,
    content_digest,
    open_record,
    records_add_body,
    recover_keys,
    seal_record,
    split_keys,
    unwrap,
    unwrap_share,
    wrap_for,
)
from medledger.codec import encode
from medledger.codec.b64 import b64url, from_b64url
from medledger.crypto import SUITES, EncryptionKey, InvalidKey, UnknownSuite
from medledger.standards import CATEGORIES, canonical_bytes, validate

CANARY = "CANARY-d41c-medical-content"
PATIENT = "ab" * 16
OTHER_PATIENT = "cd" * 16
CATEGORY = "lab"
PLAINTEXT = canonical_bytes(validate({
    "resourceType": "Observation", "status": "final",
    "category": [{"coding": [{"code": "laboratory"}]}],
    "code": {"text": CANARY}, "valueString": CANARY,
}))


@cache
def reader_key(name: str, suite: str) -> EncryptionKey:
    """A fixed key per (name, suite) for the whole run: generation is the slow part."""
    return EncryptionKey.generate(suite)


def reader_id(name: str) -> str:
    return name.encode().hex().ljust(64, "0")


def readers_of(*names: str, suite: str) -> dict[str, tuple[bytes, str]]:
    return {reader_id(n): (reader_key(n, suite).public_bytes(), suite) for n in names}


def seal(plaintext: bytes = PLAINTEXT, *, suite: str = "x25519", patient: str = PATIENT,
         category: str = CATEGORY, names: tuple[str, ...] = ("alice",)) -> SealedRecord:
    return seal_record(plaintext, patient_pseudonym=patient, category=category,
                       readers=readers_of(*names, suite=suite))


def wrapped_for(sealed: SealedRecord, name: str) -> str:
    (found,) = [k.wrapped for k in sealed.keys if k.reader == reader_id(name)]
    return found


# --- round trips -----------------------------------------------------------------------------
@pytest.mark.parametrize("suite", SUITES)
def test_round_trip_for_each_suite(suite: str) -> None:
    sealed = seal(suite=suite, names=("alice", "bob"))
    assert sealed.size == len(sealed.ciphertext) == NONCE_SIZE + len(PLAINTEXT) + 16
    assert sealed.digest == content_digest(sealed.ciphertext)
    assert len(sealed.content_key) == CONTENT_KEY_SIZE
    assert [k.reader for k in sealed.keys] == sorted([reader_id("alice"), reader_id("bob")])
    for name in ("alice", "bob"):
        opened = open_record(sealed.ciphertext, wrapped_for(sealed, name),
                             reader_key(name, suite), patient_pseudonym=PATIENT,
                             category=CATEGORY, digest=sealed.digest)
        assert opened == PLAINTEXT
        assert unwrap(wrapped_for(sealed, name), sealed.digest,
                      reader_key(name, suite)) == sealed.content_key


def test_readers_of_different_suites_share_one_record() -> None:
    readers = {**readers_of("alice", suite="mlkem768-x25519"),
               **readers_of("bob", suite="x25519")}
    sealed = seal_record(PLAINTEXT, patient_pseudonym=PATIENT, category=CATEGORY,
                         readers=readers)
    for name, suite in (("alice", "mlkem768-x25519"), ("bob", "x25519")):
        assert open_record(sealed.ciphertext, wrapped_for(sealed, name), reader_key(name, suite),
                           patient_pseudonym=PATIENT, category=CATEGORY) == PLAINTEXT


@pytest.mark.parametrize("suite", SUITES)
def test_a_grant_rewraps_the_content_key_for_a_new_reader(suite: str) -> None:
    sealed = seal(names=("alice",))
    carol = reader_key("carol", suite)
    wrapped = wrap_for(sealed.content_key, sealed.digest, carol.public_bytes(), suite)
    assert open_record(sealed.ciphertext, wrapped, carol, patient_pseudonym=PATIENT,
                       category=CATEGORY) == PLAINTEXT


def test_every_seal_is_fresh() -> None:
    one, two = seal(), seal()
    assert one.content_key != two.content_key
    assert one.ciphertext[:NONCE_SIZE] != two.ciphertext[:NONCE_SIZE]
    assert one.digest != two.digest and one.keys != two.keys


def test_an_empty_plaintext_round_trips() -> None:
    sealed = seal(b"")
    assert open_record(sealed.ciphertext, wrapped_for(sealed, "alice"),
                       reader_key("alice", "x25519"), patient_pseudonym=PATIENT,
                       category=CATEGORY) == b""


# --- refusals: a named scenario table --------------------------------------------------------
def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


@cache
def _fixture(suite: str) -> SealedRecord:
    return seal(suite=suite, names=("alice",))


def _open(suite: str, *, ciphertext: bytes | None = None, wrapped: str | None = None,
          key: EncryptionKey | None = None, patient: str = PATIENT, category: str = CATEGORY,
          digest: str | None = None) -> bytes:
    sealed = _fixture(suite)
    return open_record(
        sealed.ciphertext if ciphertext is None else ciphertext,
        wrapped_for(sealed, "alice") if wrapped is None else wrapped,
        reader_key("alice", suite) if key is None else key,
        patient_pseudonym=patient, category=category, digest=digest)


REFUSED: dict[str, tuple[Callable[[str], Any], type[RecordError]]] = {
    "another reader's key": (
        lambda s: _open(s, key=reader_key("mallory", s)), KeyUnwrapError),
    "a key of the other suite": (
        lambda s: _open(s, key=reader_key("alice", next(x for x in SUITES if x != s))),
        KeyUnwrapError),
    "a flipped byte in the nonce": (
        lambda s: _open(s, ciphertext=_flip(_fixture(s).ciphertext, 0)), KeyUnwrapError),
    "a flipped byte in the body": (
        lambda s: _open(s, ciphertext=_flip(_fixture(s).ciphertext, NONCE_SIZE + 3)),
        KeyUnwrapError),
    "a flipped byte in the tag": (
        lambda s: _open(s, ciphertext=_flip(_fixture(s).ciphertext, -1)), KeyUnwrapError),
    "a truncated ciphertext": (
        lambda s: _open(s, ciphertext=_fixture(s).ciphertext[:-1]), KeyUnwrapError),
    "a flipped byte with the ledger's digest given": (
        lambda s: _open(s, ciphertext=_flip(_fixture(s).ciphertext, 20),
                        digest=_fixture(s).digest), DigestMismatch),
    "another patient": (lambda s: _open(s, patient=OTHER_PATIENT), ContentDecryptionError),
    "another category": (lambda s: _open(s, category="condition"), ContentDecryptionError),
    "a flipped byte in the wrapped key": (
        lambda s: _open(s, wrapped=b64url(_flip(from_b64url(wrapped_for(_fixture(s), "alice")),
                                                 5))), KeyUnwrapError),
    "a wrapped key replayed from another record": (
        lambda s: _open(s, wrapped=wrapped_for(seal(suite=s), "alice")), KeyUnwrapError),
    "a ciphertext swapped for another record's": (
        lambda s: _open(s, ciphertext=seal(suite=s).ciphertext), KeyUnwrapError),
    "a wrapped key that is not base64url": (lambda s: _open(s, wrapped="z+z"), RecordError),
    "a wrapped key in hex": (lambda s: _open(s, wrapped=from_b64url(
        wrapped_for(_fixture(s), "alice")).hex() + "x"), RecordError),
    "a wrapped key with padding": (lambda s: _open(s, wrapped=wrapped_for(_fixture(s), "alice")
                                                   + "=="), RecordError),
    "an unknown category": (lambda s: _open(s, category="genome"), RecordError),
}


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused(name: str, suite: str) -> None:
    call, error = REFUSED[name]
    with pytest.raises(error) as caught:
        call(suite)
    message = str(caught.value)
    assert message and CANARY not in message and _fixture(suite).content_key.hex() not in message


def test_errors_say_what_happened() -> None:
    with pytest.raises(KeyUnwrapError, match="wrapped for another reader"):
        _open("x25519", key=reader_key("mallory", "x25519"))
    with pytest.raises(ContentDecryptionError, match="another patient or category"):
        _open("x25519", category="condition")
    with pytest.raises(DigestMismatch) as caught:
        _open("x25519", ciphertext=b"x" * 40, digest=_fixture("x25519").digest)
    assert caught.value.expected == _fixture("x25519").digest
    assert caught.value.got == content_digest(b"x" * 40)


BAD_SEAL: dict[str, tuple[dict[str, Any], type[Exception]]] = {
    "no readers": ({"readers": {}}, RecordError),
    "an unknown category": ({"category": "genome"}, RecordError),
    "an empty pseudonym": ({"patient_pseudonym": ""}, RecordError),
    "a pseudonym with a newline": ({"patient_pseudonym": "ab\ncd"}, RecordError),
    "a reader not named in hex": ({"readers": {"Alice": (b"\x01" * 32, "x25519")}}, RecordError),
    "a reader without a suite": ({"readers": {"aa": b"\x01" * 32}}, RecordError),
    "a reader key of the wrong size": ({"readers": {"aa": (b"\x01" * 31, "x25519")}},
                                       InvalidKey),
    "an unknown suite": ({"readers": {"aa": (b"\x01" * 32, "rot13")}}, UnknownSuite),
    "a plaintext that is not bytes": ({"resource_bytes": CANARY}, RecordError),
}


@pytest.mark.parametrize("name", sorted(BAD_SEAL))
def test_bad_seal_arguments(name: str) -> None:
    change, error = BAD_SEAL[name]
    args: dict[str, Any] = {"resource_bytes": PLAINTEXT, "patient_pseudonym": PATIENT,
                            "category": CATEGORY, "readers": readers_of("alice", suite="x25519"),
                            **change}
    with pytest.raises(error):
        seal_record(args.pop("resource_bytes"), **args)


# --- the ledger body, and canaries -----------------------------------------------------------
def test_records_add_body_is_exactly_the_ledger_body() -> None:
    sealed = seal(names=("alice", "bob"))
    body = records_add_body(sealed, patient=PATIENT, category=CATEGORY)
    assert body == {"patient": PATIENT, "category": CATEGORY, "digest": sealed.digest,
                    "size": sealed.size, "previous": None,
                    "keys": [{"reader": k.reader, "wrapped": k.wrapped} for k in sealed.keys]}
    assert list(body) == ["patient", "category", "digest", "size", "previous", "keys"]
    encode(body)  # canonical JSON takes it as it is
    amended = records_add_body(seal(), patient=PATIENT, category=CATEGORY,
                               previous=sealed.digest)
    assert amended["previous"] == sealed.digest
    with pytest.raises(RecordError):
        records_add_body(sealed, patient=PATIENT, category=CATEGORY, previous="v1")
    with pytest.raises(RecordError):
        records_add_body(sealed, patient=PATIENT, category="genome")


def _leaves_the_client(sealed: SealedRecord) -> list[bytes]:
    body = records_add_body(sealed, patient=PATIENT, category=CATEGORY)
    wrapped = [from_b64url(k.wrapped) for k in sealed.keys]
    return [sealed.ciphertext, encode(body), json.dumps(body).encode(), repr(sealed).encode(),
            *wrapped, *(b64url(w).encode() for w in wrapped)]


@pytest.mark.parametrize("suite", SUITES)
def test_canary_the_plaintext_never_leaves_in_clear(suite: str) -> None:
    sealed = seal(suite=suite, names=("alice", "bob"))
    needles = [CANARY.encode(), CANARY.encode().hex().encode(), PLAINTEXT[:24],
               PLAINTEXT[-24:]]
    for haystack in _leaves_the_client(sealed):
        for needle in needles:
            assert needle not in haystack
        assert sealed.content_key not in haystack
        assert sealed.content_key.hex().encode() not in haystack


@settings(max_examples=40, deadline=None)
@given(plaintext=st.binary(max_size=512),
       patient=st.text(alphabet="0123456789abcdef", min_size=1, max_size=64),
       category=st.sampled_from(CATEGORIES))
def test_property_round_trip(plaintext: bytes, patient: str, category: str) -> None:
    sealed = seal_record(plaintext, patient_pseudonym=patient, category=category,
                         readers=readers_of("alice", suite="x25519"))
    assert sealed.size == len(plaintext) + NONCE_SIZE + 16
    assert open_record(sealed.ciphertext, sealed.keys[0].wrapped, reader_key("alice", "x25519"),
                       patient_pseudonym=patient, category=category,
                       digest=sealed.digest) == plaintext


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_property_any_flipped_bit_is_refused(data: st.DataObject) -> None:
    sealed = _fixture("x25519")
    index = data.draw(st.integers(0, sealed.size - 1))
    bit = data.draw(st.integers(0, 7))
    altered = bytearray(sealed.ciphertext)
    altered[index] ^= 1 << bit
    with pytest.raises(RecordError):
        _open("x25519", ciphertext=bytes(altered))


@settings(max_examples=40, deadline=None)
@given(secret=st.binary(min_size=len(CANARY), max_size=64))
def test_property_a_planted_plaintext_is_never_in_the_ciphertext(secret: bytes) -> None:
    plaintext = CANARY.encode() + secret + CANARY.encode()
    sealed = seal(plaintext)
    assert CANARY.encode() not in sealed.ciphertext
    assert secret not in sealed.ciphertext


# --- key recovery: SLIP-39 3 of 5 ------------------------------------------------------------
GUARDIANS = [f"hospital-{i}" for i in range(5)]
SECRET = bytes(range(1, 33))


@cache
def _guardians(suite: str) -> dict[str, tuple[bytes, str]]:
    return readers_of(*GUARDIANS, suite=suite)


@cache
def _shares(suite: str) -> tuple[bytes, ...]:
    """The five shares of SECRET, unwrapped by their guardians, in guardian order."""
    split = split_keys(SECRET, _guardians(suite), 3)
    assert [s["guardian"] for s in split] == sorted(_guardians(suite))
    by_id = {reader_id(g): g for g in GUARDIANS}
    return tuple(unwrap_share(s["wrapped_share"], reader_key(by_id[s["guardian"]], suite))
                 for s in split)


@pytest.mark.parametrize("suite", SUITES)
def test_any_three_of_five_shares_recover_the_secret(suite: str) -> None:
    shares = _shares(suite)
    for three in itertools.combinations(shares, 3):
        assert recover_keys(list(three)) == SECRET
    assert recover_keys(list(shares)) == SECRET  # more than the threshold is fine
    assert recover_keys(list(reversed(shares[1:]))) == SECRET


def _corrupt(share: bytes) -> bytes:
    """Replace one word of a share with another word of the list: its checksum breaks."""
    words = share.decode().split()
    words[6] = "academic" if words[6] != "academic" else "acid"
    return " ".join(words).encode()


def _other_split() -> list[bytes]:
    split = split_keys(SECRET, _guardians("x25519"), 3)
    by_id = {reader_id(g): g for g in GUARDIANS}
    return [unwrap_share(s["wrapped_share"], reader_key(by_id[s["guardian"]], "x25519"))
            for s in split]


RECOVERY_FAILS: dict[str, tuple[Callable[[tuple[bytes, ...]], list[bytes]], str]] = {
    "two shares": (lambda s: list(s[:2]), "3 distinct shares are needed, 2 were given"),
    "three shares, two the same": (lambda s: [s[0], s[1], s[1]], "3 distinct shares"),
    "one share": (lambda s: [s[4]], "3 distinct shares are needed, 1 were given"),
    "no share": (lambda s: [], "no shares"),
    "a corrupted share": (lambda s: [s[0], s[1], _corrupt(s[2])], "corrupted"),
    "a share that is not a mnemonic": (lambda s: [s[0], s[1], b"not a share at all"],
                                       "not a valid SLIP-39 mnemonic"),
    "a share that is not text": (lambda s: [s[0], s[1], b"\xff" * 40], "not a SLIP-39"),
    "a share from another split": (lambda s: [s[0], s[1], _other_split()[2]],
                                   "different splits"),
}


@pytest.mark.parametrize("name", sorted(RECOVERY_FAILS))
def test_recovery_fails(name: str) -> None:
    shares = _shares("x25519")
    pick, reason = RECOVERY_FAILS[name]
    with pytest.raises(RecoveryError, match=reason) as caught:
        recover_keys(pick(shares))
    message = str(caught.value).split()
    for share in shares:  # no run of a share's words is repeated (a lone word may be English)
        words = share.decode().split()
        runs = {tuple(words[i:i + 3]) for i in range(len(words) - 2)}
        assert not runs & {tuple(message[i:i + 3]) for i in range(len(message) - 2)}
    assert SECRET.hex() not in " ".join(message)


def test_a_guardian_opens_only_its_own_share() -> None:
    split = split_keys(SECRET, _guardians("x25519"), 3)
    with pytest.raises(RecoveryError, match="does not open"):
        unwrap_share(split[0]["wrapped_share"], reader_key("mallory", "x25519"))
    with pytest.raises(RecoveryError, match="base64url"):
        unwrap_share("z+z", reader_key("mallory", "x25519"))
    for item in split:  # a wrapped share shows nothing of the secret or its words
        raw = from_b64url(item["wrapped_share"])
        assert SECRET not in raw and b"academic" not in raw


BAD_SPLIT: dict[str, tuple[bytes, int, int]] = {
    "threshold above the guardians": (SECRET, 6, 5),
    "threshold of one among five": (SECRET, 1, 5),
    "threshold zero": (SECRET, 0, 5),
    "a secret too short": (os.urandom(14), 3, 5),
    "a secret of odd length": (os.urandom(17), 3, 5),
    "a secret too long": (os.urandom(34), 3, 5),
    "no guardians": (SECRET, 1, 0),
}


@pytest.mark.parametrize("name", sorted(BAD_SPLIT))
def test_bad_split_arguments(name: str) -> None:
    secret, threshold, count = BAD_SPLIT[name]
    guardians = dict(list(_guardians("x25519").items())[:count])
    with pytest.raises(RecordError):
        split_keys(secret, guardians, threshold)


def test_one_of_one_is_allowed() -> None:
    (only,) = split_keys(SECRET, readers_of("alice", suite="x25519"), 1)
    share = unwrap_share(only["wrapped_share"], reader_key("alice", "x25519"))
    assert recover_keys([share]) == SECRET


def test_public_names() -> None:
    assert sorted(records.__all__) == sorted([
        "CONTENT_KEY_SIZE", "NONCE_SIZE", "ContentDecryptionError", "DigestMismatch",
        "KeyUnwrapError", "RecordError", "RecoveryError", "SealedRecord", "WrappedKey",
        "content_digest", "open_record", "records_add_body", "recover_keys", "seal_record",
        "split_keys", "unwrap", "unwrap_share", "wrap_for"])
    assert all(getattr(records, n).__doc__ for n in records.__all__ if n[0].islower())
