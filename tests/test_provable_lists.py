"""Provable lists: the keys and pages of :class:`ProvableList`, the answer a node builds for a
page (:func:`list_answer`) and the SDK's check of it (:func:`verify_list_answer`).

The end-to-end tests run lists of any value on a small ABCI application of their own
(:class:`ListApp`, whose transactions each append one item), decided by a local chain of one
validator (``tests/localchain.py``, an in-process stand-in for CometBFT): the writes go
through an :class:`Overlay` and the real :class:`StateTree` into a real :class:`SQLiteStore`,
FinalizeBlock returns the state root as the app hash, and CometBFT's signed headers, read
through the node's own ``SignedHeaders``, prove each answer under ``"light"``.
:class:`ListLedger` is the part of a ``Chain`` that :func:`list_answer` reads (``height``,
``store``, ``tree``, values at a height, ``proven_height``, ``prover``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medledger.apps.lists import MAX_SEQ, ProvableList
from medledger.client import VerificationFailed, VerifiedList, verify_list_answer
from medledger.codec import decode, encode
from medledger.crypto import SigningKey
from medledger.ledger import (
    ZERO_HASH,
    Header,
    Validator,
    ValidatorSet,
    results_root,
    tx_root,
)
from medledger.merkle.log import Frontier
from medledger.merkle.sparse import EMPTY_ROOT, NodeRef
from medledger.node import Genesis
from medledger.node.abci.wire import abci_types
from medledger.node.chain import engine_reference
from medledger.node.lists import MAX_LIMIT, list_answer
from medledger.state import Overlay, ReadOnly, StateTree
from medledger.store import BlockRecord, SQLiteStore
from tests.localchain import LocalChain, local_headers
from tests.test_light_client import HOSTILE, paths, replaced

CHAIN = "test-chain"
RECORDS = ProvableList("records", "by_patient")
Answer = dict[str, Any]


def empty_view() -> Overlay:
    return Overlay(ReadOnly(lambda key: None))


# ProvableList: keys ---------------------------------------------------------------------------
def test_keys_are_the_documented_ones() -> None:
    assert RECORDS.path == "records/by_patient"
    assert RECORDS.item_key("p1", 1) == "records/by_patient/p1/0000000000000001"
    assert RECORDS.item_key("p1", 42) == "records/by_patient/p1/0000000000000042"
    assert RECORDS.item_key("p1", MAX_SEQ) == "records/by_patient/p1/9999999999999999"
    assert RECORDS.count_key("p1") == "records/by_patient/p1/count"


BAD_OWNERS = ["", "a/b", "/", None, 7, b"p1"]


@pytest.mark.parametrize("owner", BAD_OWNERS)
def test_an_owner_must_be_a_non_empty_string_without_a_slash(owner: Any) -> None:
    view = empty_view()
    for use in (lambda: RECORDS.count_key(owner), lambda: RECORDS.item_key(owner, 1),
                lambda: RECORDS.count(view, owner), lambda: RECORDS.append(view, owner, "x"),
                lambda: RECORDS.items(view, owner)):
        with pytest.raises(ValueError, match="owner"):
            use()
    assert view.writes == {}


@pytest.mark.parametrize("seq", [0, -1, MAX_SEQ + 1, True, "1", 1.0])
def test_a_sequence_number_is_an_integer_from_one(seq: Any) -> None:
    with pytest.raises(ValueError, match="sequence number"):
        RECORDS.item_key("p1", seq)


@pytest.mark.parametrize("prefix,name", [("", "x"), ("x", ""), ("a/b", "x"), ("x", "a/b"),
                                         (None, "x")])
def test_a_list_is_named_by_two_plain_segments(prefix: Any, name: Any) -> None:
    with pytest.raises(ValueError, match="prefix|name"):
        ProvableList(prefix, name)


# ProvableList: reads and writes ---------------------------------------------------------------
def test_append_writes_the_item_and_the_new_count() -> None:
    view = empty_view()
    assert RECORDS.count(view, "p1") == 0
    assert RECORDS.append(view, "p1", {"record": "r1"}) == 1
    assert RECORDS.append(view, "p1", "r2") == 2
    assert view.writes == {RECORDS.item_key("p1", 1): encode({"record": "r1"}),
                           RECORDS.item_key("p1", 2): encode("r2"),
                           RECORDS.count_key("p1"): encode(2)}
    assert RECORDS.count(view, "p1") == 2
    assert RECORDS.get(view, "p1", 1) == {"record": "r1"}
    assert RECORDS.get(view, "p1", 3) is None
    assert RECORDS.items(view, "p1") == [{"record": "r1"}, "r2"]


def test_owners_and_lists_do_not_share_items() -> None:
    view = empty_view()
    other = ProvableList("records", "by_reader")
    RECORDS.append(view, "p1", "a")
    RECORDS.append(view, "p10", "b")
    other.append(view, "p1", "c")
    assert RECORDS.items(view, "p1") == ["a"]
    assert RECORDS.items(view, "p10") == ["b"]
    assert other.items(view, "p1") == ["c"]
    assert RECORDS.items(view, "p2") == []


PAGES = {  # name: (start, limit, the items of a list of five)
    "the first page": (1, 2, ["i1", "i2"]),
    "a middle page": (2, 3, ["i2", "i3", "i4"]),
    "a last page cut short by the count": (4, 10, ["i4", "i5"]),
    "the whole list": (1, 100, ["i1", "i2", "i3", "i4", "i5"]),
    "the last item alone": (5, 1, ["i5"]),
    "past the end": (6, 10, []),
    "far past the end": (1000, 10, []),
    "a limit of zero": (2, 0, []),
}


@pytest.mark.parametrize("name", PAGES)
def test_items_returns_a_page_in_order(name: str) -> None:
    start, limit, expected = PAGES[name]
    view = empty_view()
    for n in range(1, 6):
        RECORDS.append(view, "p1", f"i{n}")
    assert RECORDS.items(view, "p1", start, limit) == expected


@pytest.mark.parametrize("start,limit", [(0, 1), (-1, 1), (1, -1), (True, 1), (1, 1.5)])
def test_a_bad_page_is_a_programming_error(start: Any, limit: Any) -> None:
    with pytest.raises(ValueError, match="page"):
        RECORDS.items(empty_view(), "p1", start, limit)


def test_a_none_item_is_refused() -> None:
    view = empty_view()
    with pytest.raises(ValueError, match="None"):
        RECORDS.append(view, "p1", None)
    assert view.writes == {}


def test_an_item_missing_below_the_count_is_a_broken_state() -> None:
    view = empty_view()
    RECORDS.append(view, "p1", "a")
    RECORDS.append(view, "p1", "b")
    view.delete(RECORDS.item_key("p1", 1))
    with pytest.raises(LookupError, match="missing items"):
        RECORDS.items(view, "p1")


OWNERS = st.sampled_from(["p1", "p2", "p10", "patient:7"])
VALUES = st.one_of(st.text(max_size=8), st.integers(-2**53 + 1, 2**53 - 1),
                   st.dictionaries(st.text(alphabet="abc", max_size=3), st.booleans(),
                                   max_size=3))


@given(st.lists(st.tuples(OWNERS, VALUES), max_size=40))
def test_appends_are_counted_and_read_back_in_order(appends: list[tuple[str, Any]]) -> None:
    view = empty_view()
    expected: dict[str, list[Any]] = {}
    for owner, value in appends:
        expected.setdefault(owner, []).append(value)
        assert RECORDS.append(view, owner, value) == len(expected[owner])
    for owner in ["p1", "p2", "p10", "patient:7"]:
        values = expected.get(owner, [])
        assert RECORDS.count(view, owner) == len(values)
        assert RECORDS.items(view, owner, 1, len(values) + 1) == values
    # exactly one key per item, plus one count per owner that has items
    assert len(view.writes) == len(appends) + len(expected)


@given(st.lists(VALUES, max_size=20), st.integers(1, 25), st.integers(0, 25))
def test_a_page_is_a_slice_of_the_list(values: list[Any], start: int, limit: int) -> None:
    view = empty_view()
    for value in values:
        RECORDS.append(view, "p1", value)
    assert RECORDS.items(view, "p1", start, limit) == values[start - 1:start - 1 + limit]
    seqs = RECORDS.page(len(values), start, limit)
    assert list(seqs) == list(range(start, min(len(values), start + limit - 1) + 1))


@given(st.lists(OWNERS, max_size=30))
def test_keys_never_collide(owners: list[str]) -> None:
    view = empty_view()
    for owner in owners:
        RECORDS.append(view, owner, "x")
    keys = [RECORDS.item_key(o, s) for o in set(owners) for s in
            range(1, RECORDS.count(view, o) + 1)] + [RECORDS.count_key(o) for o in set(owners)]
    assert len(keys) == len(set(keys)) == len(view.writes)


# a ledger of list writes, on a local chain ---------------------------------------------------
VALIDATOR = SigningKey.from_seed(b"\x01" * 32)
VALIDATORS = ValidatorSet.of([Validator(VALIDATOR.public_key, 10, "v0")])
GENESIS_TIME = 1_700_000_000_000
GENESIS = Genesis(CHAIN, GENESIS_TIME, VALIDATORS, ())
T = abci_types()


def append_tx(lst: ProvableList, owner: str, value: Any, nonce: int) -> bytes:
    """A transaction of :class:`ListApp`: append ``value`` to ``owner``'s list ``lst``."""
    return encode({"prefix": lst.prefix, "name": lst.name, "owner": owner, "value": value,
                   "nonce": nonce})


