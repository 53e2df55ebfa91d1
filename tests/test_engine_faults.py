"""Faults on a 4-node consortium on CometBFT, as real processes on 127.0.0.1: kill, pause
and cut one node, kill two, crash an app between FinalizeBlock and Commit, SIGKILL a
supervisor. Under a load of transactions, each test shows what goes on while the fault
lasts and that, after it, every node holds the same chain (app-level block hash and state
root, CometBFT's block hash, at every common height) with every acknowledged transaction
in it at the height and index it was acknowledged at.

Bounded: a few fault cycles per test, every wait with a timeout, each test under about a
minute; the ``slow`` variants (more cycles) run only when asked (``-m slow``). See
docs/consensus.md, "Faults on CometBFT: what each test shows".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Self

import httpx
import pytest

from medledger.apps import default_registry
from medledger.ledger import Transaction
from tests.enginenet import (
    EngineNet,
    Height,
    NodeProc,
    Stream,
    acknowledged_everywhere,
    same_chain,
    wait_for,
)

pytestmark = pytest.mark.processes

ALL = range(4)
FAILPOINT_EXIT = 86
PAUSE_SECONDS = 7.0  # two propose timeouts (3 s each) and some
CUT_SECONDS = 6.0
STALL_SECONDS = 4.0  # how long two of four must stay stuck
QUICK_RESTART = 10.0  # `medledger up` after a SIGKILL: serving, with its engine, in this


@pytest.fixture
def net(tmp_path: Path) -> Iterator[EngineNet]:
    """Four validators on CometBFT, written but not started (a test may route links or set
    a failpoint first); every process stopped afterwards, by pid."""
    consortium = EngineNet(tmp_path / "net")
    try:
        yield consortium
    finally:
        consortium.stop()


class Load:
    """One :class:`Stream` per chosen node, each from its own sender."""

    def __init__(self, net: EngineNet, nodes: list[int]) -> None:
        keys = net.keys()
        self.streams = [Stream(net.nodes[i].api, keys[i], net.chain_id, 1_000_000 * (i + 1))
                        for i in nodes]

    def __enter__(self) -> Self:
        for stream in self.streams:
            stream.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in self.streams:
            stream.finish()

    def acknowledged(self) -> int:
        return sum(len(s.acknowledged) for s in self.streams)

    def highest(self) -> int:
        """The highest height any acknowledgement named."""
        return max((h for s in self.streams for h, _, _ in s.acknowledged.values()), default=0)

    def wait_more(self, than: int, timeout: float = 30.0) -> None:
        wait_for(lambda: self.acknowledged() > than, timeout,
                 f"more than {than} transactions acknowledged")

    def settle(self, seconds: float = 15.0) -> None:
        """Stop sending; collect what is still to commit."""
        for stream in self.streams:
            stream.finish(seconds)


def commits_go_on(net: EngineNet, load: Load, nodes: list[int], heights: int = 3) -> None:
    """``nodes`` commit ``heights`` more heights and acknowledge more transactions."""
    base, acknowledged = max(net.heights(nodes)), load.acknowledged()
    net.wait_height(nodes, base + heights, timeout=30)
    load.wait_more(acknowledged)


def catches_up(net: EngineNet, node: int, others: list[int], timeout: float = 45.0) -> None:
    """Node ``node`` reaches the height the others are at now."""
    net.wait_height([node], max(net.heights(others)), timeout=timeout)


def all_agree(net: EngineNet, load: Load) -> dict[int, Height]:
    """After the faults: the load settled, every node at the same height, the same chain on
    every node, every acknowledged transaction in it where it was acknowledged."""
    load.settle()
    wait_for(lambda: len(set(net.heights(ALL))) == 1 and min(net.heights(ALL)) > 0, 40,
             "every node at the same height")
    top = net.height(0)
    wait_for(lambda: all(net.served(i, top) for i in ALL), 20,
             f"every node to serve block {top} (proven by the engine's headers)")
    assert max(net.heights(ALL)) >= load.highest()
    chain = same_chain(net, ALL)
    acknowledged = acknowledged_everywhere(chain, load.streams)
    assert acknowledged == load.acknowledged() > 0
    print(f"same chain on 4 nodes: {len(chain)} heights, {acknowledged} acknowledged "
          f"transactions in it")  # shown with -s
    return chain


def engine_gone(node: NodeProc) -> None:
    wait_for(lambda: not node.live_engines(), 20, f"{node.name}'s cometbft to end")


# ---------------------------------------------------------------------------------------
def test_any_node_accepts_and_every_node_commits_the_same_blocks(net: EngineNet) -> None:
    """No fault: a batch of 300 sent to node2 commits; the same sender's next transaction,
    sent to node1 once the batch is in (one sender's nonces reach the chain in order, ADR
    0004), is answered committed; every node holds every one of them, in the same chain."""
    net.start()
    key = net.keys()[4]  # the organisation admin no stream sends with
    registry = default_registry()

    def sample(nonce: int) -> Transaction:
        type_, body = registry.sample_tx(5_000_000 + nonce)
        return Transaction.create(key, net.chain_id, type_, nonce, body)

    batch = [sample(n) for n in range(1, 301)]
    body = b"[" + b",".join(t.raw for t in batch) + b"]"
    answer = httpx.post(f"{net.nodes[2].api}/v1/txs/batch", content=body, timeout=60).json()
    assert answer["accepted"] == 300
    ids = [t.tx_id.hex() for t in batch]
    wait_for(lambda: _found(net, 2, ids[-1]), 60, "the batch to commit")
    last = sample(301)
    committed = httpx.post(f"{net.nodes[1].api}/v1/txs", content=last.raw, timeout=70,
                           params={"wait": "true", "timeout": 60})
    assert committed.status_code == 200, committed.text
    height = committed.json()["height"]
    net.wait_height(ALL, height + 1)  # the block after it signs its state
    chain = same_chain(net, ALL, upto=height)
    where = {tx_id: h for h, held in chain.items() for tx_id, _ in held.txs}
    assert where[last.tx_id.hex()] == height
    assert all(where.get(i) is not None and where[i] <= height for i in ids)
    for node in ALL:
        assert _found(net, node, ids[0]) and _found(net, node, last.tx_id.hex())


def _found(net: EngineNet, node: int, tx_id: str) -> bool:
    return httpx.get(f"{net.nodes[node].api}/v1/txs/{tx_id}", timeout=15).status_code == 200


KILL_ONE = {
    "its cometbft": [(3, "engine")],
    "its medledger up": [(3, "app")],
    "soak: each node in turn, either process": pytest.param(
        [(3, "engine"), (0, "app"), (1, "engine"), (2, "app")], marks=pytest.mark.slow),
}


@pytest.mark.parametrize("kills", list(KILL_ONE.values()), ids=list(KILL_ONE))
def test_one_of_four_killed_commits_go_on_and_it_catches_up(
        net: EngineNet, kills: list[tuple[int, str]]) -> None:
    """SIGKILL one node's cometbft (the app then stops) or its `medledger up` (cometbft
    then gets SIGKILL from the kernel): the other three commit; restarted, it catches up to
    the same chain and app hash."""
    net.start()
    with Load(net, [0, 1, 2]) as load:
        load.wait_more(0)
        for victim, process in kills:
            node = net.nodes[victim]
            others = [i for i in ALL if i != victim]
            if process == "engine":
                node.kill_engine()
            else:
                node.kill_app()
            assert not node.running()
            engine_gone(node)
            commits_go_on(net, load, others)
            node.start()
            node.wait_up()
            catches_up(net, victim, others)
        all_agree(net, load)


KILL_TWO = {
    "nodes 2 and 3": [(2, 3)],
    "soak: three pairs": pytest.param([(2, 3), (0, 3), (1, 2)], marks=pytest.mark.slow),
}


@pytest.mark.parametrize("pairs", list(KILL_TWO.values()), ids=list(KILL_TWO))
def test_two_of_four_killed_commits_stop_then_resume_with_nothing_lost(
        net: EngineNet, pairs: list[tuple[int, int]]) -> None:
    """With two of four SIGKILLed (both processes), no height advances, nothing is
    acknowledged above the height they stopped at, and a transaction sent meanwhile is
    accepted but not committed; restarted, commits resume, that transaction commits, and
    every acknowledged transaction is on all four, at the same height and index."""
    net.start()
    probes: list[str] = []
    with Load(net, [0, 1, 2, 3]) as load:
        load.wait_more(0)
        for pair in pairs:
            survivors = [i for i in ALL if i not in pair]
            for victim in pair:
                net.nodes[victim].kill()
            # a block already decided lands on both survivors; then nothing moves
            stuck = wait_for(partial(_common_tip, net, survivors), 10,
                             "the survivors to agree on their tip")
            time.sleep(STALL_SECONDS)
            assert _common_tip(net, survivors) == stuck, "two of four cannot commit"
            assert load.highest() <= stuck[0], "acknowledged above the stuck height"
            same_chain(net, survivors, upto=stuck[0] - 1)  # the tip is not proven yet
            probe = _probe(net, len(probes) + 1)
            answer = httpx.post(f"{net.nodes[survivors[0]].api}/v1/txs", content=probe.raw,
                                params={"wait": "true", "timeout": 2}, timeout=10)
            assert answer.status_code == 202, "accepted, and not committed"
            probes.append(probe.tx_id.hex())
            waiting = load.acknowledged()
            for victim in pair:
                net.nodes[victim].start()
            for victim in pair:
                net.nodes[victim].wait_up()
            net.wait_height(ALL, stuck[0] + 2, timeout=45)
            load.wait_more(waiting)
        chain = all_agree(net, load)
    committed = {tx_id for held in chain.values() for tx_id, _ in held.txs}
    assert set(probes) <= committed, "a transaction accepted while stuck is committed after"


def _probe(net: EngineNet, nonce: int) -> Transaction:
    """A transaction from the one organisation admin no stream sends with."""
    type_, body = default_registry().sample_tx(9_000_000 + nonce)
    return Transaction.create(net.keys()[4], net.chain_id, type_, nonce, body)


def _tip(net: EngineNet, node: int) -> tuple[int, str, str, int]:
    """A node's height, tip block hash and state root, and its CometBFT's height."""
    status = net.status(node)
    assert status is not None, f"node{node} does not answer"
    engine = net.engine_rpc(node, "/status")["sync_info"]["latest_block_height"]
    return (status["height"], status["latest_block_hash"], status["state_root"], int(engine))


def _common_tip(net: EngineNet, nodes: list[int]) -> tuple[int, str, str, int] | None:
    """The tip ``nodes`` all have (see :func:`_tip`), or None while they differ."""
    tips = {_tip(net, i) for i in nodes}
    return tips.pop() if len(tips) == 1 else None


PAUSE = {
    "the proposer, mid-round": ["proposer"],
    "soak: each node's cometbft in turn": pytest.param(
        ["engine 0", "engine 1", "engine 2", "engine 3"], marks=pytest.mark.slow),
}


def _mid_round_proposer(net: EngineNet) -> int:
    """The proposer of the round node 0 is in, once a round is under way (propose to
    precommit steps); bounded."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        step = int(net.engine_rpc(0, "/consensus_state")["round_state"]["height/round/step"]
                   .split("/")[2])
        if 3 <= step <= 7:
            break
        time.sleep(0.05)
    return net.proposer(0)


