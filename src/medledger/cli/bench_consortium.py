"""``medledger bench --validators N``: committed tx/s and commit latency of a local
consortium against the verification limit.

Lay out a local consortium of N validator homes (fast KDF, free ports on 127.0.0.1) whose
genesis makes every client key an admin; start the N nodes as their own processes and wait
until each is connected to the N-1 others. Phase 1 submits pre-signed batches as fast as
the chain takes them, round-robin over the nodes' APIs, and measures committed tx/s;
phase 2 paces fresh clients to half of that rate and measures the commit latency there. A
tx's commit latency is the wall time its block was first seen committed (polling node 0's
``/v1/status`` every 10 ms; the time the answer arrived) minus the wall time its batch was
sent. The ratio is committed tx/s over the verification limit, verify rate x cores /
validators (every validator verifies every transaction; with one validator, one core's verify
rate, as the single-node bench has always counted). Node processes are stopped by pid on
every way out.

Each node is a ``medledger up`` process and its ``cometbft`` child. The CPU time of
each node's processes over the full-load window is read from ``/proc/<pid>/stat`` (user +
system, before and after): the ``cometbft`` child, the ``medledger up`` process (the app:
API, ABCI, execution, commit) and its other children (the intake workers that verify).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from medledger.cli.bench import FAST_KDF, sample_tx
from medledger.cli.bench_nodes import _cpu_split, _Nodes, _stop_on_sigterm, _Watcher
from medledger.crypto import SigningKey, verify_rate
from medledger.ledger import Transaction
from medledger.node import Genesis, Home, NodeConfig
from medledger.node.consortium import Consortium, free_port
from medledger.node.engine import EngineHome
from medledger.store import SQLiteStore

__all__ = ["run_bench", "run_consortium_bench"]

P99_TARGET_MS = 1000  # commit latency at half load, p99
def _sign_client_batches(keys: list[SigningKey], count: int, batch: int, first: int,
                         tag: int, make: Callable[[SigningKey, int, int], Transaction] = sample_tx
                         ) -> list[list[Transaction]]:
    """One client's ``count`` transactions (``make(key, nonce, index)``: anchors unless
    told) in batches; batch ``i`` is for node ``(first + i) mod N`` and signed by
    ``keys[that node]``, so each sender's transactions reach one node, in nonce order (a
    sender's later batch reaching a node before an earlier one would make the earlier one's
    nonces stale)."""
    nonces = [0] * len(keys)
    out = []
    for i, start in enumerate(range(0, count, batch)):
        j = (first + i) % len(keys)
        txs = []
        for _ in range(min(batch, count - start)):
            nonces[j] += 1
            n = nonces[j]
            txs.append(make(keys[j], n, (tag << 56) | (j << 40) | n))
        out.append(txs)
    return out


def _submit_paced(index: int, urls: list[str], first: int, batches: list[list[bytes]],
                  interval: float, offset: float, queue: Any, go: Any) -> None:
    """A client process: connect to every node, say it is ready, wait for the start; then post
    batch ``i`` to node ``(first + i) mod N``, at ``offset + i * interval`` seconds after the
    start when ``interval`` > 0 (as fast as answered otherwise). A refusal for a full mempool
    is retried from that transaction on. Reports (wall send time of each batch, accepted,
    refusal codes), tagged with the client's ``index``."""
    sent: list[float] = []
    accepted = 0
    refused: Counter[str] = Counter()
    nodes = [httpx.Client(base_url=url, timeout=120) for url in urls]
    try:
        for node in nodes:
            node.get("/v1/status")  # connected before the clock starts
        queue.put("ready")
        go.wait(120)
        start = time.perf_counter()
        for i, raws in enumerate(batches):
            if interval > 0:
                wait = start + offset + i * interval - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            node = nodes[(first + i) % len(nodes)]
            sent.append(time.time())
            pending = raws
            for _attempt in range(400):
                answer = node.post("/v1/txs/batch", content=b"[" + b",".join(pending) + b"]",
                                   headers={"content-type": "application/json"}).json()
                results = answer["results"]
                accepted += answer["accepted"]
                full = next((j for j, r in enumerate(results) if r["code"] == "mempool_full"),
                            None)
                refused.update(r["code"] for r in results[:full]
                               if r["code"] not in ("ok", "accepted") and not r.get("accepted"))
                if full is None:
                    break
                pending = pending[full:]
                time.sleep(0.05)
    finally:
        for node in nodes:
            node.close()
    queue.put((index, sent, accepted, dict(refused)))


