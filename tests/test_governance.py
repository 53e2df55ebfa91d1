"""Governance (validator-set changes, organisation admission) and the evidence of the
misbehavior CometBFT reports.

The chain has four validators of power 10 each, so a proposal needs the approvals of three
(30 > 2/3 of 40); two (20) are not enough. It runs on a local chain (``tests/localchain.py``):
transactions are admitted by CheckTx and blocks decided through PrepareProposal,
ProcessProposal, FinalizeBlock and Commit, each height's commit signed by the validators
CometBFT's validator updates give it (the proposer must be one of the set the application
holds for that height, or FinalizeBlock refuses the block). One block per call, with no empty
block after it, so that heights are the test's to count.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medledger.apps import BlockContext, Rejected, default_registry, governance
from medledger.codec import decode, encode
from medledger.crypto import EncryptionKey, SigningKey
from medledger.ledger import Transaction, Validator, ValidatorSet
from medledger.node import Genesis, NodeConfig
from medledger.node.chain import nonce_key
from medledger.state import Overlay, ReadOnly
from medledger.store import SQLiteStore
from tests.localchain import LocalNode as Node

V = [SigningKey.from_seed(bytes([0x40 + i]) * 32) for i in range(4)]
NEW_VALIDATOR = SigningKey.from_seed(b"\x50" * 32)
ADMIN = SigningKey.from_seed(b"\x02" * 32)
NEW_ADMIN = SigningKey.from_seed(b"\x60" * 32)
STRANGER = SigningKey.from_seed(b"\x70" * 32)
KNOWN = [*V, NEW_VALIDATOR, ADMIN, NEW_ADMIN, STRANGER]
CHAIN = "gov-chain"
START = 1_700_000_000_000


def genesis(validators: list[SigningKey] = V) -> Genesis:
    return Genesis(
        chain_id=CHAIN, genesis_time=START,
        validators=ValidatorSet.of([Validator(k.public_key, 10, f"v{i}")
                                    for i, k in enumerate(validators)]),
        organisations=({"id": "st-mary", "name": "St Mary's", "role": "hospital",
                        "admins": [ADMIN.public_key.hex()]},))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(SQLiteStore(tmp_path / "chain.db"), genesis(), V[0], NodeConfig(),
             keys=[*V[1:], NEW_VALIDATOR], proof_blocks=False)
    produce(n)  # height 1: genesis state committed
    yield n
    n.close()


# helpers ----------------------------------------------------------------------------------
class Nonces:
    """The next nonce of each key."""

    def __init__(self) -> None:
        self._last: dict[bytes, int] = {}

    def tx(self, key: SigningKey, type_: str, body: dict[str, Any]) -> Transaction:
        n = self._last[key.public_key] = self._last.get(key.public_key, 0) + 1
        return Transaction.create(key, CHAIN, type_, n, body)

    def forget(self, key: SigningKey) -> None:
        """The last transaction of ``key`` was refused: its nonce is free again."""
        self._last[key.public_key] -= 1


def produce(node: Node, signers: list[SigningKey] | None = None) -> list[str]:
    """Commit the mempool as the next block, signed by ``signers`` (by default every key
    here that is a validator of that height); the result codes."""
    absent = [] if signers is None else [
        k.public_key for k in [*V, NEW_VALIDATOR] if k not in signers]
    block = node.local.commit_block(absent=absent)
    return ["ok" if r.code == 0 else r.codespace for r in block.results]


def advance_to(node: Node, height: int) -> None:
    while node.chain.height < height:
        produce(node)


def next_in_line(node: Node, t: Transaction) -> Transaction:
    """``t`` signed again with its sender's next nonce, when a refusal before it left a gap
    (a refused transaction does not use up its nonce, and the proposer holds a transaction
    after a gap back for a few heights, waiting for the one before it)."""
    after = node.chain.last_nonce(t.sender) + 1
    key = next((k for k in KNOWN if k.public_key == t.sender), None)
    if t.nonce <= after or key is None:
        return t
    return Transaction.create(key, t.chain_id, t.type, after, t.body)


def run(node: Node, t: Transaction) -> str:
    """Admit and commit ``t`` alone; its code. A refusal is checked twice: at admission
    (nothing enters the mempool) and in a block, where it must write only its nonce."""
    t = next_in_line(node, t)
    submitted = node.submit(t)
    if submitted.accepted:
        return produce(node)[0]
    root = node.chain.state_root
    results, writes, _ = node.chain.execute([t], node.chain.next_context())
    _, empty_block, _ = node.chain.execute([], node.chain.next_context())  # begin_block's writes
    assert results[0].code == submitted.code, "admission and execution disagree"
    assert writes == {**empty_block, nonce_key(t.sender): writes[nonce_key(t.sender)]}, \
        "a refused transaction wrote state"
    assert len(node.mempool) == 0 and node.chain.state_root == root
    return submitted.code


def state(node: Node, key: str) -> Any:
    raw = node.chain.committed_value(key)
    return None if raw is None else decode(raw)


def keys_at(node: Node, height: int) -> list[bytes]:
    return [v.public_key for v in governance.validators_at(node.chain.view(), height).validators]


def propose(kind: str, change: dict[str, Any], effective: int) -> dict[str, Any]:
    return {"kind": kind, "change": change, "effective_height": effective}


def add(key: SigningKey, power: int = 10) -> dict[str, Any]:
    return {"public_key": key.public_key.hex(), "power": power, "name": "new"}


def remove(key: SigningKey, **extra: str) -> dict[str, Any]:
    return {"public_key": key.public_key.hex(), **extra}


def approve(proposal_id: str) -> dict[str, Any]:
    return {"proposal": proposal_id}


def org(org_id: str = "newco", admin: SigningKey = NEW_ADMIN) -> dict[str, Any]:
    return {"id": org_id, "name": "New Co", "role": "pharmacy",
            "admins": [admin.public_key.hex()]}


def member(key: SigningKey, org_id: str) -> dict[str, Any]:
    return {"org": org_id, "key": key.public_key.hex(), "role": "pharmacist", "name": "P",
            "enc_key": EncryptionKey.generate("x25519").public_bytes().hex(),
            "enc_suite": "x25519"}


def double_vote(key: SigningKey, height: int = 1, power: int = 10) -> Any:
    """CometBFT's report (an ABCI ``Misbehavior``) of ``key`` voting twice at ``height``."""
    from medledger.node.abci import validator_address
    from medledger.node.abci.wire import abci_types

    types = abci_types()
    report = types.Misbehavior(type=types.DUPLICATE_VOTE, height=height,
                               total_voting_power=40)
    report.validator.address = validator_address(key.public_key)
    report.validator.power = power
    report.time.seconds = START // 1000 + height
    return report


