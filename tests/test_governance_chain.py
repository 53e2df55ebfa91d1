"""Validator-set changes approved by governance, on CometBFT.

A 4-validator chain (power 10 each). Governance enacts a change for height H; FinalizeBlock
of the height two below returns it as CometBFT validator updates, since CometBFT applies
the updates returned at height h from h + 2. Two nodes (:class:`Pair`, each a store, its
chain and the ABCI application) are fed the same requests and must answer alike. Beside
them, :class:`CometSets` keeps the set CometBFT itself would use at each height (InitChain's
validators, then the updates): at every height it must be the set the block's header names
and that the proposer is looked up in. The set of height h is the one the state committed
at h - 1 gives for h. ``verify_store`` re-checks the sets from the stored proofs, and a
reopened chain knows the same sets.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from medledger.apps import default_registry, governance
from medledger.codec import decode, encode
from medledger.crypto import SigningKey
from medledger.ledger import Block, IntegrityError, Transaction, Validator, ValidatorSet
from medledger.node import Chain, Genesis
from medledger.node.abci import validator_address
from medledger.node.verify import verify_store
from medledger.store import SQLiteStore
from tests.chainutil import AbciChain, T, commit_block, finalize_request

V = [SigningKey.from_seed(bytes([0x90 + i]) * 32) for i in range(4)]
NEW = SigningKey.from_seed(b"\xa0" * 32)
CHAIN = "gov-chain-sets"
START = 1_700_000_000_000
OLD = ValidatorSet.of([Validator(k.public_key, 10, f"v{i}") for i, k in enumerate(V)])
GENESIS = Genesis(chain_id=CHAIN, genesis_time=START, validators=OLD, organisations=())
H = 5  # the effective height of the change in each test


def proposal(kind: str, change: dict[str, Any], effective: int = H) -> dict[str, Any]:
    return {"kind": kind, "change": change, "effective_height": effective}


ADD = proposal("validator_add", {"public_key": NEW.public_key.hex(), "power": 10,
                                 "name": "v4"})
REMOVE = proposal("validator_remove", {"public_key": V[3].public_key.hex()})
POWER = proposal("validator_power", {"public_key": V[0].public_key.hex(), "power": 40})

Powers = dict[bytes, int]


def powers(validators: ValidatorSet) -> Powers:
    return {v.public_key: v.power for v in validators.validators}


class CometSets:
    """The validator set CometBFT uses at each height: InitChain's answer for heights 1
    and 2, then the set of h + 1 with the updates FinalizeBlock(h) returned (power 0
    removes a validator) for h + 2."""

    def __init__(self, initial: Any) -> None:
        first = {u.pub_key.ed25519: u.power for u in initial}
        self.sets: dict[int, Powers] = {1: first, 2: first}
        self.updates: dict[int, list[tuple[bytes, int]]] = {}

    def finalized(self, height: int, updates: Any) -> None:
        changes = [(u.pub_key.ed25519, u.power) for u in updates]
        self.updates[height] = changes
        after = dict(self.sets[height + 1])
        for key, power in changes:
            if power:
                after[key] = power
            else:
                del after[key]
        self.sets[height + 2] = after

    def at(self, height: int) -> Powers:
        return self.sets[height]


class Pair:
    """Two nodes fed the same FinalizeBlock and Commit requests, and CometBFT's sets."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "a.db"
        self.a = AbciChain(self.path, GENESIS)
        self.b = AbciChain(tmp_path / "b.db", GENESIS)
        answers = [n.app.init_chain(T.RequestInitChain(chain_id=CHAIN,
                                                        app_state_bytes=GENESIS.encode()))
                   for n in (self.a, self.b)]
        assert answers[0] == answers[1]
        self.comet = CometSets(answers[0].validators)
        self.nonces: dict[bytes, int] = {}

    def tx(self, key: SigningKey, type_: str, body: dict[str, Any]) -> Transaction:
        n = self.nonces[key.public_key] = self.nonces.get(key.public_key, 0) + 1
        return Transaction.create(key, CHAIN, type_, n, body)

    def step(self, txs: Sequence[Transaction] = (), proposer: SigningKey = V[0]) -> Block:
        """Finalize and commit the next block on both nodes; check that they agree with
        each other, and the header's set with CometBFT's."""
        raws = [t.raw for t in txs]
        height = self.a.chain.height + 1
        answer, block = self.a.finalize_and_commit(raws, proposer=proposer.public_key)
        answer_b, block_b = self.b.finalize_and_commit(raws, proposer=proposer.public_key)
        assert answer == answer_b and block.header == block_b.header
        assert (self.a.chain.tip_hash, self.a.chain.state_root) == (
            self.b.chain.tip_hash, self.b.chain.state_root)
        self.comet.finalized(height, answer.validator_updates)
        assert block.header.validators_hash == self.a.chain.tip_validators.hash()
        assert powers(self.a.chain.tip_validators) == self.comet.at(height)
        assert block.header.proposer == proposer.public_key
        return block

    def close(self) -> None:
        self.a.close()
        self.b.close()


