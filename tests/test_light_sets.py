"""A light client follows governance's validator-set changes from the genesis set, each
change proven from CometBFT signed headers of the set before it; a node that lies about a
change, or leaves one out, gets nothing believed.

The chain runs on a local chain (``tests/localchain.py``), which applies the validator
updates the application returns as CometBFT does (returned at h, in force at h + 2): four
validators of power 10; in blocks 1 and 3 they propose and approve (3 of 4) adding a fifth
from height H; empty blocks follow until two past H. Answers come from the node's API (no
sockets). CometBFT's own light client checks the same headers: each header's
``next_validators_hash`` names the set governance gives the next height, and skipping from
the genesis set to the new one holds with trust level 1/3.
"""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from medledger.api import create_app
from medledger.apps import governance
from medledger.client import (
    VerificationFailed,
    comet,
    sets_through,
    verify_set_change,
    verify_state_answer,
)
from medledger.client.light import comet_set
from medledger.crypto import SigningKey
from medledger.ledger import Transaction, Validator, ValidatorSet
from medledger.node import Genesis, NodeConfig
from medledger.store import SQLiteStore
from tests.localchain import LocalNode

Answer = dict[str, Any]
V = [SigningKey.from_seed(bytes([0x90 + i]) * 32) for i in range(4)]
NEW = SigningKey.from_seed(b"\xa0" * 32)
CHAIN = "gov-chain-sets"
OLD = ValidatorSet.of([Validator(k.public_key, 10, f"v{i}") for i, k in enumerate(V)])
GENESIS = Genesis(chain_id=CHAIN, genesis_time=1_700_000_000_000, validators=OLD,
                  organisations=())
H = 5  # the height from which the fifth validator is in the set
HOUR = timedelta(hours=1)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LocalNode]:
    """The chain of the module docstring, its tip at H + 2."""
    n = LocalNode(SQLiteStore(tmp_path / "chain.db"), GENESIS, V[0], NodeConfig(),
                  keys=[*V[1:], NEW])
    body = {"kind": "validator_add", "effective_height": H,
            "change": {"public_key": NEW.public_key.hex(), "power": 10, "name": "v4"}}
    proposal = Transaction.create(V[0], CHAIN, governance.PROPOSE, 1, body)
    approvals = [Transaction.create(k, CHAIN, governance.APPROVE, 1,
                                    {"proposal": proposal.tx_id.hex()}) for k in V[1:3]]
    for txs in ([proposal], approvals):  # blocks 1 and 3 (2 and 4: empty, signing them)
        for tx in txs:
            assert n.submit(tx).accepted
        block = n.produce_block()
        assert block is not None and [r.code for r in block.results] == [0] * len(txs)
    while n.chain.height < H + 2:
        n.commit_block()
    yield n
    n.close()


