"""Weighted round-robin proposer selection, as in CometBFT.

Every validator holds a priority, all 0 at the start. One step adds each validator's power
to its priority, picks the highest priority (ties go to the smaller public key) and
subtracts the total power from the chosen one. Over any ``total_power`` consecutive steps
each validator is chosen exactly ``power`` times and the priorities return to 0, so the
sequence is periodic.

:func:`proposer` is a pure function of (validators, height, round): it takes step number
``(height - 1 + round) mod total_power`` of that sequence. It recomputes from the fixed
start (a cached schedule per validator set), which suits consortium-sized sets whose total
power is small; a set with a very large total power would keep priorities across heights
instead, as CometBFT does.
"""

from __future__ import annotations

from functools import lru_cache

from medledger.ledger import ValidatorSet
from medledger.ledger.validators import MAX_TOTAL_POWER

__all__ = ["MAX_SCHEDULE", "proposer", "schedule"]

#: The longest schedule computed in full: the most total power a set may hold (genesis and
#: governance refuse more).
MAX_SCHEDULE = MAX_TOTAL_POWER


@lru_cache(maxsize=64)
def schedule(validators: ValidatorSet) -> tuple[bytes, ...]:
    """One full period of the proposer sequence: ``total_power`` public keys."""
    total = validators.total_power
    if total > MAX_SCHEDULE:
        raise ValueError(f"total power {total} exceeds {MAX_SCHEDULE}: keep priorities "
                         f"across heights instead")
    keys = [v.public_key for v in validators.validators]  # sorted by key
    powers = [v.power for v in validators.validators]
    priorities = [0] * len(keys)
    chosen: list[bytes] = []
    for _ in range(total):
        best = 0
        for i, power in enumerate(powers):
            priorities[i] += power
            if priorities[i] > priorities[best]:  # strict: ties keep the smaller key
                best = i
        priorities[best] -= total
        chosen.append(keys[best])
    return tuple(chosen)


def proposer(validators: ValidatorSet, height: int, round_: int) -> bytes:
    """The public key of the proposer of (height, round)."""
    period = schedule(validators)
    return period[(height - 1 + round_) % len(period)]
