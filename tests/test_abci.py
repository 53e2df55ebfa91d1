"""The ABCI boundary without CometBFT: the socket framing, and the application's answers to
each request, driven directly with the generated protobuf messages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medledger.apps import default_registry
from medledger.codec import decode, encode
from medledger.crypto import SigningKey
from medledger.ledger import Event, Transaction, TxResult
from medledger.node import Home
from medledger.node.abci import FrameError, LedgerApplication, frame, read_frame
from medledger.node.abci.wire import MAX_MESSAGE_BYTES, abci_types
from medledger.node.chain import Chain, result_of
from medledger.node.engine import _patch_toml
from medledger.store import SQLiteStore
from tests.conftest import FAST_KDF

T = abci_types()


# framing -------------------------------------------------------------------------------------
def _read(data: bytes) -> bytes | None:
    async def go() -> bytes | None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_frame(reader)
    return asyncio.run(go())


@given(st.binary(max_size=3000))
def test_a_frame_reads_back_as_its_payload(payload: bytes) -> None:
    assert _read(frame(payload)) == payload


def test_the_length_prefix_is_an_unsigned_varint() -> None:
    assert frame(b"x" * 300)[:2] == bytes([0xAC, 0x02])  # 300 = 0b10_0101100
    assert frame(b"")[:1] == b"\x00"


def test_bad_frames_are_refused() -> None:
    assert _read(b"") is None  # a clean end between frames
    with pytest.raises(FrameError, match="longer than 10 bytes"):
        _read(b"\xff" * 11)
    too_big = bytearray()
    size = MAX_MESSAGE_BYTES + 1
    while size >= 0x80:
        too_big.append((size & 0x7F) | 0x80)
        size >>= 7
    too_big.append(size)
    with pytest.raises(FrameError, match="exceeds the limit"):
        _read(bytes(too_big))
    with pytest.raises(asyncio.IncompleteReadError):
        _read(frame(b"hello")[:-2])


# config.toml ---------------------------------------------------------------------------------
def test_config_settings_land_in_their_section_and_unknown_keys_are_refused() -> None:
    text = 'moniker = "a"\n\n[rpc]\nladdr = "tcp://0.0.0.0:1"\n\n[p2p]\nladdr = "tcp://x:2"\n'
    out = _patch_toml(text, {("p2p", "laddr"): "tcp://127.0.0.1:9", ("", "moniker"): "n0"})
    assert out == ('moniker = "n0"\n\n[rpc]\nladdr = "tcp://0.0.0.0:1"\n\n'
                   '[p2p]\nladdr = "tcp://127.0.0.1:9"\n')
    with pytest.raises(ValueError, match="no timeout_bogus"):
        _patch_toml(text, {("rpc", "timeout_bogus"): 1})


# the application -------------------------------------------------------------------------------
@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home.init(tmp_path / "node", "abci-chain", kdf_params=FAST_KDF, demo=True,
                     genesis_time=1_700_000_000_000)


@pytest.fixture
def application(home: Home) -> LedgerApplication:
    store = SQLiteStore(home.store_path)
    app = LedgerApplication(Chain(store, home.genesis(), default_registry()), max_block_txs=3)
    yield app
    store.close()


@pytest.fixture
def admin(home: Home) -> SigningKey:
    return home.member_keys("admin").signing


def _anchor(key: SigningKey, nonce: int, index: int | None = None,
            chain_id: str = "abci-chain") -> Transaction:
    type_, body = default_registry().sample_tx(nonce if index is None else index)
    return Transaction.create(key, chain_id, type_, nonce, body)


def _bad_signature(tx: Transaction) -> bytes:
    data = tx.to_dict()
    data["signature"] = ("00" if data["signature"][:2] != "00" else "11") + data["signature"][2:]
    return encode(data)


def _finalize(app: LedgerApplication, txs: list[bytes], height: int, validator: bytes) -> object:
    from medledger.node.abci import validator_address

    request = T.RequestFinalizeBlock(txs=txs, height=height, hash=bytes([height]) * 32,
                                     proposer_address=validator_address(validator))
    request.time.seconds = 1_700_000_000 + height
    return app.finalize_block(request)


def _validator(app: LedgerApplication) -> bytes:
    return app.chain.validators.validators[0].public_key


def test_info_reports_the_committed_height_and_app_hash(application: LedgerApplication,
                                                        admin: SigningKey) -> None:
    info = application.info(T.RequestInfo())
    assert (info.last_block_height, info.last_block_app_hash) == (0, b"")
    answer = _finalize(application, [_anchor(admin, 1).raw], 1, _validator(application))
    assert application.info(T.RequestInfo()).last_block_height == 0  # not before Commit
    application.commit(T.RequestCommit())
    info = application.info(T.RequestInfo())
    assert info.last_block_height == 1
    assert info.last_block_app_hash == answer.app_hash == application.chain.state_root.hash


def test_init_chain_checks_chain_id_genesis_and_validators(application: LedgerApplication,
                                                           home: Home) -> None:
    genesis = home.genesis()
    answer = application.init_chain(T.RequestInitChain(
        chain_id="abci-chain", app_state_bytes=genesis.encode()))
    assert [(v.pub_key.ed25519, v.power) for v in answer.validators] == [
        (v.public_key, v.power) for v in genesis.validators.validators]
    with pytest.raises(ValueError, match="chain 'other'"):
        application.init_chain(T.RequestInitChain(chain_id="other"))
    other = Home.init(home.path.parent / "other", "abci-chain", kdf_params=FAST_KDF)
    with pytest.raises(ValueError, match="app_state is not this node's genesis"):
        application.init_chain(T.RequestInitChain(
            chain_id="abci-chain", app_state_bytes=other.genesis().encode()))
    stranger = T.ValidatorUpdate(power=10)
    stranger.pub_key.ed25519 = SigningKey.generate().public_key
    with pytest.raises(ValueError, match="validators differ"):
        application.init_chain(T.RequestInitChain(chain_id="abci-chain",
                                                  validators=[stranger]))


@pytest.mark.parametrize(("case", "codespace"), [
    ("bad signature", "signature"),
    ("not JSON", "malformed"),
    ("not canonical", "malformed"),
    ("another chain", "chain_id"),
    ("unknown type", "unknown_type"),
    ("replayed nonce", "nonce"),
])
def test_check_tx_refuses_with_a_stable_code(application: LedgerApplication,
                                             admin: SigningKey, case: str,
                                             codespace: str) -> None:
    first = _anchor(admin, 1)
    assert application.check_tx(T.RequestCheckTx(tx=first.raw)).code == 0
    raw = {
        "bad signature": lambda: _bad_signature(_anchor(admin, 2)),
        "not JSON": lambda: b"{not json",
        "not canonical": lambda: b" " + _anchor(admin, 2).raw,
        "another chain": lambda: _anchor(admin, 2, chain_id="elsewhere").raw,
        "unknown type": lambda: Transaction.create(admin, "abci-chain", "nothing.here", 2,
                                                   {}).raw,
        "replayed nonce": lambda: _anchor(admin, 1, index=99).raw,  # 1 is in the mempool
    }[case]()
    answer = application.check_tx(T.RequestCheckTx(tx=raw))
    assert (answer.code, answer.codespace) == (1, codespace)
    assert answer.log


def test_a_recheck_after_commit_starts_from_committed_nonces(application: LedgerApplication,
                                                             admin: SigningKey) -> None:
    one, two = _anchor(admin, 1), _anchor(admin, 2)
    assert application.check_tx(T.RequestCheckTx(tx=one.raw)).code == 0
    assert application.check_tx(T.RequestCheckTx(tx=two.raw)).code == 0
    _finalize(application, [one.raw], 1, _validator(application))
    application.commit(T.RequestCommit())
    recheck = T.RequestCheckTx(tx=two.raw, type=T.RECHECK)
    assert application.check_tx(recheck).code == 0
    stale = T.RequestCheckTx(tx=one.raw, type=T.RECHECK)
    assert application.check_tx(stale).codespace == "nonce"


def test_a_proposal_with_a_bad_transaction_is_refused(application: LedgerApplication,
                                                      admin: SigningKey) -> None:
    good = [_anchor(admin, n).raw for n in (1, 2)]
    status = T.ResponseProcessProposal.ProposalStatus
    accept = application.process_proposal(T.RequestProcessProposal(txs=good, height=1))
    assert accept.status == status.ACCEPT
    bad = application.process_proposal(T.RequestProcessProposal(
        txs=[*good, _bad_signature(_anchor(admin, 3))], height=1))
    assert bad.status == status.REJECT
    junk = application.process_proposal(T.RequestProcessProposal(txs=[b"\x00"], height=1))
    assert junk.status == status.REJECT


def test_prepare_proposal_drops_bad_transactions_and_caps_count_and_bytes(
        application: LedgerApplication, admin: SigningKey) -> None:
    txs = [_anchor(admin, n).raw for n in range(1, 6)]
    bad = _bad_signature(_anchor(admin, 9))
    chosen = application.prepare_proposal(T.RequestPrepareProposal(
        txs=[bad, *txs], max_tx_bytes=10**6)).txs
    assert list(chosen) == txs[:3]  # max_block_txs=3, the bad one dropped
    room = len(txs[0]) + 8 + len(txs[1]) + 8
    chosen = application.prepare_proposal(T.RequestPrepareProposal(txs=txs,
                                                                   max_tx_bytes=room)).txs
    assert list(chosen) == txs[:2]


def _propose(app: LedgerApplication, txs: list[bytes], height: int) -> list[bytes]:
    return list(app.prepare_proposal(T.RequestPrepareProposal(txs=txs, height=height,
                                                              max_tx_bytes=10**6)).txs)


def test_a_senders_nonces_gossiped_out_of_order_are_proposed_in_order(
        application: LedgerApplication, admin: SigningKey) -> None:
    one, two, three = (_anchor(admin, n) for n in (1, 2, 3))
    for tx in (two, three, one):  # n+1 reached this node before n
        assert application.check_tx(T.RequestCheckTx(tx=tx.raw)).code == 0
    proposed = _propose(application, [two.raw, three.raw, one.raw], 1)
    assert proposed == [one.raw, two.raw, three.raw]
    results = _finalize(application, proposed, 1, _validator(application)).tx_results
    assert [r.code for r in results] == [0, 0, 0]


def test_a_nonce_gap_is_held_back_a_few_heights_then_proposed(
        application: LedgerApplication, admin: SigningKey, home: Home) -> None:
    from medledger.node.abci.app import HOLD_HEIGHTS

    other = next(name for name in home.known_keys() if name != "admin")
    gap = _anchor(admin, 2)  # nonce 1 of admin is in flight
    filler = _anchor(home.member_keys(other).signing, 1)
    for tx in (gap, filler):
        assert application.check_tx(T.RequestCheckTx(tx=tx.raw)).code == 0
    for height in range(1, HOLD_HEIGHTS + 1):  # checked at height 0: held through 0 + HOLD
        assert _propose(application, [gap.raw, filler.raw], height) == [filler.raw]
    assert _propose(application, [gap.raw], HOLD_HEIGHTS + 1) == [gap.raw]
    one = _anchor(admin, 1)  # the predecessor arrives in time: both go, in order
    assert application.check_tx(T.RequestCheckTx(tx=one.raw)).code == 0
    assert _propose(application, [gap.raw, one.raw], 1) == [one.raw, gap.raw]
    unseen = _anchor(admin, 7)  # never checked here (another node's): not held
    assert _propose(application, [unseen.raw], 1) == [unseen.raw]


def test_a_committed_nonce_frees_nothing_but_what_it_used(
        application: LedgerApplication, admin: SigningKey) -> None:
    one, two = _anchor(admin, 1), _anchor(admin, 2)
    for tx in (one, two):
        assert application.check_tx(T.RequestCheckTx(tx=tx.raw)).code == 0
    _finalize(application, [one.raw], 1, _validator(application))
    application.commit(T.RequestCommit())
    again = application.check_tx(T.RequestCheckTx(tx=_anchor(admin, 2, index=50).raw))
    assert (again.code, again.codespace) == (1, "nonce")  # 2 still waits in the mempool
    stale = application.check_tx(T.RequestCheckTx(tx=_anchor(admin, 1, index=51).raw))
    assert (stale.code, stale.codespace) == (1, "nonce")  # 1 is committed


def test_check_tx_refuses_once_as_many_wait_as_cometbfts_mempool_holds(
        home: Home, admin: SigningKey) -> None:
    """CometBFT checks its mempool's size again after CheckTx says yes and then drops the
    transaction silently: the app refuses first, counting what waits until a block."""
    store = SQLiteStore(home.store_path)
    app = LedgerApplication(Chain(store, home.genesis(), default_registry()), mempool_size=2)
    one, two, three = (_anchor(admin, n) for n in (1, 2, 3))
    assert [app.check_tx(T.RequestCheckTx(tx=t.raw)).code for t in (one, two)] == [0, 0]
    full = app.check_tx(T.RequestCheckTx(tx=three.raw))
    assert (full.code, full.codespace) == (1, "mempool_full")
    _finalize(app, [one.raw], 1, _validator(app))
    app.commit(T.RequestCommit())  # one left the mempool in a block: room for one more
    assert app.check_tx(T.RequestCheckTx(tx=three.raw)).code == 0
    again = app.check_tx(T.RequestCheckTx(tx=_anchor(admin, 4).raw))
    assert again.codespace == "mempool_full"
    store.close()


def test_finalize_block_results_commit_codes_messages_and_events(
        application: LedgerApplication, admin: SigningKey) -> None:
    one = _anchor(admin, 1)
    replay = _anchor(admin, 1, index=7)  # same nonce, refused at execution
    answer = _finalize(application, [one.raw, replay.raw], 1, _validator(application))
    ok, refused = answer.tx_results
    assert ok.code == 0 and TxResult.from_dict(decode(ok.data)).events
    assert (refused.code, refused.codespace) == (1, "nonce")
    assert refused.data == TxResult("nonce", refused.log).encode()
    application.commit(T.RequestCommit())
    stored = application.chain.store.get_tx(one.tx_id)
    assert stored is not None and stored.height == 1 and stored.code == "ok"


def test_finalize_block_at_the_wrong_height_is_an_error(application: LedgerApplication) -> None:
    with pytest.raises(ValueError, match="finalizes height 2"):
        _finalize(application, [], 2, _validator(application))


def test_commit_without_finalize_is_an_error(application: LedgerApplication) -> None:
    with pytest.raises(ValueError, match="without a finalized block"):
        application.commit(T.RequestCommit())


def test_a_refused_proposal_transaction_in_a_decided_block_changes_nothing(
        application: LedgerApplication, admin: SigningKey) -> None:
    """A block that >1/3 faulty power pushed through with a bad transaction: the bad one is
    answered with its refusal and never executed."""
    good = _anchor(admin, 1)
    answer = _finalize(application, [_bad_signature(_anchor(admin, 2)), good.raw], 1,
                       _validator(application))
    assert [r.codespace for r in answer.tx_results] == ["signature", ""]
    application.commit(T.RequestCommit())
    assert application.chain.last_nonce(admin.public_key) == 1


def test_peer_filter_queries(application: LedgerApplication) -> None:
    application.peers_allowed = lambda peer: peer == "aa" * 20
    assert application.query(T.RequestQuery(path="/p2p/filter/id/" + "aa" * 20)).code == 0
    assert application.query(T.RequestQuery(path="/p2p/filter/id/" + "bb" * 20)).code == 1
    assert application.query(T.RequestQuery(path="/nothing")).code == 1


@pytest.mark.parametrize("result", [
    TxResult("ok", ""),
    TxResult("nonce", "nonce 1 already used; next must exceed 1"),
    TxResult("ok", "", (Event.of(
        "anchor.anchored", digest="ab" * 32, sender="cd" * 32),)),
])
def test_the_result_bytes_a_header_commits_are_cometbfts_encoding(result: TxResult) -> None:
    from medledger.ledger.engine import exec_result_bytes, exec_result_code

    expected = T.ExecTxResult(code=exec_result_code(result), data=result.encode())
    assert exec_result_bytes(result) == expected.SerializeToString()


# validator-set changes: governance's set of h + 2 returned by FinalizeBlock(h) -----------------
V = [SigningKey.from_seed(bytes([0x90 + i]) * 32) for i in range(4)]
NEW = SigningKey.from_seed(b"\xa0" * 32)
GOV_CHAIN = "abci-gov"


def test_a_governance_change_reaches_cometbft_two_heights_ahead(tmp_path: Path) -> None:
    from medledger.apps import governance
    from medledger.ledger import Validator, ValidatorSet
    from medledger.node import Genesis

    genesis = Genesis(GOV_CHAIN, 1_700_000_000_000,
                      ValidatorSet.of([Validator(k.public_key, 10, f"v{i}")
                                       for i, k in enumerate(V)]), ())
    store = SQLiteStore(tmp_path / "gov.db")
    app = LedgerApplication(Chain(store, genesis, default_registry()))
    effective = 5
    propose = Transaction.create(V[0], GOV_CHAIN, governance.PROPOSE, 1, {
        "kind": "validator_add", "effective_height": effective,
        "change": {"public_key": NEW.public_key.hex(), "power": 7, "name": "v4"}})
    approvals = [Transaction.create(k, GOV_CHAIN, governance.APPROVE, 1,
                                    {"proposal": propose.tx_id.hex()}) for k in V[1:3]]
    updates: dict[int, list[tuple[bytes, int]]] = {}
    for height in range(1, effective + 1):
        txs = [t.raw for t in (propose, *approvals)] if height == 2 else []
        answer = _finalize(app, txs, height, V[0].public_key)
        assert all(r.code == 0 for r in answer.tx_results)
        updates[height] = [(u.pub_key.ed25519, u.power) for u in answer.validator_updates]
        app.commit(T.RequestCommit())
    assert updates == {1: [], 2: [], 3: [(NEW.public_key, 7)], 4: [], 5: []}
    assert app.chain.validators.power_of(NEW.public_key) == 7
    store.close()


def test_misbehavior_cometbft_reports_is_recorded_as_evidence_once(
        application: LedgerApplication) -> None:
    from medledger.apps import governance
    from medledger.node.abci import validator_address

    offender = _validator(application)
    request = T.RequestFinalizeBlock(height=1, hash=b"\x01" * 32,
                                     proposer_address=validator_address(offender))
    request.time.seconds = 1_700_000_001
    report = request.misbehavior.add(type=T.DUPLICATE_VOTE, height=1, total_voting_power=10)
    report.validator.address = validator_address(offender)
    report.validator.power = 10
    stranger = request.misbehavior.add(type=T.DUPLICATE_VOTE, height=1)
    stranger.validator.address = b"\x07" * 20  # no validator: dropped
    application.finalize_block(request)
    application.commit(T.RequestCommit())
    view = application.chain.view()
    entries = governance.list_evidence(view)
    assert [(e["validator"], e["offence_height"], e["evidence"]["kind"]) for e in entries] == [
        (offender.hex(), 1, "duplicate_vote")]
    again = T.RequestFinalizeBlock(height=2, hash=b"\x02" * 32,
                                   proposer_address=validator_address(offender))
    again.time.seconds = 1_700_000_002
    again.misbehavior.append(report)  # reported again: recorded once
    application.finalize_block(again)
    application.commit(T.RequestCommit())
    assert len(governance.list_evidence(application.chain.view())) == 1


def test_the_log_of_blocks_in_state_proves_each_block_that_did_something(
        application: LedgerApplication, admin: SigningKey) -> None:
    from medledger.ledger.engine import HISTORY_KEY, history_leaf, results_hash
    from medledger.merkle import log

    validator = _validator(application)
    hashes = []
    app_hashes = []
    for height, txs in ((1, [_anchor(admin, 1)]), (2, []), (3, [_anchor(admin, 2)])):
        answer = _finalize(application, [t.raw for t in txs], height, validator)
        application.commit(T.RequestCommit())
        app_hashes.append(answer.app_hash)
        block = application.chain.store.get_block_txs(height)
        hashes.append((height, bytes([height]) * 32,
                       results_hash([result_of(r) for r in block])))
    assert app_hashes[1] == app_hashes[0]  # an empty block changes nothing: no proof block
    history = decode(application.chain.store.get_value(HISTORY_KEY))
    leaves = [log.leaf_hash(history_leaf(*hashes[i])) for i in (0, 2)]
    assert history["size"] == 2 and history["root"] == log.root(leaves).hex()
    path = log.inclusion_proof(leaves, 0)
    assert log.verify_inclusion(leaves[0], 0, 2, path, bytes.fromhex(history["root"]))


# FrameReader: every frame that has arrived, however the stream was cut ------------------------
def _read_all(data: bytes, cuts: list[int]) -> list[bytes]:
    from medledger.node.abci.wire import FrameReader

    async def go() -> list[bytes]:
        reader = asyncio.StreamReader()
        frames = FrameReader(reader)
        points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})

        async def feed() -> None:
            for start, end in zip(points, points[1:], strict=False):
                reader.feed_data(data[start:end])
                await asyncio.sleep(0)
            reader.feed_eof()

        task = asyncio.ensure_future(feed())
        out: list[bytes] = []
        while got := await frames.read():
            out.extend(got)
        await task
        return out

    return asyncio.run(go())


@given(st.lists(st.binary(max_size=400), max_size=20),
       st.lists(st.integers(0, 10**6), max_size=30))
def test_frames_come_back_whole_wherever_the_stream_is_cut(payloads: list[bytes],
                                                          cuts: list[int]) -> None:
    assert _read_all(b"".join(frame(p) for p in payloads), cuts) == payloads


def test_a_big_frame_and_bad_frames_through_the_reader() -> None:
    big = bytes(range(256)) * 5000
    assert _read_all(frame(big) + frame(b"x"), [3, 70_000, 500_000]) == [big, b"x"]
    with pytest.raises(asyncio.IncompleteReadError):
        _read_all(frame(b"hello")[:-2], [])
    with pytest.raises(FrameError, match="longer than 10"):
        _read_all(b"\xff" * 11, [])
