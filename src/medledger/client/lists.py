"""Check a page of a provable list: every item is there, in order, and proven.

A node answers "all X of owner Y" with a page of an append-only list (see
:mod:`medledger.apps.lists` for the keys and :mod:`medledger.node.lists` for the answer).
:func:`verify_list_answer` believes it only when the header is certified by the trusted
set, the count (or its absence: an empty list) is proven against the header's state root,
and the page holds exactly the items the proven count calls for, each proven under the key
the client computes itself. A node cannot leave an item out, add one, reorder them or
change one, nor serve another owner's list or a proof against another root.

Errors: :class:`~medledger.client.light.VerificationFailed`, whose ``reason`` says which
check failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medledger.apps.lists import ProvableList
from medledger.client.light import VerificationFailed, verify_header
from medledger.codec import CodecError, encode
from medledger.ledger import Header, ValidatorSet
from medledger.merkle.sparse import SparseProof
from medledger.state import verify_state_proof

__all__ = ["VerifiedList", "verify_list_answer"]


@dataclass(frozen=True, slots=True)
class VerifiedList:
    """A proven page of a list at the certified ``header``: ``count`` items in all, and
    ``items`` the values of items ``start``, ``start + 1``, ... in order."""

    header: Header
    count: int
    start: int
    items: list[Any]


def verify_list_answer(answer: dict[str, Any], trusted: ValidatorSet, chain_id: str,
                       prefix: str, name: str, owner: str, start: int = 1,
                       limit: int | None = None) -> VerifiedList:
    """Check a page of ``owner``'s list ``<prefix>/<name>`` that starts at item ``start``
    and holds up to ``limit`` items (all to the end when None). Raise
    :class:`VerificationFailed` unless it holds exactly items ``start`` ..
    ``min(count, start + limit - 1)``, each and the count proven at a certified header."""
    lst = ProvableList(prefix, name)
    lst.page(0, start, limit)  # the arguments are checked before the answer
    lst.count_key(owner)
    header = verify_header(answer, trusted)
    if header.chain_id != chain_id:
        raise VerificationFailed(f"the header is of chain {header.chain_id!r}, not {chain_id!r}")
    _check_asked(answer, lst, owner, start)
    count = _proven_count(answer, lst, owner, header.state_root)
    seqs = lst.page(count, start, limit)
    items = _proven_items(answer, lst, owner, header.state_root, seqs, count)
    return VerifiedList(header, count, start, items)


def _field(answer: Any, name: str) -> Any:
    try:
        return answer[name]
    except (KeyError, TypeError, IndexError) as e:
        raise VerificationFailed(f"the list answer is malformed: it lacks {name!r}") from e


def _check_asked(answer: dict[str, Any], lst: ProvableList, owner: str, start: int) -> None:
    """The answer is for the list, owner and start asked for."""
    if _field(answer, "list") != lst.path:
        raise VerificationFailed(f"the answer is for list {answer['list']!r}, not {lst.path!r}")
    if _field(answer, "owner") != owner:
        raise VerificationFailed(f"the answer is for owner {answer['owner']!r}, not {owner!r}")
    got = _field(answer, "start")
    if type(got) is not int or got != start:
        raise VerificationFailed(f"the page starts at {got!r}, not at item {start}")


def _parse_proof(entry: Any, what: str) -> tuple[Any, Any, SparseProof]:
    """``(key, value, proof)`` of an entry ``{"key", "value", "proof"}``."""
    try:
        return entry["key"], entry["value"], SparseProof.from_dict(entry["proof"])
    except (KeyError, TypeError, IndexError, ValueError) as e:
        raise VerificationFailed(f"the proof of {what} is malformed: {e}") from e


def _encoded(value: Any, what: str) -> bytes:
    try:
        return encode(value)
    except CodecError as e:
        raise VerificationFailed(f"the value of {what} is malformed: {e}") from e


def _proven_count(answer: dict[str, Any], lst: ProvableList, owner: str, root: bytes) -> int:
    """The count proven by ``answer["count_proof"]`` (0 when proven absent)."""
    key, value, proof = _parse_proof(_field(answer, "count_proof"), "the count")
    if key != lst.count_key(owner):
        raise VerificationFailed("the count's proof is for another key than the list's count")
    if value is not None and (type(value) is not int or value < 0):
        raise VerificationFailed(f"the proven count {value!r} is not a count")
    raw = None if value is None else _encoded(value, "the count")
    if not verify_state_proof(root, key, raw, proof):
        what = "absence" if value is None else "value"
        raise VerificationFailed(f"the proof of the count's {what} does not lead to the state "
                                 "root")
    count: int = 0 if value is None else value
    stated = _field(answer, "count")
    if type(stated) is not int or stated != count:
        raise VerificationFailed(f"the answer says the list holds {stated!r} items, but the "
                                 f"proven count is {count}")
    return count


def _proven_items(answer: dict[str, Any], lst: ProvableList, owner: str, root: bytes,
                  seqs: range, count: int) -> list[Any]:
    """The values of items ``seqs``, each checked to be that item and proven."""
    items = _field(answer, "items")
    if not isinstance(items, list):
        raise VerificationFailed("the list answer is malformed: its items are not a list")
    wanted = "no items" if not seqs else f"items {seqs[0]} to {seqs[-1]}"
    if len(items) < len(seqs):
        raise VerificationFailed(f"the page holds {len(items)} items but the proven count "
                                 f"{count} calls for {wanted}: an item was left out")
    if len(items) > len(seqs):
        raise VerificationFailed(f"the page holds {len(items)} items but the proven count "
                                 f"{count} calls for {wanted}: an item was added")
    return [_proven_item(item, lst, owner, root, seq) for item, seq in zip(items, seqs,
                                                                           strict=True)]


def _proven_item(item: Any, lst: ProvableList, owner: str, root: bytes, seq: int) -> Any:
    """The value of item ``seq``, checked to sit in its place and proven."""
    got = _field(item, "seq")
    if type(got) is not int or got != seq:
        raise VerificationFailed(f"item {seq} is missing or out of order: item {got!r} is in "
                                 "its place")
    key, value, proof = _parse_proof(item, f"item {seq}")
    if key != lst.item_key(owner, seq):
        raise VerificationFailed(f"item {seq} is given under another key than the list's")
    if value is None:
        raise VerificationFailed(f"item {seq} has no value, yet the count says it exists")
    if not verify_state_proof(root, key, _encoded(value, f"item {seq}"), proof):
        raise VerificationFailed(f"the proof of item {seq} does not lead to the state root")
    return value
