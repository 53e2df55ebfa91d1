"""``medledger bench --validators N`` with tiny numbers: a real local consortium of node
processes on 127.0.0.1 on CometBFT, every transaction committed, latencies that make
sense, the CPU time of each node's processes, and no node process left running
afterwards, also when the run is interrupted."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from rich.console import Console

from medledger.cli.bench_consortium import run_bench, run_consortium_bench
from tests.nodeproc import gone

pytestmark = pytest.mark.processes


def quiet() -> Console:
    return Console(file=io.StringIO())


def committed_all(result: dict[str, Any], count: int) -> None:
    """Every transaction was accepted and committed. On CometBFT, a transaction that
    reached a node by two gossip paths behind a later one of its sender can fail with
    ``nonce`` in its block (docs/benchmarks.md, "What limits throughput now"): counted,
    never lost."""
    assert result["transactions"] == result["accepted"] == count, result
    assert set(result["failed_in_block"]) <= {"nonce"}, result
    assert result["committed_ok"] + sum(result["failed_in_block"].values()) == count, result
    assert result["failed_in_block"].get("nonce", 0) <= count // 100, result


def test_four_validators_on_cometbft_commit_every_transaction_and_report_latency() -> None:
    pids: list[int] = []
    result = run_consortium_bench(validators=4, n_txs=1000, clients=2, batch=100,
                                  console=quiet(), half_load_txs=600, started=pids)

    assert len(pids) == 4 and all(gone(pid) for pid in pids)
    assert result["engine"] == "cometbft"
    assert result["validators"] == 4 and result["cores"] == os.cpu_count()
    committed_all(result, 1000)
    assert result["refused"] == {}
    assert result["committed_tx_per_s"] > 0 and result["blocks"] >= 1
    assert sum(result["decided_in_round"].values()) == result["blocks"]
    half = result["half_load"]
    assert half["accepted"] == 600 and half["refused"] == {}, half
    assert half["committed_ok"] + sum(half["failed_in_block"].values()) == 600, half
    assert 0 < half["offered_tx_per_s"] <= result["committed_tx_per_s"]
    for latency in (result["latency_ms"], half["latency_ms"]):
        assert 0 < latency["p50"] <= latency["p99"], latency
    limit = result["verify_per_s_one_core"] * result["cores"] / 4
    assert result["verification_limit_tx_per_s"] == pytest.approx(limit, rel=1e-3)
    assert result["ratio"] == pytest.approx(result["committed_tx_per_s"] / limit, abs=1e-3)
    assert result["target_ratio"] == 0.5 and result["p99_target_ms"] == 1000
    assert len(result["verify_per_s_before_after"]) == 2
    cpu = result["cpu"]
    assert len(cpu["per_node"]) == 4
    assert all(node["cometbft"] > 0 and node["app"] > 0 for node in cpu["per_node"]), cpu
    assert cpu["share"]["cometbft"] + cpu["share"]["app"] == pytest.approx(1, abs=0.01)
    assert cpu["seconds"]["cometbft"] == pytest.approx(
        sum(node["cometbft"] for node in cpu["per_node"]), abs=0.05)


def test_one_validator_on_cometbft_is_a_chain_of_its_own() -> None:
    result = run_bench(validators=1, n_txs=400, clients=1, batch=100, console=quiet(),
                       half_load_txs=200)

    assert result["engine"] == "cometbft" and result["validators"] == 1
    committed_all(result, 400)
    # one node is compared with one core's verify rate, as the single-node bench always was
    assert result["verification_limit_tx_per_s"] == pytest.approx(
        result["verify_per_s_one_core"], rel=1e-3)
    assert result["cpu"]["per_node"][0]["cometbft"] > 0


def test_an_interrupted_run_stops_its_nodes() -> None:
    class Interrupting(Console):
        def print(self, *objects: Any, **kwargs: Any) -> None:
            if str(objects[0]).startswith("phase 1"):
                raise KeyboardInterrupt
            super().print(*objects, **kwargs)

    pids: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        run_consortium_bench(validators=1, n_txs=100, clients=1, batch=50,
                             console=Interrupting(file=io.StringIO()), started=pids)
    assert len(pids) == 1 and all(gone(pid) for pid in pids)


def test_fewer_than_one_validator_or_client_is_refused() -> None:
    with pytest.raises(SystemExit, match="at least 1"):
        run_bench(validators=0, n_txs=10, clients=1, batch=10, console=quiet())
    with pytest.raises(SystemExit, match="at least 1"):
        run_bench(validators=2, n_txs=10, clients=0, batch=10, console=quiet())
