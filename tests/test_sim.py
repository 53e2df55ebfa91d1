"""Consensus over the simulated network (tests/sim): many seeds per scenario, checked for
agreement, validity, progress after GST and evidence; determinism; and a checker that is
shown able to fail. The long sweep: ``.venv/bin/python -m tests.sim --seeds 20000``."""

from __future__ import annotations

import pytest

from medledger.consensus import Machine
from tests.sim import load_scenario, run, scenario_names

#: Seeds per scenario in the default test run (the sum is the seeds run by default).
SEEDS = {
    "honest-4": 200,
    "equivocating-proposer": 150,
    "double-vote": 120,
    "silent": 150,
    "invalid-blocks": 150,
    "garbage": 150,
    "partition-heal-7": 60,
    "mixed-10": 30,
    "lock-buster": 15,
}


def test_every_scenario_is_swept() -> None:
    assert sorted(SEEDS) == scenario_names()
    assert sum(SEEDS.values()) >= 500


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_scenario_holds_for_every_seed(name: str) -> None:
    scenario = load_scenario(name)
    failures = []
    for seed in range(SEEDS[name]):
        outcome = run(scenario, seed)
        if not outcome.ok:
            failures.append(f"seed {seed}: {outcome.failures[:3]} (replay: .venv/bin/python "
                            f"-m tests.sim --scenario {name} --seed {seed} --trace)")
    assert not failures, "\n".join(failures)


def test_the_same_seed_gives_the_same_trace() -> None:
    scenario = load_scenario("double-vote")
    first, again = run(scenario, 7), run(scenario, 7)
    assert first.trace and first.trace == again.trace
    assert (first.messages, first.end_ms) == (again.messages, again.end_ms)
    assert run(scenario, 8).trace != first.trace


class IgnoresLocks(Machine):
    """Broken on purpose: prevotes any valid proposal whatever it is locked on."""

    def may_prevote(self, block_hash: bytes, pol_round: int) -> bool:
        return True


class SkipsValidity(Machine):
    """Broken on purpose: takes every block for valid (lines 22, 28, 36, 49 drop valid(v))."""

    def is_valid(self, block_hash: bytes) -> bool:
        return self.proposals.block(block_hash) is not None


BROKEN = {
    # name: (machine, scenario, seeds to search, the check that must fail)
    "a machine that ignores locks forks the chain": (IgnoresLocks, "lock-buster", 15,
                                                     "agreement"),
    "a machine that skips valid(v) decides invalid blocks": (SkipsValidity, "invalid-blocks",
                                                             10, "validity"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_the_checker_catches_a_broken_rule(name: str) -> None:
    factory, scenario_name, seeds, check = BROKEN[name]
    scenario = load_scenario(scenario_name)
    caught = [seed for seed in range(seeds)
              if any(f.startswith(check) for f in run(scenario, seed, factory).failures)]
    assert caught, f"{name}: no {check} failure in {seeds} seeds of {scenario_name}"


def test_the_runner_reports_a_failing_seed_with_its_replay_command(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.sim import __main__ as runner

    assert runner.main(["--scenario", "honest-4", "--seed", "3"]) == 0
    monkeypatch.setattr(runner, "run", lambda scenario, seed: run(scenario, seed, SkipsValidity))
    assert runner.main(["--scenario", "invalid-blocks", "--seeds", "3"]) == 1
    out = capsys.readouterr().out
    assert "FAIL scenario=invalid-blocks seed=0" in out
    assert "replay: .venv/bin/python -m tests.sim --scenario invalid-blocks --seed 0" in out
