"""Simulation scenarios as data: small TOML files in ``tests/sim/scenarios/``.

Keys (all but ``validators`` optional)::

    validators = 4            # n
    powers = [1, 1, 1, 1]     # voting power of each (default 1 each)
    heights = 3               # every honest node must decide heights 1..heights
    drop = 0.1                # probability a message is lost before GST
    duplicate = 0.05          # probability a message is delivered twice
    delay = [5, 80]           # delivery delay range in ms (uniform)
    gst = 2000                # global stabilisation time (ms): no loss, no partition after
    partition = true          # a random split of the nodes until GST
    gossip_ms = 500           # how often honest drivers re-send their messages
    progress_ms = 30000       # after GST, every honest node decides within this
    timeouts = [300, 200, 200, 100]   # propose, prevote, precommit, delta (ms)

    [[byzantine]]             # at most f by power
    index = 3
    behaviour = ["equivocate", "double-vote", "silent", "invalid", "garbage"]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BEHAVIOURS", "Byzantine", "SCENARIOS", "Scenario", "load_scenario",
           "scenario_names"]

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
BEHAVIOURS = ("equivocate", "double-vote", "silent", "invalid", "garbage")


@dataclass(frozen=True)
class Byzantine:
    """A faulty validator: its index and what it does wrong."""

    index: int
    behaviour: tuple[str, ...]


@dataclass(frozen=True)
class Scenario:
    """One simulation setup (see the module docstring for the keys)."""

    name: str
    validators: int
    powers: tuple[int, ...]
    heights: int = 3
    drop: float = 0.0
    duplicate: float = 0.0
    delay: tuple[int, int] = (5, 50)
    gst: int = 0
    partition: bool = False
    gossip_ms: int = 500
    progress_ms: int = 30_000
    timeouts: tuple[int, int, int, int] = (300, 200, 200, 100)
    byzantine: tuple[Byzantine, ...] = field(default_factory=tuple)

    def validate(self) -> None:
        """Refuse a scenario outside the fault model (byzantine power must be < 1/3)."""
        bad = sum(self.powers[b.index] for b in self.byzantine)
        if 3 * bad >= sum(self.powers):
            raise ValueError(f"{self.name}: byzantine power {bad} is not below 1/3")
        for b in self.byzantine:
            unknown = [x for x in b.behaviour if x not in BEHAVIOURS]
            if unknown:
                raise ValueError(f"{self.name}: unknown behaviour {unknown}")


def load_scenario(name: str) -> Scenario:
    """Read ``scenarios/NAME.toml``."""
    data = tomllib.loads((SCENARIOS / f"{name}.toml").read_text(encoding="utf-8"))
    n = int(data["validators"])
    scenario = Scenario(
        name=name,
        validators=n,
        powers=tuple(data.get("powers", [1] * n)),
        heights=int(data.get("heights", 3)),
        drop=float(data.get("drop", 0.0)),
        duplicate=float(data.get("duplicate", 0.0)),
        delay=(int(data.get("delay", [5, 50])[0]), int(data.get("delay", [5, 50])[1])),
        gst=int(data.get("gst", 0)),
        partition=bool(data.get("partition", False)),
        gossip_ms=int(data.get("gossip_ms", 500)),
        progress_ms=int(data.get("progress_ms", 30_000)),
        timeouts=tuple(data.get("timeouts", [300, 200, 200, 100])),  # type: ignore[arg-type]
        byzantine=tuple(Byzantine(int(b["index"]), tuple(b["behaviour"]))
                        for b in data.get("byzantine", [])),
    )
    scenario.validate()
    return scenario


def scenario_names() -> list[str]:
    """All scenario names, sorted."""
    return sorted(p.stem for p in SCENARIOS.glob("*.toml"))
