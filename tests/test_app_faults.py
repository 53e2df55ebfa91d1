"""A flaw in an app's code (a KeyError where a Rejected was meant, say) refuses the
transaction at admission and fails it in a block, with the code ``internal``; nothing of it
is kept but its nonce, the transactions beside it commit, and the chain goes on. A flaw in
a block hook drops that hook's writes for the block and says so in the block's events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pytest

from medledger.apps import App, AppRegistry, BlockContext, Event, TxType
from medledger.apps.anchor import AnchorApp
from medledger.apps.body import Text
from medledger.apps.governance import GovernanceApp
from medledger.apps.identity import IdentityApp
from medledger.ledger import Transaction
from medledger.state import StateView
from medledger.store import EventQuery
from tests.chainutil import AbciChain, T
from tests.test_pipeline_bench import ADMIN, CHAIN, genesis


@dataclass(frozen=True, slots=True)
class FaultBody:
    key: Annotated[str, Text(20)]


def _anyone(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    """Any sender."""


def _fine(view: StateView, tx: Transaction, body: FaultBody, ctx: BlockContext) -> None:
    """No refusal."""


def _check_fails(view: StateView, tx: Transaction, body: FaultBody, ctx: BlockContext) -> None:
    raise KeyError(body.key)  # the flaw: a lookup that should have been a refusal


def _apply_fails(view: StateView, tx: Transaction, body: FaultBody,
                 ctx: BlockContext) -> tuple[Event, ...]:
    view.put(f"faulty/{body.key}", {"half": "written"})
    if body.key.startswith("bad"):
        raise TypeError("a flaw after a write")
    return (Event.of("faulty.written", key=body.key),)


class FaultyApp(App):
    """Writes under faulty/; one type whose check is flawed, one whose apply is; an
    end-block hook that fails on even heights after a write, and counts the others."""

    name: ClassVar[str] = "faulty"
    prefixes: ClassVar[tuple[str, ...]] = ("faulty/",)

    def transactions(self) -> Sequence[TxType[Any]]:
        return (TxType("faulty.check", FaultBody, _anyone, _check_fails, _apply_fails),
                TxType("faulty.apply", FaultBody, _anyone, _fine, _apply_fails))

    def end_block(self, view: StateView, ctx: BlockContext) -> tuple[Event, ...]:
        view.put(f"faulty/hook/{ctx.height}", "written")
        if ctx.height % 2 == 0:
            raise IndexError("a flaw in the hook")
        return (Event.of("faulty.hook_ran", height=str(ctx.height)),)


@pytest.fixture
def chain(tmp_path: Path) -> Any:
    registry = AppRegistry([IdentityApp(), AnchorApp(), GovernanceApp(), FaultyApp()])
    made = AbciChain(tmp_path / "s.db", genesis(), registry)
    yield made
    made.close()


def _tx(type_: str, key: str, nonce: int) -> Transaction:
    return Transaction.create(ADMIN, CHAIN, type_, nonce, {"key": key})


def _anchor(nonce: int) -> Transaction:
    return Transaction.create(ADMIN, CHAIN, "ledger.anchor", nonce,
                              {"digest": nonce.to_bytes(32, "big").hex(), "label": "x"})


def test_a_flawed_check_refuses_at_admission_with_internal(chain: AbciChain) -> None:
    root = chain.chain.state_root
    assert chain.check(_tx("faulty.check", "k", 1).raw) == "internal"
    assert chain.chain.state_root == root
    assert chain.submit(_anchor(1)) == "ok"  # the node goes on admitting


def test_a_flawed_apply_fails_its_transaction_and_the_block_commits(chain: AbciChain) -> None:
    txs = [_anchor(1), _tx("faulty.apply", "bad-one", 2), _tx("faulty.apply", "good", 3),
           _anchor(4)]
    height = chain.chain.height
    answer, _block = chain.finalize_and_commit([tx.raw for tx in txs])
    codes = [r.codespace or "ok" for r in answer.tx_results]
    assert codes == ["ok", "internal", "ok", "ok"]
    assert "TypeError" in answer.tx_results[1].log
    assert chain.chain.height == height + 1
    assert chain.chain.committed_value("faulty/bad-one") is None  # nothing of it kept
    assert chain.chain.committed_value("faulty/good") is not None
    # its nonce is used: the next transaction of the sender takes 5
    assert chain.check(_tx("faulty.apply", "again", 4).raw) == "nonce"
    assert chain.submit(_tx("faulty.apply", "again", 5)) == "ok"
    assert chain.produce().header.height == height + 2


def test_the_abci_types_name_the_failure(chain: AbciChain) -> None:
    answer = chain.app.check_tx(T.RequestCheckTx(tx=_tx("faulty.check", "k", 1).raw,
                                                 type=T.NEW))
    assert answer.code != 0 and answer.codespace == "internal"
    assert "KeyError" in answer.log and "'k'" not in answer.log


def test_a_flawed_hook_drops_its_writes_for_the_block_and_says_so(chain: AbciChain) -> None:
    heights = []
    for nonce in (1, 2, 3):
        assert chain.submit(_anchor(nonce)) == "ok"
        heights.append(chain.produce().header.height)
    hooks = {}
    for e in chain.chain.store.list_events(EventQuery(limit=1000)):
        if e.tx_index is None:
            hooks.setdefault(e.height, []).append((e.type, json.loads(e.attrs)))
    for height in heights:
        written = chain.chain.committed_value(f"faulty/hook/{height}")
        if height % 2 == 0:
            assert written is None, "the failed hook's write was kept"
            assert ("ledger.hook_failed", {"app": "faulty", "error": "IndexError",
                                           "hook": "end_block"}) in hooks[height]
            assert all(t != "faulty.hook_ran" for t, _ in hooks[height])
        else:
            assert written is not None
            assert ("faulty.hook_ran", {"height": str(height)}) in hooks[height]
            assert all(t != "ledger.hook_failed" for t, _ in hooks[height])
