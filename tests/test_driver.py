"""The node side of consensus, in process: evidence a node submits, and blocks rebuilt from
the store for peers that are behind."""

from __future__ import annotations

from pathlib import Path

from medledger.apps.governance import list_evidence
from medledger.ledger import PREVOTE, Certificate, DuplicateVoteEvidence, Transaction, Vote
from medledger.node import Node, NodeConfig
from medledger.node.driver import stored_commit
from medledger.store import SQLiteStore
from tests.test_block_checks import ADMIN, CHAIN, GENESIS, KEYS, anchor


def commit(node: Node, signers: int = 3) -> None:
    """Commit the mempool as the next block with a certificate of ``signers`` validators."""
    txs = node.mempool.take(1000, 10**7)
    block, record = node.chain.build_block(txs, node.key.public_key)
    cert = Certificate.sign(KEYS[:signers], CHAIN, record.height, record.block_hash,
                            block.header.time + 1)
    node._notify(node.chain.commit(block, record, cert))
    node.mempool.remove(txs)


def test_a_node_submits_evidence_of_double_signing(tmp_path: Path) -> None:
    node = Node(SQLiteStore(tmp_path / "n.db"), GENESIS, KEYS[0], NodeConfig())
    assert not node.commits_alone
    commit(node)
    ev = DuplicateVoteEvidence.of(CHAIN, Vote.sign(KEYS[3], CHAIN, PREVOTE, 1, 0, b"\x01" * 32, 0),
                                  Vote.sign(KEYS[3], CHAIN, PREVOTE, 1, 0, b"\x02" * 32, 0))
    assert node.submit_evidence(ev).accepted
    commit(node)
    listed = list_evidence(node.chain.view())
    assert [e["hash"] for e in listed] == [ev.hash().hex()]
    assert listed[0]["validator"] == KEYS[3].public_key.hex()
    assert node.submit_evidence(ev).code == "exists"  # once only
    node.close()


def test_a_stored_block_is_rebuilt_exactly_for_a_peer(tmp_path: Path) -> None:
    node = Node(SQLiteStore(tmp_path / "n.db"), GENESIS, KEYS[0], NodeConfig())
    for nonce in (1, 2):
        assert node.submit(anchor(nonce)).accepted
    commit(node)
    assert node.submit(anchor(3)).accepted
    commit(node)
    for height in (1, 2):
        found = stored_commit(node.store, height)
        assert found is not None
        block, cert = found
        stored = node.store.get_block(height)
        assert block.header.hash() == stored.block_hash == cert.block_hash  # type: ignore[union-attr]
        block.check_roots()
    assert stored_commit(node.store, 3) is None
    node.close()


def test_gossiped_transactions_reach_the_mempool_as_sent(tmp_path: Path) -> None:
    """The bytes a node broadcasts for client transactions are admitted by a peer."""
    import asyncio

    from medledger.codec import decode
    from medledger.node.driver import ConsensusDriver

    sender = Node(SQLiteStore(tmp_path / "a.db"), GENESIS, KEYS[0], NodeConfig())
    receiver = Node(SQLiteStore(tmp_path / "b.db"), GENESIS, KEYS[1], NodeConfig())
    sent: list[bytes] = []
    driver = ConsensusDriver(sender, None, {}, tmp_path / "tls-a")
    driver.transport.broadcast = lambda payload: sent.append(payload) or 1  # type: ignore[method-assign]
    txs = [anchor(n) for n in (1, 2, 3)]
    driver._gossip_txs(txs)
    assert decode(sent[0]) == {"kind": "txs", "txs": [decode(t.raw) for t in txs]}
    peer = ConsensusDriver(receiver, None, {}, tmp_path / "tls-b")
    asyncio.run(peer._on_payload(KEYS[0].public_key, sent[0]))
    assert all(t.tx_id in receiver.mempool for t in txs)
    sender.close()
    receiver.close()


def test_only_validators_are_members_of_the_transport(tmp_path: Path) -> None:
    from medledger.crypto import SigningKey
    from medledger.node.driver import ConsensusDriver
    from medledger.p2p import node_certificate

    node = Node(SQLiteStore(tmp_path / "n.db"), GENESIS, KEYS[0], NodeConfig())
    outsider = SigningKey.from_seed(b"\x33" * 32)
    certs = {k.public_key: node_certificate(k) for k in [*KEYS, outsider]}
    driver = ConsensusDriver(node, None, lambda: certs, tmp_path / "tls")
    members = driver.members()
    assert sorted(members) == sorted(k.public_key for k in KEYS)
    assert driver.transport.members() == members
    node.close()