class ListApp:
    """The ABCI side of :class:`ListLedger`: CheckTx accepts every transaction;
    FinalizeBlock appends each transaction's item and returns the new state root as the app
    hash; Commit stores the block."""

    def __init__(self, ledger: ListLedger) -> None:
        self.chain = ledger  # what the local chain reads: chain_id, genesis
        self._decided: tuple[BlockRecord, NodeRef] | None = None

    def info(self, request: Any) -> Any:
        return T.ResponseInfo(data="lists", app_version=1,
                              last_block_height=self.chain.height)

    def init_chain(self, request: Any) -> Any:
        return T.ResponseInitChain(app_hash=EMPTY_ROOT.hash)

    def check_tx(self, request: Any) -> Any:
        return T.ResponseCheckTx(code=0)

    def prepare_proposal(self, request: Any) -> Any:
        return T.ResponsePrepareProposal(txs=request.txs)

    def process_proposal(self, request: Any) -> Any:
        return T.ResponseProcessProposal(status=T.ResponseProcessProposal.ProposalStatus.ACCEPT)

    def finalize_block(self, request: Any) -> Any:
        ledger = self.chain
        view = Overlay(ReadOnly(ledger.store.get_value))
        for raw in request.txs:
            tx = decode(raw)
            ProvableList(tx["prefix"], tx["name"]).append(view, tx["owner"], tx["value"])
        time = request.time.seconds * 1000 + request.time.nanos // 1_000_000
        self._decided = ledger.decided(request.height, time, request.hash, view.writes)
        return T.ResponseFinalizeBlock(tx_results=[T.ExecTxResult(code=0) for _ in request.txs],
                                       app_hash=self._decided[1].hash)

    def commit(self, request: Any) -> Any:
        assert self._decided is not None
        self.chain.committed(*self._decided)
        self._decided = None
        return T.ResponseCommit()