def report(node: Node, *offences: Any) -> str:
    """Commit the next block (empty) with CometBFT's ``offences``; the hash hex of the
    evidence the first one became, if it was recorded."""
    before = {e["hash"] for e in governance.list_evidence(node.chain.view(), limit=1000)}
    node.local.commit_block(misbehavior=offences)
    added = [e["hash"] for e in governance.list_evidence(node.chain.view(), limit=1000)
             if e["hash"] not in before]
    return added[0] if added else ""


# genesis ----------------------------------------------------------------------------------
def test_genesis_writes_the_first_validator_set(node: Node) -> None:
    assert state(node, "validators/current") == genesis().validators.to_list()
    assert genesis().state_writes()["validators/current"] == encode(
        genesis().validators.to_list())
    assert keys_at(node, 10**6) == sorted(k.public_key for k in V)


# the 2/3 rule and effective heights -------------------------------------------------------
def test_add_takes_effect_at_the_named_height_and_not_before(node: Node) -> None:
    n = Nonces()
    t = n.tx(V[0], governance.PROPOSE, propose("validator_add", add(NEW_VALIDATOR), 8))
    pid = t.tx_id.hex()
    steps = [
        ("the proposer's own approval (10 of 40) is not enough", t, "ok", "open"),
        ("a second approval (20 of 40) is not enough",
         n.tx(V[1], governance.APPROVE, approve(pid)), "ok", "open"),
        ("a third approval (30 of 40) passes it",
         n.tx(V[2], governance.APPROVE, approve(pid)), "ok", "approved"),
        ("approving a passed proposal", n.tx(V[3], governance.APPROVE, approve(pid)),
         "closed", "approved"),
    ]
    for name, tx, code, status in steps:
        assert run(node, tx) == code, name
        assert state(node, f"governance/proposal/{pid}")["status"] == status, name
    entry = state(node, f"governance/proposal/{pid}")
    assert entry["approvals"] == sorted(k.public_key.hex() for k in V[:3])
    assert entry["proposer"] == V[0].public_key.hex() and entry["effective_height"] == 8
    assert state(node, "validators/schedule") == [8]
    assert NEW_VALIDATOR.public_key not in keys_at(node, 7)
    assert NEW_VALIDATOR.public_key in keys_at(node, 8)
    # the chain's own rules follow the set in force: the new key may propose from 8 on
    advance_to(node, 6)
    probe = propose("validator_power", {"public_key": V[1].public_key.hex(), "power": 20}, 20)
    assert run(node, n.tx(NEW_VALIDATOR, governance.PROPOSE, probe)) == "not_validator"  # block 7
    advance_to(node, 7)
    assert run(node, n.tx(NEW_VALIDATOR, governance.PROPOSE, probe)) == "ok"  # block 8


