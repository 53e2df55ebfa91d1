"""How long the transaction pipeline takes for 2,000 transactions: admission into the
mempool, producing the block that commits them, and the Ed25519 verifies underneath.

Each benchmark runs 3 rounds of one call on fresh inputs and asserts its result, so it is
an ordinary (fast) test as well as a measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from medledger.crypto import SigningKey, verify
from medledger.ledger import Transaction, Validator, ValidatorSet
from medledger.node import CommittedBlock, Genesis, Node, NodeConfig, Submitted
from medledger.store import SQLiteStore

N = 2_000
CHAIN = "bench-chain"
GENESIS_TIME = 1_700_000_000_000
VALIDATOR = SigningKey.from_seed(b"\x01" * 32)
ADMIN = SigningKey.from_seed(b"\x02" * 32)
ROUNDS = {"rounds": 3, "iterations": 1}


def genesis() -> Genesis:
    return Genesis(
        chain_id=CHAIN, genesis_time=GENESIS_TIME,
        validators=ValidatorSet.of([Validator(VALIDATOR.public_key, 10, "v0")]),
        organisations=({"id": "st-mary", "name": "St Mary's", "role": "hospital",
                        "admins": [ADMIN.public_key.hex()]},))


def record_per_item(benchmark: Any, name: str) -> None:
    """Store the mean time per transaction in the report (no stats under --benchmark-disable)."""
    if benchmark.stats is not None:
        benchmark.extra_info[name] = round(benchmark.stats.stats.mean / N * 1e6, 1)


@pytest.fixture(scope="module")
def anchors() -> list[Transaction]:
    """2,000 ``ledger.anchor`` transactions by the genesis admin, nonces 1..2000, signed once."""
    return [Transaction.create(ADMIN, CHAIN, "ledger.anchor", nonce,
                               {"digest": nonce.to_bytes(32, "big").hex(), "label": f"d{nonce}"})
            for nonce in range(1, N + 1)]


@pytest.fixture
def fresh_node(tmp_path: Path) -> Iterator[Callable[[], Node]]:
    """Makes a new single-validator node over its own SQLite file, with a fixed clock;
    closes every node made after the test."""
    made: list[Node] = []
    files = count()

    def make() -> Node:
        ticks = iter(range(GENESIS_TIME, GENESIS_TIME + 10**9, 1000))
        node = Node(SQLiteStore(tmp_path / f"chain-{next(files)}.db"), genesis(), VALIDATOR,
                    NodeConfig(), clock=lambda: next(ticks))
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


@pytest.mark.benchmark(group="pipeline")
def test_admit_2000_anchors(benchmark: Any, anchors: list[Transaction],
                            fresh_node: Callable[[], Node]) -> None:
    def admit(node: Node) -> list[Submitted]:
        return [node.submit(tx) for tx in anchors]

    submitted = benchmark.pedantic(admit, setup=lambda: ((fresh_node(),), {}), **ROUNDS)

    refused = [(s.code, s.message) for s in submitted if not s.accepted]
    assert not refused and len(submitted) == N, refused[:3]
    record_per_item(benchmark, "per_tx_us")


@pytest.mark.benchmark(group="pipeline")
def test_produce_block_of_2000(benchmark: Any, anchors: list[Transaction],
                               fresh_node: Callable[[], Node]) -> None:
    def admitted_node() -> tuple[tuple[Node], dict[str, Any]]:
        node = fresh_node()
        assert all(node.submit(tx).accepted for tx in anchors)
        return (node,), {}

    committed: CommittedBlock | None = benchmark.pedantic(
        lambda node: node.produce_block(), setup=admitted_node, **ROUNDS)

    assert committed is not None
    codes = [r.code for r in committed.block.results]
    assert len(codes) == N and set(codes) == {"ok"}, sorted(set(codes))
    assert committed.block.header.height == 1
    record_per_item(benchmark, "per_tx_us")


@pytest.mark.benchmark(group="pipeline")
def test_ed25519_verify_2000(benchmark: Any) -> None:
    keys = [SigningKey.from_seed(bytes([i]) * 32) for i in range(1, 9)]
    items = []
    for i in range(N):
        key, message = keys[i % len(keys)], b"medledger bench message %d" % i
        items.append((key.public_key, message, key.sign(message)))

    def verify_all() -> int:
        return sum(verify(pk, msg, sig) for pk, msg, sig in items)

    valid = benchmark.pedantic(verify_all, **ROUNDS)

    assert valid == N
    pk, msg, sig = items[0]
    assert not verify(pk, msg + b"!", sig)  # and the check can say no
    record_per_item(benchmark, "per_verify_us")
