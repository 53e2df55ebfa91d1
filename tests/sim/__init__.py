"""A deterministic simulated network for the consensus machine.

Everything random comes from one ``random.Random(seed)``, so a seed replays exactly:
``python -m tests.sim --scenario NAME --seed N``. See docs/consensus.md.
"""

from tests.sim.scenario import Byzantine, Scenario, load_scenario, scenario_names
from tests.sim.world import Outcome, World, run

__all__ = ["Byzantine", "Outcome", "Scenario", "World", "load_scenario", "run",
           "scenario_names"]
