"""A lone validator commits on its own until governance gives the chain more validators;
from that height it stops (its signature alone is no certificate any more), and a node
reopened over the same store knows it needs its peers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from medledger.apps import governance
from medledger.crypto import SigningKey
from medledger.ledger import Transaction, Validator, ValidatorSet
from medledger.node import Genesis, Node, NodeConfig
from medledger.store import SQLiteStore

CHAIN = "lone-chain"
START = 1_700_000_000_000
ALONE = SigningKey.from_seed(b"\x71" * 32)
JOINER = SigningKey.from_seed(b"\x72" * 32)
GENESIS = Genesis(chain_id=CHAIN, genesis_time=START,
                  validators=ValidatorSet.of([Validator(ALONE.public_key, 10, "alone")]),
                  organisations=())


def test_a_lone_validator_stops_when_the_set_grows(tmp_path: Path) -> None:
    node = Node(SQLiteStore(tmp_path / "n.db"), GENESIS, ALONE,
                NodeConfig(block_interval_ms=10))
    assert node.commits_alone
    add = Transaction.create(ALONE, CHAIN, governance.PROPOSE, 1, {
        "kind": "validator_add", "effective_height": 3,
        "change": {"public_key": JOINER.public_key.hex(), "power": 10, "name": "joiner"}})
    assert node.submit(add).accepted

    async def run() -> None:
        task = asyncio.create_task(node.run())
        for _ in range(200):  # bounded: 2 s
            await asyncio.sleep(0.01)
            if node.chain.height == 1:
                # one more block (an organisation admitted) reaches the height before
                # the change
                admit = Transaction.create(ALONE, CHAIN, governance.PROPOSE, 2, {
                    "kind": "org_admit", "effective_height": 4,
                    "change": {"id": "st-luke", "name": "St Luke's", "role": "hospital",
                               "admins": [JOINER.public_key.hex()]}})
                assert node.submit(admit).accepted
                node._wake.set()  # type: ignore[union-attr]
            if task.done():
                break
        assert task.done(), "the lone node kept producing after the set grew"
        await task

    asyncio.run(run())
    assert node.chain.height == 2  # blocks 1 and 2 alone; height 3 belongs to two
    assert not node.commits_alone
    assert len(node.chain.validators.validators) == 2
    node.close()
    again = Node(SQLiteStore(tmp_path / "n.db"), GENESIS, ALONE, NodeConfig())
    assert not again.commits_alone
    again.close()