def _later_round(net: EngineNet, node: int, since: int) -> bool:
    """Whether a block above ``since`` was committed in a round after 0 (on ``node``)."""
    for height in range(since + 1, net.height(node) + 1):
        commit = net.engine_rpc(node, "/commit", height=height)["signed_header"]["commit"]
        if int(commit["round"]) > 0:
            return True
    return False


@pytest.mark.parametrize("pauses", list(PAUSE.values()), ids=list(PAUSE))
def test_a_paused_node_lets_the_others_commit_and_catches_up(
        net: EngineNet, pauses: list[str]) -> None:
    """SIGSTOP a node (the proposer of a round under way: both its processes) for two
    propose timeouts or more: the other three commit, and when its turn to propose comes
    the round times out and the next proposer's block commits (a commit in round 1 or
    later); after SIGCONT it catches up."""
    net.start()
    with Load(net, [0, 1, 2, 3]) as load:
        load.wait_more(0)
        for pause in pauses:
            victim = _mid_round_proposer(net) if pause == "proposer" else int(pause.split()[1])
            others = [i for i in ALL if i != victim]
            since = max(net.heights(others))
            net.nodes[victim].pause(engine_only=pause != "proposer")
            started = time.monotonic()
            commits_go_on(net, load, others, heights=2)
            wait_for(partial(_later_round, net, others[0], since), 30,
                     f"a round node{victim} should propose to time out and another commit")
            time.sleep(max(0.0, PAUSE_SECONDS - (time.monotonic() - started)))
            net.nodes[victim].resume()
            catches_up(net, victim, others)
        all_agree(net, load)


