"""A validator checks a block another validator proposed by re-executing it, and accepts
any valid certificate of the previous block; the stores of both verify."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from medledger.apps import default_registry
from medledger.codec import decode, encode
from medledger.crypto import SigningKey
from medledger.ledger import Certificate, IntegrityError, Transaction, Validator, ValidatorSet
from medledger.node import Chain, Genesis
from medledger.node.verify import verify_store
from medledger.store import SQLiteStore

KEYS = [SigningKey.from_seed(bytes([40 + i]) * 32) for i in range(4)]
ADMIN = SigningKey.from_seed(b"\x07" * 32)
CHAIN = "four-chain"
GENESIS = Genesis(
    chain_id=CHAIN, genesis_time=1_700_000_000_000,
    validators=ValidatorSet.of([Validator(k.public_key, 10, f"v{i}") for i, k in enumerate(KEYS)]),
    organisations=({"id": "st-mary", "name": "St Mary's", "role": "hospital",
                    "admins": [ADMIN.public_key.hex()]},))


def anchor(nonce: int) -> Transaction:
    return Transaction.create(ADMIN, CHAIN, "ledger.anchor", nonce,
                              {"digest": nonce.to_bytes(32, "big").hex(), "label": f"d{nonce}"})


def chains(tmp_path: Path) -> tuple[Chain, Chain]:
    return (Chain(SQLiteStore(tmp_path / "a.db"), GENESIS, default_registry()),
            Chain(SQLiteStore(tmp_path / "b.db"), GENESIS, default_registry()))


def cert(chain_block_hash: bytes, height: int, keys: list[SigningKey], time: int) -> Certificate:
    return Certificate.sign(keys, CHAIN, height, chain_block_hash, time)


def test_two_validators_agree_with_different_certificates(tmp_path: Path) -> None:
    a, b = chains(tmp_path)
    block, record = a.build_block([anchor(1), anchor(2)], KEYS[0].public_key)
    rebuilt, record_b = b.check_block(block)
    assert rebuilt.header == block.header
    a.commit(block, record, cert(record.block_hash, 1, KEYS[:3], 1_700_000_001_000))
    b.commit(rebuilt, record_b, cert(record.block_hash, 1, KEYS[1:], 1_700_000_002_000))
    assert a.state_root == b.state_root
    # b proposes height 2, carrying its own certificate; a accepts it
    block2, record2 = b.build_block([anchor(3)], KEYS[1].public_key)
    assert block2.last_commit != a.tip_certificate
    rebuilt2, record2_a = a.check_block(block2)
    a.commit(rebuilt2, record2_a, cert(record2.block_hash, 2, KEYS[:3], 1_700_000_003_000))
    b.commit(block2, record2, cert(record2.block_hash, 2, KEYS[:3], 1_700_000_003_000))
    assert a.tip_hash == b.tip_hash and a.state_root == b.state_root
    verify_store(a.store, GENESIS)
    verify_store(b.store, GENESIS)


def _first(tmp_path: Path) -> tuple[Chain, Chain]:
    a, b = chains(tmp_path)
    block, record = a.build_block([anchor(1)], KEYS[0].public_key)
    c = cert(record.block_hash, 1, KEYS[:3], 1_700_000_001_000)
    a.commit(block, record, c)
    b.commit(*b.check_block(block), c)
    return a, b


def _tampered_header(**change: object):  # type: ignore[no-untyped-def]
    def tamper(block):  # type: ignore[no-untyped-def]
        return replace(block, header=replace(block.header, **change))
    return tamper


TAMPERED = {
    "time not the BFT time": (_tampered_header(time=1), "time"),
    "state root": (_tampered_header(state_root=b"\x01" * 32), "state_root"),
    "results root": (_tampered_header(results_root=b"\x01" * 32), "results_root"),
    "height": (_tampered_header(height=3), "height"),
    "proposer not a validator": (_tampered_header(proposer=ADMIN.public_key), "not a validator"),
    "no certificate of the tip": (lambda blk: replace(blk, last_commit=None), "no certificate"),
    "certificate of too little power": (
        lambda blk: replace(blk, last_commit=Certificate.sign(
            KEYS[:2], CHAIN, 1, blk.last_commit.block_hash, 5)), "2/3"),
}


@pytest.mark.parametrize("tamper,why", TAMPERED.values(), ids=TAMPERED.keys())
def test_a_block_off_the_rules_is_refused_and_changes_nothing(tmp_path: Path, tamper, why) -> None:  # type: ignore[no-untyped-def]
    a, b = _first(tmp_path)
    block, _ = a.build_block([anchor(2)], KEYS[0].public_key)
    root, height = b.state_root, b.height
    with pytest.raises(IntegrityError, match=why):
        b.check_block(tamper(block))
    assert (b.state_root, b.height) == (root, height)
    b.check_block(block)  # the honest block still checks out


def test_a_block_travels_as_canonical_bytes(tmp_path: Path) -> None:
    from medledger.ledger import Block, MalformedError

    a, _ = _first(tmp_path)
    block, _ = a.build_block([anchor(2), anchor(3)], KEYS[0].public_key)
    data = block.encode()
    assert Block.decode(data) == block
    assert Block.decode(data).encode() == data
    for bad in (data[:-1], data.replace(b'"d2"', b'"d9"'), b"[]"):
        with pytest.raises(MalformedError):
            Block.decode(bad)


def test_blocks_as_consensus_values(tmp_path: Path) -> None:
    from medledger.node.mempool import Mempool
    from medledger.node.values import BlockValues

    a, b = _first(tmp_path)
    pool_a, pool_b = Mempool(), Mempool()
    for nonce in (2, 3):
        pool_a.add(anchor(nonce))
    va = BlockValues(a, pool_a, KEYS[0].public_key, max_txs=100, max_bytes=10**6)
    vb = BlockValues(b, pool_b, KEYS[1].public_key, max_txs=100, max_bytes=10**6)
    data = va.propose(2, 0)  # compact: the transactions by id
    block_hash = va.block_hash(data)
    block = va.checked(block_hash)[0]  # type: ignore[index]
    assert decode(data)["tx_ids"] == [t.tx_id.hex() for t in block.txs]
    assert va.block_hash(block.encode()) == block_hash  # the full form is the same value
    # b never saw the transactions: not valid yet (and not remembered as invalid)
    assert vb.missing(decode(data)) == [t.tx_id for t in block.txs]
    assert not vb.valid(2, data)
    vb.add_fetched(list(block.txs))
    assert vb.missing(decode(data)) == []
    assert vb.valid(2, data)  # fetched, not admitted: b verifies their signatures
    assert vb.checked(block_hash)[1].block_hash == block_hash  # type: ignore[index]
    assert vb.valid(2, block.encode())
    assert not vb.valid(3, data)
    assert not vb.valid(2, data[:-2])
    assert vb.block_hash(b"garbage") == bytes(32)
    # a proposal whose transaction carries someone else's signature is not valid
    tx = anchor(4)
    forged = Transaction.from_dict({**tx.to_dict(), "signature": anchor(5).signature.hex()})
    bad_block, _ = a.build_block([forged], KEYS[0].public_key)
    assert not vb.valid(2, bad_block.encode())
    # a compact block whose ids do not match its header's tx root is malformed
    from medledger.node.values import compact

    other, _ = a.build_block([anchor(6)], KEYS[0].public_key)
    vb.add_fetched([anchor(6), anchor(7)])
    tampered = decode(compact(other))
    tampered["tx_ids"] = [anchor(7).tx_id.hex()]
    assert not vb.valid(2, encode(tampered))
