"""Provable lists: append-only per-owner lists in state, each with a count.

What belongs to someone (a patient's records, a pack's events, an insurer's claims) is kept
as a list under ``<prefix>/<name>/<owner>/``: item ``k`` (from 1) at ``.../<k:016d>`` and
the number of items at ``.../count`` (absent: none yet). Items are never rewritten or
removed, so every item up to the count is in state, and an answer "all of them" can carry a
proof of every item and of the count: a node that leaves one out is caught by the proof of
the count (see :func:`medledger.client.lists.verify_list_answer`).

An app owns a list whose prefix is its own, and writes it through its state view::

    BY_PATIENT = ProvableList("records", "by_patient")
    seq = BY_PATIENT.append(view, patient_id, record_id)

Everything here is pure: reads and writes go through the view handed in. Misuse (an owner
that is empty or holds ``/``, a page starting below 1) is a programming error and raises
``ValueError``; an item missing below the count is a broken state and raises
``LookupError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medledger.state import StateView

__all__ = ["MAX_SEQ", "ProvableList"]

MAX_SEQ = 10**16 - 1
"""The largest sequence number an item key can hold (16 decimal digits)."""

_COUNT = "count"


def _check_segment(text: object, what: str) -> None:
    if not isinstance(text, str) or not text or "/" in text:
        raise ValueError(f"{what} must be a non-empty string without '/', not {text!r}")


@dataclass(frozen=True, slots=True)
class ProvableList:
    """One kind of list, e.g. ``ProvableList("records", "by_patient")``: one list per owner."""

    prefix: str
    name: str

    def __post_init__(self) -> None:
        _check_segment(self.prefix, "a list's prefix")
        _check_segment(self.name, "a list's name")

    @property
    def path(self) -> str:
        """``<prefix>/<name>``: how answers name the list."""
        return f"{self.prefix}/{self.name}"

    def _owner_path(self, owner: str) -> str:
        _check_segment(owner, "a list's owner")
        return f"{self.prefix}/{self.name}/{owner}"

    def item_key(self, owner: str, seq: int) -> str:
        """The state key of ``owner``'s item number ``seq`` (1-based)."""
        if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
            raise ValueError(f"an item's sequence number is 1..{MAX_SEQ}, not {seq!r}")
        return f"{self._owner_path(owner)}/{seq:016d}"

    def count_key(self, owner: str) -> str:
        """The state key of the number of items in ``owner``'s list."""
        return f"{self._owner_path(owner)}/{_COUNT}"

    def count(self, view: StateView, owner: str) -> int:
        """How many items ``owner``'s list holds (0 when its count is absent)."""
        value = view.get(self.count_key(owner))
        if value is None:
            return 0
        if type(value) is not int or value < 0:
            raise ValueError(f"the count of {self.path} for {owner!r} is not a count: {value!r}")
        return value

    def append(self, view: StateView, owner: str, value: Any) -> int:
        """Add ``value`` at the end of ``owner``'s list; return its sequence number."""
        if value is None:
            raise ValueError("a list item cannot be None (it would read as absent)")
        seq = self.count(view, owner) + 1
        view.put(self.item_key(owner, seq), value)
        view.put(self.count_key(owner), seq)
        return seq

    def get(self, view: StateView, owner: str, seq: int) -> Any | None:
        """Item ``seq`` of ``owner``'s list, or None when the list is shorter."""
        return view.get(self.item_key(owner, seq))

    def page(self, count: int, start: int = 1, limit: int | None = 100) -> range:
        """The sequence numbers of a page of a list of ``count`` items: ``start`` up to
        ``min(count, start + limit - 1)`` (to the end when ``limit`` is None); empty when
        ``start`` is past the end."""
        if type(start) is not int or start < 1:
            raise ValueError(f"a page starts at item 1 or later, not {start!r}")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise ValueError(f"a page's limit is a non-negative integer, not {limit!r}")
        stop = count if limit is None else min(count, start + limit - 1)
        return range(start, max(stop, start - 1) + 1)

    def items(self, view: StateView, owner: str, start: int = 1, limit: int = 100) -> list[Any]:
        """Items ``start`` .. ``min(count, start + limit - 1)`` of ``owner``'s list, in order."""
        seqs = self.page(self.count(view, owner), start, limit)
        found = [self.get(view, owner, seq) for seq in seqs]
        if any(value is None for value in found):
            raise LookupError(f"{self.path} of {owner!r} is missing items below its count")
        return found
