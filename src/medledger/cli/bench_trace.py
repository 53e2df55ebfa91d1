"""``medledger bench --app trace``: pack verification with its proofs on one node whose
state holds a million commissioned packs, and EPCIS capture in events per second on a
local consortium, beside the ``ledger.anchor`` rate of the same run.

**1. Verification, one node.** A one-validator home on CometBFT is laid out as the anchor
bench lays out its consortium (:mod:`medledger.cli.bench_consortium`), its genesis adding
a drug maker whose admin key is made here. Its state is then generated in this process,
through the chain code a node commits blocks with (``Chain.build_decided`` and
``Chain.commit_decided``, what ``FinalizeBlock`` and ``Commit`` run): a block registering
the maker's GS1 company prefix, one registering its product, then blocks of
``trace.capture`` transactions, each one EPCIS 2.0 commissioning ``ObjectEvent`` of
``packs_per_event`` packs (1,000 by default: about 45 KB, under the 64 KB a transaction
may have), signed by the maker's admin. Every transaction is executed by the app's rules
and must commit ``ok``. What this skips is CheckTx and consensus: a node on CometBFT
would check each transaction once more on admission (about 3/4 of the block's own cost,
in process) and spend the engine's time on blocks; generating the packs that way would
take about twice as long and measure nothing the verification depends on. Progress goes
to the console every ``PROGRESS_EVERY_S``.

CometBFT's block store knows none of these blocks, so the home's CometBFT genesis is set
to start the chain where the app's store ends, as a chain restarted from exported state
is: ``initial_height`` the next height and ``app_hash`` the state root. The node is then
started as any node is (``medledger up`` and its ``cometbft`` child; see
:func:`~medledger.cli.bench_trace_verify._start_where_the_store_ends` for CometBFT's
part), but without checking its whole store first (``verify_on_start``: minutes on a
million packs). CometBFT commits the first block of its own at once (a new chain's first
block proves the app hash), and from then on the node's proven answers carry CometBFT's
signed header, as on any node.

``GET /v1/trace/verify?code=...`` is then asked one request at a time (one HTTP
connection, kept alive) for random packs: genuine ones (the label's lot and expiry as
commissioned) and never-issued ones (a serial of the same GTIN that was never
commissioned, on a label naming a real lot), in random order, after a few unmeasured
requests. Each answer must carry the sparse Merkle proof of the pack's entry (or of its
absence) and of its lot's, with the signed headers; the time of each request is wall time
from sending to the decoded JSON. The client's own check is timed apart: both proofs
checked against the validator set of the genesis (``verify_state_answer``, the keys
checked to be the ones asked for) and the verdict computed again from the proven entries
(the app's own ``verdict``, reached through the registry), which must match the node's.

**2. Capture rate, the consortium.** ``--validators`` nodes (4 for the stated target) as
in the records bench (:mod:`medledger.cli.bench_records`): the maker registers its prefix
and product (committed on every node before any clock), then back to back at full load
``--txs`` anchors, the ``trace.capture`` transactions (one commissioning event of
``capture_packs`` packs each, pre-signed by senders that are admins of the maker, one per
client and node, posted ``CAPTURE_BATCH`` a request), and ``--txs`` anchors again, all
through the anchor bench's client processes. The ratio is capture events committed per
second over the mean of the two anchor rates.

Progress goes to the console (stderr); every loop is bounded in count or time; node
processes are stopped by pid on every way out; the temporary folder with both chains is
removed at the end.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from medledger.cli.bench_consortium import (
    _engine_rounds,
    _prepare_consortium,
    _results,
    _run_phase,
    _running,
    _sign_client_batches,
)
from medledger.cli.bench_nodes import _Nodes, _Watcher
from medledger.cli.bench_records import _phase_report
from medledger.cli.bench_trace_epcis import (
    CHAIN_ID,
    HEIGHT_WAIT_S,
    _expiry,
    _maker,
    _master_data,
    commissioning,
)
from medledger.cli.bench_trace_verify import _verification
from medledger.client import Client
from medledger.crypto import SigningKey
from medledger.ledger import Transaction

__all__ = ["run_trace_bench"]

ANCHOR_PASSES = ("anchor_before", "anchor_after")  # around the capture pass
CAPTURE_LOT_EVENTS = 1_000  # capture events of one lot
CAPTURE_BATCH = 50  # captures a request, at most
VERIFY_P99_TARGET_MS = 5.0
PHASE_TIMEOUT_S = 900.0


# 2. capture rate on the consortium -------------------------------------------------------------
class _Captures:
    """The ``make`` of :func:`_sign_client_batches` for captures: each call is one
    commissioning event of ``packs`` new packs (serials numbered across calls), in lots of
    ``CAPTURE_LOT_EVENTS`` events."""

    def __init__(self, packs: int, start_ms: int, expiry: str) -> None:
        self.packs, self.start_ms, self.expiry = packs, start_ms, expiry
        self.count = 0
        self.tx_bytes = 0

    def __call__(self, key: SigningKey, nonce: int, _index: int) -> Transaction:
        n = self.count
        self.count += 1
        serials = [f"C{n * self.packs + j:010d}" for j in range(self.packs)]
        body = {"events": [commissioning(serials, f"C{n // CAPTURE_LOT_EVENTS:05d}",
                                         self.expiry, self.start_ms + n)]}
        tx = Transaction.create(key, CHAIN_ID, "trace.capture", nonce, body)
        self.tx_bytes += len(tx.raw)
        return tx


def _wait_height(url: str, height: int, nodes: _Nodes) -> None:
    deadline = time.monotonic() + HEIGHT_WAIT_S
    with Client(url) as client:
        while int(client.status()["height"]) < height:
            nodes.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not reach height {height} in {HEIGHT_WAIT_S:.0f} s")
            time.sleep(0.02)


def _setup_master_data(nodes: _Nodes, admin: SigningKey, console: Console) -> None:
    """The prefix, then the product, each committed (through node 0), then on every node."""
    console.print("registering the maker's company prefix and product...")
    height = 0
    with Client(nodes.urls[0]) as client:
        for tx in _master_data(admin, 1):
            answer = client.submit(tx, wait=True, timeout=HEIGHT_WAIT_S)
            if answer.get("code") != "ok":
                raise SystemExit(f"{tx.type} was not committed ok: {answer}")
            height = max(height, int(answer["height"]))
    for url in nodes.urls:
        _wait_height(url, height, nodes)


def _full_load(nodes: _Nodes, watcher: _Watcher, work: list[list[list[Transaction]]],
               what: str, console: Console) -> tuple[Any, ...]:
    console.print(f"{what}: {sum(len(b) for c in work for b in c)} at full load...")
    phase = _run_phase(nodes, watcher, work, 0.0, watcher.total_txs, PHASE_TIMEOUT_S)
    console.print(f"{what}: {phase[2] / phase[0]:.0f} tx/s")
    return phase


def _capture_rate(root: Path, validators: int, anchor_txs: int, events: int,
                  capture_packs: int, clients: int, batch: int, block_interval_ms: int,
                  max_block_txs: int, started: list[int] | None, console: Console
                  ) -> dict[str, Any]:
    """Step 2 of the module docstring; its report."""
    admin = SigningKey.generate()
    capture_keys = [[SigningKey.generate() for _ in range(validators)] for _ in range(clients)]
    anchor_keys = [[[SigningKey.generate() for _ in range(validators)] for _ in range(clients)]
                   for _ in ANCHOR_PASSES]
    console.print(f"pre-signing 2 x {anchor_txs // clients * clients} anchors and "
                  f"{events // clients * clients} trace.capture transactions (one "
                  f"commissioning event of {capture_packs} packs each)...")
    anchors = [[_sign_client_batches(keys[c], anchor_txs // clients, batch, c % validators,
                                     clients * i + c) for c in range(clients)]
               for i, keys in enumerate(anchor_keys)]
    homes = _prepare_consortium(
        root, validators, [k for keys in anchor_keys for g in keys for k in g],
        block_interval_ms, max_block_txs,
        [_maker([admin, *(k for g in capture_keys for k in g)])])
    genesis = homes[0].genesis()
    captures = _Captures(capture_packs, genesis.genesis_time, _expiry(genesis.genesis_time))
    # captures go in smaller requests than anchors: a node answers a request once CometBFT
    # has checked each of its transactions, and CheckTx waits behind the block being
    # executed, so that 500 captures were not all checked within the node's 30 s and
    # were answered `unavailable` (committed all the same)
    small = max(1, min(batch, CAPTURE_BATCH))
    work = [_sign_client_batches(capture_keys[c], events // clients, small, c % validators,
                                 2 * clients + c, make=captures) for c in range(clients)]
    with _running(homes, started, console) as (nodes, watcher):
        _setup_master_data(nodes, admin, console)
        before = _full_load(nodes, watcher, anchors[0], "anchors", console)
        capture = _full_load(nodes, watcher, work, "trace.capture", console)
        after = _full_load(nodes, watcher, anchors[1], "anchors", console)
        seen, rounds = dict(watcher.seen), _engine_rounds(homes[0], watcher.height)
    console.print("reading the results from node 0's store...")
    height, where = _results(homes[0])
    phases = {name: _phase_report(phase, where, seen, rounds)
              for name, phase in ((ANCHOR_PASSES[0], before), ("capture", capture),
                                  (ANCHOR_PASSES[1], after))}
    for name, phase in phases.items():
        if phase["committed_ok"] > phase["accepted"]:
            console.print(f"[yellow]warning[/]: {name}: {phase['committed_ok']} committed but "
                          f"{phase['accepted']} accepted (refused: {phase['refused']}); the "
                          "clock stopped at the accepted ones, so the rate is too high")
    anchor_rate = sum(phases[name]["committed_tx_per_s"] for name in ANCHOR_PASSES) / 2
    events_per_s = phases["capture"]["committed_tx_per_s"]  # one event a transaction
    return {
        "validators": validators, "clients": clients, "batch": batch,
        "anchor_tx_per_s": round(anchor_rate, 1),
        "anchor_tx_per_s_before_after": [phases[n]["committed_tx_per_s"]
                                         for n in ANCHOR_PASSES],
        "capture_events_per_s": events_per_s,
        "capture_packs_per_s": round(events_per_s * capture_packs, 1),
        "ratio": round(events_per_s / anchor_rate, 3) if anchor_rate else None,
        "packs_per_event": capture_packs,
        "capture_batch": small,
        "tx_bytes_mean": captures.tx_bytes // max(1, captures.count),
        "anchor": {"before": phases[ANCHOR_PASSES[0]], "after": phases[ANCHOR_PASSES[1]]},
        "capture": phases["capture"],
        "height": height,
    }


def run_trace_bench(*, validators: int, anchor_txs: int, packs: int, events: int,
                    samples: int, clients: int, batch: int, console: Console,
                    packs_per_event: int = 1000, txs_per_block: int = 20,
                    capture_packs: int = 10, block_interval_ms: int = 100,
                    max_block_txs: int = 2000, seed: int | None = None,
                    started: list[int] | None = None) -> dict[str, Any]:
    """The ``--app trace`` run; see the module docstring. The pid of each node process is
    appended to ``started`` (when given) as it starts."""
    if min(validators, clients, batch, samples, packs_per_event, txs_per_block,
           capture_packs) < 1 or anchor_txs < clients or events < clients:
        raise SystemExit("--validators, --clients, --batch and --samples must be at least 1, "
                         "and --txs and --events at least --clients")
    if packs < samples:
        raise SystemExit("--packs must be at least --samples")
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="medledger-bench-trace-") as tmp:
        verify = _verification(Path(tmp) / "verify", packs, packs_per_event, txs_per_block,
                               samples, started, console, rng)
        capture = _capture_rate(Path(tmp) / "consortium", validators, anchor_txs, events,
                                capture_packs, clients, batch, block_interval_ms,
                                max_block_txs, started, console)
    p99 = verify["p99_ms"]
    return {
        "app": "trace",
        "engine": "cometbft",
        "cores": os.cpu_count() or 1,
        "verify_p99_ms": p99,
        "verify_p99_target_ms": VERIFY_P99_TARGET_MS,
        "verify_packs_in_state": packs,
        "capture_events_per_s": capture["capture_events_per_s"],
        "anchor_tx_per_s": capture["anchor_tx_per_s"],
        "capture_to_anchor_ratio": capture["ratio"],
        "targets_met": {"verify_p99": p99 is not None and p99 < VERIFY_P99_TARGET_MS
                        and not verify["failed"]},
        "verification": verify,
        "capture_rate": capture,
    }

