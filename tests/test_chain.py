"""The chain executor: admission, execution, determinism, and the store it commits to.

Blocks are committed as on CometBFT: the ABCI application is fed CheckTx, FinalizeBlock and
Commit requests (:class:`tests.chainutil.AbciChain`), or, where a test needs a block it
will not commit, the chain builds a decided block itself (:func:`tests.chainutil.decide`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from medledger.apps import default_registry
from medledger.codec import decode
from medledger.crypto import EncryptionKey, SigningKey
from medledger.ledger import Header, IntegrityError, Transaction, Validator, ValidatorSet
from medledger.node import Chain, Genesis
from medledger.node.verify import verify_store
from medledger.store import SQLiteStore, StoreError, StoreMismatch
from tests.chainutil import AbciChain, commit_block, decide, engine_hash

VALIDATOR = SigningKey.from_seed(b"\x01" * 32)
ADMIN = SigningKey.from_seed(b"\x02" * 32)
OTHER_ADMIN = SigningKey.from_seed(b"\x03" * 32)
CHAIN = "test-chain"


def genesis(time: int = 1_700_000_000_000) -> Genesis:
    return Genesis(
        chain_id=CHAIN, genesis_time=time,
        validators=ValidatorSet.of([Validator(VALIDATOR.public_key, 10, "v0")]),
        organisations=(
            {"id": "st-mary", "name": "St Mary's", "role": "hospital",
             "admins": [ADMIN.public_key.hex()]},
            {"id": "carewell", "name": "Carewell", "role": "insurer",
             "admins": [OTHER_ADMIN.public_key.hex()]},
        ))


def make_node(path: Path) -> AbciChain:
    """A store at ``path`` with its chain and ABCI application, of :func:`genesis`."""
    return AbciChain(path, genesis())


def anchor(key: SigningKey, nonce: int, digest: int, chain: str = CHAIN) -> Transaction:
    return Transaction.create(key, chain, "ledger.anchor", nonce,
                              {"digest": digest.to_bytes(32, "big").hex(), "label": f"d{digest}"})


def tx(key: SigningKey, nonce: int, type_: str, body: dict[str, object]) -> Transaction:
    return Transaction.create(key, CHAIN, type_, nonce, body)


@pytest.fixture
def node(tmp_path: Path) -> AbciChain:
    n = make_node(tmp_path / "chain.db")
    yield n
    n.close()


def state(node: AbciChain, key: str) -> object:
    raw = node.chain.committed_value(key)
    return None if raw is None else decode(raw)


def test_admission_codes_and_no_state_change(node: AbciChain) -> None:
    assert node.submit(anchor(ADMIN, 1, 1)) == "ok"
    node.produce()
    root, height = node.chain.state_root, node.chain.height
    stranger = SigningKey.generate()
    bad_sig = anchor(ADMIN, 5, 9).to_dict()
    bad_sig["signature"] = "00" * 64
    cases = {
        "replayed nonce": (anchor(ADMIN, 1, 2), "nonce"),
        "other chain": (anchor(ADMIN, 2, 3, chain="other"), "chain_id"),
        "bad signature": (Transaction.from_dict(bad_sig), "signature"),
        "unknown sender": (anchor(stranger, 1, 4), "unknown_sender"),
        "digest anchored twice": (anchor(ADMIN, 2, 1), "exists"),
        "unknown type": (tx(ADMIN, 2, "ledger.nothing", {}), "unknown_type"),
        "malformed body": (tx(ADMIN, 2, "ledger.anchor", {"digest": "zz"}), "malformed"),
    }
    for name, (t, code) in cases.items():
        assert node.submit(t) == code, name
    assert node.mempool == []
    assert (node.chain.state_root, node.chain.height) == (root, height)
    # a refusal holds no nonce back: the next nonce of the sender is still free
    assert node.submit(anchor(ADMIN, 2, 2)) == "ok"


def test_a_pending_nonce_and_a_repeat_are_refused(node: AbciChain) -> None:
    t1 = anchor(ADMIN, 1, 1)
    assert node.submit(t1) == "ok"
    assert node.check(t1.raw) == "nonce"  # the same transaction again: nonce 1 is pending
    assert node.submit(anchor(ADMIN, 1, 2)) == "nonce"
    assert node.submit(anchor(ADMIN, 2, 2)) == "ok"
    block = node.produce()
    assert [r.code for r in block.results] == ["ok", "ok"]
    assert state(node, f"nonce/{ADMIN.public_key.hex()}") == 2
    assert node.submit(t1) == "nonce"  # and once committed


def test_conflict_inside_a_block_is_recorded_and_leaves_no_writes(node: AbciChain) -> None:
    # two senders anchor the same digest in one block: the second fails at execution
    assert node.submit(anchor(ADMIN, 1, 7)) == "ok"
    assert node.submit(anchor(OTHER_ADMIN, 1, 7)) == "ok"
    block = node.produce()
    assert [r.code for r in block.results] == ["ok", "exists"]
    entry = state(node, f"anchor/{(7).to_bytes(32, 'big').hex()}")
    assert entry["sender"] == ADMIN.public_key.hex()  # type: ignore[index]
    # the failed transaction still used its nonce: it can never be replayed
    assert state(node, f"nonce/{OTHER_ADMIN.public_key.hex()}") == 1


def member_body(key: SigningKey, org: str = "st-mary", role: str = "clinician") -> dict[str, object]:
    return {"org": org, "key": key.public_key.hex(), "role": role, "name": "Dr Who",
            "enc_key": EncryptionKey.generate("x25519").public_bytes().hex(), "enc_suite": "x25519"}


def run(node: AbciChain, t: Transaction) -> str:
    """``t``'s refusal at CheckTx, or its result in the block that commits it."""
    code = node.submit(t)
    if code != "ok":
        return code
    block = node.produce()
    assert [x.tx_id for x in block.txs] == [t.tx_id]
    return block.results[0].code