def _prepare_consortium(root: Path, validators: int, senders: list[SigningKey],
                        block_interval_ms: int, max_block_txs: int,
                        extra_orgs: Sequence[dict[str, Any]] = ()) -> list[Home]:
    """The homes of a consortium whose genesis makes every sender an admin of the first
    organisation and adds ``extra_orgs``."""
    ports = [(free_port(), free_port()) for _ in range(validators)]
    consortium = Consortium.init(root, "bench", validators, demo=False, kdf_params=FAST_KDF,
                                 ports=ports, engine=True,
                                 block_interval_ms=block_interval_ms)
    homes = [Home(node.home) for node in consortium.nodes]
    genesis = homes[0].genesis()
    orgs = [dict(o) for o in genesis.organisations]
    orgs[0]["admins"] = [*orgs[0]["admins"], *(k.public_key.hex() for k in senders)]
    orgs += [dict(o) for o in extra_orgs]
    shared = Genesis(genesis.chain_id, genesis.genesis_time, genesis.validators, tuple(orgs))
    for home in homes:  # the same bytes in every home
        shared.save(home.genesis_path)
        config = home.config()
        NodeConfig(**{**config.to_dict(), "block_interval_ms": block_interval_ms,
                      "max_block_txs": max_block_txs}).save(home.path)
    for home in homes:  # CometBFT's genesis carries the medledger genesis as app_state
        path = EngineHome(home.path).config_dir / "genesis.json"
        doc = json.loads(path.read_text())
        doc["app_state"] = shared.to_dict()
        path.write_text(json.dumps(doc, indent=2) + "\n")
    return homes


@contextmanager
def _running(homes: list[Home], started: list[int] | None, console: Console
             ) -> Iterator[tuple[_Nodes, _Watcher]]:
    """The consortium's nodes started and connected, with node 0's watcher; on every way
    out (SIGTERM included) the watcher halts and the nodes are stopped by pid."""
    nodes = _Nodes(homes, started)
    watcher: _Watcher | None = None
    previous = _stop_on_sigterm()
    try:
        console.print(f"starting {len(homes)} validator processes on CometBFT "
                      f"(node0: {nodes.urls[0]}, home {homes[0].path})...")
        nodes.start()
        nodes.wait_connected(60 + 5 * len(homes))
        watcher = _Watcher(nodes.urls[0], nodes)
        watcher.start()
        deadline = time.monotonic() + 60
        while watcher.total_txs < 0 and time.monotonic() < deadline:
            nodes.check_alive()
            time.sleep(0.01)
        yield nodes, watcher
    finally:
        if watcher is not None:
            watcher.halt.set()
            watcher.join(5)
        nodes.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _results(home: Home) -> tuple[int, dict[bytes, tuple[int, str]]]:
    """Once the nodes are stopped: node ``home``'s last height, and where each committed
    transaction is, as tx id -> (height, result code)."""
    store = SQLiteStore(home.store_path)
    try:
        final_height = store.latest_height()
        return final_height, {t.tx_id: (h, t.code) for h in range(1, final_height + 1)
                              for t in store.get_block_txs(h)}
    finally:
        store.close()


