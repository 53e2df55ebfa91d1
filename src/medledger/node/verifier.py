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
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from medledger.apps import AppRegistry, Rejected, default_registry
from medledger.codec import CodecError, decode, decode_canonical_list
from medledger.crypto import verify_many
from medledger.ledger import MalformedError, Transaction

__all__ = ["BatchRefused", "Prepared", "SignatureVerifier", "prepare_batch"]

INLINE_BODY_BELOW = 16 * 1024

# One prepared item: (transaction, signature valid, stateless refusal or None), or
# (None, why it is malformed, None). Transactions cross the process boundary pickled, which
# costs the main process about half of rebuilding them from their bytes.
Prepared = tuple[Transaction | None, bool | str, tuple[str, str] | None]
_REGISTRY: list[AppRegistry] = []


def _stateless(tx: Transaction) -> tuple[str, str] | None:
    if not _REGISTRY:
        _REGISTRY.append(default_registry())
    try:
        _REGISTRY[0].check_stateless(tx)
    except Rejected as e:
        return (e.code, e.message)
    return None


class BatchRefused(ValueError):
    """A batch body that is not a JSON list of transactions at all."""


def _exit_with_parent(parent: int) -> None:
    """Worker initialiser: end this worker as soon as the node process is gone (even after
    SIGKILL, when nobody is left to shut the pool down)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def prepare_batch(body: bytes, max_items: int) -> list[Prepared] | str:
    """Decode a batch body strictly, check each envelope's shape, verify its signature and
    run its app's stateless check (all pure functions of the transaction).

    Runs in a worker process; returns a refusal sentence for a body that is not a list.
    """
    pairs = decode_canonical_list(body)  # the usual case, at C speed
    if pairs is None:
        try:
            items = decode(body)
        except CodecError as e:
            return f"request body: {e}"
        if type(items) is not list:
            return f"body must be a list of at most {max_items} transactions"
        pairs = [(item, None) for item in items]
    if len(pairs) > max_items:
        return f"body must be a list of at most {max_items} transactions"
    out: list[Prepared] = []
    for item, raw in pairs:
        try:
            tx = Transaction.from_dict(item, checked=True, raw=raw)
        except MalformedError as e:
            out.append((None, str(e), None))
            continue
        out.append((tx, tx.signature_valid(), _stateless(tx)))
    return out


class SignatureVerifier:
    """Verify transactions' signatures, in parallel worker processes for big batches."""

    def __init__(self, workers: int | None = None) -> None:
        cores = os.cpu_count() or 2
        self.workers = workers if workers is not None else cores
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_exit_with_parent, initargs=(os.getpid(),))
        return self._pool

    def start(self) -> None:
        """Start the workers now rather than on the first big batch."""
        if self.workers:
            self._executor().submit(verify_many, []).result()

    async def prepare(self, body: bytes, max_items: int) -> list[Prepared]:
        """:func:`prepare_batch` in a worker (inline for small bodies); raises BatchRefused."""
        if len(body) < INLINE_BODY_BELOW or not self.workers:
            result = prepare_batch(body, max_items)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._executor(), prepare_batch, body, max_items)
        if isinstance(result, str):
            raise BatchRefused(result)
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
