"""How long one block's state writes take: 5,000 keys into a tree of 100,000."""

from __future__ import annotations

import random

import pytest

from medledger.merkle.sparse import EMPTY_ROOT, MemoryNodeStore, SparseMerkleTree, UpdateResult

TREE_KEYS = 100_000
BATCH_KEYS = 5_000


@pytest.mark.benchmark(group="merkle")
def test_sparse_batch_of_5000_into_100000(benchmark) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(2024)
    store = MemoryNodeStore()
    tree = SparseMerkleTree(store)
    base = tree.update(EMPTY_ROOT, {rnd.randbytes(32): rnd.randbytes(32) for _ in range(TREE_KEYS)})
    store.put_nodes(base.rows)
    batch = {rnd.randbytes(32): rnd.randbytes(32) for _ in range(BATCH_KEYS)}

    result: UpdateResult = benchmark.pedantic(
        tree.update, args=(base.root, batch), rounds=5, iterations=1, warmup_rounds=1
    )

    assert 0 < len(result.rows) < BATCH_KEYS * 10
    if benchmark.stats is not None:  # None under --benchmark-disable
        per_key_us = benchmark.stats.stats.mean / BATCH_KEYS * 1e6
        benchmark.extra_info["per_key_us"] = round(per_key_us, 1)
    benchmark.extra_info["rows_per_key"] = round(len(result.rows) / BATCH_KEYS, 2)