def _run_phase(nodes: _Nodes, watcher: _Watcher, work: list[list[list[Transaction]]],
               interval: float, base_total: int, timeout: float,
               clock_started: threading.Event | None = None
               ) -> tuple[float, list[tuple[float, list[bytes]]], int, Counter[str], Any]:
    """Submit ``work`` (per client, its batches) from client processes; wait until the
    node-0 count of committed transactions reaches ``base_total`` plus those accepted.
    ``clock_started`` (when given) is set as the clients are told to start. Returns
    (seconds, [(send time, tx ids)] per batch, accepted, refusal codes, the nodes' CPU
    samples at the start and the end)."""
    spawn = multiprocessing.get_context("spawn")
    queue: Any = spawn.Queue()
    go = spawn.Event()
    n = len(nodes.urls)
    procs = [spawn.Process(target=_submit_paced,
                           args=(c, nodes.urls, c % n, [[t.raw for t in b] for b in batches],
                                 interval, interval * c / len(work), queue, go), daemon=True)
             for c, batches in enumerate(work)]
    try:
        for p in procs:
            p.start()
        for _ in procs:  # the clock covers submitting and committing, not process start
            nodes.check_alive()
            queue.get(timeout=120)
        cpu_before = nodes.cpu()
        start = time.perf_counter()
        go.set()
        if clock_started is not None:
            clock_started.set()
        reports = []
        for _ in procs:
            reports.append(queue.get(timeout=timeout))
        accepted = sum(r[2] for r in reports)
        watcher.wait_total(base_total + accepted, timeout)
        elapsed = time.perf_counter() - start
        cpu_after = nodes.cpu()
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(5)
    sends: list[tuple[float, list[bytes]]] = []
    refused: Counter[str] = Counter()
    for c, sent, _accepted, codes in reports:
        sends.extend((t, [tx.tx_id for tx in b]) for t, b in zip(sent, work[c], strict=True))
        refused.update(codes)
    return elapsed, sends, accepted, refused, (cpu_before, cpu_after)


def _latencies(sends: list[tuple[float, list[bytes]]], where: dict[bytes, tuple[int, str]],
               seen: dict[int, float]) -> tuple[list[float], Counter[str], set[int]]:
    """Per committed tx, seconds from its batch's send to its block first seen committed;
    also the count of each result code and the heights that hold these transactions."""
    out: list[float] = []
    codes: Counter[str] = Counter()
    heights: set[int] = set()
    for sent, ids in sends:
        for tx_id in ids:
            found = where.get(tx_id)
            if found is None:
                continue
            height, code = found
            codes[code] += 1
            heights.add(height)
            if height in seen:
                out.append(seen[height] - sent)
    return out, codes, heights


def _engine_rounds(home: Home, height: int) -> dict[int, int | None]:
    """The round in which CometBFT decided each height up to ``height`` (node 0's
    ``/commit``), while the node still runs."""
    out: dict[int, int | None] = {}
    with httpx.Client(base_url=f"http://{EngineHome(home.path).rpc()}", timeout=10) as rpc:
        for h in range(1, height + 1):
            try:
                commit = rpc.get("/commit", params={"height": h}).json()["result"]
                out[h] = int(commit["signed_header"]["commit"]["round"])
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                out[h] = None
    return out


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"p50": round(statistics.median(ordered) * 1000, 1), "p99": at(0.99)}


def run_bench(*, validators: int, n_txs: int, clients: int, batch: int, console: Console,
              block_interval_ms: int = 100, max_block_txs: int = 2000,
              half_load_txs: int = 0) -> dict[str, Any]:
    """``medledger bench``: :func:`run_consortium_bench` once ``validators`` is checked."""
    if validators < 1:
        raise SystemExit("--validators must be at least 1")
    return run_consortium_bench(
        validators=validators, n_txs=n_txs, clients=clients, batch=batch, console=console,
        block_interval_ms=block_interval_ms, max_block_txs=max_block_txs,
        half_load_txs=half_load_txs)


