"""Signature verification off the node's main thread, in worker processes.

The node's Python work (decoding, checks, execution, the state tree) holds one core; Ed25519
verification is the largest single cost per transaction, so large batches go to worker
processes (threads would queue behind the GIL each time a libsodium call returns). Small
batches are verified inline: a round trip to a worker costs more than a few verifies.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from medledger.crypto import verify_many
from medledger.ledger import Transaction

__all__ = ["SignatureVerifier"]

INLINE_BELOW = 32


class SignatureVerifier:
    """Verify transactions' signatures, in parallel worker processes for big batches."""

    def __init__(self, workers: int | None = None) -> None:
        cores = os.cpu_count() or 2
        self.workers = workers if workers is not None else max(1, cores - 1)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def start(self) -> None:
        """Start the workers now rather than on the first big batch."""
        if self.workers:
            self._executor().submit(verify_many, []).result()

    async def verify(self, txs: list[Transaction]) -> list[bool]:
        """One verdict per transaction, in order."""
        if len(txs) < INLINE_BELOW or not self.workers:
            return [t.signature_valid() for t in txs]
        loop = asyncio.get_running_loop()
        size = -(-len(txs) // self.workers)
        parts: list[Any] = []
        for i in range(0, len(txs), size):
            items = [(t.sender, t.sign_bytes(), t.signature) for t in txs[i:i + size]]
            parts.append(loop.run_in_executor(self._executor(), verify_many, items))
        return [bool(b) for part in await asyncio.gather(*parts) for b in part]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