def test_a_commit_drops_waiting_transactions_whose_nonce_it_used(tmp_path: Path) -> None:
    """Another validator's block used a sender's nonce: what waits here with a nonce at or
    below it would only fail, so it leaves the mempool; later nonces stay."""
    from medledger.node.mempool import Mempool

    pool = Mempool()
    for nonce in (3, 5, 8):
        pool.add(anchor(nonce))
    other = Transaction.create(KEYS[1], CHAIN, "ledger.anchor", 1,
                               {"digest": "ab" * 32, "label": "other sender"})
    pool.add(other)
    committed = {ADMIN.public_key: 5}
    stale = pool.drop_stale({ADMIN.public_key}, lambda s: committed.get(s, 0))
    assert sorted(t.nonce for t in stale) == [3, 5]
    assert anchor(8).tx_id in pool and other.tx_id in pool and len(pool) == 2
    assert pool.pending_nonce(ADMIN.public_key) == 8


def test_a_peer_behind_gets_commits_but_one_height_behind_only_when_stuck(
        tmp_path: Path) -> None:
    """Block sync answers a ``status``: a peer two heights behind is sent both commits at
    once; a peer one height behind is usually committing that height from its own votes,
    so it is sent the commit only once it is still behind ``BEHIND_BY_ONE_S`` later."""
    from medledger.codec import decode
    from medledger.node import driver as driver_module
    from medledger.node.driver import ConsensusDriver

    node = Node(SQLiteStore(tmp_path / "n.db"), GENESIS, KEYS[0], NodeConfig())
    for nonce in (1, 2):
        assert node.submit(anchor(nonce)).accepted
        commit(node)
    driver = ConsensusDriver(node, None, {}, tmp_path / "tls")
    sent: list[tuple[bytes, bytes]] = []
    driver.transport.send = lambda peer, payload: sent.append((peer, payload)) or True  # type: ignore[method-assign]
    peer = KEYS[1].public_key

    def heights() -> list[int]:
        return [decode(p)["certificate"]["height"] for _, p in sent]

    driver._committed_at = driver_module.time.monotonic()
    driver._answer_status(peer, 2)
    assert sent == []  # level with us
    driver._answer_status(peer, 1)
    assert sent == []  # one behind, just now: it will commit height 2 itself
    driver._answer_status(peer, 0)
    assert heights() == [1, 2]
    sent.clear()
    driver._committed_at -= driver_module.BEHIND_BY_ONE_S
    driver._answer_status(peer, 1)
    assert heights() == [2]  # still one behind long after: it is stuck there
    node.close()


def test_a_validator_added_with_its_certificate_becomes_a_member(tmp_path: Path) -> None:
    """A ``validator_add`` may carry the new node's TLS certificate: once the added key is
    in a set, the transport admits it without anyone editing members.json. A certificate
    that is not self-signed by the added key is not used."""
    from medledger.apps import governance
    from medledger.crypto import SigningKey
    from medledger.node.driver import ConsensusDriver
    from medledger.p2p import node_certificate

    node = Node(SQLiteStore(tmp_path / "n.db"), GENESIS, KEYS[0], NodeConfig())
    good, bad = SigningKey.from_seed(b"\x51" * 32), SigningKey.from_seed(b"\x52" * 32)
    changes = [  # the second carries a certificate of another key
        {"public_key": good.public_key.hex(), "power": 10, "name": "v4",
         "certificate": node_certificate(good).hex()},
        {"public_key": bad.public_key.hex(), "power": 10, "name": "v5",
         "certificate": node_certificate(KEYS[3]).hex()},
    ]
    proposals = [Transaction.create(KEYS[0], CHAIN, governance.PROPOSE, n + 1, {
        "kind": "validator_add", "change": change, "effective_height": 4})
        for n, change in enumerate(changes)]
    for tx in proposals:
        assert node.submit(tx).accepted
    commit(node)
    for i, key in enumerate(KEYS[1:3]):
        for nonce, tx in enumerate(proposals, start=1):
            approve = Transaction.create(key, CHAIN, governance.APPROVE, nonce,
                                         {"proposal": tx.tx_id.hex()})
            assert node.submit(approve).accepted, i
    commit(node)
    file_certs = {k.public_key: node_certificate(k) for k in KEYS}
    driver = ConsensusDriver(node, None, lambda: file_certs, tmp_path / "tls")
    assert sorted(driver.members()) == sorted(file_certs)  # height 3: the old set
    commit(node)  # the tip is 3: the set of height 4 holds both added keys
    assert node.chain.validators.power_of(good.public_key) == 10
    members = driver.members()
    assert members[good.public_key] == node_certificate(good)
    assert bad.public_key not in members
    assert all(members[k] == c for k, c in file_certs.items())
    node.close()


