"""Validator-set changes approved by governance take effect in the chain itself.

A 4-validator chain (power 10 each) where every block is built by one chain and re-executed
by a second (``check_block``), both committing the same certificate. The set of height h is
the one the state committed at h - 1 gives for h: the certificate of block h is checked
against it, the header of h names its hash, the proposer of h must be in it; the certificate
of h - 1 carried by block h, and the BFT time of h, are weighed with the set of h - 1.
``verify_store`` re-checks all of it from the stored proofs, and a reopened chain knows the
same sets.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from medledger.apps import default_registry, governance
from medledger.codec import encode
from medledger.crypto import SigningKey
from medledger.ledger import (
    Block,
    Certificate,
    IntegrityError,
    Transaction,
    Validator,
    ValidatorSet,
)
from medledger.node import Chain, Genesis
from medledger.node.verify import verify_store
from medledger.store import SQLiteStore

V = [SigningKey.from_seed(bytes([0x90 + i]) * 32) for i in range(4)]
NEW = SigningKey.from_seed(b"\xa0" * 32)
CHAIN = "gov-chain-sets"
START = 1_700_000_000_000
OLD = ValidatorSet.of([Validator(k.public_key, 10, f"v{i}") for i, k in enumerate(V)])
GENESIS = Genesis(chain_id=CHAIN, genesis_time=START, validators=OLD, organisations=())
H = 5  # the effective height of the change in each test


def proposal(kind: str, change: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "change": change, "effective_height": H}


ADD = proposal("validator_add", {"public_key": NEW.public_key.hex(), "power": 10,
                                 "name": "v4"})
REMOVE = proposal("validator_remove", {"public_key": V[3].public_key.hex()})
POWER = proposal("validator_power", {"public_key": V[0].public_key.hex(), "power": 40})


class Pair:
    """Chain ``a`` builds each block, chain ``b`` re-executes it; both commit it."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "a.db"
        self.a = Chain(SQLiteStore(self.path), GENESIS, default_registry())
        self.b = Chain(SQLiteStore(tmp_path / "b.db"), GENESIS, default_registry())
        self.nonces: dict[bytes, int] = {}

    def tx(self, key: SigningKey, type_: str, body: dict[str, Any]) -> Transaction:
        n = self.nonces[key.public_key] = self.nonces.get(key.public_key, 0) + 1
        return Transaction.create(key, CHAIN, type_, n, body)

    def build(self, txs: list[Transaction] = (), proposer: SigningKey = V[0],  # type: ignore[assignment]
              last_commit: Certificate | None = None) -> tuple[Block, Any]:
        return self.a.build_block(list(txs), proposer.public_key, last_commit=last_commit)

    def commit(self, block: Block, record: Any, cert: Certificate) -> None:
        rebuilt, record_b = self.b.check_block(block)
        assert rebuilt.header == block.header
        self.a.commit(block, record, cert)
        self.b.commit(rebuilt, record_b, cert)
        assert (self.a.tip_hash, self.a.state_root) == (self.b.tip_hash, self.b.state_root)

    def step(self, signers: list[SigningKey], txs: list[Transaction] = ()) -> Block:  # type: ignore[assignment]
        block, record = self.build(txs)
        self.commit(block, record, sign(block, signers))
        return block


def sign(block: Block, keys: list[SigningKey], time: int | None = None) -> Certificate:
    t = block.header.time + 1000 if time is None else time
    return Certificate.sign(keys, CHAIN, block.header.height, block.header.hash(), t)


def staggered(block: Block, times: dict[SigningKey, int]) -> Certificate:
    """A certificate whose signers signed at different times."""
    sigs = []
    for key, t in times.items():
        sigs += Certificate.sign([key], CHAIN, block.header.height, block.header.hash(),
                                 t).signatures
    return Certificate(block.header.height, 0, block.header.hash(),
                       tuple(sorted(sigs, key=lambda s: s.validator)))


def enact(pair: Pair, body: dict[str, Any]) -> None:
    """Heights 1 and 2: an empty block, then the proposal with two approvals (enacted)."""
    pair.step(V[:3])
    t = pair.tx(V[0], governance.PROPOSE, body)
    approvals = [pair.tx(k, governance.APPROVE, {"proposal": t.tx_id.hex()}) for k in V[1:3]]
    block = pair.step(V[:3], [t, *approvals])
    assert [r.code for r in block.results] == ["ok", "ok", "ok"]


def sets(chain: Chain) -> tuple[ValidatorSet, ValidatorSet]:
    return chain.tip_validators, chain.validators


def reopened(pair: Pair) -> Chain:
    return Chain(pair.a.store, GENESIS, default_registry())


def refused(pair: Pair, block: Block, record: Any, cert: Certificate, why: str) -> None:
    height = pair.a.height
    with pytest.raises(IntegrityError, match=why):
        pair.a.commit(block, record, cert)
    assert pair.a.height == height


