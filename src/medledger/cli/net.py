"""``medledger net up|down|status``: run and watch a local consortium's node processes.

Each node runs as ``python -m medledger up --home ROOT/nodeI`` in its own session, with its
output in ``nodeI/node.log`` and its process id in ``nodeI/node.pid``. ``down`` signals only
processes whose id is in a pid file and whose command line is that node's ``up``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from medledger.cli.errors import friendly
from medledger.node import ConfigError, Home
from medledger.node.consortium import Consortium, ConsortiumNode

__all__ = ["net_app"]

net_app = typer.Typer(no_args_is_help=True, help="Run and watch a local consortium.")
out = Console(soft_wrap=True)
RootOpt = Annotated[Path, typer.Option(
    "--home", help="The consortium directory (made by `medledger init --validators N`).")]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def _pid_file(node: ConsortiumNode) -> Path:
    return node.home / "node.pid"


def running_pid(node: ConsortiumNode) -> int | None:
    """The id of this node's running ``up`` process, if there is one."""
    try:
        pid = int(_pid_file(node).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    if stat[0] == "Z" or b"up" not in cmdline or str(node.home).encode() not in cmdline:
        return None
    return pid


def _start(node: ConsortiumNode) -> int:
    env = {**os.environ}
    env.setdefault("MEDLEDGER_PASSPHRASE", Home(node.home).passphrase())
    with open(node.home / "node.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medledger", "up", "--home", str(node.home)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
    _pid_file(node).write_text(f"{proc.pid}\n")
    return proc.pid


def _status(node: ConsortiumNode, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        answer = httpx.get(f"http://{node.api}/v1/status", timeout=timeout)
        answer.raise_for_status()
        return answer.json()  # type: ignore[no-any-return]
    except (httpx.HTTPError, ValueError):
        return None


def _wait_up(nodes: list[ConsortiumNode]) -> list[str]:
    """Wait (bounded) until every node answers; return the names of those that did not."""
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = list(nodes)
    while waiting and time.monotonic() < deadline:
        waiting = [n for n in waiting if running_pid(n) is not None and _status(n, 1) is None]
        if waiting:
            time.sleep(0.2)
    return [n.name for n in nodes if running_pid(n) is None or _status(n, 1) is None]


@net_app.command("up")
@friendly
def net_up(home: RootOpt) -> None:
    """Start every node of the consortium that is not running; wait until each answers."""
    consortium = Consortium.load(home)
    started = []
    for node in consortium.nodes:
        if running_pid(node) is None:
            started.append((node, _start(node)))
    with out.status(f"waiting for {len(started)} node(s) to answer..."):
        failed = _wait_up([n for n, _ in started])
    for node, pid in started:
        out.print(f"{node.name}: pid {pid}, API http://{node.api}")
    if failed:
        raise ConfigError(f"not answering: {', '.join(failed)}; see their node.log")
    out.print(f"consortium {consortium.chain_id}: {len(consortium.nodes)} node(s) running")


@net_app.command("down")
@friendly
def net_down(home: RootOpt) -> None:
    """Stop every running node of the consortium (SIGTERM, then SIGKILL after 20 s)."""
    consortium = Consortium.load(home)
    pids = {node.name: pid for node in consortium.nodes
            if (pid := running_pid(node)) is not None}
    for pid in pids.values():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.1)
    for name, pid in pids.items():
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            out.print(f"{name}: did not stop in {STOP_TIMEOUT_S:.0f} s; killed")
    for node in consortium.nodes:
        _pid_file(node).unlink(missing_ok=True)
    out.print(f"stopped {len(pids)} node(s)")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def node_report(node: ConsortiumNode) -> dict[str, Any]:
    """What ``net status`` shows of one node."""
    pid = running_pid(node)
    status = _status(node) if pid is not None else None
    return {
        "name": node.name,
        "home": str(node.home),
        "api": f"http://{node.api}",
        "pid": pid,
        "running": status is not None,
        "height": status.get("height") if status else None,
        "round": status.get("round") if status else None,
        "peers": status.get("peers") if status else None,
        "last_block_time": status.get("latest_block_time") if status else None,
    }


@net_app.command("status")
@friendly
def net_status(home: RootOpt, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each node's pid, height, round, peers and last block time."""
    reports = [node_report(node) for node in Consortium.load(home).nodes]
    if as_json:
        out.print_json(json.dumps(reports))
        return
    out.print(_table(reports))


def _table(reports: list[dict[str, Any]]) -> Table:
    table = Table("node", "pid", "height", "round", "peers", "last block time", "api")
    for r in reports:
        table.add_row(r["name"], str(r["pid"] or "-"), _cell(r["height"]), _cell(r["round"]),
                      _cell(r["peers"]), _block_time(r["last_block_time"]), r["api"])
    return table


def _block_time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


@net_app.command("run")
@friendly
def net_run(home: RootOpt, every: Annotated[float, typer.Option(
        help="Seconds between refreshes of the table.")] = 2.0) -> None:
    """Start the consortium, show its nodes until interrupted (Ctrl-C), then stop it."""
    from rich.live import Live

    net_up(home)
    nodes = Consortium.load(home).nodes
    stop = {"now": False}

    def interrupted(signum: int, frame: Any) -> None:
        stop["now"] = True

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        with Live(_table([node_report(n) for n in nodes]), console=out,
                  refresh_per_second=1) as live:
            while not stop["now"]:
                time.sleep(max(every, 0.2))
                live.update(_table([node_report(n) for n in nodes]))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        out.print("stopping the consortium...")
        net_down(home)
