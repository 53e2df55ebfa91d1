"""Proposer selection: weighted round-robin, fair in proportion to power."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.consensus import proposer
from medledger.consensus.proposer import schedule
from medledger.ledger import Validator, ValidatorSet

KEYS = [hashlib.sha256(f"unit-{i}".encode()).digest() for i in range(4)]
VALIDATORS = ValidatorSet.of([Validator(k, 1, f"v{i}") for i, k in enumerate(KEYS)])


# --- proposer selection -------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=7))
def test_proposer_share_is_proportional_to_power(powers: list[int]) -> None:
    keys = [hashlib.sha256(bytes([i])).digest() for i in range(len(powers))]
    vs = ValidatorSet.of([Validator(k, p, f"v{i}") for i, (k, p) in enumerate(zip(keys, powers))])
    total = vs.total_power
    picks = [proposer(vs, 1, r) for r in range(2 * total)]
    for v in vs.validators:
        assert picks.count(v.public_key) == 2 * v.power
    assert picks == [proposer(vs, 1 + r, 0) for r in range(2 * total)]  # (height, round) only
    assert schedule(vs) == schedule(ValidatorSet.of(list(reversed(vs.validators))))


def test_proposer_ties_go_to_the_smaller_key() -> None:
    assert proposer(VALIDATORS, 1, 0) == min(KEYS)
    assert [proposer(VALIDATORS, 1, r) for r in range(4)] == sorted(KEYS)
