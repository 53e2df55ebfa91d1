"""A light client follows governance's validator-set changes from the genesis set, each
change proven from a header the set before it certified; a node that lies about a change,
or leaves one out, gets nothing believed.

The chain is ``test_governance_chain``'s: four validators, a fifth added at height H, two
blocks past it. Answers come from a node over that store through its API (no sockets).
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import httpx
import pytest

from medledger.api import create_app
from medledger.apps import governance
from medledger.client import (
    VerificationFailed,
    follow_sets,
    verify_set_change,
    verify_state_answer,
)
from medledger.node import Node, NodeConfig
from medledger.store import SQLiteStore
from tests.test_governance_chain import CHAIN, GENESIS, H, NEW, OLD, V, added_store

Answer = dict[str, Any]


@pytest.fixture
def answers(tmp_path: Path) -> dict[str, Any]:
    node = Node(SQLiteStore(added_store(tmp_path)), GENESIS, V[0], NodeConfig())

    async def fetch() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=create_app(node, run_producer=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as http:
            got: dict[str, Any] = {"changes": (await http.get("/v1/validators/changes")).json()}
            for h in range(1, H + 5):
                r = await http.get(f"/v1/validators/proof/{h}")
                got[h] = r.json() if r.status_code == 200 else r.status_code
            got["state"] = (await http.get(f"/v1/state/{governance.set_key(H)}")).json()
            return got

    try:
        return asyncio.run(fetch())
    finally:
        node.close()


def test_the_new_set_is_followed_from_the_genesis_set(answers: dict[str, Any]) -> None:
    tip = H + 2
    assert answers["changes"] == {"heights": [H]}
    state = answers["state"]
    assert state["height"] == tip
    # the tip's header names the new set: the genesis set alone cannot believe it
    with pytest.raises(VerificationFailed, match="other than the trusted"):
        verify_state_answer(state, OLD, CHAIN)
    new = follow_sets(OLD, CHAIN, tip, answers["changes"]["heights"], answers.__getitem__)
    assert new.power_of(NEW.public_key) == 10 and len(new.validators) == 5
    checked = verify_state_answer(state, new, CHAIN)
    assert checked.value == new.to_list()
    # a height without a change is proven too: the set before it goes on
    assert verify_set_change(answers[3], OLD, CHAIN) == OLD
    assert verify_set_change(answers[H + 1], new, CHAIN) == new
    # the set of height 1 is genesis's; nothing past the tip + 1
    assert answers[1] == 404 and answers[tip + 1] != 404 and answers[tip + 2] == 404


def lied(answer: Answer, edit: Any) -> Answer:
    forged = copy.deepcopy(answer)
    edit(forged)
    return forged


def _add_outsider(a: Answer) -> None:
    a["value"] = [*a["value"], {"public_key": "ab" * 32, "power": 1000, "name": "mallory"}]


def _drop_value(a: Answer) -> None:
    a["value"] = None


@pytest.mark.parametrize("edit, why", [
    (_add_outsider, "does not lead to the state root"),
    (_drop_value, "does not lead to the state root"),
    (lambda a: a.update(height=H + 1), "must be proven from the state of"),
    (lambda a: a.update(key=governance.pending_key(H + 1)), "another key"),
    (lambda a: a["header"].update(time=a["header"]["time"] + 1), "signs another block"),
    (lambda a: a["certificate"].update(signatures=a["certificate"]["signatures"][:2]), "2/3"),
    (lambda a: a.pop("proof"), "malformed"),
])
def test_a_forged_set_change_is_refused(answers: dict[str, Any], edit: Any, why: str) -> None:
    assert verify_set_change(answers[H], OLD, CHAIN).hash() != OLD.hash()
    with pytest.raises(VerificationFailed, match=why):
        verify_set_change(lied(answers[H], edit), OLD, CHAIN)


def test_a_change_left_out_gets_nothing_believed(answers: dict[str, Any]) -> None:
    state = answers["state"]
    followed = follow_sets(OLD, CHAIN, state["height"], [], answers.__getitem__)
    assert followed == OLD
    with pytest.raises(VerificationFailed, match="other than the trusted"):
        verify_state_answer(state, followed, CHAIN)
    # nor does proving the change from the wrong set: the header before H is the old set's
    with pytest.raises(VerificationFailed):
        follow_sets(OLD, CHAIN, state["height"], [H, H + 1], lambda h: answers[H + 1]
                    if h == H else answers[h])


def test_the_cli_follows_the_changes_a_header_needs(answers: dict[str, Any]) -> None:
    """``tx show --verify`` and ``state show --verify`` trust the genesis set and follow
    the changes only when the answer's header names another set."""
    from medledger.cli.host import trusted_for

    class Answers:  # what the HTTP client would fetch, from the same node's API
        def validator_changes(self) -> list[int]:
            return list(answers["changes"]["heights"])

        def validator_proof(self, height: int) -> Answer:
            return answers[height]  # type: ignore[no-any-return]

    validators, chain_id = trusted_for(answers["state"], (OLD, CHAIN), Answers())  # type: ignore[arg-type]
    assert chain_id == CHAIN and len(validators.validators) == 5
    verify_state_answer(answers["state"], validators, CHAIN)
    early = answers[3]  # header 2, of the genesis set: nothing to follow
    assert trusted_for(early, (OLD, CHAIN), None)[0] is OLD  # type: ignore[arg-type]