def test_begin_block_promotes_the_pending_set_at_its_height(node: Node) -> None:
    n = Nonces()
    t = n.tx(V[0], governance.PROPOSE, propose("validator_remove", remove(V[3]), 6))
    for tx in [t, n.tx(V[1], governance.APPROVE, approve(t.tx_id.hex())),
               n.tx(V[2], governance.APPROVE, approve(t.tx_id.hex()))]:
        assert run(node, tx) == "ok"
    committed = node.chain.view()
    before = Overlay(committed)
    assert governance.begin_block(before, BlockContext(CHAIN, 5, START)) is None
    assert before.writes == {}
    assert governance.validators_at(before, 5) == genesis().validators
    for height in (6, 9):  # at its height, or at the first block after it the node runs
        view = Overlay(committed)
        result = governance.begin_block(view, BlockContext(CHAIN, height, START))
        assert result is not None
        assert [v.public_key for v in result.validators] == sorted(k.public_key for k in V[:3])
        assert view.get("validators/current") == result.to_list()
        assert view.get("validators/pending/0000000000000006") is None
        assert view.get("validators/schedule") is None
        assert governance.validators_at(view, height) == result
        assert governance.begin_block(view, BlockContext(CHAIN, height + 1, START)) is None


def test_power_change_then_two_validators_hold_more_than_two_thirds(node: Node) -> None:
    n = Nonces()
    boost = n.tx(V[0], governance.PROPOSE, propose(
        "validator_power", {"public_key": V[0].public_key.hex(), "power": 40}, 6))
    for tx in [boost, n.tx(V[1], governance.APPROVE, approve(boost.tx_id.hex())),
               n.tx(V[2], governance.APPROVE, approve(boost.tx_id.hex()))]:
        assert run(node, tx) == "ok"
    at = governance.validators_at(node.chain.view(), 6)
    assert (at.power_of(V[0].public_key), at.total_power) == (40, 70)
    assert governance.validators_at(node.chain.view(), 5).power_of(V[0].public_key) == 10
    advance_to(node, 5)
    # from height 6: V0 (40) + V1 (10) = 50 > 2/3 of 70; V0 alone is not
    t = n.tx(V[0], governance.PROPOSE, propose("validator_remove", remove(V[3]), 20))
    assert run(node, t) == "ok"
    assert state(node, f"governance/proposal/{t.tx_id.hex()}")["status"] == "open"
    assert run(node, n.tx(V[1], governance.APPROVE, approve(t.tx_id.hex()))) == "ok"
    assert state(node, f"governance/proposal/{t.tx_id.hex()}")["status"] == "approved"
    assert V[3].public_key not in keys_at(node, 20)
    # the later scheduled change was built on the earlier one
    assert governance.validators_at(node.chain.view(), 20).power_of(V[0].public_key) == 40


