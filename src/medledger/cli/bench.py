"""What ``medledger bench``'s client processes use: the pre-signed sample transactions and
the loop that posts them (the run itself is :mod:`medledger.cli.bench_consortium`).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from medledger.apps import default_registry
from medledger.codec import decode_canonical_list
from medledger.crypto import ScryptParams, SigningKey
from medledger.ledger import Transaction

__all__ = ["FAST_KDF", "sample_tx"]

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