def test_a_certificate_field_must_be_hex(tmp_path: Path) -> None:
    from medledger.apps import governance
    from medledger.crypto import SigningKey

    node = Node(SQLiteStore(tmp_path / "n.db"), GENESIS, KEYS[0], NodeConfig())
    new = SigningKey.from_seed(b"\x53" * 32)
    for cert, why in [("XYZ", "hex"), ("ab" * (governance.MAX_CERTIFICATE + 1), "at most")]:
        tx = Transaction.create(KEYS[0], CHAIN, governance.PROPOSE, 1, {
            "kind": "validator_add", "effective_height": 4,
            "change": {"public_key": new.public_key.hex(), "power": 10, "name": "v4",
                       "certificate": cert}})
        result = node.submit(tx)
        assert result.code == "malformed" and why in result.message
    assert len(node.mempool) == 0
    node.close()


def test_a_node_catching_up_asks_for_the_next_commits_at_once(tmp_path: Path) -> None:
    """Block sync: a node two or more heights behind its most advanced peer asks that peer
    for the next commits as soon as it has applied those it asked for (not at the next
    status round a second later); one height behind is ordinary consensus."""
    import asyncio

    from medledger.codec import decode
    from medledger.node.driver import SYNC_BLOCKS_PER_ANSWER, ConsensusDriver

    node = Node(SQLiteStore(tmp_path / "n.db"), GENESIS, KEYS[0], NodeConfig())
    driver = ConsensusDriver(node, None, {}, tmp_path / "tls")
    sent: list[tuple[bytes, dict]] = []  # type: ignore[type-arg]
    driver.transport.send = lambda peer, payload: sent.append((peer, decode(payload))) or True  # type: ignore[method-assign]
    near, far = KEYS[1].public_key, KEYS[2].public_key
    for peer, height in ((near, 3), (far, 20)):
        asyncio.run(driver._on_message(peer, "status", {"height": height}))
    assert sent == []  # both are ahead of it: nothing to answer
    driver._ask_for_more()
    assert sent == [(far, {"kind": "status", "height": 0})]
    driver._ask_for_more()  # the commits asked for are not applied yet
    assert len(sent) == 1
    for nonce in range(1, SYNC_BLOCKS_PER_ANSWER + 1):
        assert node.submit(anchor(nonce)).accepted
        commit(node)
    driver._ask_for_more()
    assert sent[-1] == (far, {"kind": "status", "height": SYNC_BLOCKS_PER_ANSWER})
    driver._peer_heights = {far: node.chain.height + 1}
    assert driver._catching_up() is None  # one behind: consensus brings it
    node.close()


def test_a_node_removed_from_the_set_says_so(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from medledger.apps import governance
    from medledger.node.driver import ConsensusDriver

    node = Node(SQLiteStore(tmp_path / "n.db"), GENESIS, KEYS[0], NodeConfig())
    driver = ConsensusDriver(node, None, {}, tmp_path / "tls")
    driver.transport.set_members = lambda: None  # type: ignore[method-assign]
    remove = Transaction.create(KEYS[1], CHAIN, governance.PROPOSE, 1, {
        "kind": "validator_remove", "change": {"public_key": KEYS[0].public_key.hex()},
        "effective_height": 4})
    assert node.submit(remove).accepted
    commit(node)
    for key in KEYS[2:]:
        approve = Transaction.create(key, CHAIN, governance.APPROVE, 1,
                                     {"proposal": remove.tx_id.hex()})
        assert node.submit(approve).accepted
    commit(node)
    with caplog.at_level(logging.WARNING, logger="medledger.consensus"):
        driver._follow_validator_set()
        assert "not in the set" not in caplog.text  # the set of height 3 still holds it
        commit(node)
        driver._follow_validator_set()
    assert "not in the set from height 4" in caplog.text
    node.close()