CUTS = {
    "once": 1,
    "soak: three cuts": pytest.param(3, marks=pytest.mark.slow),
}


@pytest.mark.parametrize("cuts", list(CUTS.values()), ids=list(CUTS))
def test_a_node_cut_off_catches_up_when_its_links_return(net: EngineNet, cuts: int) -> None:
    """Every peer link of node 3 passes through a proxy. Cut: it has no peers and falls
    behind while the other three commit; restored, it reconnects and catches up."""
    proxies = net.route_through_proxies(3)
    net.start()
    with Load(net, [0, 1, 2]) as load:
        load.wait_more(0)
        for _ in range(cuts):
            for proxy in proxies:
                proxy.cut()
            wait_for(lambda: net.peers(3) == 0, 15,
                     "node3 to lose its peers")
            isolated = net.height(3)
            started = time.monotonic()
            commits_go_on(net, load, [0, 1, 2])
            time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - started)))
            assert net.height(3) <= isolated + 1, "an isolated node cannot commit"
            assert max(net.heights([0, 1, 2])) > isolated + 1
            for proxy in proxies:
                proxy.restore()
            net.wait_peers([3], 3, timeout=30)
            catches_up(net, 3, [0, 1, 2])
        all_agree(net, load)


def test_an_app_killed_between_finalize_and_commit_restarts_consistent(net: EngineNet) -> None:
    """Node 3's app exits after FinalizeBlock of height 6 and before its Commit (the
    before-commit failpoint); its cometbft ends with it; the others go on. Restarted, the
    handshake replays height 6 from CometBFT's block store: the app records the block
    CometBFT stored there, and holds the chain the others hold."""
    doomed = 6
    net.start(env={3: {"MEDLEDGER_FAILPOINT": f"before-commit:{doomed}"}})
    node = net.nodes[3]
    with Load(net, [0, 1, 2]) as load:
        assert node.popen is not None
        wait_for(lambda: node.exit_code() is not None, 40, "node3 to reach its failpoint")
        assert node.exit_code() == FAILPOINT_EXIT
        engine_gone(node)
        assert net.height(3) == -1
        commits_go_on(net, load, [0, 1, 2])
        node.start()  # without the failpoint
        node.wait_up()
        catches_up(net, 3, [0, 1, 2])
        chain = all_agree(net, load)
        assert len(chain) > doomed
    assert "failpoint before-commit at height 6" in node.log.read_text()


