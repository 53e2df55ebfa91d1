"""Exponential backoff with jitter, for redialing a peer."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    """Delays of ``initial``, doubling (``factor``) up to ``cap`` seconds, each spread by
    ``± jitter`` (a fraction) and never above ``cap``. :meth:`reset` starts over.

    ``rng`` returns a float in [0, 1); tests pass a fixed one.
    """

    initial: float = 0.1
    cap: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2
    rng: Callable[[], float] = random.random
    _current: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.cap and self.factor >= 1 and 0 <= self.jitter < 1):
            raise ValueError(f"backoff needs 0 < initial <= cap, factor >= 1, "
                             f"0 <= jitter < 1; got {self!r}")
        self._current = self.initial

    def delay(self) -> float:
        """The next delay in seconds; the one after it is ``factor`` times longer."""
        base = self._current
        self._current = min(self.cap, base * self.factor)
        spread = 1.0 + self.jitter * (2.0 * self.rng() - 1.0)
        return min(self.cap, base * spread)

    def reset(self) -> None:
        """Start again from ``initial`` (after a connection that held)."""
        self._current = self.initial
