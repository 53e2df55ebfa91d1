"""Keystore files: round trip, wrong passphrase, every field tampered, truncation, file mode."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from medledger.codec import Tag, encode, is_canonical, tagged_hash
from medledger.crypto import (
    Argon2idParams,
    EncryptionKey,
    Keystore,
    KeystoreError,
    ScryptParams,
    SigningKey,
    WrongPassphrase,
    default_kdf_params,
    load_keystore,
    save_keystore,
)
from medledger.crypto.keystore import FORMAT, MAX_FILE_SIZE, VERSION

FAST_SCRYPT = ScryptParams(n=2**4, r=1, p=1)
FAST_ARGON = Argon2idParams(iterations=1, lanes=1, memory_cost=16)
SECRETS = {
    "signing.seed": bytes(range(32)),
    "encryption.key": b"\xff" * 32,
    "encryption.suite": b"mlkem768-x25519",
    "empty": b"",
}
PASS = "correct horse battery staple"


@pytest.fixture(params=[FAST_SCRYPT, FAST_ARGON], ids=["scrypt", "argon2id"])
def kdf(request: pytest.FixtureRequest) -> ScryptParams | Argon2idParams:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def stored(tmp_path: Path, kdf: ScryptParams | Argon2idParams) -> Path:
    path = tmp_path / "member.keystore"
    save_keystore(path, SECRETS, PASS, kdf_params=kdf)
    return path


def _doc(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _write_doc(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc))


def _flip_hex(text: str) -> str:
    return ("1" if text[0] == "0" else "0") + text[1:]


# -- round trips ----------------------------------------------------------------------------


def test_round_trip(stored: Path) -> None:
    assert load_keystore(stored, PASS) == SECRETS
    assert load_keystore(str(stored), PASS) == SECRETS


def test_file_is_canonical_json_with_its_parameters(
    stored: Path, kdf: ScryptParams | Argon2idParams
) -> None:
    data = stored.read_bytes()
    assert data.endswith(b"\n") and is_canonical(data[:-1])
    doc = _doc(stored)
    assert sorted(doc) == ["aead", "check", "ciphertext", "format", "kdf", "version"]
    assert doc["format"] == FORMAT and doc["version"] == VERSION == 1
    assert {k: v for k, v in doc["kdf"].items() if k != "salt"} == kdf.to_dict()
    assert len(bytes.fromhex(doc["kdf"]["salt"])) == 16
    assert doc["aead"]["name"] == "chacha20-poly1305"
    for value in SECRETS.values():
        if value:
            assert value.hex() not in data.decode()


def test_each_save_uses_a_fresh_salt_and_nonce(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    save_keystore(a, SECRETS, PASS, kdf_params=FAST_SCRYPT)
    save_keystore(b, SECRETS, PASS, kdf_params=FAST_SCRYPT)
    assert _doc(a)["kdf"]["salt"] != _doc(b)["kdf"]["salt"]
    assert _doc(a)["aead"]["nonce"] != _doc(b)["aead"]["nonce"]
    assert _doc(a)["ciphertext"] != _doc(b)["ciphertext"]


def test_passphrase_is_nfc_normalised(tmp_path: Path) -> None:
    path = tmp_path / "k"
    save_keystore(path, SECRETS, "caf\u00e9", kdf_params=FAST_SCRYPT)
    assert load_keystore(path, "cafe\u0301") == SECRETS


def test_keystore_class_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "node.keystore"
    keys = Keystore(
        SigningKey.generate(), EncryptionKey.generate("x25519"), extra={"tls.key": b"pem"}
    )
    keys.save(path, PASS, kdf_params=FAST_SCRYPT)
    again = Keystore.load(path, PASS)
    assert again == keys
    assert again.encryption.suite == "x25519"
    assert again.signing.public_key == keys.signing.public_key
    assert load_keystore(path, PASS)["encryption.suite"] == b"x25519"


def test_keystore_generate_uses_the_hybrid_suite_by_default() -> None:
    keys = Keystore.generate()
    assert keys.encryption.suite == "mlkem768-x25519"
    assert Keystore.from_secrets(keys.to_secrets()) == keys


def test_keystore_load_of_a_file_without_member_keys(tmp_path: Path) -> None:
    path = tmp_path / "k"
    save_keystore(path, {"signing.seed": bytes(32)}, PASS, kdf_params=FAST_SCRYPT)
    with pytest.raises(KeystoreError, match=r"does not hold a member's keys.*encryption.key"):
        Keystore.load(path, PASS)


def test_keystore_load_of_an_unknown_suite(tmp_path: Path) -> None:
    path = tmp_path / "k"
    secrets = {**Keystore.generate("x25519").to_secrets(), "encryption.suite": b"rsa"}
    save_keystore(path, secrets, PASS, kdf_params=FAST_SCRYPT)
    with pytest.raises(KeystoreError, match="unknown HPKE suite 'rsa'"):
        Keystore.load(path, PASS)


def test_keystore_extra_may_not_shadow_a_key() -> None:
    with pytest.raises(ValueError, match="reserved"):
        Keystore(SigningKey.generate(), EncryptionKey.generate("x25519"), {"signing.seed": b""})


def test_default_kdf_is_argon2id_as_documented(tmp_path: Path) -> None:
    params = default_kdf_params()
    assert params == Argon2idParams(iterations=3, lanes=4, memory_cost=65536)
    assert ScryptParams() == ScryptParams(n=2**15, r=8, p=1)
    path = tmp_path / "k"
    save_keystore(path, {"a": b"1"}, PASS)
    assert _doc(path)["kdf"]["memory_cost"] == 65536
    assert load_keystore(path, PASS) == {"a": b"1"}


# -- wrong passphrase -------------------------------------------------------------------------


@pytest.mark.parametrize("wrong", ["", "correct horse battery stapl", PASS.upper(), PASS + " "])
def test_wrong_passphrase(stored: Path, wrong: str) -> None:
    with pytest.raises(WrongPassphrase) as info:
        load_keystore(stored, wrong)
    assert str(info.value) == f"wrong passphrase for keystore {stored}"
    assert info.value.path == str(stored)
    assert isinstance(info.value, KeystoreError)


# -- tampering --------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(*keys: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return mutate


def _edit(*keys: str, change: Callable[[Any], Any]) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = change(target[keys[-1]])

    return mutate


def _drop(*keys: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return mutate


# Changes no one can tell from a wrong passphrase: they change the derived key.
LOOKS_LIKE_WRONG_PASSPHRASE: dict[str, Mutation] = {
    "kdf.salt flipped": _edit("kdf", "salt", change=_flip_hex),
    "check flipped": _edit("check", change=_flip_hex),
}
LOOKS_LIKE_WRONG_PASSPHRASE_SCRYPT: dict[str, Mutation] = {
    "kdf.n halved": _edit("kdf", "n", change=lambda n: n // 2),
    "kdf.r raised": _edit("kdf", "r", change=lambda r: r + 1),
    "kdf.p raised": _edit("kdf", "p", change=lambda p: p + 1),
}
LOOKS_LIKE_WRONG_PASSPHRASE_ARGON: dict[str, Mutation] = {
    "kdf.iterations raised": _edit("kdf", "iterations", change=lambda t: t + 1),
    "kdf.lanes raised": _edit("kdf", "lanes", change=lambda p: p + 1),
    "kdf.memory_cost raised": _edit("kdf", "memory_cost", change=lambda m: m + 8),
}

# Every other change is reported as a damaged file, with what is wrong.
DAMAGED: dict[str, tuple[Mutation, str]] = {
    "format changed": (_set("format", value="other"), "not a medledger keystore"),
    "format dropped": (_drop("format"), "not a medledger keystore"),
    "version 2": (_set("version", value=2), "unsupported keystore version 2"),
    "version as string": (_set("version", value="1"), "version must be int"),
    "unknown top-level field": (_set("note", value="x"), "unknown field note"),
    "ciphertext dropped": (_drop("ciphertext"), "missing field ciphertext"),
    "ciphertext flipped": (_edit("ciphertext", change=_flip_hex), "authentication failed"),
    "ciphertext cut by a byte": (_edit("ciphertext", change=lambda c: c[:-2]), "authentication"),
    "ciphertext upper case": (_edit("ciphertext", change=str.upper), "lower-case hex"),
    "ciphertext odd length": (_edit("ciphertext", change=lambda c: c[:-1]), "lower-case hex"),
    "ciphertext empty": (_set("ciphertext", value=""), "ciphertext must be 16 to"),
    "aead.name changed": (_set("aead", "name", value="aes-256-gcm"), "unsupported aead"),
    "aead.nonce flipped": (_edit("aead", "nonce", change=_flip_hex), "authentication failed"),
    "aead.nonce short": (_edit("aead", "nonce", change=lambda n: n[:-2]), "must be 12 bytes"),
    "aead.extra field": (_set("aead", "tag", value="00"), "unknown field aead.tag"),
    "aead not an object": (_set("aead", value=[]), "aead must be dict"),
    "kdf.name unknown": (_set("kdf", "name", value="pbkdf2"), "unsupported kdf 'pbkdf2'"),
    "kdf.salt dropped": (_drop("kdf", "salt"), "missing field kdf.salt"),
    "kdf.salt short": (_set("kdf", "salt", value="00"), "kdf.salt must be 16 to 64 bytes"),
    "kdf.extra field": (_set("kdf", "pepper", value=1), "unknown field kdf.pepper"),
    "check short": (_edit("check", change=lambda c: c[:-2]), "check must be 32 bytes"),
    "check not a string": (_set("check", value=None), "check must be str"),
}
DAMAGED_SCRYPT: dict[str, tuple[Mutation, str]] = {
    "kdf.n huge": (_set("kdf", "n", value=2**30), "out of range"),
    "kdf.n not a power of two": (_set("kdf", "n", value=24), "power of two"),
    "kdf.r zero": (_set("kdf", "r", value=0), "out of range"),
    "kdf.name switched": (_set("kdf", "name", value="argon2id"), "missing field kdf."),
}
DAMAGED_ARGON: dict[str, tuple[Mutation, str]] = {
    "kdf.memory_cost huge": (_set("kdf", "memory_cost", value=2**40), "out of range"),
    "kdf.iterations zero": (_set("kdf", "iterations", value=0), "out of range"),
    "kdf.lanes as string": (_set("kdf", "lanes", value="1"), "kdf.lanes must be int"),
}


def _tampered(tmp_path: Path, kdf: ScryptParams | Argon2idParams, mutate: Mutation) -> Path:
    path = tmp_path / "tampered.keystore"
    save_keystore(path, SECRETS, PASS, kdf_params=kdf)
    doc = _doc(path)
    mutate(doc)
    _write_doc(path, doc)
    return path


def _params(kdf_cases: list[tuple[ScryptParams | Argon2idParams, dict[str, Any]]]) -> list[Any]:
    return [
        pytest.param(kdf, case, id=f"{kdf.name}: {name}")
        for kdf, cases in kdf_cases
        for name, case in cases.items()
    ]


@pytest.mark.parametrize(
    ("kdf", "mutate"),
    _params(
        [
            (FAST_SCRYPT, LOOKS_LIKE_WRONG_PASSPHRASE | LOOKS_LIKE_WRONG_PASSPHRASE_SCRYPT),
            (FAST_ARGON, LOOKS_LIKE_WRONG_PASSPHRASE | LOOKS_LIKE_WRONG_PASSPHRASE_ARGON),
        ]
    ),
)
def test_tampered_kdf_input_reads_as_wrong_passphrase(
    tmp_path: Path, kdf: ScryptParams | Argon2idParams, mutate: Mutation
) -> None:
    path = _tampered(tmp_path, kdf, mutate)
    with pytest.raises(WrongPassphrase, match=re.escape(f"wrong passphrase for keystore {path}")):
        load_keystore(path, PASS)


@pytest.mark.parametrize(
    ("kdf", "case"),
    _params([(FAST_SCRYPT, DAMAGED | DAMAGED_SCRYPT), (FAST_ARGON, DAMAGED | DAMAGED_ARGON)]),
)
def test_tampered_field_is_reported_as_a_damaged_file(
    tmp_path: Path, kdf: ScryptParams | Argon2idParams, case: tuple[Mutation, str]
) -> None:
    mutate, reason = case
    path = _tampered(tmp_path, kdf, mutate)
    with pytest.raises(KeystoreError) as info:
        load_keystore(path, PASS)
    assert not isinstance(info.value, WrongPassphrase)
    assert str(info.value).startswith(f"keystore {path}: ")
    assert reason in info.value.reason
    assert info.value.path == str(path)


def test_ciphertext_from_another_file_fails(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    save_keystore(a, {"x": b"1"}, PASS, kdf_params=FAST_SCRYPT)
    save_keystore(b, {"x": b"2"}, PASS, kdf_params=FAST_SCRYPT)
    doc = _doc(a)
    doc["ciphertext"] = _doc(b)["ciphertext"]
    _write_doc(a, doc)
    with pytest.raises(KeystoreError, match="authentication failed"):
        load_keystore(a, PASS)


def test_format_as_documented(stored: Path, kdf: ScryptParams | Argon2idParams) -> None:
    # The module docstring is the spec: key = KDF(NFC passphrase, salt)[:32], check = the
    # keystore-domain hash of the other 32 bytes, AD = canonical header without ciphertext.
    doc = _doc(stored)
    stretched = kdf.derive(PASS.encode(), bytes.fromhex(doc["kdf"]["salt"]), 64)
    assert tagged_hash(Tag.KEYSTORE, stretched[32:]).hex() == doc["check"]
    aead = ChaCha20Poly1305(stretched[:32])
    nonce, ciphertext = bytes.fromhex(doc["aead"]["nonce"]), bytes.fromhex(doc["ciphertext"])
    header = encode({k: v for k, v in doc.items() if k != "ciphertext"})
    plaintext = aead.decrypt(nonce, ciphertext, header)
    assert plaintext == encode({"secrets": {k: v.hex() for k, v in SECRETS.items()}})
    with pytest.raises(InvalidTag):
        aead.decrypt(nonce, ciphertext, b"")


def test_reformatted_json_still_loads(stored: Path) -> None:
    stored.write_text(json.dumps(_doc(stored), indent=2, sort_keys=False))
    assert load_keystore(stored, PASS) == SECRETS


# -- truncated, missing, not a keystore --------------------------------------------------------


TRUNCATIONS: dict[str, Callable[[int], int]] = {
    "empty": lambda size: 0,
    "one byte": lambda size: 1,
    "40 bytes": lambda size: 40,
    "half": lambda size: size // 2,
    "all but the closing brace": lambda size: size - 2,
}


@pytest.mark.parametrize("keep", list(TRUNCATIONS))
def test_truncated_file(stored: Path, keep: str) -> None:
    data = stored.read_bytes()
    stored.write_bytes(data[: TRUNCATIONS[keep](len(data))])
    with pytest.raises(KeystoreError) as info:
        load_keystore(stored, PASS)
    assert not isinstance(info.value, WrongPassphrase)
    assert str(stored) in str(info.value)
    assert "truncated or corrupt" in info.value.reason


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfe not utf-8", "truncated or corrupt"),
        (b"[1, 2]", "top level is a JSON list"),
        (b'{"format": "medledger-keystore", "version": 1.5}', "truncated or corrupt"),
        (b'{"format": "medledger-keystore"}', "missing field version"),
        (b'{"a": 1, "a": 2}', "truncated or corrupt"),
    ],
)
def test_not_a_keystore(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "k"
    path.write_bytes(content)
    with pytest.raises(KeystoreError) as info:
        load_keystore(path, PASS)
    assert reason in info.value.reason and str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.keystore"
    with pytest.raises(
        KeystoreError, match=re.escape(f"keystore {path}: cannot read: No such file")
    ):
        load_keystore(path, PASS)


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b" " * (MAX_FILE_SIZE + 1))
    with pytest.raises(KeystoreError, match="larger than"):
        load_keystore(path, PASS)


# -- writing ---------------------------------------------------------------------------------


def test_file_mode_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "k"
    old = os.umask(0)
    try:
        save_keystore(path, SECRETS, PASS, kdf_params=FAST_SCRYPT)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_overwrite_replaces_a_world_readable_file_and_leaves_no_temp_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "k"
    path.write_text("old")
    path.chmod(0o644)
    save_keystore(path, SECRETS, PASS, kdf_params=FAST_SCRYPT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keystore(path, PASS) == SECRETS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


def test_failed_write_leaves_the_old_file_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "k"
    save_keystore(path, {"v": b"old"}, PASS, kdf_params=FAST_SCRYPT)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(
        KeystoreError, match=re.escape(f"keystore {path}: cannot write: No space left")
    ):
        save_keystore(path, {"v": b"new"}, PASS, kdf_params=FAST_SCRYPT)
    monkeypatch.undo()
    assert load_keystore(path, PASS) == {"v": b"old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


def test_write_into_a_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "k"
    with pytest.raises(KeystoreError, match="cannot write"):
        save_keystore(path, SECRETS, PASS, kdf_params=FAST_SCRYPT)


@pytest.mark.parametrize(
    ("secrets", "passphrase", "error", "match"),
    [
        ({"a": b"1"}, "", ValueError, "non-empty"),
        ({"": b"1"}, PASS, ValueError, "secret name ''"),
        ({"has space": b"1"}, PASS, ValueError, "secret name 'has space'"),
        ({"caf\u00e9": b"1"}, PASS, ValueError, "secret name"),
        ({"x" * 65: b"1"}, PASS, ValueError, "secret name"),
        ({"a": "text"}, PASS, TypeError, "secret 'a' must be bytes"),
    ],
)
def test_save_refuses_bad_input(
    tmp_path: Path, secrets: dict[str, Any], passphrase: str, error: type, match: str
) -> None:
    path = tmp_path / "k"
    with pytest.raises(error, match=match):
        save_keystore(path, secrets, passphrase, kdf_params=FAST_SCRYPT)
    assert not path.exists()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ScryptParams(n=3), "power of two"),
        (lambda: ScryptParams(n=2**21), "n must be"),
        (lambda: ScryptParams(r=0), "r must be"),
        (lambda: Argon2idParams(lanes=4, memory_cost=16), "memory_cost must be"),
        (lambda: Argon2idParams(iterations=0), "iterations must be"),
    ],
)
def test_kdf_params_check_themselves(make: Callable[[], Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()