class ListLedger:
    """Blocks of list appends over a real store and tree, decided and signed by a local
    chain (``tests/localchain.py``) of one validator, :data:`VALIDATOR`; the part of a
    ``Chain`` that :func:`list_answer` reads (``height``, ``store``, ``tree``, the values at
    a height, and the ``prover``: the chain's signed headers, as a node on CometBFT keeps
    them). Values are kept for the tip only. Its blocks' own headers and records list no
    transactions (only their writes are kept): what the SDK believes of a header is its
    chain id, height, time and state root."""

    undo_depth = 1  # SignedHeaders.height() tries this many heights from the tip down

    def __init__(self, path: Path) -> None:
        self.chain_id, self.genesis = CHAIN, GENESIS
        self.store = SQLiteStore(path)
        self.tree = StateTree(self.store)
        self.height = 0
        self.state_root = EMPTY_ROOT
        self.tip_hash = ZERO_HASH
        self._nonce = 0
        self.local = LocalChain(ListApp(self), [VALIDATOR],  # type: ignore[arg-type]
                                genesis_time_ms=GENESIS_TIME)
        self.prover = local_headers(self, self.local)  # type: ignore[arg-type]
        self.local.start()

    def close(self) -> None:
        self.prover.close()
        self.store.close()

    # what list_answer reads ---------------------------------------------------------------
    def proven_height(self) -> int | None:
        return self.prover.height()

    def keeps_values_of(self, height: int) -> bool:
        return height == self.height

    def value_at(self, key: str, height: int) -> bytes | None:
        return self.values_at([key], height)[key]

    def values_at(self, keys: list[str], height: int) -> dict[str, bytes | None]:
        if height != self.height:
            raise LookupError(f"values of height {height} are not kept")
        found = self.store.get_values(keys)
        return {key: found.get(key) for key in keys}

    # blocks -------------------------------------------------------------------------------
    def append(self, *items: tuple[ProvableList, str, Any]) -> int:
        """Commit one block appending each ``(list, owner, value)``, then the empty block
        whose header signs its state root (as CometBFT adds one); return the tip's height."""
        for lst, owner, value in items:
            self._nonce += 1
            assert self.local.check_tx(append_tx(lst, owner, value, self._nonce)).code == 0
        self.local.produce()
        return self.height

    def decided(self, height: int, time: int, engine_hash: bytes,
                writes: dict[str, bytes | None]) -> tuple[BlockRecord, NodeRef]:
        """The record of block ``height`` (BFT time ``time`` in ms, CometBFT block hash
        ``engine_hash``) making ``writes``, and the state root after it."""
        root, nodes = self.tree.update(self.state_root, writes)
        history = Frontier.from_list(self.height, self.store.get_history())
        header = Header(
            chain_id=CHAIN, height=height, time=time, prev_hash=self.tip_hash,
            tx_root=tx_root([]), tx_count=0, results_root=results_root([]),
            state_root=root.hash, history_root=history.root(),
            validators_hash=VALIDATORS.hash(), last_commit_hash=ZERO_HASH,
            proposer=VALIDATOR.public_key)
        block_hash = header.hash()
        history.append(block_hash)
        return BlockRecord(
            height=height, block_hash=block_hash, header=header.encode(), last_commit=None,
            certificate=engine_reference(engine_hash), state_root_id=root.node_id, txs=[],
            state_writes=writes, nodes=nodes, history=history.to_list()), root

    def committed(self, record: BlockRecord, root: NodeRef) -> None:
        self.store.commit_block(record)
        self.height, self.state_root, self.tip_hash = record.height, root, record.block_hash
        self.prover.fetch(record.height)

    def answer(self, owner: str, start: int = 1, limit: int = 100,
               lst: ProvableList = RECORDS) -> Answer:
        return list_answer(self, lst, owner, start, limit)  # type: ignore[arg-type]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[ListLedger]:
    """Block 1: alice's records a1..a3 and bob's b1; block 3: alice's a4 and a5 and
    bob's b2 (blocks 2 and 4 are empty: CometBFT's, signing the new app hash). Carol has no
    list. Answers are at height 4."""
    ledger = ListLedger(tmp_path / "lists.db")
    assert ledger.append((RECORDS, "alice", "a1"), (RECORDS, "alice", {"record": "a2"}),
                         (RECORDS, "bob", "b1"), (RECORDS, "alice", "a3")) == 2
    assert ledger.append((RECORDS, "alice", "a4"), (RECORDS, "bob", "b2"),
                         (RECORDS, "alice", "a5")) == 4
    yield ledger
    ledger.close()


