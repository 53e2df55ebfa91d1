"""What the store lists: recent blocks, a sender's transactions, events; and the schema 3
store a node made before events existed, migrated in place."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from medledger.apps import App, AppRegistry, BlockContext, Event, TxType, default_registry
from medledger.apps.body import Text
from medledger.apps.identity import anyone
from medledger.ledger import Transaction
from medledger.node import Chain
from medledger.state import StateView
from medledger.store import EventQuery, SQLiteStore
from tests.chainutil import commit_block
from tests.test_chain import ADMIN, OTHER_ADMIN, anchor, feed, genesis, make_node


def _two_senders(path: Path) -> None:
    n = make_node(path)
    feed(n, [[anchor(ADMIN, 1, 1), anchor(OTHER_ADMIN, 1, 2)],
             [anchor(ADMIN, 2, 3)],
             [anchor(OTHER_ADMIN, 2, 4), anchor(ADMIN, 3, 5), anchor(ADMIN, 4, 6)]])
    n.close()


def test_recent_blocks_newest_first_and_paged(tmp_path: Path) -> None:
    _two_senders(tmp_path / "c.db")
    store = SQLiteStore(tmp_path / "c.db")
    assert [b.height for b in store.list_blocks(None, 10)] == [3, 2, 1]
    assert [b.height for b in store.list_blocks(3, 1)] == [2]
    assert store.list_blocks(1, 10) == []
    store.close()


def test_a_senders_transactions_newest_first_and_paged(tmp_path: Path) -> None:
    _two_senders(tmp_path / "c.db")
    store = SQLiteStore(tmp_path / "c.db")
    mine = store.txs_by_sender(ADMIN.public_key, None, 10)
    assert [(t.height, t.index) for t in mine] == [(3, 2), (3, 1), (2, 0), (1, 0)]
    page = store.txs_by_sender(ADMIN.public_key, (3, 1), 2)
    assert [(t.height, t.index) for t in page] == [(2, 0), (1, 0)]
    theirs = store.txs_by_sender(OTHER_ADMIN.public_key, None, 10)
    assert [(t.height, t.index) for t in theirs] == [(3, 0), (1, 1)]
    store.close()


def test_events_filter_by_type_attribute_height_and_cursor(tmp_path: Path) -> None:
    _two_senders(tmp_path / "c.db")
    store = SQLiteStore(tmp_path / "c.db")
    every = store.list_events(EventQuery())
    assert [e.seq for e in every] == [1, 2, 3, 4, 5, 6]
    assert {e.type for e in every} == {"anchor.anchored"}
    by_sender = store.list_events(EventQuery(attrs=(("sender", OTHER_ADMIN.public_key.hex()),)))
    assert [(e.height, e.tx_index) for e in by_sender] == [(1, 1), (3, 0)]
    assert [e.seq for e in store.list_events(EventQuery(from_height=3))] == [4, 5, 6]
    assert [e.seq for e in store.list_events(EventQuery(after=4, limit=1))] == [5]
    assert store.list_events(EventQuery(type="identity.member_registered")) == []
    assert store.last_event_seq() == 6
    store.close()


def test_a_schema_3_store_is_migrated_and_lists_its_old_transactions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _two_senders(path)
    with sqlite3.connect(path) as db:  # lay it out as schema 3 had it
        db.execute("DROP INDEX txs_by_sender")
        db.execute("ALTER TABLE txs DROP COLUMN sender_prefix")
        db.execute("ALTER TABLE txs DROP COLUMN events")
        for table in ("events", "event_attrs"):
            db.execute(f"DROP TABLE {table}")
        db.execute("UPDATE meta SET value = x'33' WHERE name = 'schema'")
    store = SQLiteStore(path)
    assert store.get_meta("schema") == b"4"
    assert [t.height for t in store.txs_by_sender(ADMIN.public_key, None, 10)] == [3, 3, 2, 1]
    # the events of blocks made before schema 4 are not indexed; the chain goes on from them
    assert store.list_events(EventQuery()) == []
    chain = Chain(store, genesis(), default_registry())
    assert chain.height == 3 and chain.view().get(f"anchor/{(6).to_bytes(32, 'big').hex()}")
    store.close()


def test_state_entries_under_a_prefix_page_by_key(tmp_path: Path) -> None:
    _two_senders(tmp_path / "c.db")
    store = SQLiteStore(tmp_path / "c.db")
    every = [k for k, _ in store.iter_prefix("anchor/")]
    assert len(every) == 6 and every == sorted(every)
    assert [k for k, _ in store.iter_prefix("anchor/", None, 2)] == every[:2]
    assert [k for k, _ in store.iter_prefix("anchor/", every[1], 3)] == every[2:5]
    assert [k for k, _ in store.iter_prefix("anchor/", every[-1])] == []
    assert [k for k, _ in store.iter_prefix("anchor/", "a", 1)] == every[:1]  # before it
    store.close()


@dataclass(frozen=True, slots=True)
class SayBody:
    text: Annotated[str, Text(100)]


def _say(view: StateView, tx: Transaction, body: SayBody, ctx: BlockContext) -> tuple[Event]:
    return (Event("echo.said", (("text", body.text),)),)


class EchoApp(App):
    """A test app whose event carries whatever text it is sent."""

    name: ClassVar[str] = "echo"
    prefixes: ClassVar[tuple[str, ...]] = ("echo/",)

    def transactions(self) -> Sequence[TxType[Any]]:
        return (TxType("echo.say", SayBody, anyone, lambda *_: None, _say),)


def test_events_with_awkward_values_are_indexed_and_found_exactly(tmp_path: Path) -> None:
    """Attribute values are indexed by SQLite from the stored JSON: escapes, non-ASCII
    text and '=' inside a value must come back exactly and match only themselves."""
    texts = ['quote " and \\ back', "caf\u00e9 \U0001f600", "a=b=c", "a=b", "tab\there"]
    chain = Chain(SQLiteStore(tmp_path / "c.db"), genesis(),
                  AppRegistry([*default_registry().apps, EchoApp()]))
    commit_block(chain, [Transaction.create(ADMIN, "test-chain", "echo.say", n + 1, {"text": t})
                         for n, t in enumerate(texts)])
    store = chain.store
    assert [r.code for r in store.get_block_txs(1)] == ["ok"] * 4 + ["malformed"]
    for text in texts[:4]:
        found = store.list_events(EventQuery(attrs=(("text", text),)))
        assert len(found) == 1, text
        assert json.loads(found[0].attrs) == {"text": text}
    store.close()