@pytest.fixture
def pair(tmp_path: Path) -> Any:
    p = Pair(tmp_path)
    yield p
    p.close()


def enact(pair: Pair, body: dict[str, Any]) -> None:
    """Heights 1 and 2: an empty block, then the proposal with two approvals (enacted)."""
    pair.step()
    t = pair.tx(V[0], governance.PROPOSE, body)
    approvals = [pair.tx(k, governance.APPROVE, {"proposal": t.tx_id.hex()}) for k in V[1:3]]
    block = pair.step([t, *approvals])
    assert [r.code for r in block.results] == ["ok", "ok", "ok"]


def sets(chain: Chain) -> tuple[ValidatorSet, ValidatorSet]:
    """The set of the tip and the set of the next height."""
    return chain.tip_validators, chain.validators


def reopened(pair: Pair) -> Chain:
    return Chain(pair.a.store, GENESIS, default_registry())


def refused_proposer(node: AbciChain, proposer: SigningKey) -> None:
    """FinalizeBlock of the next height proposed by ``proposer`` is an error, and leaves
    the node able to finalize it from another proposer."""
    height, root = node.chain.height, node.chain.state_root
    with pytest.raises(ValueError, match="not in this height's validator set"):
        node.finalize([], proposer=proposer.public_key)
    assert (node.chain.height, node.chain.state_root) == (height, root)


def verified(pair: Pair) -> None:
    for node in (pair.a, pair.b):
        assert verify_store(node.store, GENESIS).height == node.chain.height


# when CometBFT hears of a change ---------------------------------------------------------------
@pytest.mark.parametrize("effective", [4, H])
def test_a_change_reaches_cometbft_from_the_finalize_two_heights_before(
        pair: Pair, effective: int) -> None:
    """The earliest effective height a proposal may name is two above its block: the
    block that enacts it returns the update then; otherwise a later one does."""
    enact(pair, proposal("validator_add", ADD["change"], effective))
    while pair.a.chain.height < effective + 1:
        pair.step()
    assert {h: u for h, u in pair.comet.updates.items() if u} == {
        effective - 2: [(NEW.public_key, 10)]}
    assert pair.comet.at(effective - 1) == powers(OLD)
    assert pair.comet.at(effective)[NEW.public_key] == 10
    verified(pair)


# adding a validator --------------------------------------------------------------------------
def test_an_added_validator_counts_from_its_height(pair: Pair) -> None:
    enact(pair, ADD)
    new = governance.validators_at(pair.a.chain.view(), H)
    assert len(new.validators) == 5 and new.power_of(NEW.public_key) == 10
    # before H: the old set's hash in headers, and the new key may not propose
    for height in range(3, H):
        assert sets(pair.a.chain) == (OLD, OLD) and sets(reopened(pair)) == (OLD, OLD)
        refused_proposer(pair.a, NEW)
        block = pair.step()
        assert block.header.height == height
        assert block.header.validators_hash == OLD.hash()
    # the tip is H - 1: its own set is the old one, the next height's the new one
    assert sets(pair.a.chain) == (OLD, new) == sets(pair.b.chain) == sets(reopened(pair))
    assert pair.comet.updates[H - 2] == [(NEW.public_key, 10)]
    # from H the new validator proposes, and headers name the new set
    block = pair.step(proposer=NEW)
    assert block.header.validators_hash == new.hash() != OLD.hash()
    assert sets(pair.a.chain) == (new, new) == sets(reopened(pair))
    assert pair.a.chain.committed_value(governance.set_key(H)) == encode(new.to_list())
    begin, _ = pair.a.store.get_block_events(H)
    assert begin is not None
    assert [e for e in decode(begin) if e["type"] == "governance.validators_changed"] == [
        {"type": "governance.validators_changed", "attrs": {
            "hash": new.hash().hex(), "height": str(H), "total_power": "50"}}]
    after = pair.step(proposer=NEW)
    assert after.header.validators_hash == new.hash()
    verified(pair)


# removing a validator, changing power ----------------------------------------------------------
def test_a_removed_validator_no_longer_proposes(pair: Pair) -> None:
    enact(pair, REMOVE)
    while pair.a.chain.height < H - 2:
        pair.step()
    pair.step(proposer=V[3])  # height H - 1: V3 still proposes
    smaller = ValidatorSet.of([v for v in OLD.validators if v.public_key != V[3].public_key])
    assert sets(pair.a.chain) == (OLD, smaller) == sets(reopened(pair))
    assert pair.comet.updates[H - 2] == [(V[3].public_key, 0)]
    refused_proposer(pair.a, V[3])  # height H
    block = pair.step(proposer=V[1])
    assert block.header.validators_hash == smaller.hash()
    assert V[3].public_key not in pair.comet.at(H)
    pair.step()
    assert sets(pair.a.chain) == (smaller, smaller) == sets(reopened(pair))
    verified(pair)