def test_a_change_applies_to_sets_already_scheduled_after_it(node: Node) -> None:
    n = Nonces()
    late = n.tx(V[0], governance.PROPOSE, propose("validator_remove", remove(V[3]), 30))
    early = n.tx(V[0], governance.PROPOSE, propose("validator_add", add(NEW_VALIDATOR), 20))
    for pid in (late.tx_id.hex(), early.tx_id.hex()):
        tx = late if pid == late.tx_id.hex() else early
        assert run(node, tx) == "ok"
        for k in V[1:3]:
            assert run(node, n.tx(k, governance.APPROVE, approve(pid))) == "ok"
    assert state(node, "validators/schedule") == [20, 30]
    assert NEW_VALIDATOR.public_key in keys_at(node, 30)  # not lost at the later height
    assert V[3].public_key in keys_at(node, 20) and V[3].public_key not in keys_at(node, 30)


def test_single_validator_enacts_alone() -> None:
    view = Overlay(ReadOnly({"validators/current": encode(
        ValidatorSet.of([Validator(V[0].public_key, 10, "v0")]).to_list())}.get))
    registry = default_registry()
    ctx = BlockContext(CHAIN, 5, START)
    alone = Transaction.create(V[0], CHAIN, governance.PROPOSE, 1,
                               propose("validator_remove", remove(V[0]), 7))
    with pytest.raises(Rejected) as e:
        registry.apply(view.child(), alone, ctx)
    assert e.value.code == "empty_set"
    t = Transaction.create(V[0], CHAIN, governance.PROPOSE, 2,
                           propose("validator_add", add(V[1]), 7))
    registry.apply(view, t, ctx)
    assert view.get(f"governance/proposal/{t.tx_id.hex()}")["status"] == "approved"
    assert len(governance.validators_at(view, 7).validators) == 2
    assert len(governance.validators_at(view, 6).validators) == 1


@pytest.mark.parametrize("powers, status", [
    pytest.param((20, 10), "open", id="exactly 2/3 is not enough"),
    pytest.param((21, 10), "approved", id="just above 2/3 passes"),
])
def test_more_than_two_thirds_means_strictly_more(powers: tuple[int, int], status: str) -> None:
    current = ValidatorSet.of([Validator(k.public_key, p, "v") for k, p in zip(V, powers)])
    view = Overlay(ReadOnly({"validators/current": encode(current.to_list())}.get))
    t = Transaction.create(V[0], CHAIN, governance.PROPOSE, 1,
                           propose("validator_add", add(V[2]), 9))
    default_registry().apply(view, t, BlockContext(CHAIN, 5, START))
    assert view.get(f"governance/proposal/{t.tx_id.hex()}")["status"] == status
    assert (view.get("validators/schedule") is None) == (status == "open")


def test_total_power_is_bounded() -> None:
    """A set of more total power than the proposer schedule covers would halt the chain at
    the height it came into force: the change is refused instead."""
    big = Validator(b"\x01" * 32, governance.MAX_TOTAL_POWER - 10, "big")
    current = ValidatorSet.of([big, Validator(V[0].public_key, 10, "v0")])
    assert current.total_power == governance.MAX_TOTAL_POWER
    view = Overlay(ReadOnly({"validators/current": encode(current.to_list())}.get))
    t = Transaction.create(V[0], CHAIN, governance.PROPOSE, 1,
                           propose("validator_add", add(V[1], 1), 9))
    with pytest.raises(Rejected) as e:
        default_registry().apply(view, t, BlockContext(CHAIN, 5, START))
    assert e.value.code == "too_much_power" and view.writes == {}


