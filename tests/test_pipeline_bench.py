"""How long the transaction pipeline takes for 2,000 transactions: CheckTx of each (what
admits it to CometBFT's mempool), the block that commits them (PrepareProposal,
ProcessProposal, FinalizeBlock and Commit of the ABCI application), and the Ed25519
verifies underneath.

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
from medledger.ledger import Block, Transaction, Validator, ValidatorSet
from medledger.node import Genesis
from tests.chainutil import AbciChain, T

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
def fresh_node(tmp_path: Path) -> Iterator[Callable[[], AbciChain]]:
    """Makes a new single-validator chain and its ABCI application over its own SQLite
    file; closes every one made after the test."""
    made: list[AbciChain] = []
    files = count()

    def make() -> AbciChain:
        node = AbciChain(tmp_path / f"chain-{next(files)}.db", genesis(), max_block_txs=N)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


@pytest.mark.benchmark(group="pipeline")
def test_check_tx_2000_anchors(benchmark: Any, anchors: list[Transaction],
                               fresh_node: Callable[[], AbciChain]) -> None:
    """CheckTx as the ABCI server hands a run of them to the application: decoding, the
    signature, the stateless and stateful checks of each, never seen before."""
    requests = [T.RequestCheckTx(tx=tx.raw, type=T.NEW) for tx in anchors]

    def admit(node: AbciChain) -> list[Any]:
        return node.app.check_txs(requests)

    answers = benchmark.pedantic(admit, setup=lambda: ((fresh_node(),), {}), **ROUNDS)

    refused = [(a.codespace, a.log) for a in answers if a.code]
    assert not refused and len(answers) == N, refused[:3]
    record_per_item(benchmark, "per_tx_us")


@pytest.mark.benchmark(group="pipeline")
def test_block_of_2000(benchmark: Any, anchors: list[Transaction],
                       fresh_node: Callable[[], AbciChain]) -> None:
    """The block of 2,000 transactions CheckTx admitted (so already verified, as on a
    node): proposed, finalized and committed."""
    def admitted_node() -> tuple[tuple[AbciChain], dict[str, Any]]:
        node = fresh_node()
        assert all(node.submit(tx) == "ok" for tx in anchors)
        return (node,), {}

    block: Block = benchmark.pedantic(lambda node: node.produce(), setup=admitted_node,
                                      **ROUNDS)

    codes = [r.code for r in block.results]
    assert len(codes) == N and set(codes) == {"ok"}, sorted(set(codes))
    assert [t.tx_id for t in block.txs] == [t.tx_id for t in anchors]
    assert block.header.height == 1
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
