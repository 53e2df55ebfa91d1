"""``medledger bench --app trace`` with tiny numbers on one validator: 20,000 packs
generated in the verification node's state, every verification proven and checked by the
client, every capture and anchor committed, and no process left running."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from medledger.cli.bench_trace import run_trace_bench
from tests.nodeproc import gone

pytestmark = pytest.mark.processes


def committed_all(phase: dict[str, Any], count: int) -> None:
    assert phase["transactions"] == phase["accepted"] == phase["committed_ok"] == count, phase
    assert phase["refused"] == {} and phase["failed_in_block"] == {}, phase


def test_trace_bench_on_one_validator_proves_every_verdict_and_commits_every_capture(
) -> None:
    pids: list[int] = []
    result = run_trace_bench(validators=1, anchor_txs=400, packs=20_000, events=200,
                             samples=200, clients=2, batch=100, seed=7,
                             console=Console(file=io.StringIO()), started=pids)

    # the verification node, the handshake that kept CometBFT's genesis state, the node
    # of the capture chain: each started, each stopped
    assert len(pids) == 3 and all(gone(pid) for pid in pids)
    assert result["app"] == "trace" and result["verify_packs_in_state"] == 20_000
    verify = result["verification"]
    generated = verify["generation"]
    assert generated["packs"] == 20_000 and generated["transactions"] == 20
    assert generated["failed_in_block"] == {} and generated["packs_per_s"] > 0
    assert generated["disk_bytes"]["store_bytes"] > 20_000 * 500  # a pack's entry and lists
    # the node went on from the generated height on CometBFT, and answered from there
    assert verify["node_height"] > generated["height"]
    assert min(verify["proven_heights"]) > generated["height"]
    assert verify["requests"] == {"genuine": 200, "never_issued": 200,
                                  "warmup_not_counted": 50}
    assert verify["failed"] == {}, verify["failed"]
    for kind in ("genuine", "never_issued"):
        times, checks = verify["request_ms"][kind], verify["client_check_ms"][kind]
        assert 0 < times["p50"] <= times["p99"] <= times["max"], times
        assert 0 < checks["p50"] <= checks["p99"], checks
        assert verify["answer_bytes_mean"][kind] > 1000  # two proofs and signed headers
    assert result["verify_p99_ms"] == verify["request_ms"]["all"]["p99"] == verify["p99_ms"]
    assert result["targets_met"] == {"verify_p99": result["verify_p99_ms"] < 5.0}

    capture = result["capture_rate"]
    committed_all(capture["capture"], 200)
    for anchors in capture["anchor"].values():  # before and after the captures
        committed_all(anchors, 400)
    assert capture["packs_per_event"] == 10 and capture["tx_bytes_mean"] > 500
    events, anchors = result["capture_events_per_s"], result["anchor_tx_per_s"]
    assert 0 < events < anchors
    assert capture["capture_packs_per_s"] == pytest.approx(events * 10, abs=0.5)
    assert result["capture_to_anchor_ratio"] == pytest.approx(events / anchors, abs=1e-3)


def test_bad_sizes_are_refused_before_anything_starts() -> None:
    with pytest.raises(SystemExit, match="--packs"):
        run_trace_bench(validators=1, anchor_txs=10, packs=5, events=10, samples=10,
                        clients=1, batch=10, console=Console(file=io.StringIO()))
    with pytest.raises(SystemExit, match="at least"):
        run_trace_bench(validators=1, anchor_txs=10, packs=100, events=10, samples=0,
                        clients=1, batch=10, console=Console(file=io.StringIO()))