def verify(answer: Answer, owner: str = "alice", start: int = 1, limit: int | None = None,
           lst: ProvableList = RECORDS) -> VerifiedList:
    return verify_list_answer(answer, VALIDATORS, CHAIN, lst.prefix, lst.name, owner,
                              start, limit)


ALICE = ["a1", {"record": "a2"}, "a3", "a4", "a5"]


# the node's answer ----------------------------------------------------------------------------
def test_the_answer_carries_the_page_the_count_and_the_tip_header(ledger: ListLedger) -> None:
    answer = ledger.answer("alice", 2, 2)
    assert set(answer) == {"list", "owner", "count", "start", "items", "count_proof",
                           "height", "block_hash", "header", "light"}
    assert (answer["list"], answer["owner"], answer["count"], answer["start"]) == \
        ("records/by_patient", "alice", 5, 2)
    assert [(i["seq"], i["key"], i["value"]) for i in answer["items"]] == [
        (2, RECORDS.item_key("alice", 2), {"record": "a2"}),
        (3, RECORDS.item_key("alice", 3), "a3")]
    assert answer["count_proof"]["key"] == RECORDS.count_key("alice")
    assert answer["count_proof"]["value"] == 5
    assert answer["height"] == 4 and answer["header"]["height"] == 4
    assert answer["header"]["state_root"] == ledger.state_root.hash.hex()
    # block 4 changed nothing: its own signed header carries the state root as app hash
    assert [h["header"]["height"] for h in answer["light"]] == ["4"]
    assert answer["light"][0]["header"]["app_hash"] == ledger.state_root.hash.hex().upper()