# refusals ----------------------------------------------------------------------------------
def test_governance_refusals_leave_state_unchanged(node: Node) -> None:
    n = Nonces()
    open_ = n.tx(V[0], governance.PROPOSE, propose("validator_add", add(NEW_VALIDATOR), 6))
    assert run(node, open_) == "ok"  # block 2
    pid = open_.tx_id.hex()
    assert run(node, n.tx(V[1], governance.APPROVE, approve(pid))) == "ok"  # block 3
    ghost = "ab" * 32
    cases = {
        "an org admin is not a validator": (
            n.tx(ADMIN, governance.PROPOSE, propose("validator_add", add(STRANGER), 9)),
            "not_validator"),
        "an unknown key is not a validator": (
            n.tx(STRANGER, governance.APPROVE, approve(pid)), "not_validator"),
        "effective height must be a later height": (
            n.tx(V[0], governance.PROPOSE, propose("validator_add", add(STRANGER), 5)),
            "too_soon"),
        "effective height is now": (
            n.tx(V[0], governance.PROPOSE, propose("validator_add", add(STRANGER), 4)),
            "too_soon"),
        "unknown proposal": (n.tx(V[2], governance.APPROVE, approve(ghost)), "not_found"),
        "double approval": (n.tx(V[1], governance.APPROVE, approve(pid)), "already_approved"),
        "the proposer approving again": (n.tx(V[0], governance.APPROVE, approve(pid)),
                                         "already_approved"),
        "adding a validator twice": (
            n.tx(V[0], governance.PROPOSE, propose("validator_add", add(V[1]), 9)), "exists"),
        "removing a non-validator": (
            n.tx(V[0], governance.PROPOSE, propose("validator_remove", remove(STRANGER), 9)),
            "not_found"),
        "citing evidence that is not on the ledger": (
            n.tx(V[0], governance.PROPOSE,
                 propose("validator_remove", remove(V[1], evidence=ghost), 9)), "not_found"),
        "admitting an organisation that exists": (
            n.tx(V[0], governance.PROPOSE, propose("org_admit", org("st-mary"), 9)), "exists"),
        "admitting with an admin key already registered": (
            n.tx(V[0], governance.PROPOSE, propose("org_admit", org("newco", ADMIN), 9)),
            "exists"),
        "unknown kind": (n.tx(V[0], governance.PROPOSE, propose("validator_ban", {}, 9)),
                         "malformed"),
        "power out of range": (n.tx(V[0], governance.PROPOSE, propose(
            "validator_power", {"public_key": V[1].public_key.hex(), "power": 0}, 9)),
            "malformed"),
        "org with an upper-case admin key": (n.tx(V[0], governance.PROPOSE, propose(
            "org_admit", {**org(), "admins": [NEW_ADMIN.public_key.hex().upper()]}, 9)),
            "malformed"),
        "org with one admin key twice": (n.tx(V[0], governance.PROPOSE, propose(
            "org_admit", {**org(), "admins": [NEW_ADMIN.public_key.hex()] * 2}, 9)),
            "malformed"),
    }
    for name, (t, code) in cases.items():
        assert run(node, t) == code, name
    # block 6 is the proposal's effective height: from then on it can no longer pass
    advance_to(node, 5)
    assert run(node, n.tx(V[2], governance.APPROVE, approve(pid))) == "expired"
    assert state(node, f"governance/proposal/{pid}")["status"] == "open"
    assert NEW_VALIDATOR.public_key not in keys_at(node, 10**6)


def test_empty_set_is_refused_when_the_last_validator_would_go(node: Node) -> None:
    n = Nonces()
    steps = [(V[3], 10), (V[2], 11), (V[1], 12)]
    for victim, height in steps:
        t = n.tx(V[0], governance.PROPOSE, propose("validator_remove", remove(victim), height))
        assert run(node, t) == "ok"
        for k in V[1:3]:
            run(node, n.tx(k, governance.APPROVE, approve(t.tx_id.hex())))
    assert keys_at(node, 12) == [V[0].public_key]
    last = n.tx(V[0], governance.PROPOSE, propose("validator_remove", remove(V[0]), 13))
    assert run(node, last) == "empty_set"


