"""``medledger bench --validators 4`` with tiny numbers: a real local consortium of node
processes on 127.0.0.1, every transaction committed, latencies that make sense, and no node
process left running afterwards, also when the run is interrupted."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from rich.console import Console

from medledger.cli.bench import run_bench
from medledger.cli.bench_consortium import run_consortium_bench

pytestmark = pytest.mark.processes


def gone(pid: int) -> bool:
    """The process ``pid`` has exited and been reaped (the bench waits for its nodes)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def quiet() -> Console:
    return Console(file=io.StringIO())


def test_four_validators_commit_every_transaction_and_report_latency() -> None:
    pids: list[int] = []
    result = run_consortium_bench(validators=4, n_txs=1000, clients=2, batch=100,
                                  console=quiet(), half_load_txs=600, started=pids)

    assert len(pids) == 4 and all(gone(pid) for pid in pids)
    assert result["validators"] == 4 and result["cores"] == os.cpu_count()
    assert result["transactions"] == 1000
    assert result["accepted"] == result["committed_ok"] == 1000, result
    assert result["refused"] == {}
    assert result["committed_tx_per_s"] > 0 and result["blocks"] >= 1
    assert sum(result["decided_in_round"].values()) == result["blocks"]
    half = result["half_load"]
    assert half["transactions"] == half["accepted"] == half["committed_ok"] == 600, half
    assert 0 < half["offered_tx_per_s"] <= result["committed_tx_per_s"]
    for latency in (result["latency_ms"], half["latency_ms"]):
        assert 0 < latency["p50"] <= latency["p99"], latency
    limit = result["verify_per_s_one_core"] * result["cores"] / 4
    assert result["verification_limit_tx_per_s"] == pytest.approx(limit, rel=1e-3)
    assert result["ratio"] == pytest.approx(result["committed_tx_per_s"] / limit, abs=1e-3)
    assert result["target_ratio"] == 0.5 and result["p99_target_ms"] == 2000
    assert len(result["verify_per_s_before_after"]) == 2


def test_an_interrupted_run_stops_its_nodes() -> None:
    class Interrupting(Console):
        def print(self, *objects: Any, **kwargs: Any) -> None:
            if str(objects[0]).startswith("phase 1"):
                raise KeyboardInterrupt
            super().print(*objects, **kwargs)

    pids: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        run_consortium_bench(validators=2, n_txs=100, clients=1, batch=50,
                             console=Interrupting(file=io.StringIO()), started=pids)
    assert len(pids) == 2 and all(gone(pid) for pid in pids)


def test_fewer_than_one_validator_is_refused() -> None:
    with pytest.raises(SystemExit, match="at least 1"):
        run_bench(validators=0, n_txs=10, clients=1, batch=10, console=quiet())