def test_the_node_refuses_bad_requests_and_an_empty_chain(tmp_path: Path,
                                                          ledger: ListLedger) -> None:
    for owner, start, limit in [("a/b", 1, 1), ("", 1, 1), ("alice", 0, 1),
                                ("alice", 1, -1), ("alice", 1, MAX_LIMIT + 1)]:
        with pytest.raises(ValueError):
            ledger.answer(owner, start, limit)
    empty = ListLedger(tmp_path / "empty.db")
    with pytest.raises(LookupError, match="no block"):
        empty.answer("alice")
    empty.close()


def test_a_block_committed_while_reading_gives_an_answer_at_the_new_tip(
        ledger: ListLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    read = ledger.store.get_values
    pending = [((RECORDS, "alice", "a6"),)]

    def commit_then_read(keys: list[str]) -> dict[str, bytes]:
        if pending:  # blocks 5 and 6 commit between the count and the items
            ledger.append(*pending.pop())
        return read(keys)

    monkeypatch.setattr(ledger.store, "get_values", commit_then_read)
    answer = ledger.answer("alice")
    assert answer["height"] == 6 and answer["count"] == 6
    assert verify(answer).items == [*ALICE, "a6"]


# what the SDK accepts -------------------------------------------------------------------------
ACCEPTED = {  # name: (owner, start, limit asked of the node, limit checked, values)
    "a full list": ("alice", 1, 100, None, ALICE),
    "a full list, the limit checked": ("alice", 1, 100, 100, ALICE),
    "a list exactly one page long": ("alice", 1, 5, 5, ALICE),
    "a middle page": ("alice", 2, 3, 3, ALICE[1:4]),
    "the last page, cut short": ("alice", 4, 3, 3, ALICE[3:]),
    "past the end": ("alice", 6, 3, 3, []),
    "another owner's list": ("bob", 1, 100, None, ["b1", "b2"]),
    "an empty list (count absent)": ("carol", 1, 100, None, []),
    "the count alone (limit 0)": ("alice", 1, 0, 0, []),
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_an_honest_answer_verifies(name: str, ledger: ListLedger) -> None:
    owner, start, asked, checked, values = ACCEPTED[name]
    verified = verify(ledger.answer(owner, start, asked), owner, start, checked)
    assert verified.items == values
    assert verified.start == start
    assert verified.count == {"alice": 5, "bob": 2, "carol": 0}[owner]
    assert verified.header.height == 4


def test_an_empty_list_is_proven_by_the_absence_of_its_count(ledger: ListLedger) -> None:
    answer = ledger.answer("carol")
    assert answer["count"] == 0 and answer["items"] == []
    assert answer["count_proof"]["value"] is None
    assert verify(answer, "carol").count == 0


# what the SDK refuses -------------------------------------------------------------------------
def drop(index: int) -> Callable[[Answer], Answer]:
    def tamper(answer: Answer) -> Answer:
        del answer["items"][index]
        return answer
    return tamper


def swap(a: int, b: int) -> Callable[[Answer], Answer]:
    def tamper(answer: Answer) -> Answer:
        items = answer["items"]
        items[a], items[b] = items[b], items[a]
        return answer
    return tamper


def set_(path: str, value: Any) -> Callable[[Answer], Answer]:
    """Set the value at ``path`` (dotted; list indexes as numbers)."""
    def tamper(answer: Answer) -> Answer:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = answer
        for part in parents:
            node = node[part]
        node[last] = value
        return answer
    return tamper


def both(*tampers: Callable[[Answer], Answer]) -> Callable[[Answer], Answer]:
    def tamper(answer: Answer) -> Answer:
        for t in tampers:
            answer = t(answer)
        return answer
    return tamper


def renumbered(answer: Answer) -> Answer:
    """Items dropped from the middle, the rest renumbered to close the gap."""
    del answer["items"][1]
    for seq, item in enumerate(answer["items"], start=1):
        item["seq"], item["key"] = seq, RECORDS.item_key("alice", seq)
    return answer


def other_page(owner: str, start: int = 1) -> Callable[[ListLedger], Answer]:
    return lambda ledger: ledger.answer(owner, start)


# name: (tamper of alice's full list, the reason given)
REFUSED: dict[str, tuple[Callable[[Answer], Answer], str]] = {
    "an item withheld (count 5, 4 items sent)": (drop(2), "left out"),
    "the last item withheld": (drop(-1), "left out"),
    "every item withheld": (set_("items", []), "left out"),
    "an item's value changed": (set_("items.1.value", {"record": "forged"}),
                                "proof of item 2 does not lead"),
    "an item's value removed": (set_("items.0.value", None), "item 1 has no value"),
    "items reordered": (swap(0, 1), "item 1 is missing or out of order"),
    "items reordered, renumbered": (
        both(swap(0, 1), set_("items.0.seq", 1), set_("items.1.seq", 2)), "another key"),
    "items reordered, renumbered and re-keyed": (
        both(swap(0, 1), set_("items.0.seq", 1), set_("items.1.seq", 2),
             set_("items.0.key", RECORDS.item_key("alice", 1)),
             set_("items.1.key", RECORDS.item_key("alice", 2))),
        "proof of item 1 does not lead"),
    "an item dropped and the rest renumbered": (renumbered, "left out"),
    "an item added": (lambda a: {**a, "items": [*a["items"], a["items"][-1]]}, "added"),
    "an item replaced by null": (set_("items.2", None), "malformed"),
    "the count lowered, the last item dropped": (
        both(set_("count", 4), set_("count_proof.value", 4), drop(-1)),
        "proof of the count's value does not lead"),
    "the count said absent, every item dropped": (
        both(set_("count", 0), set_("count_proof.value", None), set_("items", [])),
        "proof of the count's absence does not lead"),
    "the stated count not the proven one": (set_("count", 4), "proven count is 5"),
    "the count proof for another key": (
        set_("count_proof.key", RECORDS.count_key("bob")), "another key than the list's count"),
    "the count not a count": (set_("count_proof.value", "5"), "not a count"),
    "an item's key changed": (set_("items.0.key", RECORDS.item_key("bob", 1)), "another key"),
    "an item's seq not a number": (set_("items.0.seq", "1"), "out of order"),
    "an item's proof changed": (set_("items.0.proof.depth", 0), "does not lead|malformed"),
    "an item's proof missing": (lambda a: {**a, "items": [
        {k: v for k, v in a["items"][0].items() if k != "proof"}, *a["items"][1:]]},
        "malformed"),
    "an item's value a float": (set_("items.0.value", 1.5), "malformed"),
    "the list renamed": (set_("list", "records/by_reader"), "not 'records/by_patient'"),
    "the owner renamed": (set_("owner", "bob"), "not 'alice'"),
    "the start moved": (set_("start", 2), "not at item 1"),
    "the header's state root changed": (
        lambda a: {**a, "header": {**a["header"], "state_root": "00" * 32}},
        "not the app hash the engine's header signs"),
    "the count proof missing": (lambda a: {k: v for k, v in a.items() if k != "count_proof"},
                                "lacks 'count_proof'"),
    "not an object at all": (lambda a: [], "malformed"),  # type: ignore[return-value]
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_tampered_answer_is_refused_with_a_reason(name: str, ledger: ListLedger) -> None:
    tamper, reason = REFUSED[name]
    answer = tamper(copy.deepcopy(ledger.answer("alice")))
    with pytest.raises(VerificationFailed, match=reason):
        verify(answer)


def test_another_owners_page_is_refused(ledger: ListLedger) -> None:
    bobs = ledger.answer("bob")
    with pytest.raises(VerificationFailed, match="for owner 'bob', not 'alice'"):
        verify(bobs, "alice")
    relabelled = {**bobs, "owner": "alice"}
    with pytest.raises(VerificationFailed, match="another key than the list's count"):
        verify(relabelled, "alice")


def test_another_lists_page_is_refused(ledger: ListLedger) -> None:
    readers = ProvableList("records", "by_reader")
    ledger.append((readers, "alice", "r1"))
    with pytest.raises(VerificationFailed, match="list 'records/by_reader'"):
        verify(ledger.answer("alice", lst=readers))


def test_proofs_against_another_root_are_refused(ledger: ListLedger) -> None:
    old = ledger.answer("alice")  # at height 4
    ledger.append((RECORDS, "bob", "b3"))  # alice's list unchanged, the root moves
    new = ledger.answer("alice")
    assert new["height"] == 6 and [i["value"] for i in new["items"]] == ALICE
    assert verify(old).items == verify(new).items == ALICE
    header = {k: new[k] for k in ("height", "block_hash", "header", "light")}
    with pytest.raises(VerificationFailed, match="count's value does not lead"):
        verify({**old, **header})
    stale_items = {**new, "items": old["items"]}
    with pytest.raises(VerificationFailed, match="proof of item 1 does not lead"):
        verify(stale_items)


def test_a_page_longer_or_shorter_than_asked_is_refused(ledger: ListLedger) -> None:
    with pytest.raises(VerificationFailed, match="added"):
        verify(ledger.answer("alice", 1, 3), limit=2)
    with pytest.raises(VerificationFailed, match="left out"):
        verify(ledger.answer("alice", 1, 3), limit=None)
    with pytest.raises(VerificationFailed, match="left out"):
        verify(ledger.answer("alice", 2, 2), start=2, limit=3)


def test_a_header_of_another_chain_or_set_is_refused(ledger: ListLedger) -> None:
    answer = ledger.answer("alice")
    with pytest.raises(VerificationFailed, match="not 'other-chain'"):
        verify_list_answer(answer, VALIDATORS, "other-chain", "records", "by_patient", "alice")
    stranger = ValidatorSet.of([Validator(SigningKey.generate().public_key, 10, "x")])
    with pytest.raises(VerificationFailed,
                       match="signed header does not check out.*validators_hash"):
        verify_list_answer(answer, stranger, CHAIN, "records", "by_patient", "alice")


def test_bad_arguments_are_a_programming_error(ledger: ListLedger) -> None:
    answer = ledger.answer("alice")
    for owner, start, limit in [("a/b", 1, None), ("alice", 0, None), ("alice", 1, -1)]:
        with pytest.raises(ValueError):
            verify(answer, owner, start, limit)


# hostile answers never crash the verifier ----------------------------------------------------
UNCOMMITTED = {("height",), ("block_hash",)}


def same(a: Any, b: Any) -> bool:
    """The same value, or the same integer spelled as a decimal string (CometBFT's JSON
    parser reads every integer field either way)."""
    if type(b) is int and isinstance(a, str) and a.isdigit():
        return int(a) == b
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("owner,start,limit", [("alice", 2, 2), ("carol", 1, 10)])
def test_any_field_replaced_by_a_hostile_value_is_refused_not_crashed(
        ledger: ListLedger, owner: str, start: int, limit: int) -> None:
    honest = ledger.answer(owner, start, limit)
    accepted = []
    for path in paths(honest):
        old: Any = honest
        for part in path:
            old = old[part]
        for value in HOSTILE:
            if same(value, old):
                continue
            try:
                verify(replaced(honest, path, value), owner, start, limit)
            except VerificationFailed:
                continue
            if path[:1] not in UNCOMMITTED:
                accepted.append((path, value))
    assert accepted == []
