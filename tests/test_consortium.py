"""A local consortium of 4 real validator processes on 127.0.0.1: every node commits the same
blocks, and commits survive the faults the issue names (bounded in time, own pids only)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.consortium import LocalConsortium

pytestmark = pytest.mark.processes


def same_chain(c: LocalConsortium, nodes: list[int], height: int) -> None:
    """Every node in ``nodes`` holds the same block at each height up to ``height``."""
    for h in range(1, height + 1):
        hashes = {c.block_hash(i, h) for i in nodes}
        assert len(hashes) == 1, f"nodes disagree at height {h}: {hashes}"


def test_any_node_accepts_and_every_node_commits_the_same_blocks(tmp_path: Path) -> None:
    with LocalConsortium(tmp_path / "c") as c:
        batch = [c.anchor() for _ in range(300)]
        assert c.submit_batch(2, batch)["accepted"] == 300
        # one sender's nonces must reach the chain in order (ADR 0004): the next one goes
        # to another node only once the batch is in
        deadline = time.monotonic() + 60
        while c.tx_height(2, batch[-1]) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        last = c.anchor()
        answer = c.submit_wait(1, last)
        assert answer.status_code == 200, answer.text
        height = answer.json()["height"]
        c.wait_height([0, 1, 2, 3], height)
        same_chain(c, [0, 1, 2, 3], height)
        for i in range(4):
            assert c.tx_height(i, batch[0]) is not None
            assert c.tx_height(i, last) == height
        roots = {c.state_root_at_tip(i) for i in range(4)}
        assert len(roots) == 1


def test_one_killed_commits_go_on_and_it_catches_up(tmp_path: Path) -> None:
    with LocalConsortium(tmp_path / "c") as c:
        assert c.submit_wait(0, c.anchor()).status_code == 200
        c.nodes[3].kill()
        heights = []
        for i in range(6):  # rounds that node3 would propose time out and move on
            answer = c.submit_wait(i % 3, c.anchor())
            assert answer.status_code == 200, answer.text
            heights.append(answer.json()["height"])
        assert heights == sorted(heights)
        c.nodes[3].start()
        top = heights[-1]
        c.wait_height([3], top, timeout=60)
        same_chain(c, [0, 1, 2, 3], top)
        assert c.status(3)["height"] >= top  # type: ignore[index]


def test_two_killed_commits_stop_then_resume_with_nothing_lost(tmp_path: Path) -> None:
    with LocalConsortium(tmp_path / "c") as c:
        acknowledged = [c.anchor() for _ in range(3)]
        for tx in acknowledged:
            assert c.submit_wait(0, tx).status_code == 200
        before = c.status(0)["height"]  # type: ignore[index]
        c.nodes[2].kill()
        c.nodes[3].kill()
        stuck = c.anchor()
        answer = c.submit_wait(0, stuck, timeout=3)
        assert answer.status_code == 202  # accepted, not committed: no 2/3 of the power
        time.sleep(1)
        assert c.status(0)["height"] == before and c.status(1)["height"] == before  # type: ignore[index]
        c.nodes[2].start()
        c.nodes[3].start()
        deadline = time.monotonic() + 60
        while c.tx_height(0, stuck) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        height = c.tx_height(0, stuck)
        assert height is not None and height > before
        c.wait_height([0, 1, 2, 3], height)
        same_chain(c, [0, 1, 2, 3], height)
        for i in range(4):
            assert all(c.tx_height(i, tx) is not None for tx in acknowledged)


def test_a_stopped_then_continued_node_rejoins(tmp_path: Path) -> None:
    with LocalConsortium(tmp_path / "c") as c:
        assert c.submit_wait(0, c.anchor()).status_code == 200
        proc = c.nodes[1].proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)  # frozen in the middle of whatever round it is in
        try:
            for i in (0, 2, 3, 0):
                answer = c.submit_wait(i, c.anchor())
                assert answer.status_code == 200, answer.text
            top = answer.json()["height"]
        finally:
            proc.send_signal(signal.SIGCONT)
        c.wait_height([1], top, timeout=60)
        same_chain(c, [0, 1, 2, 3], top)


def test_a_node_cut_off_by_the_network_catches_up_when_its_links_return(tmp_path: Path) -> None:
    c = LocalConsortium(tmp_path / "c")
    proxies = c.isolate_through_proxies(3)
    try:
        with c:
            first = c.submit_wait(0, c.anchor())
            assert first.status_code == 200, first.text
            c.wait_height([3], first.json()["height"])
            for proxy in proxies:
                proxy.cut()
            cut_at = c.status(3)["height"]  # type: ignore[index]
            for i in (0, 1, 2, 0):
                answer = c.submit_wait(i, c.anchor())
                assert answer.status_code == 200, answer.text
            top = answer.json()["height"]
            assert c.status(3)["height"] == cut_at < top  # type: ignore[index]
            for proxy in proxies:
                proxy.restore()
            c.wait_height([3], top, timeout=60)
            same_chain(c, [0, 1, 2, 3], top)
    finally:
        for proxy in proxies:
            proxy.stop()