def test_identity_lifecycle(node: AbciChain) -> None:
    # every refusal here comes at CheckTx, which uses no nonce: the sender's next
    # transaction takes it (a gap would be held back by PrepareProposal)
    member, new_member = SigningKey.generate(), SigningKey.generate()
    enc = EncryptionKey.generate("x25519").public_bytes().hex()
    steps = [
        ("admin registers a clinician", tx(ADMIN, 1, "identity.member.register", member_body(member)), "ok"),
        ("registering the same key again", tx(ADMIN, 2, "identity.member.register", member_body(member)), "exists"),
        ("another org's admin cannot register here",
         tx(OTHER_ADMIN, 1, "identity.member.register", member_body(SigningKey.generate())), "unauthorized"),
        ("a clinician cannot register members",
         tx(member, 1, "identity.member.register", member_body(SigningKey.generate())), "unauthorized"),
        ("the clinician anchors", anchor(member, 1, 100), "ok"),
        ("the member rotates their own key",
         tx(member, 2, "identity.member.rotate", {"org": "st-mary", "key": member.public_key.hex(),
            "new_key": new_member.public_key.hex(), "enc_key": enc, "enc_suite": "x25519"}), "ok"),
        ("the rotated key can no longer sign", anchor(member, 3, 101), "key_rotated"),
        ("the new key signs", anchor(new_member, 1, 102), "ok"),
        ("admin suspends the new key",
         tx(ADMIN, 2, "identity.member.suspend", {"org": "st-mary", "key": new_member.public_key.hex()}), "ok"),
        ("the suspended key can no longer sign", anchor(new_member, 2, 103), "key_suspended"),
        ("suspending twice", tx(ADMIN, 3, "identity.member.suspend",
                                {"org": "st-mary", "key": new_member.public_key.hex()}), "key_suspended"),
        ("bad role", tx(ADMIN, 3, "identity.member.register", member_body(SigningKey.generate(), role="king")), "malformed"),
        ("bad encryption key length", tx(ADMIN, 3, "identity.member.register",
                                         {**member_body(SigningKey.generate()), "enc_key": "ab" * 5}), "malformed"),
    ]
    for name, t, code in steps:
        assert run(node, t) == code, name
    entry = state(node, f"identity/key/{member.public_key.hex()}")
    assert entry["status"] == "rotated" and entry["replaced_by"] == new_member.public_key.hex()  # type: ignore[index]


def test_patient_registers_under_a_pseudonym(node: AbciChain) -> None:
    from medledger.apps.identity import pseudonym_of

    patient = SigningKey.generate()
    enc = EncryptionKey.generate()  # the post-quantum hybrid suite is the default
    body = {"enc_key": enc.public_bytes().hex(), "enc_suite": enc.suite}
    assert run(node, tx(patient, 1, "identity.patient.register", body)) == "ok"
    assert run(node, tx(patient, 2, "identity.patient.register", body)) == "exists"
    record = state(node, f"identity/patient/{pseudonym_of(patient.public_key)}")
    assert record["key"] == patient.public_key.hex()  # type: ignore[index]
    assert run(node, anchor(patient, 2, 55)) == "ok"  # the refusal used no nonce


