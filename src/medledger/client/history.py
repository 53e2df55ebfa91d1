"""An old block proven by the log of blocks, from one recent header.

The chain keeps an RFC 9162 log in state (``chain/history``): one leaf per block that
carried transactions or changed state, ``{"block": CometBFT block hash, "height",
"results": the results hash of its transactions}``. ``GET /v1/blocks/{height}/proof``
answers with that block's leaf and audit path, the log's entry in state proven under a
recent signed header (a state answer, as ``GET /v1/state/chain/history`` gives), and the
block's CometBFT header. :func:`verify_block_answer` checks all of it: the recent header
against the trusted validators, the log's root and size under its app hash, the leaf under
that root, and the CometBFT header against the leaf's block hash. The old block's header is
then believed without its own commit, whose signers may long have left the set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medledger.client import comet
from medledger.client.light import Trusted, VerificationFailed, verify_state_answer
from medledger.ledger import Header
from medledger.ledger.engine import HISTORY_KEY, history_leaf
from medledger.merkle import log

__all__ = ["VerifiedBlock", "verify_block_answer"]


@dataclass(frozen=True, slots=True)
class VerifiedBlock:
    """CometBFT's ``header`` of block ``height``, with the ``results_hash`` of its
    transactions, proven by the log of blocks in the state of the signed ``proven_at``."""

    height: int
    header: comet.Header
    results_hash: bytes
    proven_at: Header


def verify_block_answer(answer: dict[str, Any], trusted: Trusted, chain_id: str
                        ) -> VerifiedBlock:
    """Check a ``GET /v1/blocks/{height}/proof`` answer end to end (see the module)."""
    try:
        log_answer, entry = answer["log"], answer["entry"]
        height, size, index = entry["height"], entry["tree_size"], entry["leaf_index"]
        if not all(type(v) is int for v in (height, size, index)):
            raise TypeError("height, tree_size and leaf_index must be integers")
        block_hash = bytes.fromhex(entry["block_hash"])
        results = bytes.fromhex(entry["results_hash"])
        path = [bytes.fromhex(h) for h in entry["audit_path"]]
        if type(log_answer) is not dict:
            raise TypeError("log must be a state answer")
    except (KeyError, TypeError, ValueError) as e:
        raise VerificationFailed(f"the block's proof is malformed: {e}") from e
    if answer.get("height") != height:
        raise VerificationFailed("the proof is for another block than the answer names")
    state = verify_state_answer(log_answer, trusted, chain_id)
    if state.key != HISTORY_KEY:
        raise VerificationFailed(f"the log's proof is of {state.key!r}, not {HISTORY_KEY!r}")
    root = _log_root(state.value, size)
    leaf = log.leaf_hash(history_leaf(height, block_hash, results))
    if not log.verify_inclusion(leaf, index, size, path, root):
        raise VerificationFailed("the block's entry does not lead to the log's root in state")
    try:
        header = comet.Header.from_json(answer["engine_header"])
    except (KeyError, comet.LightClientError) as e:
        raise VerificationFailed(f"the block's CometBFT header is malformed: {e}") from e
    if comet.header_hash(header) != block_hash:
        raise VerificationFailed("the CometBFT header does not hash to the block hash in the log")
    if header.height != height or header.chain_id != chain_id:
        raise VerificationFailed("the CometBFT header is of another height or chain")
    return VerifiedBlock(height, header, results, state.header)


def _log_root(value: Any, size: int) -> bytes:
    """The root of the log the proven state holds, checked to have ``size`` leaves."""
    if value is None:
        raise VerificationFailed("the proven state holds no log of blocks")
    try:
        root, recorded = bytes.fromhex(value["root"]), value["size"]
    except (KeyError, TypeError, ValueError) as e:
        raise VerificationFailed(f"the log's entry in state is malformed: {e}") from e
    if recorded != size:
        raise VerificationFailed(f"the proof is for a log of {size} blocks; the proven state "
                                 f"holds {recorded}")
    return root