# adding a validator --------------------------------------------------------------------------
def test_an_added_validator_counts_from_its_height(tmp_path: Path) -> None:
    pair = Pair(tmp_path)
    enact(pair, ADD)
    new = governance.validators_at(pair.a.view(), H)
    assert len(new.validators) == 5 and new.power_of(NEW.public_key) == 10
    # before H: the old set's hash in headers, 3 of 4 commit
    for height in range(3, H):
        assert sets(pair.a) == (OLD, OLD) and sets(reopened(pair)) == (OLD, OLD)
        block = pair.step(V[:3])
        assert block.header.height == height
        assert block.header.validators_hash == OLD.hash()
    # the tip is H - 1: its own set is the old one, the next height's the new one
    assert sets(pair.a) == (OLD, new) == sets(pair.b) == sets(reopened(pair))
    # block H carries a certificate of H - 1, checked against the set of H - 1: 3 of the old
    # 4 is enough (it would not be under the set of H), the new key does not count
    tip = pair.a.tip_header
    with_new = Certificate.sign([V[0], V[1], NEW], CHAIN, H - 1, pair.a.tip_hash, tip.time + 7)
    with pytest.raises(IntegrityError, match="non-validator"):
        pair.b.check_last_commit(with_new)
    carried = Certificate.sign(V[1:], CHAIN, H - 1, pair.a.tip_hash, tip.time + 7)
    assert carried != pair.a.tip_certificate
    block, record = pair.build(last_commit=carried)
    assert block.header.validators_hash == new.hash() != OLD.hash()
    assert block.header.last_commit_hash == carried.hash()
    assert block.header.time == tip.time + 7
    # 3 of the old 4 hold 30 of 50: not more than 2/3 of the set of H; nor 3 of the new 5
    refused(pair, block, record, sign(block, V[:3]), "2/3")
    refused(pair, block, record, sign(block, [V[0], V[1], NEW]), "2/3")
    pair.commit(block, record, sign(block, [*V[:3], NEW]))
    assert pair.a.height == H
    assert sets(pair.a) == (new, new) == sets(reopened(pair))
    assert pair.a.committed_value(governance.set_key(H)) == encode(new.to_list())
    # block H + 1 carries the certificate of H, checked against the set of H: 3 of 5 is not
    # enough, 4 of 5 with the new key is
    tip = pair.a.tip_header
    short = Certificate.sign(V[:3], CHAIN, H, pair.a.tip_hash, tip.time + 5)
    with pytest.raises(IntegrityError, match="2/3"):
        pair.b.check_last_commit(short)
    pair.b.check_last_commit(Certificate.sign([V[1], V[2], V[3], NEW], CHAIN, H,
                                              pair.a.tip_hash, tip.time + 5))
    after = pair.step([V[1], V[2], V[3], NEW])
    assert after.header.validators_hash == new.hash()
    # the new validator may now propose
    block, record = pair.build(proposer=NEW)
    pair.commit(block, record, sign(block, V[:3] + [NEW]))
    verify_store(pair.a.store, GENESIS)
    verify_store(pair.b.store, GENESIS)


# removing a validator, changing power ----------------------------------------------------------
def test_a_removed_validator_no_longer_signs_or_proposes(tmp_path: Path) -> None:
    pair = Pair(tmp_path)
    enact(pair, REMOVE)
    while pair.a.height < H - 2:
        pair.step(V[1:])
    block, record = pair.build(proposer=V[3])  # height H - 1: V3 still proposes
    pair.commit(block, record, sign(block, V[1:]))
    smaller = ValidatorSet.of([v for v in OLD.validators if v.public_key != V[3].public_key])
    assert sets(pair.a) == (OLD, smaller) == sets(reopened(pair))
    block, _ = pair.build(proposer=V[3])  # height H
    with pytest.raises(IntegrityError, match="not a validator"):
        pair.b.check_block(block)
    block, record = pair.build(last_commit=Certificate.sign(
        V[1:], CHAIN, H - 1, pair.a.tip_hash, pair.a.tip_header.time + 3))  # V3's vote counts
    assert block.header.validators_hash == smaller.hash()
    refused(pair, block, record, sign(block, V[1:]), "non-validator")
    refused(pair, block, record, sign(block, V[1:3]), "2/3")  # 20 of 30
    pair.commit(block, record, sign(block, V[:3]))
    with pytest.raises(IntegrityError, match="non-validator"):
        pair.b.check_last_commit(Certificate.sign(V[1:], CHAIN, H, pair.a.tip_hash,
                                                  pair.a.tip_header.time + 3))
    pair.step(V[:3])
    assert sets(pair.a) == (smaller, smaller) == sets(reopened(pair))
    verify_store(pair.a.store, GENESIS)
    verify_store(pair.b.store, GENESIS)


