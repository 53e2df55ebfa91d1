"""What a node serves for a page of a provable list: every item and the count, proven.

:func:`list_answer` reads a page of one owner's list (:class:`~medledger.apps.lists
.ProvableList`) at the tip and returns, besides the values, a sparse Merkle proof of each
item and of the count (or of its absence: an empty list), all against the state root of the
one signed header it carries::

    {"list": "<prefix>/<name>", "owner", "count", "start",
     "items": [{"seq", "key", "value", "proof"}, ...],
     "count_proof": {"key", "value" (None when absent), "proof"},
     "height", "block_hash", "header", "light"}

The page holds items ``start`` .. ``min(count, start + limit - 1)``, in order. A client
checks it with :func:`medledger.client.lists.verify_list_answer`. With ``prove=False`` the
answer leaves the proofs and the header out (``{"list", "owner", "count", "start",
"items": [{"seq", "key", "value"}, ...], "height"}``), for a reader that trusts the node.

A block may commit while the page is read; the answer is then built again at the new tip,
so that the values always match the header's state root.
"""

from __future__ import annotations

from typing import Any

from medledger.apps.lists import ProvableList
from medledger.codec import decode
from medledger.ledger import Header
from medledger.merkle.sparse import NodeRef
from medledger.node.chain import Chain
from medledger.node.sets import certified

__all__ = ["MAX_LIMIT", "list_answer"]

MAX_LIMIT = 1000
"""The most items one answer holds (each carries a proof)."""

_ATTEMPTS = 5


def list_answer(chain: Chain, lst: ProvableList, owner: str, start: int = 1,
                limit: int = 100, *, prove: bool = True) -> dict[str, Any]:
    """A page of ``owner``'s list ``lst`` at the tip, with proofs unless ``prove`` is False
    (see the module docstring).

    Raises ``ValueError`` for a bad owner, start or limit (above :data:`MAX_LIMIT`),
    ``LookupError`` before the first block or when the list misses an item below its count,
    and ``RuntimeError`` when blocks kept committing during every attempt to read the page.
    """
    if type(limit) is not int or not 0 <= limit <= MAX_LIMIT:
        raise ValueError(f"a page's limit is 0..{MAX_LIMIT}, not {limit!r}")
    lst.page(0, start, limit)  # checks start
    lst.count_key(owner)  # checks owner
    for _ in range(_ATTEMPTS):
        tip = chain.height
        if tip == 0:
            raise LookupError("no block committed yet")
        height = chain.proven_height() if prove else tip
        if height is None:
            raise RuntimeError("the header that signs the latest state is not final yet; "
                               "ask again in a moment")
        try:
            answer = _answer_at(chain, lst, owner, start, limit, height, prove)
        except _Moved:
            continue
        # the store's height only grows: unchanged now means no block committed since the
        # tip was read, so every value read is the one at this height's state root
        if chain.store.latest_height() == tip:
            return answer
    raise RuntimeError(f"blocks kept committing while {lst.path} of {owner!r} was read; "
                       "ask again")


class _Moved(Exception):
    """The tip moved past the height being read: read again."""


def _answer_at(chain: Chain, lst: ProvableList, owner: str, start: int, limit: int,
               height: int, prove: bool = True) -> dict[str, Any]:
    """The answer against the state root of block ``height`` (values read from the store)."""
    head = certified(chain, height) if prove else {}
    stored = chain.store.get_block(height)
    if head is None:
        raise _Moved()
    if stored is None:
        raise LookupError(f"block {height} is missing from the store")
    root = NodeRef(stored.state_root_id, Header.from_dict(decode(stored.header)).state_root)
    count_key = lst.count_key(owner)
    try:
        raw_count = chain.value_at(count_key, height)
    except LookupError as e:
        raise _Moved() from e
    count = 0 if raw_count is None else decode(raw_count)
    if type(count) is not int or count < 0:
        raise LookupError(f"the count of {lst.path} for {owner!r} is not a count: {count!r}")
    seqs = lst.page(count, start, limit)
    keys = [lst.item_key(owner, seq) for seq in seqs]
    try:
        values = chain.values_at(keys, height)
    except LookupError as e:
        raise _Moved() from e
    items: list[dict[str, Any]] = []
    for seq, key in zip(seqs, keys, strict=True):
        raw = values.get(key)
        if raw is None:
            raise LookupError(f"item {seq} of {lst.path} for {owner!r} is missing from state "
                              f"below its count {count}")
        if not prove:
            items.append({"seq": seq, "key": key, "value": decode(raw)})
            continue
        proof = chain.tree.prove(root, key, raw)
        items.append({"seq": seq, **proof.to_dict()})
    if not prove:
        return {"list": lst.path, "owner": owner, "count": count, "start": start,
                "items": items, "height": height}
    count_proof = chain.tree.prove(root, count_key, raw_count).to_dict()
    return {"list": lst.path, "owner": owner, "count": count, "start": start,
            "items": items, "count_proof": count_proof, **head}
