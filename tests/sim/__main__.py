"""Run simulation seeds: ``python -m tests.sim --total 20000`` (spread over the scenarios),
``--seeds N`` per scenario, ``--scenario NAME``, ``--seed N`` to replay one.

Prints progress; on a failure prints the scenario, the seed, what failed and the exact
command that replays it, and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.sim.scenario import load_scenario, scenario_names
from tests.sim.world import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="seeds per scenario")
    parser.add_argument("--total", type=int,
                        help="seeds in all, spread evenly over the scenarios run")
    parser.add_argument("--scenario", choices=scenario_names(), help="only this scenario")
    parser.add_argument("--seed", type=int, help="replay this one seed")
    parser.add_argument("--trace", action="store_true", help="print each decision")
    args = parser.parse_args(argv)
    names = [args.scenario] if args.scenario else scenario_names()
    per_scenario = -(-args.total // len(names)) if args.total else args.seeds
    seeds = [args.seed] if args.seed is not None else list(range(per_scenario))
    failed = 0
    for name in names:
        scenario = load_scenario(name)
        failed_here = 0
        started = time.monotonic()
        for count, seed in enumerate(seeds, 1):
            outcome = run(scenario, seed)
            if args.trace:
                print("\n".join(outcome.trace))
            if not outcome.ok:
                failed += 1
                failed_here += 1
                print(f"FAIL scenario={name} seed={seed}")
                for line in outcome.failures:
                    print(f"  {line}")
                print(f"  replay: .venv/bin/python -m tests.sim --scenario {name} "
                      f"--seed {seed} --trace")
            if count % 500 == 0 or count == len(seeds):
                print(f"{name}: {count}/{len(seeds)} seeds, {failed_here} failed, "
                      f"{time.monotonic() - started:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