@pytest.fixture
def answers(node: LocalNode) -> dict[Any, Any]:
    """``changes``, ``state`` (the set of H, proven at the tip) and, by height, each
    ``/v1/validators/proof/{h}`` answer (its status code when not 200)."""
    async def fetch() -> dict[Any, Any]:
        transport = httpx.ASGITransport(app=create_app(node, run_node=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as http:
            got: dict[Any, Any] = {"changes": (await http.get("/v1/validators/changes")).json()}
            for h in range(1, H + 5):
                r = await http.get(f"/v1/validators/proof/{h}")
                got[h] = r.json() if r.status_code == 200 else r.status_code
            got["state"] = (await http.get(f"/v1/state/{governance.set_key(H)}")).json()
            return got

    return asyncio.run(fetch())


def test_the_new_set_is_followed_from_the_genesis_set(answers: dict[Any, Any]) -> None:
    tip = H + 2
    assert answers["changes"] == {"heights": [H]}
    state = answers["state"]
    assert state["height"] == tip
    # the tip's headers name the new set: the genesis set alone cannot believe them
    with pytest.raises(VerificationFailed, match="validators_hash"):
        verify_state_answer(state, OLD, CHAIN)
    new = sets_through(OLD, CHAIN, tip, answers["changes"]["heights"], answers.__getitem__)(tip)
    assert new.power_of(NEW.public_key) == 10 and len(new.validators) == 5
    checked = verify_state_answer(state, new, CHAIN)
    assert checked.value == new.to_list()
    # a height without a change is proven too: the set before it goes on
    assert verify_set_change(answers[3], OLD, CHAIN) == OLD
    assert verify_set_change(answers[H + 2], new, CHAIN) == new
    # headers H - 1 (old set) and H (new set) prove the set of H + 1: each its own set
    each = sets_through(OLD, CHAIN, tip, [H], answers.__getitem__)
    assert (each(H - 1), each(H)) == (OLD, new)
    assert verify_set_change(answers[H + 1], each, CHAIN) == new
    # on CometBFT the set of h is proven from the state of h - 2: none for heights 1 and 2;
    # nothing past the tip + 1
    assert answers[1] == answers[2] == 404
    assert answers[tip + 1] != 404 and answers[tip + 2] == 404


def test_cometbfts_sets_are_governances(node: LocalNode) -> None:
    """The set CometBFT signs each height with is the one governance gives that height,
    and the header before the change announces it as the next set."""
    view, local = node.chain.view(), node.local
    new = comet_set(governance.validators_at(view, H))
    assert len(new) == 5
    for height in range(1, node.chain.height + 3):  # known up to the tip + 2
        assert local.validators(height) == (comet_set(OLD) if height < H else new), height
    before = local.light_block(H - 1).signed_header.header
    assert before.validators_hash == comet.validators_hash(comet_set(OLD))
    assert before.next_validators_hash == comet.validators_hash(new) != before.validators_hash
    assert local.light_block(H).signed_header.header.validators_hash == \
        comet.validators_hash(new)


def test_cometbfts_light_client_follows_the_change(node: LocalNode) -> None:
    """Adjacent verification walks every height (``next_validators_hash`` links the sets);
    skipping from header 1 straight past the change holds with trust 1/3 (every old
    validator signed), as ``verify_to_height`` finds over the local chain's RPC."""
    local, tip = node.local, node.chain.height
    now = local.light_block(tip).signed_header.header.time
    for height in range(2, tip + 1):
        before, after = local.light_block(height - 1), local.light_block(height)
        comet.verify_adjacent(before.signed_header, after.signed_header, after.validators,
                              trusting_period=HOUR, now=now)
    # the genesis set, wrongly given for the header after the change, is refused
    with pytest.raises(comet.ValidatorsMismatch):
        comet.verify_adjacent(local.light_block(H - 1).signed_header,
                              local.light_block(H).signed_header, local.validators(H - 1),
                              trusting_period=HOUR, now=now)
    first, last = local.light_block(1), local.light_block(tip)
    comet.verify_skipping(first.signed_header, first.validators, last.signed_header,
                          last.validators, trusting_period=HOUR, now=now)
    with httpx.Client(transport=local.rpc_transport(), base_url="http://comet.test") as rpc:
        assert comet.verify_to_height(rpc, first, tip, trusting_period=HOUR, now=now) == last


def lied(answer: Answer, edit: Any) -> Answer:
    forged = copy.deepcopy(answer)
    edit(forged)
    return forged


def _add_outsider(a: Answer) -> None:
    a["value"] = [*a["value"], {"public_key": "ab" * 32, "power": 1000, "name": "mallory"}]


def _drop_value(a: Answer) -> None:
    a["value"] = None


def _flip_signature(a: Answer) -> None:
    sig = a["light"][0]["commit"]["signatures"][0]
    raw = bytearray(base64.b64decode(sig["signature"]))
    raw[3] ^= 1
    sig["signature"] = base64.b64encode(bytes(raw)).decode()


def _absent_but_one(a: Answer) -> None:
    sigs = a["light"][1]["commit"]["signatures"]
    sigs[1:] = [{"block_id_flag": 1, "validator_address": "", "signature": None,
                 "timestamp": "0001-01-01T00:00:00Z"} for _ in sigs[1:]]


@pytest.mark.parametrize("edit, why", [
    (_add_outsider, "does not lead to the state root"),
    (_drop_value, "does not lead to the state root"),
    (lambda a: a.update(height=H + 1), "must be proven from the state of"),
    (lambda a: a.update(key=governance.pending_key(H + 1)), "another key"),
    (lambda a: a["header"].update(time=a["header"]["time"] + 1),
     "height or time is not the engine's"),
    (lambda a: a["header"].update(state_root="00" * 32), "not the app hash"),
    (_flip_signature, "does not check out"),
    (_absent_but_one, "10 of 40 voting power committed"),
    (lambda a: a["light"].pop(), "not the app hash"),
    (lambda a: a.pop("proof"), "malformed"),
])
def test_a_forged_set_change_is_refused(answers: dict[Any, Any], edit: Any, why: str) -> None:
    assert verify_set_change(answers[H], OLD, CHAIN).hash() != OLD.hash()
    with pytest.raises(VerificationFailed, match=why):
        verify_set_change(lied(answers[H], edit), OLD, CHAIN)


def test_a_change_left_out_gets_nothing_believed(answers: dict[Any, Any]) -> None:
    state = answers["state"]
    followed = sets_through(OLD, CHAIN, state["height"], [], answers.__getitem__)
    assert followed(state["height"]) == OLD
    with pytest.raises(VerificationFailed, match="validators_hash"):
        verify_state_answer(state, followed, CHAIN)
    # nor does proving the change from the wrong answer
    with pytest.raises(VerificationFailed):
        sets_through(OLD, CHAIN, state["height"], [H, H + 1], lambda h: answers[H + 2]
                     if h == H else answers[h])


def test_the_cli_follows_the_changes_a_header_needs(answers: dict[Any, Any]) -> None:
    """``tx show --verify`` and ``state show --verify`` trust the genesis set and follow
    the changes up to the answer's last signed header."""
    from medledger.cli.host import trusted_for

    class Answers:  # what the HTTP client would fetch, from the same node's API
        def validator_changes(self) -> list[int]:
            return list(answers["changes"]["heights"])

        def validator_proof(self, height: int) -> Answer:
            return answers[height]  # type: ignore[no-any-return]

    validators, chain_id = trusted_for(answers["state"], (OLD, CHAIN), Answers())  # type: ignore[arg-type]
    assert chain_id == CHAIN and callable(validators)
    assert len(validators(H + 2).validators) == 5 and validators(H - 1) == OLD
    verify_state_answer(answers["state"], validators, CHAIN)
    early = answers[3]  # headers 1 and 2, of the genesis set: no change to follow
    early_sets, _ = trusted_for(early, (OLD, CHAIN), Answers())  # type: ignore[arg-type]
    assert early_sets(2) == OLD  # type: ignore[operator]
    verify_set_change(early, early_sets, CHAIN)
