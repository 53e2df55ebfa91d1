"""``medledger bench --app records`` with tiny numbers on one validator: a real node process
on CometBFT, every anchor and every record committed, each ciphertext uploaded, every
grant-to-read sample decrypted to its original, and no node process left running."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from medledger.cli.bench_records import run_records_bench
from tests.nodeproc import gone

pytestmark = pytest.mark.processes


def quiet() -> Console:
    return Console(file=io.StringIO())


def committed_all(phase: dict[str, Any], count: int) -> None:
    assert phase["transactions"] == phase["accepted"] == phase["committed_ok"] == count, phase
    assert phase["refused"] == {} and phase["failed_in_block"] == {}, phase
    assert sum(phase["decided_in_round"].values()) == phase["blocks"] >= 1, phase


def test_records_bench_on_one_validator_commits_every_record_and_reads_every_grant() -> None:
    pids: list[int] = []
    result = run_records_bench(validators=1, anchor_txs=400, records=200, samples=4,
                               clients=2, batch=100, patients=10, console=quiet(),
                               started=pids)

    assert len(pids) == 1 and all(gone(pid) for pid in pids)
    assert result["app"] == "records" and result["validators"] == 1
    for anchors in result["anchor"].values():  # before and after the records
        committed_all(anchors, 400)
    committed_all(result["records"], 200)
    assert result["records"]["tx_bytes_mean"] > 1000  # two HPKE-wrapped keys
    anchors, records = result["anchor_tx_per_s"], result["records_tx_per_s"]
    assert anchors > 0 and records > 0
    assert anchors == pytest.approx(sum(result["anchor_tx_per_s_before_after"]) / 2, abs=0.1)
    assert result["ratio"] == pytest.approx(records / anchors, abs=1e-3)
    assert result["targets_met"] == {"ratio": result["ratio"] >= 0.5,
                                     "grant_to_read_p99": result["grant_to_read_ms"]["p99"]
                                     < result["p99_target_ms"]}
    client = result["client_side"]
    assert client["records"] == 200 and result["sealed_per_s_per_core"] > 0
    assert all(us > 0 for us in client["us_per_record"].values()), client
    assert client["upload"]["blobs"] == client["upload"]["replicated_to_every_node"] == 200
    reads = result["grant_to_read"]
    assert reads["samples"] == reads["decrypted_ok"] == 4 and reads["failed"] == {}, reads
    assert reads["all_under_load"], reads
    assert 0 < reads["ms"]["p50"] <= reads["ms"]["p99"] == result["grant_to_read_ms"]["p99"]
    assert reads["grant_committed_ms"]["p50"] < reads["access_committed_ms"]["p50"]
    assert reads["without_load"]["decrypted_ok"] == reads["without_load"]["samples"] == 3
    background = reads["background"]
    assert background["committed_ok"] == background["transactions"] > 0, background
    assert 0 < background["offered_tx_per_s"] <= records


def test_too_few_records_for_the_samples_are_refused() -> None:
    with pytest.raises(SystemExit, match="--records"):
        run_records_bench(validators=1, anchor_txs=10, records=4, samples=5, clients=1,
                          batch=10, console=quiet())
    with pytest.raises(SystemExit, match="at least 1"):
        run_records_bench(validators=1, anchor_txs=10, records=100, samples=0, clients=1,
                          batch=10, console=quiet())