def feed(node: AbciChain, blocks: list[list[Transaction]]) -> list[tuple[bytes, bytes]]:
    """Submit and commit each list of transactions as a block; return each block's hash
    and state root."""
    out = []
    for txs in blocks:
        for t in txs:
            assert node.submit(t) == "ok"
        block = node.produce()
        assert block.header.hash() == node.chain.tip_hash
        out.append((node.chain.tip_hash, block.header.state_root))
    return out


def test_replay_on_another_node_gives_identical_blocks_and_roots(tmp_path: Path) -> None:
    blocks = [[anchor(ADMIN, n, n) for n in range(k * 50 + 1, k * 50 + 51)] for k in range(4)]
    a = make_node(tmp_path / "a.db")
    b = make_node(tmp_path / "b.db")
    ours = feed(a, blocks)
    assert ours == feed(b, blocks)
    assert len(set(ours)) == 4  # four blocks, each with its own hash and root
    assert verify_store(a.store, a.chain.genesis).transactions == 200
    a.close(), b.close()


def test_block_time_is_the_engines_and_may_not_run_backwards(tmp_path: Path) -> None:
    """The header takes CometBFT's BFT time (to the millisecond, whatever the validators'
    clocks); the chain executes what the engine decided, and verification refuses a block
    whose time runs backwards."""
    n = make_node(tmp_path / "t.db")
    start = genesis().genesis_time
    times = [start, start + 1, start + 1, start + 2_500]  # two blocks in one millisecond
    for i, ms in enumerate(times, start=1):
        assert n.submit(anchor(ADMIN, i, i)) == "ok"
        assert n.produce(time_ms=ms).header.time == ms
    stored = [Header.from_dict(decode(n.store.get_block(h).header)).time  # type: ignore[union-attr]
              for h in range(1, 5)]
    assert stored == times
    verify_store(n.store, genesis())
    commit_block(n.chain, [anchor(ADMIN, 5, 5)], time=start + 2_499)
    with pytest.raises(IntegrityError, match="block time runs backwards") as caught:
        verify_store(n.store, genesis())
    assert caught.value.height == 5
    n.close()


def test_store_refuses_another_genesis(tmp_path: Path) -> None:
    n = make_node(tmp_path / "g.db")
    feed(n, [[anchor(ADMIN, 1, 1)]])
    n.close()
    with pytest.raises(StoreMismatch, match="another genesis"):
        Chain(SQLiteStore(tmp_path / "g.db"), genesis(time=5), default_registry())


def test_store_commit_is_all_or_nothing(tmp_path: Path) -> None:
    n = make_node(tmp_path / "s.db")
    feed(n, [[anchor(ADMIN, 1, 1)]])
    block, record = decide(n.chain, [anchor(ADMIN, 2, 2)])
    with pytest.raises((sqlite3.DatabaseError, StoreError)):
        n.store.commit_block(type(record)(**{**{f: getattr(record, f) for f in record.__dataclass_fields__},
                                             "height": 5}))
    # a failure at the last insert (the block row: NOT NULL header) leaves nothing behind
    with pytest.raises(sqlite3.IntegrityError):
        n.store.commit_block(type(record)(**{**{f: getattr(record, f) for f in record.__dataclass_fields__},
                                             "header": None, "certificate": b"{}"}))
    with pytest.raises(StoreError, match="twice"):
        n.store.commit_block(type(record)(**{**{f: getattr(record, f) for f in record.__dataclass_fields__},
                                             "nodes": [*record.nodes, record.nodes[0]]}))
    assert n.store.latest_height() == 1
    assert n.store.get_value(f"anchor/{(2).to_bytes(32, 'big').hex()}") is None
    verify_store(n.store, n.chain.genesis)
    assert block.header.height == 2
    n.close()


def test_store_reads_many_values_as_one_by_one(tmp_path: Path) -> None:
    n = make_node(tmp_path / "m.db")
    # 600 anchors: more rows than one multi-row INSERT statement carries
    feed(n, [[anchor(ADMIN, i, i) for i in range(1, 601)]])
    keys = [f"anchor/{i.to_bytes(32, 'big').hex()}" for i in range(590, 620)] + ["nope"]
    found = n.store.get_values(keys)
    assert found == {k: v for k in keys if (v := n.store.get_value(k)) is not None}
    assert len(found) == 11
    assert n.store.count_txs() == 600
    verify_store(n.store, n.chain.genesis)
    n.close()