def test_a_power_change_weighs_votes_and_time_from_its_height(tmp_path: Path) -> None:
    pair = Pair(tmp_path)
    enact(pair, POWER)
    while pair.a.height < H - 2:
        pair.step(V[:3])
    heavy = governance.validators_at(pair.a.view(), H)
    assert (heavy.power_of(V[0].public_key), heavy.total_power) == (40, 70)
    # the certificate of H - 1: V0 signs last; by the set of H - 1 the median is V1's time
    block, record = pair.build()
    t = block.header.time
    cert = staggered(block, {V[0]: t + 9000, V[1]: t + 2000, V[2]: t + 1000})
    assert cert.bft_time(OLD) == t + 2000 and cert.bft_time(heavy) == t + 9000
    pair.commit(block, record, cert)
    block, record = pair.build()  # height H
    assert block.header.time == t + 2000
    assert block.header.validators_hash == heavy.hash()
    refused(pair, block, record, sign(block, V[1:]), "2/3")  # 30 of 70
    t = block.header.time
    # V0 and V1 hold 50 of 70; weighed by the set of H, V0's time is the median
    cert = staggered(block, {V[0]: t + 9000, V[1]: t + 1000})
    assert cert.bft_time(heavy) == t + 9000 and cert.bft_time(OLD) == t + 1000
    pair.commit(block, record, cert)
    after = pair.step([V[0], V[1]])
    assert after.header.time == t + 9000
    verify_store(pair.a.store, GENESIS)
    verify_store(pair.b.store, GENESIS)
    # a restart on the store knows both sets
    pair.a.store.close()
    again = Chain(SQLiteStore(pair.path), GENESIS, default_registry())
    assert sets(again) == (heavy, heavy)
    assert again.next_time() == pair.b.next_time()
    again.store.close()


def test_a_restart_between_enactment_and_effect_keeps_the_change(tmp_path: Path) -> None:
    pair = Pair(tmp_path)
    enact(pair, ADD)
    while pair.a.height < H - 1:
        pair.step(V[:3])
    pair.a.store.close()
    again = Chain(SQLiteStore(pair.path), GENESIS, default_registry())
    new = governance.validators_at(again.view(), H)
    assert sets(again) == (OLD, new) and len(new.validators) == 5
    block, record = again.build_block([], V[0].public_key)
    assert block.header.validators_hash == new.hash()
    with pytest.raises(IntegrityError, match="2/3"):
        again.commit(block, record, sign(block, V[:3]))
    again.commit(block, record, sign(block, [*V[:3], NEW]))
    assert sets(again) == (new, new)
    verify_store(again.store, GENESIS)
    again.store.close()


# verify_store ------------------------------------------------------------------------------------
def added_store(tmp_path: Path) -> Path:
    """A store whose set grew to five at H, two blocks past it, closed."""
    pair = Pair(tmp_path)
    enact(pair, ADD)
    while pair.a.height < H + 2:
        pair.step([*V[:3], NEW] if pair.a.height + 1 >= H else V[:3])
    verify_store(pair.a.store, GENESIS)
    pair.a.store.close()
    pair.b.store.close()
    return pair.path


def _set_row(db: sqlite3.Connection, value: bytes | None) -> None:
    key = governance.set_key(H)
    if value is None:
        db.execute("DELETE FROM state WHERE key = ?", (key,))
    else:
        db.execute("UPDATE state SET value = ? WHERE key = ?", (value, key))


def _cert_of_h(db: sqlite3.Connection, value: bytes | None) -> None:
    (block_hash,) = db.execute("SELECT hash FROM blocks WHERE height = ?", (H,)).fetchone()
    cert = Certificate.sign(V[:3], CHAIN, H, block_hash, START + 10**7)
    db.execute("UPDATE blocks SET certificate = ? WHERE height = ?",
               (encode(cert.to_dict()), H))


TAMPERS = {
    "set missing from state": (_set_row, None, f"height {H}: .*not in state"),
    "set in state is another": (_set_row, encode(OLD.to_list()),
                                f"height {H}: .*not the one scheduled"),
    "certificate of H by 3 of the old 4": (_cert_of_h, None, f"height {H}: .*2/3"),
}


@pytest.mark.parametrize("tamper,value,why", TAMPERS.values(), ids=TAMPERS.keys())
def test_verify_store_catches_a_wrong_set(tmp_path: Path, tamper, value, why) -> None:  # type: ignore[no-untyped-def]
    path = added_store(tmp_path)
    with sqlite3.connect(path) as db:
        tamper(db, value)
    db.close()
    store = SQLiteStore(path)
    try:
        with pytest.raises(IntegrityError, match=why):
            verify_store(store, GENESIS)
    finally:
        store.close()


def test_verify_store_refuses_the_old_sets_hash_after_a_change(tmp_path: Path) -> None:
    """A chain that ignored an enacted change (a header naming the old set at H, certified
    by 3 of the old 4) does not verify."""
    pair = Pair(tmp_path)
    enact(pair, ADD)
    while pair.a.height < H - 1:
        pair.step(V[:3])
    pair.a.validators = OLD  # a node that does not follow governance
    block, record = pair.a.build_block([], V[0].public_key)
    assert block.header.validators_hash == OLD.hash()
    pair.a.commit(block, record, sign(block, V[:3]))
    with pytest.raises(IntegrityError, match=f"height {H}: validator-set hash"):
        verify_store(pair.a.store, GENESIS)
