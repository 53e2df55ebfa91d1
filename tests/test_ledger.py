"""Transactions, headers and validator sets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.codec import encode
from medledger.crypto import SigningKey
from medledger.ledger import (
    Header,
    MalformedError,
    Transaction,
    Validator,
    ValidatorSet,
)

KEY = SigningKey.from_seed(bytes(range(32)))


def anchor(nonce: int = 1, chain: str = "c1") -> Transaction:
    return Transaction.create(KEY, chain, "ledger.anchor", nonce,
                              {"digest": "ab" * 32, "label": "x"})


def test_signed_transaction_verifies_and_round_trips() -> None:
    tx = anchor()
    assert tx.signature_valid()
    again = Transaction.decode(tx.raw)
    assert again == tx
    assert again.tx_id == tx.tx_id
    assert Transaction.decode(b" " + tx.raw + b"\n").tx_id == tx.tx_id  # whitespace is not identity


@pytest.mark.parametrize("field,value", [
    ("nonce", 2), ("chain_id", "c2"), ("type", "ledger.other"),
    ("body", {"digest": "cd" * 32, "label": "x"}), ("sender", SigningKey.generate().public_key.hex()),
])
def test_any_changed_field_breaks_the_signature(field: str, value: object) -> None:
    data = anchor().to_dict()
    data[field] = value
    assert not Transaction.from_dict(data).signature_valid()


def test_signature_is_bound_to_chain_id_by_sign_bytes() -> None:
    assert anchor(chain="c1").sign_bytes() != anchor(chain="c2").sign_bytes()
    assert anchor().sign_bytes().startswith(b"medledger:tx-sign\x00")


MALFORMED = {
    "missing signature": lambda d: d.pop("signature"),
    "extra field": lambda d: d.update(extra=1),
    "nonce zero": lambda d: d.update(nonce=0),
    "nonce string": lambda d: d.update(nonce="1"),
    "upper-case hex": lambda d: d.update(sender=d["sender"].upper()),
    "short sender": lambda d: d.update(sender="ab"),
    "body not object": lambda d: d.update(body=[1]),
    "bad type": lambda d: d.update(type="Anchor"),
    "bad chain id": lambda d: d.update(chain_id="a b"),
    "float in body": lambda d: d.update(body={"x": 1.5}),
}


@pytest.mark.parametrize("mutate", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_envelopes_are_refused(mutate: object) -> None:
    data = anchor().to_dict()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(MalformedError):
        Transaction.from_dict(data)


def test_oversized_transaction_is_refused() -> None:
    data = anchor().to_dict()
    data["body"] = {"label": "x" * 70_000}
    with pytest.raises(MalformedError, match="larger than"):
        Transaction.from_dict(data)


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_decode_never_raises_anything_but_malformed(data: bytes) -> None:
    try:
        Transaction.decode(data)
    except MalformedError:
        pass


def header(**changes: object) -> Header:
    fields = dict(chain_id="c1", height=3, time=1000, prev_hash=b"\x01" * 32, tx_root=b"\x02" * 32,
                  tx_count=2, results_root=b"\x03" * 32, state_root=b"\x04" * 32,
                  history_root=b"\x05" * 32, validators_hash=b"\x06" * 32,
                  last_commit_hash=b"\x07" * 32, proposer=b"\x08" * 32)
    fields.update(changes)
    return Header(**fields)  # type: ignore[arg-type]


def test_header_hash_commits_to_every_field() -> None:
    base = header()
    assert Header.from_dict(base.to_dict()) == base
    changed = [header(height=4), header(time=1001), header(prev_hash=b"\x09" * 32),
               header(tx_root=b"\x09" * 32), header(tx_count=3), header(state_root=b"\x09" * 32),
               header(history_root=b"\x09" * 32), header(validators_hash=b"\x09" * 32),
               header(last_commit_hash=b"\x09" * 32), header(results_root=b"\x09" * 32),
               header(proposer=b"\x09" * 32), header(chain_id="c2")]
    hashes = {h.hash() for h in changed}
    assert len(hashes) == len(changed) and base.hash() not in hashes


KEYS = [SigningKey.from_seed(bytes([i]) * 32) for i in range(4)]
VSET = ValidatorSet.of([Validator(k.public_key, 10, f"v{i}") for i, k in enumerate(KEYS)])


def test_validator_set_hash_is_order_independent_and_power_sensitive() -> None:
    reordered = ValidatorSet.of(list(reversed(VSET.validators)))
    assert reordered.hash() == VSET.hash()
    changed = ValidatorSet.of([Validator(v.public_key, v.power + (i == 0), v.name)
                               for i, v in enumerate(VSET.validators)])
    assert changed.hash() != VSET.hash()
    assert encode(VSET.to_list())


@given(st.dictionaries(st.text(alphabet="abcsignature\"", max_size=10),
                       st.text(max_size=20) | st.integers(0, 10**6), max_size=5),
       st.integers(1, 10**9))
@settings(max_examples=200)
def test_sign_bytes_cut_from_raw_equal_a_fresh_encoding(body: dict[str, object], nonce: int) -> None:
    from medledger.ledger import tx_sign_bytes

    t = Transaction.create(KEY, "c1", "ledger.anchor", nonce, body)
    assert t.sign_bytes() == tx_sign_bytes("c1", "ledger.anchor", KEY.public_key, nonce, body)
    assert t.signature_valid()
