"""``medledger bench``: committed tx/s of a local chain on CometBFT against the verification
limit (the run itself is :mod:`medledger.cli.bench_consortium`, for any number of
validators); here, what its client processes use: the pre-signed sample transactions and
the loop that posts them.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from rich.console import Console

from medledger.apps import default_registry
from medledger.codec import decode_canonical_list
from medledger.crypto import ScryptParams, SigningKey
from medledger.ledger import Transaction

__all__ = ["FAST_KDF", "run_bench", "sample_tx"]

FAST_KDF = ScryptParams(n=2**10, r=8, p=1)

_REGISTRY = default_registry()


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


def run_bench(*, validators: int, n_txs: int, clients: int, batch: int,
              console: Console, block_interval_ms: int = 100, max_block_txs: int = 2000,
              half_load_txs: int = 0) -> dict[str, Any]:
    """Run the benchmark (see :func:`run_consortium_bench`); return its JSON-ready result."""
    if validators < 1:
        raise SystemExit("--validators must be at least 1")
    from medledger.cli.bench_consortium import run_consortium_bench

    return run_consortium_bench(
        validators=validators, n_txs=n_txs, clients=clients, batch=batch, console=console,
        block_interval_ms=block_interval_ms, max_block_txs=max_block_txs,
        half_load_txs=half_load_txs)