# organisation admission ---------------------------------------------------------------------
def test_org_admission_lets_the_new_admin_register_members(node: Node) -> None:
    n = Nonces()
    t = n.tx(V[1], governance.PROPOSE, propose("org_admit", org(), 50))
    pid = t.tx_id.hex()
    pharmacist = SigningKey.from_seed(b"\x61" * 32)
    steps = [
        ("proposed", t, "ok"),
        ("the admin is not yet known",
         n.tx(NEW_ADMIN, "identity.member.register", member(pharmacist, "newco")),
         "unknown_sender"),
        ("second approval: 20 of 40", n.tx(V[2], governance.APPROVE, approve(pid)), "ok"),
        ("still not admitted",
         n.tx(NEW_ADMIN, "identity.member.register", member(pharmacist, "newco")),
         "unknown_sender"),
        ("third approval admits it", n.tx(V[3], governance.APPROVE, approve(pid)), "ok"),
        ("the new admin registers a member",
         n.tx(NEW_ADMIN, "identity.member.register", member(pharmacist, "newco")), "ok"),
        ("but not into another organisation",
         n.tx(NEW_ADMIN, "identity.member.register",
              member(SigningKey.from_seed(b"\x62" * 32), "st-mary")), "unauthorized"),
    ]
    for name, tx, code in steps:
        assert run(node, tx) == code, name
    assert state(node, "identity/org/newco") == {"id": "newco", "name": "New Co",
                                                  "role": "pharmacy", "status": "active"}
    assert state(node, f"identity/key/{pharmacist.public_key.hex()}")["org"] == "newco"


# evidence ------------------------------------------------------------------------------------
def test_reported_misbehavior_is_recorded_once_and_listed(node: Node) -> None:
    first = report(node, double_vote(V[1], height=1))
    assert first
    entry = state(node, f"evidence/{first}")
    assert (entry["validator"], entry["offence_height"], entry["height"]) == (
        V[1].public_key.hex(), 1, node.chain.height)
    assert entry["evidence"]["kind"] == "duplicate_vote"
    assert report(node, double_vote(V[1], height=1)) == ""  # reported again: once
    assert report(node, double_vote(STRANGER, height=1)) == ""  # no validator: dropped
    second = report(node, double_vote(V[3], height=2))
    listed = governance.list_evidence(node.chain.view())
    assert [e["hash"] for e in listed] == [first, second]
    assert [e["validator"] for e in listed] == [V[1].public_key.hex(), V[3].public_key.hex()]
    assert governance.list_evidence(node.chain.view(), start=2) == listed[1:]


def test_governance_acts_on_evidence(node: Node) -> None:
    n = Nonces()
    digest = report(node, double_vote(V[3]))
    mismatch = n.tx(V[0], governance.PROPOSE,
                    propose("validator_remove", remove(V[2], evidence=digest), 10))
    assert run(node, mismatch) == "evidence_mismatch"
    n.forget(V[0])
    t = n.tx(V[0], governance.PROPOSE,
             propose("validator_power", {"public_key": V[3].public_key.hex(), "power": 1,
                                         "evidence": digest}, 10))
    assert run(node, t) == "ok"
    for k in V[1:3]:
        assert run(node, n.tx(k, governance.APPROVE, approve(t.tx_id.hex()))) == "ok"
    assert governance.validators_at(node.chain.view(), 10).power_of(V[3].public_key) == 1
    assert governance.validators_at(node.chain.view(), 9).power_of(V[3].public_key) == 10


def test_a_genesis_beyond_the_total_power_bound_is_refused() -> None:
    from medledger.node import Genesis, GenesisError

    data = {"chain_id": CHAIN, "genesis_time": START, "organisations": [], "validators": [
        {"name": f"v{i}", "power": governance.MAX_TOTAL_POWER // 2 + 1,
         "public_key": k.public_key.hex()} for i, k in enumerate(V[:2])]}
    with pytest.raises(GenesisError, match="total power"):
        Genesis.from_dict(data)
    data["validators"][0]["power"] = 1
    assert Genesis.from_dict(data).validators.total_power <= governance.MAX_TOTAL_POWER
