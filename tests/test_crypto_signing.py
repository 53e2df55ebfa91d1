"""Ed25519: RFC 8032 vectors, the 1,024 vectors of cryptography_vectors, never-raising verify."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import cryptography_vectors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import medledger.crypto as crypto
from medledger.crypto import InvalidKey, SigningKey, verify, verify_rate

VECTORS = Path(os.path.dirname(cryptography_vectors.__file__)) / "asymmetric/Ed25519/sign.input"


def _read_vectors() -> list[tuple[bytes, bytes, bytes, bytes]]:
    """(seed, public key, message, signature) per line ``sk+pk:pk:msg:sig+msg:``."""
    rows = []
    for line in VECTORS.read_text().splitlines():
        secret, public, message, signed, _ = line.split(":")
        seed = bytes.fromhex(secret)[:32]
        msg = bytes.fromhex(message)
        sig_msg = bytes.fromhex(signed)
        assert sig_msg[64:] == msg, "vector file is not in the format this test expects"
        rows.append((seed, bytes.fromhex(public), msg, sig_msg[:64]))
    return rows


ALL = _read_vectors()

# RFC 8032 section 7.1; the file starts with TEST 1, 2 and 3 in this order.
RFC8032 = {
    "TEST 1 (empty message)": (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
        "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    "TEST 2 (one byte)": (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e"
        "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    "TEST 3 (two bytes)": (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290"
        "ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
}


def test_vector_file_has_all_lines() -> None:
    assert len(ALL) == 1024
    assert len({seed for seed, *_ in ALL}) == 1024


@pytest.mark.parametrize("name", list(RFC8032))
def test_rfc8032_section_7_1(name: str) -> None:
    seed, public, message, signature = (bytes.fromhex(x) for x in RFC8032[name])
    key = SigningKey.from_seed(seed)
    assert key.public_key == public
    assert key.sign(message) == signature
    assert verify(public, message, signature)
    assert (seed, public, message, signature) in ALL[:3]


def test_rfc8032_1024_byte_message_is_in_the_file() -> None:
    # TEST 1024 of RFC 8032 section 7.1 (the 1023-byte message), checked by its key and sig.
    long = [row for row in ALL if len(row[2]) == 1023]
    assert long, "the file no longer holds the RFC's 1023-byte TEST 1024"
    seed, _, message, signature = long[0]
    assert seed.hex() == "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5"
    assert signature.hex().startswith("0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e4")
    assert SigningKey.from_seed(seed).sign(message) == signature


def test_every_vector_derives_signs_and_verifies() -> None:
    for index, (seed, public, message, signature) in enumerate(ALL):
        key = SigningKey.from_seed(seed)
        assert key.public_key == public, f"line {index + 1}: public key"
        assert key.sign(message) == signature, f"line {index + 1}: signature"
        assert verify(public, message, signature), f"line {index + 1}: verify"


def test_vector_signature_does_not_verify_for_the_next_message() -> None:
    for (_, public, _, signature), (_, _, other, _) in zip(ALL, ALL[1:] + ALL[:1], strict=True):
        assert not verify(public, other, signature)


_row = st.sampled_from(ALL)


@settings(max_examples=300, deadline=None)
@given(row=_row, data=st.data())
def test_flipping_any_bit_breaks_verification(
    row: tuple[bytes, bytes, bytes, bytes], data: st.DataObject
) -> None:
    _, public, message, signature = row
    part = data.draw(st.sampled_from(["public", "message", "signature"]))
    if part == "message" and not message:
        message, signature = b"\x00", SigningKey.from_seed(row[0]).sign(b"\x00")
    target = {"public": public, "message": message, "signature": signature}[part]
    bit = data.draw(st.integers(0, len(target) * 8 - 1))
    flipped = bytearray(target)
    flipped[bit // 8] ^= 1 << (bit % 8)
    args = {"public": public, "message": message, "signature": signature, part: bytes(flipped)}
    assert verify(public, message, signature)
    assert not verify(args["public"], args["message"], args["signature"])


@pytest.mark.parametrize(
    "case",
    [
        "short key",
        "long key",
        "short signature",
        "long signature",
        "empty signature",
        "key is not bytes",
        "signature is None",
        "message is str",
        "small-order key (identity point)",
        "key not on the curve",
        "S not reduced mod L",
    ],
)
def test_verify_returns_false_and_never_raises(case: str) -> None:
    key = SigningKey.from_seed(bytes(32))
    message = b"medledger"
    sig = key.sign(message)
    pk = key.public_key
    identity = bytes([1]) + bytes(31)
    not_on_curve = bytes([2]) + bytes(31)  # y = 2 has no x on edwards25519
    # S + L where L is the group order: same value mod L, a non-canonical encoding.
    order = 2**252 + 27742317777372353535851937790883648493
    s_plus_l = (int.from_bytes(sig[32:], "little") + order).to_bytes(32, "little")
    args = {
        "short key": (pk[:31], message, sig),
        "long key": (pk + b"\x00", message, sig),
        "short signature": (pk, message, sig[:63]),
        "long signature": (pk, message, sig + b"\x00"),
        "empty signature": (pk, message, b""),
        "key is not bytes": (pk.hex(), message, sig),
        "signature is None": (pk, message, None),
        "message is str": (pk, "medledger", sig),
        "small-order key (identity point)": (identity, message, identity + bytes(32)),
        "key not on the curve": (not_on_curve, message, sig),
        "S not reduced mod L": (pk, message, sig[:32] + s_plus_l),
    }[case]
    assert verify(pk, message, sig)
    assert verify(*args) is False  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), "0" * 32, None])
def test_signing_key_rejects_a_seed_that_is_not_32_bytes(seed: object) -> None:
    with pytest.raises(InvalidKey) as info:
        SigningKey.from_seed(seed)  # type: ignore[arg-type]
    assert info.value.expected == 32
    assert "Ed25519 seed" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_generated_keys_are_distinct_and_sign() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    assert a != b and a.seed != b.seed and len(a.public_key) == 32
    sig = a.sign(b"x")
    assert len(sig) == 64
    assert verify(a.public_key, b"x", sig)
    assert not verify(b.public_key, b"x", sig)


def test_signing_key_value_semantics_and_repr_hides_the_seed() -> None:
    seed = bytes(range(32))
    key = SigningKey.from_seed(seed)
    assert key == SigningKey(bytearray(seed))
    assert hash(key) == hash(SigningKey(seed))
    assert seed.hex() not in repr(key) and key.public_key.hex() in repr(key)
    with pytest.raises(AttributeError):
        key.extra = 1  # type: ignore[attr-defined]


def test_verify_many_gives_one_verdict_per_item() -> None:
    from medledger.crypto import verify_many

    key = SigningKey.from_seed(bytes(32))
    good = (key.public_key, b"m", key.sign(b"m"))
    bad = (key.public_key, b"n", key.sign(b"m"))
    assert verify_many([good, bad, good]) == b"\x01\x00\x01"
    assert verify_many([]) == b""


def test_verify_rate_measures_a_positive_rate() -> None:
    rate = verify_rate(0.05)
    assert 1_000 < rate < 10_000_000


def test_public_surface() -> None:
    assert sorted(crypto.__all__) == sorted(
        [
            "DEFAULT_SUITE",
            "PUBLIC_KEY_SIZE",
            "SEED_SIZE",
            "SIGNATURE_SIZE",
            "SUITES",
            "Argon2idParams",
            "CryptoError",
            "DecryptionError",
            "EncryptionKey",
            "InvalidKey",
            "KdfParams",
            "Keystore",
            "KeystoreError",
            "ScryptParams",
            "SigningKey",
            "UnknownSuite",
            "WrongPassphrase",
            "default_kdf_params",
            "load_keystore",
            "public_key_size",
            "save_keystore",
            "seal",
            "verify",
            "verify_many",
            "verify_rate",
        ]
    )
    for name in crypto.__all__:
        assert hasattr(crypto, name), name


def test_error_tree() -> None:
    assert issubclass(crypto.InvalidKey, crypto.CryptoError)
    assert issubclass(crypto.UnknownSuite, crypto.CryptoError)
    assert issubclass(crypto.DecryptionError, crypto.CryptoError)
    assert issubclass(crypto.WrongPassphrase, crypto.KeystoreError)
    assert issubclass(crypto.KeystoreError, crypto.CryptoError)
    assert not issubclass(crypto.DecryptionError, ValueError)


def test_crypto_imports_nothing_from_medledger_but_codec() -> None:
    package = Path(crypto.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("medledger"):
                    allowed = name.startswith(("medledger.codec", "medledger.crypto"))
                    assert allowed, f"{source.name} imports {name}"