def test_schema_2_store_is_migrated_with_its_state(tmp_path: Path) -> None:
    n = make_node(tmp_path / "old.db")
    feed(n, [[anchor(ADMIN, 1, 1), anchor(ADMIN, 2, 2)]])
    root = n.chain.state_root
    n.close()
    with sqlite3.connect(tmp_path / "old.db") as db:  # lay it out as schema 2 had it
        db.execute("CREATE TABLE state_2 (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        db.execute("INSERT INTO state_2 SELECT key, value FROM state")
        db.execute("DROP TABLE state")
        db.execute("ALTER TABLE state_2 RENAME TO state")
        db.execute("UPDATE meta SET value = x'32' WHERE name = 'schema'")
    store = SQLiteStore(tmp_path / "old.db")
    assert store.get_meta("schema") == b"4"
    chain = Chain(store, genesis(), default_registry())
    assert chain.state_root == root
    assert chain.committed_value(f"anchor/{(2).to_bytes(32, 'big').hex()}") is not None
    verify_store(store, genesis())
    with sqlite3.connect(tmp_path / "old.db") as db:
        sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'state'").fetchone()[0]
    assert "WITHOUT ROWID" in sql
    store.close()


def test_a_read_that_straddles_a_commit_is_not_cached(tmp_path: Path) -> None:
    """Admission reads state in one thread while a block commits in another: a value read
    before the commit must not outlive it in the cache."""
    n = make_node(tmp_path / "r.db")
    feed(n, [[anchor(ADMIN, 1, 1)]])
    key = f"anchor/{(2).to_bytes(32, 'big').hex()}"
    store = n.store
    real = store.get_values

    def read_then_commit(keys: list[str]) -> dict[str, bytes]:
        found = real(keys)  # read: the key is absent
        store.get_values = real  # type: ignore[method-assign]
        feed(n, [[anchor(ADMIN, 2, 2)]])  # meanwhile a block writes it
        return found

    store.get_values = read_then_commit  # type: ignore[method-assign]
    n.chain.prefetch([key])
    assert n.chain.committed_value(key) is not None
    # and the nonce the block used is not replayable through a stale cache entry
    assert n.submit(anchor(ADMIN, 2, 3)) == "nonce"
    n.close()


def test_transactions_survive_pickling() -> None:
    import pickle

    t = anchor(ADMIN, 7, 7)
    back = pickle.loads(pickle.dumps(t))
    assert back == t and back.raw == t.raw and back.signature_valid()


def tamper(db: Path, sql: str) -> None:
    con = sqlite3.connect(db)
    with con:
        assert con.execute(sql).rowcount >= 1
    con.close()


TAMPER = {
    "transaction bytes": ("UPDATE txs SET raw = replace(raw, 'd3', 'd4') WHERE height = 3 AND idx = 0",
                          3, "bytes do not match"),
    "transaction result": ("UPDATE txs SET code = 'exists' WHERE height = 2", 2, "results"),
    "transaction dropped": ("DELETE FROM txs WHERE height = 4", 4, "tx root"),
    "header": ("UPDATE blocks SET header = replace(header, '\"tx_count\":1', '\"tx_count\":2') "
               "WHERE height = 2", 2, "block hash"),
    "engine block hash": (f"UPDATE blocks SET certificate = replace(certificate, "
                          f"'{engine_hash(3).hex()}', '{engine_hash(30).hex()}') WHERE height = 3",
                          3, "log of blocks"),
    "state value": ("UPDATE state SET value = '{\"tampered\":true}' WHERE key LIKE 'anchor/%' "
                    "AND key = (SELECT MIN(key) FROM state WHERE key LIKE 'anchor/%')",
                    4, "does not match the state root"),
    "state node": ("UPDATE smt_pages SET data = substr(data, 1, 10) || x'ff' || substr(data, 12) "
                   "WHERE page = (SELECT MAX(page) FROM smt_pages)", 4, "state tree node"),
    "extra state entry": ("INSERT INTO state VALUES ('anchor/ff', '{}')", 4, "state"),
}


@pytest.mark.parametrize("sql,height,what", TAMPER.values(), ids=TAMPER.keys())
def test_tampering_is_caught_at_the_first_bad_height(tmp_path: Path, sql: str, height: int,
                                                     what: str) -> None:
    db = tmp_path / "v.db"
    n = make_node(db)
    feed(n, [[anchor(ADMIN, i, i)] for i in range(1, 5)])
    verify_store(n.store, n.chain.genesis)
    n.close()
    tamper(db, sql)
    store = SQLiteStore(db)
    with pytest.raises(IntegrityError) as info:
        verify_store(store, genesis())
    assert info.value.height == height
    assert what in str(info.value)
    store.close()