def run_consortium_bench(*, validators: int, n_txs: int, clients: int, batch: int,
                         console: Console, block_interval_ms: int = 100,
                         max_block_txs: int = 2000, half_load_txs: int = 0,
                         started: list[int] | None = None) -> dict[str, Any]:
    """The ``--validators N`` run; see the module docstring. ``half_load_txs`` 0
    means 20% of ``n_txs``, at least 5,000 and at most ``n_txs``. The pid of each node
    process is appended to ``started`` (when given) as it starts."""
    if clients < 1 or batch < 1 or n_txs < clients:
        raise SystemExit("--clients and --batch must be at least 1, and --txs at least --clients")
    half_total = half_load_txs or min(n_txs, max(5_000, n_txs // 5))
    cores = os.cpu_count() or 1
    console.print("measuring one core's Ed25519 verify rate (libsodium)...")
    rate_before = verify_rate(1.0)
    # one sender per (client, node) and phase: see _sign_client_batches
    keys1 = [[SigningKey.generate() for _ in range(validators)] for _ in range(clients)]
    keys2 = [[SigningKey.generate() for _ in range(validators)] for _ in range(clients)]
    senders = [k for group in (*keys1, *keys2) for k in group]
    per_client = n_txs // clients
    half_per_client = max(1, half_total // clients)
    console.print(f"pre-signing {per_client * clients + half_per_client * clients} "
                  f"anchor transactions...")
    work1 = [_sign_client_batches(keys1[c], per_client, batch, c % validators, c)
             for c in range(clients)]
    work2 = [_sign_client_batches(keys2[c], half_per_client, batch, c % validators,
                                  clients + c) for c in range(clients)]
    with tempfile.TemporaryDirectory(prefix="medledger-bench-") as tmp:
        homes = _prepare_consortium(Path(tmp) / "consortium", validators, senders,
                                    block_interval_ms, max_block_txs)
        with _running(homes, started, console) as (nodes, watcher):
            console.print(f"phase 1: {per_client * clients} txs from {clients} client "
                          f"process(es) in batches of {batch}, round-robin over "
                          f"{validators} nodes, as fast as they are taken...")
            elapsed1, sends1, accepted1, refused1, cpu1 = _run_phase(
                nodes, watcher, work1, 0.0, watcher.total_txs, 900)
            tps_submitted = accepted1 / elapsed1
            offered = tps_submitted / 2
            interval = batch / (offered / clients) if offered > 0 else 0.0
            console.print(f"phase 1: {accepted1} committed in {elapsed1:.1f} s "
                          f"({tps_submitted:.0f} tx/s); phase 2: "
                          f"{half_per_client * clients} txs offered at {offered:.0f} tx/s...")
            base2 = watcher.total_txs
            elapsed2, sends2, accepted2, refused2, cpu2 = _run_phase(
                nodes, watcher, work2, interval, base2, 900)
            time.sleep(0.1)
            seen = dict(watcher.seen)
            rounds = _engine_rounds(homes[0], watcher.height)
        console.print("measuring the verify rate again...")
        rate_after = verify_rate(1.0)
        final_height, where = _results(homes[0])
    lat1, codes1, heights1 = _latencies(sends1, where, seen)
    lat2, codes2, heights2 = _latencies(sends2, where, seen)
    ok1, ok2 = codes1.pop("ok", 0), codes2.pop("ok", 0)

    def decided_in(heights: set[int]) -> dict[str, int]:
        """How many of ``heights`` were decided in round 0, 1, ... (a later round means
        a timeout, usually a proposal not checked in time)."""
        counts = Counter(rounds[h] for h in heights if rounds.get(h) is not None)
        return {str(r): counts[r] for r in sorted(counts)}

    tps1 = ok1 / elapsed1
    rate = (rate_before + rate_after) / 2
    # every validator verifies every transaction; one node alone is compared with one
    # core's verify rate, as the single-node bench always was
    limit = rate * cores / validators if validators > 1 else rate
    return {
        "engine": "cometbft",
        "validators": validators,
        "transactions": per_client * clients,
        "accepted": accepted1,
        "committed_ok": ok1,
        "refused": dict(refused1),
        "failed_in_block": dict(codes1),
        "blocks": len(heights1),
        "clients": clients,
        "batch": batch,
        "block_interval_ms": block_interval_ms,
        "max_block_txs": max_block_txs,
        "seconds": round(elapsed1, 3),
        "committed_tx_per_s": round(tps1, 1),
        "latency_ms": _percentiles(lat1),
        "decided_in_round": decided_in(heights1),
        "cpu": _cpu_split(*cpu1, elapsed1, ok1),
        "half_load": {
            "transactions": half_per_client * clients,
            "accepted": accepted2,
            "committed_ok": ok2,
            "refused": dict(refused2),
            "failed_in_block": dict(codes2),
            "blocks": len(heights2),
            "seconds": round(elapsed2, 3),
            "offered_tx_per_s": round(offered, 1),
            "committed_tx_per_s": round(ok2 / elapsed2, 1),
            "latency_ms": _percentiles(lat2),
            "decided_in_round": decided_in(heights2),
            "cpu": _cpu_split(*cpu2, elapsed2, ok2),
        },
        "verify_per_s_one_core": round(rate, 1),
        "verify_per_s_before_after": [round(rate_before, 1), round(rate_after, 1)],
        "cores": cores,
        "verification_limit_tx_per_s": round(limit, 1),
        "ratio": round(tps1 / limit, 3),
        "target_ratio": 0.5,
        "p99_target_ms": P99_TARGET_MS,
        "height": final_height,
    }