def test_a_sigkilled_supervisor_leaves_nothing_in_the_way_of_a_restart(
        net: EngineNet) -> None:
    """SIGKILL `medledger up`: its cometbft does not outlive it, so `medledger up` on the
    same home, started at once, serves again within seconds with a new engine that keeps
    running (no port in use, no store lock held), and catches up; twice, under load (an
    app killed in the middle of a block is what used to leave CometBFT stuck stopping)."""
    net.start()
    node = net.nodes[3]
    with Load(net, [0, 1, 2]) as load:
        load.wait_more(0)
        for _ in range(2):
            old = node.engine()
            assert old is not None
            logged = node.engine_log.stat().st_size
            node.kill_app()
            started = time.monotonic()
            node.start()
            node.wait_up(timeout=QUICK_RESTART)
            assert time.monotonic() - started < QUICK_RESTART
            assert not old.alive(), "the old cometbft outlived its supervisor"
            new = node.engine()
            assert new is not None and new != old
            time.sleep(2)  # an engine that could not bind or lock would have exited now
            assert node.running() and new.alive()
            with open(node.engine_log, "rb") as log:
                log.seek(logged)
                tail = log.read().decode(errors="replace").lower()
            for trouble in ("address already in use", "resource temporarily unavailable"):
                assert trouble not in tail, f"the restarted engine logged {trouble!r}"
            catches_up(net, 3, [0, 1, 2])
        all_agree(net, load)