def _report(height: int, offender: SigningKey, offence_height: int) -> Any:
    """FinalizeBlock of ``height`` reporting ``offender``'s duplicate vote at
    ``offence_height``."""
    request = finalize_request(height, [], START + 1000 * height, V[0].public_key)
    report = request.misbehavior.add(type=T.DUPLICATE_VOTE, height=offence_height,
                                     total_voting_power=40)
    report.validator.address = validator_address(offender.public_key)
    report.validator.power = 10
    return request


def test_an_offence_reported_after_its_validator_left_is_weighed_by_the_set_of_its_height(
        pair: Pair) -> None:
    """CometBFT reports a duplicate vote some heights after it was cast: the offender is
    looked up in the set of the offence's height, not the current one."""
    enact(pair, REMOVE)
    while pair.a.chain.height < H:
        pair.step()
    node = pair.a
    node.app.finalize_block(_report(H + 1, V[3], H - 1))  # a validator then
    node.app.commit(T.RequestCommit())
    node.app.finalize_block(_report(H + 2, V[3], H))  # no longer one
    node.app.commit(T.RequestCommit())
    entries = governance.list_evidence(node.chain.view())
    assert [(e["validator"], e["offence_height"]) for e in entries] == [
        (V[3].public_key.hex(), H - 1)]


def test_a_power_change_weighs_from_its_height(pair: Pair) -> None:
    enact(pair, POWER)
    while pair.a.chain.height < H - 1:
        pair.step()
    heavy = governance.validators_at(pair.a.chain.view(), H)
    assert (heavy.power_of(V[0].public_key), heavy.total_power) == (40, 70)
    assert sets(pair.a.chain) == (OLD, heavy)
    assert pair.comet.updates[H - 2] == [(V[0].public_key, 40)]
    block = pair.step()
    assert block.header.validators_hash == heavy.hash()
    assert pair.comet.at(H)[V[0].public_key] == 40
    pair.step()
    verified(pair)
    pair.a.close()
    pair.a = AbciChain(pair.path, GENESIS)  # a restart on the store knows both sets
    assert sets(pair.a.chain) == (heavy, heavy)
    assert pair.a.app.info(T.RequestInfo()).last_block_height == H + 1


def test_a_restart_between_enactment_and_effect_keeps_the_change(pair: Pair) -> None:
    enact(pair, ADD)
    while pair.a.chain.height < H - 1:
        pair.step()
    pair.a.close()
    pair.a = AbciChain(pair.path, GENESIS)  # restarted: CometBFT replays nothing
    new = governance.validators_at(pair.a.chain.view(), H)
    assert sets(pair.a.chain) == (OLD, new) and len(new.validators) == 5
    block = pair.step(proposer=NEW)
    assert block.header.validators_hash == new.hash()
    assert sets(pair.a.chain) == (new, new)
    verified(pair)


# verify_store ------------------------------------------------------------------------------------
def added_store(tmp_path: Path) -> Path:
    """A store whose set grew to five at H, two blocks past it, closed."""
    pair = Pair(tmp_path)
    enact(pair, ADD)
    while pair.a.chain.height < H + 2:
        pair.step()
    verify_store(pair.a.store, GENESIS)
    pair.close()
    return pair.path


def _set_row(db: sqlite3.Connection, value: bytes | None) -> None:
    key = governance.set_key(H)
    if value is None:
        db.execute("DELETE FROM state WHERE key = ?", (key,))
    else:
        db.execute("UPDATE state SET value = ? WHERE key = ?", (value, key))


TAMPERS = {
    "set missing from state": (_set_row, None, f"height {H}: .*not in state"),
    "set in state is another": (_set_row, encode(OLD.to_list()),
                                f"height {H}: .*not the one scheduled"),
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


def test_verify_store_refuses_the_old_sets_hash_after_a_change(pair: Pair) -> None:
    """A chain that ignored an enacted change (a header naming the old set at H) does not
    verify."""
    enact(pair, ADD)
    while pair.a.chain.height < H - 1:
        pair.step()
    chain = pair.a.chain
    chain.validators = OLD  # a node that does not follow governance
    block = commit_block(chain, [])
    assert block.header.validators_hash == OLD.hash()
    with pytest.raises(IntegrityError, match=f"height {H}: validator-set hash"):
        verify_store(chain.store, GENESIS)
