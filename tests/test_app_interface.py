"""The App interface: scoped writes, typed bodies, events, hooks, and the registry's rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medledger.apps import (
    App,
    AppRegistry,
    BlockContext,
    Event,
    PrefixViolation,
    Rejected,
    TxType,
    default_registry,
)
from medledger.apps.body import B64, Hex, Items, OneOf, Range, Text, decode_body
from medledger.crypto import SigningKey
from medledger.ledger import MalformedError, Transaction, TxResult, Validator, ValidatorSet
from medledger.node import Chain, Genesis
from medledger.state import Overlay, ReadOnly, StateView
from medledger.store import EventQuery, SQLiteStore
from tests.chainutil import commit_block

CTX = BlockContext("test-chain", 5, 1_000)
KEY = SigningKey.from_seed(bytes(range(32)))


def anyone(view: StateView, tx: Transaction, ctx: BlockContext) -> None:
    """Any sender."""


@dataclass(frozen=True, slots=True)
class NoteBody:
    key: Annotated[str, Text(20)]
    where: Annotated[str, OneOf(("inside", "outside"))] = "inside"


def _note_apply(view: StateView, tx: Transaction, body: NoteBody,
                ctx: BlockContext) -> tuple[Event, ...]:
    target = f"notes/{body.key}" if body.where == "inside" else f"elsewhere/{body.key}"
    view.put(target, {"height": ctx.height})
    return (Event.of("notes.written", key=body.key),)


def _no_check(view: StateView, tx: Transaction, body: Any, ctx: BlockContext) -> None:
    if view.get(f"notes/{body.key}") is not None:
        raise Rejected("exists", "already written")


class NotesApp(App):
    """A test app writing under notes/ (or, on purpose, outside it)."""

    name: ClassVar[str] = "notes"
    prefixes: ClassVar[tuple[str, ...]] = ("notes/",)
    codes: ClassVar[dict[str, int]] = {"full": 409}

    def transactions(self) -> Sequence[TxType[Any]]:
        return (TxType("notes.write", NoteBody, anyone, _no_check, _note_apply),)

    def end_block(self, view: StateView, ctx: BlockContext) -> tuple[Event, ...]:
        view.put("notes/last-height", ctx.height)
        return (Event.of("notes.block_ended", height=str(ctx.height)),)


def note(key: str, where: str = "inside", nonce: int = 1) -> Transaction:
    return Transaction.create(KEY, "test-chain", "notes.write", nonce,
                              {"key": key, "where": where})


def empty_view() -> Overlay:
    return Overlay(ReadOnly(lambda key: None))


# --- scoped writes ------------------------------------------------------------------------------
def test_an_app_writes_inside_its_prefix() -> None:
    view = empty_view()
    events = AppRegistry([NotesApp()]).apply(view, note("a"), CTX)
    assert view.writes == {"notes/a": b'{"height":5}'}
    assert events == (Event("notes.written", (("key", "a"),)),)


def test_a_write_outside_the_prefix_fails_loudly_and_is_not_a_refusal() -> None:
    view = empty_view()
    with pytest.raises(PrefixViolation) as caught:
        AppRegistry([NotesApp()]).apply(view, note("a", "outside"), CTX)
    assert not isinstance(caught.value, Rejected)
    assert caught.value.key == "elsewhere/a" and caught.value.app == "notes"
    assert view.writes == {}


def test_a_block_hook_writing_outside_its_prefix_fails_loudly() -> None:
    class Leaky(NotesApp):
        def begin_block(self, view: StateView, ctx: BlockContext) -> tuple[Event, ...]:
            view.put("identity/org/x", {})
            return ()

    with pytest.raises(PrefixViolation):
        AppRegistry([Leaky()]).begin_block(empty_view(), CTX)


def test_the_ported_apps_write_only_inside_their_prefixes() -> None:
    registry = default_registry()
    owned = [p for app in registry.apps for p in app.prefixes]
    assert {"identity/", "anchor/", "governance/", "validators/", "evidence/"} <= set(owned)


def test_an_event_must_be_named_after_its_app() -> None:
    class Misnamed(NotesApp):
        def end_block(self, view: StateView, ctx: BlockContext) -> tuple[Event, ...]:
            return (Event.of("identity.fake", x="1"),)

    # in a block, the hook counts as failed: its events and writes are dropped, and said
    events = AppRegistry([Misnamed()]).end_block(empty_view(), CTX)
    assert [(e.type, dict(e.attrs)) for e in events] == [
        ("ledger.hook_failed", {"app": "notes", "hook": "end_block", "error": "ValueError"})]
    with pytest.raises(ValueError, match="named <app>.<what>"):  # outside a block, it raises
        AppRegistry([Misnamed()]).end_block(ReadOnly(lambda key: None), CTX)


# --- the registry's own rules -------------------------------------------------------------------
def test_registry_refuses_overlapping_prefixes_and_twice_registered_types() -> None:
    class Other(NotesApp):
        name: ClassVar[str] = "other"
        prefixes: ClassVar[tuple[str, ...]] = ("notes/sub/",)

        def transactions(self) -> Sequence[TxType[Any]]:
            return ()

    with pytest.raises(ValueError, match="overlaps"):
        AppRegistry([NotesApp(), Other()])

    class Twin(NotesApp):
        name: ClassVar[str] = "twin"
        prefixes: ClassVar[tuple[str, ...]] = ("twin/",)

    with pytest.raises(ValueError, match="registered twice"):
        AppRegistry([NotesApp(), Twin()])


def test_registry_merges_refusal_codes_and_refuses_a_code_with_two_statuses() -> None:
    assert AppRegistry([NotesApp()]).codes["full"] == 409

    class Clash(NotesApp):
        codes: ClassVar[dict[str, int]] = {"exists": 418}

    with pytest.raises(ValueError, match="two HTTP statuses"):
        AppRegistry([Clash()])


def test_unknown_type_is_refused_with_a_stable_code() -> None:
    tx = Transaction.create(KEY, "test-chain", "notes.erase", 1, {})
    with pytest.raises(Rejected) as caught:
        AppRegistry([NotesApp()]).check_stateless(tx)
    assert caught.value.code == "unknown_type"


def test_default_registry_has_one_validator_authority() -> None:
    registry = default_registry()
    assert registry.validators.pending_key(7).endswith("0000000000000007")
    with pytest.raises(LookupError):
        _ = AppRegistry([NotesApp()]).validators


# --- typed bodies -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Inner:
    n: Annotated[int, Range(1, 9)]


@dataclass(frozen=True, slots=True)
class Sample:
    digest: Annotated[str, Hex(4)]
    label: Annotated[str, Text(5)]
    count: Annotated[int, Range(0, 10)]
    flag: bool
    tags: Annotated[list[Annotated[str, Text(3)]], Items(0, 2)]
    inner: Inner
    note: Annotated[str, Text(10)] | None = None
    sealed: Annotated[str, B64(8)] | None = None


GOOD = {"digest": "00ff00ff", "label": "hello", "count": 3, "flag": True, "tags": ["a"],
        "inner": {"n": 2}}

BODY_CASES = {
    "a missing field": ({k: v for k, v in GOOD.items() if k != "label"}, "body lacks label"),
    "an extra field": ({**GOOD, "colour": "red"}, "body has unknown fields colour"),
    "hex of the wrong size": ({**GOOD, "digest": "00ff"}, "digest must be 4 bytes"),
    "upper-case hex": ({**GOOD, "digest": "00FF00FF"}, "digest must be lower-case hex"),
    "a number as a string": ({**GOOD, "label": 5}, "label must be 1-5 printable"),
    "a string too long": ({**GOOD, "label": "toolong"}, "label must be 1-5 printable"),
    "an integer out of range": ({**GOOD, "count": 11}, "count must be an integer from 0"),
    "a boolean as an integer": ({**GOOD, "count": True}, "count must be an integer"),
    "an integer as a boolean": ({**GOOD, "flag": 1}, "flag must be true or false"),
    "too many list items": ({**GOOD, "tags": ["a", "b", "c"]}, "tags must be a list of 0-2"),
    "a bad list item": ({**GOOD, "tags": ["abcd"]}, "tags[0] must be 1-3 printable"),
    "a bad nested field": ({**GOOD, "inner": {"n": 0}}, "inner.n must be an integer from 1"),
    "an unknown nested field": ({**GOOD, "inner": {"n": 1, "m": 2}},
                                "inner.body has unknown fields m"),
    "null for an optional field": ({**GOOD, "note": None}, "note must be 1-10 printable"),
    "base64 with padding": ({**GOOD, "sealed": "AAA="}, "sealed must be unpadded base64url"),
    "base64 with + and /": ({**GOOD, "sealed": "+/8"}, "sealed must be unpadded base64url"),
    "base64 with unused bits set": ({**GOOD, "sealed": "AB"}, "sealed must be unpadded base64url"),
    "base64 of an impossible length": ({**GOOD, "sealed": "AAAAA"},
                                       "sealed must be unpadded base64url"),
    "base64 of no bytes": ({**GOOD, "sealed": ""}, "sealed must be 1-8 bytes"),
    "base64 of too many bytes": ({**GOOD, "sealed": "A" * 12}, "sealed must be 1-8 bytes"),
    "base64 as hex bytes": ({**GOOD, "sealed": 5}, "sealed must be unpadded base64url"),
    "a list for an object": ([GOOD], "body must be an object"),
}


@pytest.mark.parametrize("case", sorted(BODY_CASES))
def test_a_malformed_body_is_refused_naming_the_field(case: str) -> None:
    body, message = BODY_CASES[case]
    with pytest.raises(Rejected) as caught:
        decode_body(Sample, body)
    assert caught.value.code == "malformed"
    assert message in caught.value.message, caught.value.message


def test_a_good_body_decodes_to_its_frozen_type() -> None:
    decoded = decode_body(Sample, GOOD)
    assert decoded == Sample("00ff00ff", "hello", 3, True, ("a",), Inner(2), None)
    assert decode_body(Sample, {**GOOD, "note": "hi"}).note == "hi"
    assert decode_body(Sample, {**GOOD, "sealed": "_-8"}).sealed == "_-8"  # bytes ff ef
    with pytest.raises(AttributeError):
        decoded.label = "x"  # type: ignore[misc]


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(),
                                                     st.booleans()), max_size=8))
def test_any_json_object_either_decodes_or_is_refused_as_malformed(body: dict[str, Any]) -> None:
    try:
        decode_body(Sample, body)
    except Rejected as e:
        assert e.code == "malformed"


def test_the_ported_apps_refuse_a_field_of_the_wrong_type_as_malformed() -> None:
    registry = default_registry()
    tx = Transaction.create(KEY, "test-chain", "ledger.anchor", 1,
                            {"digest": "00" * 32, "label": 7})
    with pytest.raises(Rejected) as caught:
        registry.check_stateless(tx)
    assert (caught.value.code, caught.value.message) == (
        "malformed", "label must be 1-200 printable characters")


# --- events -------------------------------------------------------------------------------------
def test_events_check_their_names_and_values() -> None:
    for bad in (lambda: Event.of("nodot", a="1"), lambda: Event.of("a.b", **{"A": "1"}),
                lambda: Event.of("a.b", a="x" * 513)):
        with pytest.raises(MalformedError):
            bad()


def test_a_result_without_events_has_the_bytes_it_always_had() -> None:
    assert TxResult("ok", "").to_dict() == {"code": "ok", "message": ""}
    with_events = TxResult("ok", "", (Event.of("a.b", x="1"),))
    assert TxResult.from_dict(with_events.to_dict()) == with_events


def _chain(tmp_path: Path, registry: AppRegistry) -> Chain:
    genesis = Genesis("test-chain", 1_000, ValidatorSet.of([Validator(KEY.public_key, 10, "v")]),
                      ())
    return Chain(SQLiteStore(tmp_path / "s.db"), genesis, registry)


def test_a_chain_runs_hooks_commits_events_and_indexes_them(tmp_path: Path) -> None:
    registry = AppRegistry([*default_registry().apps, NotesApp()])
    chain = _chain(tmp_path, registry)
    commit_block(chain, [note("a", nonce=1), note("a", nonce=2), note("b", nonce=3)],
                 time=2_000, proposer=KEY.public_key)
    block = chain.store.get_block_txs(1)
    assert [t.code for t in block] == ["ok", "exists", "ok"]
    assert block[1].events == b""  # a refused transaction leaves no events
    events = chain.store.list_events(EventQuery())
    assert [(e.seq, e.tx_index, e.type) for e in events] == [
        (1, 0, "notes.written"), (2, 2, "notes.written"), (3, None, "notes.block_ended")]
    assert chain.store.list_events(EventQuery(attrs=(("key", "b"),)))[0].seq == 2
    assert chain.store.list_events(EventQuery(type="notes.block_ended", after=2))[0].seq == 3
    assert chain.view().get("notes/last-height") == 1  # the end-block hook's write
    assert chain.store.last_event_seq() == 3


def test_a_prefix_violation_inside_a_block_stops_execution(tmp_path: Path) -> None:
    chain = _chain(tmp_path, AppRegistry([*default_registry().apps, NotesApp()]))
    with pytest.raises(PrefixViolation):
        commit_block(chain, [note("a", "outside")], time=2_000, proposer=KEY.public_key)
    assert chain.height == 0


_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)
_VALUES = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)


@given(st.dictionaries(_NAMES, _VALUES, max_size=5), st.text(max_size=20))
def test_event_and_result_bytes_are_the_canonical_encoding(attrs: dict[str, str],
                                                           message: str) -> None:
    """Events and results build their bytes by hand (it is on every block's hot path);
    they must be exactly what the canonical encoder gives."""
    from medledger.codec import encode

    event = Event("app.happened", tuple(attrs.items()))
    assert event.encode() == encode(event.to_dict())
    for result in (TxResult("ok", "", (event, event)), TxResult("exists", message, (event,))):
        assert result.encode() == encode(result.to_dict())
        assert TxResult.from_dict(result.to_dict()) == result
