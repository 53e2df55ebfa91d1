"""``medledger bench``: committed tx/s of a real node process against one core's verify rate.

``--validators 1``: measure the Ed25519 verify rate of one core (libsodium through PyNaCl); lay out a
fresh single-validator chain in a temporary home with one sender key per client; pre-sign
anchor transactions; start the node as its own process; submit the transactions in batches
through its API from client processes; wait until every one is committed; read the counts
back from the node's store. Prints JSON; the ratio is committed tx/s over the verify rate.

``--validators N`` (N > 1), and any number of validators on CometBFT (``engine``, the
default): a local consortium, :mod:`medledger.cli.bench_consortium`. The single-node run
above is the retiring engine's (``engine="medledger"``).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from medledger.apps import default_registry
from medledger.codec import decode_canonical_list
from medledger.crypto import ScryptParams, SigningKey, verify_rate
from medledger.ledger import Transaction
from medledger.node import Genesis, Home, NodeConfig
from medledger.node.consortium import free_port
from medledger.store import SQLiteStore

__all__ = ["FAST_KDF", "run_bench", "sample_tx"]

FAST_KDF = ScryptParams(n=2**10, r=8, p=1)

_REGISTRY = default_registry()


def _prepare_home(root: Path, senders: list[SigningKey], block_txs: int) -> Home:
    home = Home.init(root / "node", "bench", kdf_params=FAST_KDF)
    genesis = home.genesis()
    orgs = [dict(o) for o in genesis.organisations]
    orgs[0]["admins"] = [*orgs[0]["admins"], *(k.public_key.hex() for k in senders)]
    Genesis(genesis.chain_id, genesis.genesis_time, genesis.validators,
            tuple(orgs)).save(home.genesis_path)
    config = NodeConfig(api=f"127.0.0.1:{free_port()}", block_interval_ms=500,
                        max_block_txs=block_txs, mempool_max_txs=max(100_000, 4 * block_txs))
    config.save(home.path)
    return home


def sample_tx(key: SigningKey, nonce: int, index: int) -> Transaction:
    """The registry's sample transaction number ``index`` (an anchor of a distinct digest
    in this build), signed by ``key`` with ``nonce``."""
    type_, body = _REGISTRY.sample_tx(index)
    return Transaction.create(key, "bench", type_, nonce, body)


def _sign_batches(key: SigningKey, count: int, batch: int, tag: int) -> list[bytes]:
    txs = []
    for nonce in range(1, count + 1):
        txs.append(sample_tx(key, nonce, (tag << 40) | nonce))
    return [b"[" + b",".join(t.raw for t in txs[i:i + batch]) + b"]"
            for i in range(0, len(txs), batch)]


def _submit(url: str, batches: list[bytes], queue: Any, go: Any) -> None:
    """A client process: say it is ready, wait for the start, post every batch in order;
    report how many were accepted."""
    accepted = 0
    with httpx.Client(base_url=url, timeout=120) as client:
        client.get("/v1/status")  # connected before the clock starts
        queue.put("ready")
        go.wait(120)
        for body in batches:
            pending = body
            for _attempt in range(50):
                answer = client.post("/v1/txs/batch", content=pending,
                                     headers={"content-type": "application/json"}).json()
                accepted += answer["accepted"]
                full = next((j for j, r in enumerate(answer["results"])
                             if r["code"] == "mempool_full"), None)
                if full is None:
                    break
                # send again only what the full mempool refused (from the first refusal on)
                raws = [raw for _, raw in decode_canonical_list(pending) or []]
                pending = b"[" + b",".join(raws[full:]) + b"]"
                time.sleep(0.05)
    queue.put(accepted)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the node exited with code {proc.returncode} before it was ready")
        try:
            httpx.get(f"{url}/v1/status", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the node did not answer within 60 s")


def _wait_committed(url: str, total: int, deadline: float) -> int:
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/v1/status", timeout=10).json()
        if status["mempool_size"] == 0 and status["total_txs"] >= total:
            return int(status["height"])
        time.sleep(0.02)
    raise RuntimeError("not every transaction was committed in time")


def run_bench(*, validators: int, n_txs: int, clients: int, batch: int,
              console: Console, block_interval_ms: int = 100, max_block_txs: int = 2000,
              half_load_txs: int = 0, engine: str = "cometbft") -> dict[str, Any]:
    """Run the benchmark; return its JSON-ready result. On CometBFT, and with ``validators``
    > 1 on either engine, a local consortium (see :func:`run_consortium_bench`); the other
    settings are for that case."""
    if validators < 1:
        raise SystemExit("--validators must be at least 1")
    if validators > 1 or engine != "medledger":
        from medledger.cli.bench_consortium import run_consortium_bench

        return run_consortium_bench(
            validators=validators, n_txs=n_txs, clients=clients, batch=batch, console=console,
            block_interval_ms=block_interval_ms, max_block_txs=max_block_txs,
            half_load_txs=half_load_txs, engine=engine)
    console.print("measuring one core's Ed25519 verify rate (libsodium)...")
    rate_before = verify_rate(1.0)
    senders = [SigningKey.generate() for _ in range(clients)]
    per_client = n_txs // clients
    console.print(f"pre-signing {per_client * clients} anchor transactions...")
    work = [_sign_batches(k, per_client, batch, i) for i, k in enumerate(senders)]
    with tempfile.TemporaryDirectory(prefix="medledger-bench-") as tmp:
        home = _prepare_home(Path(tmp), senders, block_txs=max(batch, NodeConfig().max_block_txs))
        url = f"http://{home.config().api}"
        env = {**os.environ, "MEDLEDGER_PASSPHRASE": home.passphrase()}
        proc = subprocess.Popen([sys.executable, "-m", "medledger", "up", "--home", str(home.path)],
                                env=env, stdout=subprocess.DEVNULL)
        try:
            _wait_ready(url, proc, time.monotonic() + 60)
            console.print(f"submitting from {clients} client process(es) to {url}...")
            spawn = multiprocessing.get_context("spawn")
            queue: Any = spawn.Queue()
            go = spawn.Event()
            procs = [spawn.Process(target=_submit, args=(url, w, queue, go)) for w in work]
            for p in procs:
                p.start()
            for _ in procs:  # the clock covers submitting and committing, not process start
                queue.get(timeout=120)
            start = time.perf_counter()
            go.set()
            accepted = sum(queue.get(timeout=600) for _ in procs)
            height = _wait_committed(url, accepted, time.monotonic() + 600)
            elapsed = time.perf_counter() - start
            for p in procs:
                p.join(10)
        finally:
            proc.terminate()
            proc.wait(30)
        # measured again after the load: the machine is shared, and the mean of the two
        # describes it during this run better than either alone
        console.print("measuring the verify rate again...")
        rate_after = verify_rate(1.0)
        store = SQLiteStore(home.store_path)
        committed = sum(1 for h in range(1, store.latest_height() + 1)
                        for t in store.get_block_txs(h) if t.code == "ok")
        store.close()
    tps = committed / elapsed
    rate = (rate_before + rate_after) / 2
    return {
        "engine": engine,
        "validators": validators,
        "transactions": per_client * clients,
        "accepted": accepted,
        "committed_ok": committed,
        "blocks": height,
        "clients": clients,
        "batch": batch,
        "seconds": round(elapsed, 3),
        "committed_tx_per_s": round(tps, 1),
        "verify_per_s_one_core": round(rate, 1),
        "verify_per_s_before_after": [round(rate_before, 1), round(rate_after, 1)],
        "ratio": round(tps / rate, 3),
        "target_ratio": 0.5,
        "payload_bytes_per_tx": len(work[0][0]) // min(batch, per_client) if work[0] else 0,
    }
