"""``medledger net up|down|status|run``: run and watch a local consortium's node processes.

Each node runs as ``python -m medledger up --home ROOT/nodeI`` in its own session, with its
output in ``nodeI/node.log`` and its process id in ``nodeI/node.pid``. ``down`` signals only
processes whose id is in a pid file and whose command line is that node's ``up``. ``run``
stops the nodes on SIGINT or SIGTERM, whatever handlers it inherited.

``run`` also seeds a fresh consortium with the apps' demo data (``App.demo``) once the
nodes answer: each demo transaction is signed by its organisation's admin key, from the
node home that holds it, and sent to that node. ``ROOT/demo-seeded`` records that all of
them committed, so a later ``run`` does not send them again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Column, Table

from medledger.apps import DemoTx, default_registry
from medledger.cli.demo_records import seed_records_demo
from medledger.cli.errors import friendly, iso_time
from medledger.cli.host import next_nonce
from medledger.client import Client
from medledger.ledger import Transaction
from medledger.node import ConfigError, Home
from medledger.node.consortium import Consortium, ConsortiumNode

__all__ = ["DEMO_MARKER", "net_app", "seed_demo"]

net_app = typer.Typer(no_args_is_help=True, help="Run and watch a local consortium.")
out = Console(soft_wrap=True)
RootOpt = Annotated[Path, typer.Option(
    "--home", help="The consortium directory (made by `medledger init --validators N`).")]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
QUIET_S = 30.0  # `net run` without a terminal: repeat a node's line at least this often
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PLAIN_WIDTH = 160  # columns of a table printed to a file or a pipe
DEMO_MARKER = "demo-seeded"  # in the consortium's folder: its demo data is committed
DEMO_WAIT_S = 30.0  # how long a demo transaction may take to commit


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
def net_status(home: RootOpt, as_json: Annotated[bool, typer.Option(
        "--json", help="Print the reports as JSON (times as milliseconds since the epoch).")
        ] = False) -> None:
    """Each node's pid, height, round, peers and last block time."""
    reports = [node_report(node) for node in Consortium.load(home).nodes]
    if as_json:
        out.print_json(json.dumps(reports))
        return
    if out.is_terminal:
        out.print(_table(reports))
    else:  # a file or a pipe has no width: print the whole table, not cut at 80 columns
        Console(file=out.file, width=PLAIN_WIDTH, soft_wrap=True).print(_table(reports))


def _table(reports: list[dict[str, Any]]) -> Table:
    table = Table("node", "pid", "height", "round", "peers",  # a narrow terminal folds the
                  Column("last block (UTC)", no_wrap=True, min_width=24),  # api, not times
                  Column("api", overflow="fold"))
    for r in reports:
        table.add_row(r["name"], str(r["pid"] or "-"), _cell(r["height"]), _cell(r["round"]),
                      _cell(r["peers"]), iso_time(r["last_block_time"]), r["api"])
    return table


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _line(report: dict[str, Any]) -> str:
    """One node's report as one plain line, stamped with the time now (for a log file)."""
    now = iso_time(time.time_ns() // 10**6)
    if not report["running"]:
        why = "not answering" if report["pid"] is not None else "not running"
        return f"{now} {report['name']}: {why} (pid {_cell(report['pid'])}, {report['api']})"
    return (f"{now} {report['name']}: height {_cell(report['height'])}, round "
            f"{_cell(report['round'])}, peers {_cell(report['peers'])}, last block "
            f"{iso_time(report['last_block_time'])} (pid {report['pid']}, {report['api']})")


class Stop(BaseException):
    """Raised in ``net run`` by its SIGINT and SIGTERM handlers: stop the nodes and exit.

    A BaseException, so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop(signum)


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    out.print(f"{signal.Signals(signum).name}: already stopping the consortium...")


Handler = Callable[[int, FrameType | None], Any] | int | None


def _handle_stop_signals(handler: Handler) -> dict[int, Handler]:
    """Set ``handler`` for SIGINT and SIGTERM (also over an inherited SIG_IGN, as a shell
    sets for ``make run &``); return the handlers there were before."""
    return {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}


def _watch(nodes: Iterable[ConsortiumNode], every: float) -> None:
    """Show the nodes until a stop signal: a live table in a terminal, else plain lines."""
    nodes = list(nodes)
    pause = max(every, 0.2)
    if out.is_terminal:
        _watch_table(nodes, pause)
    else:
        _watch_lines(nodes, pause)


def _watch_table(nodes: list[ConsortiumNode], pause: float) -> None:
    from rich.live import Live

    with Live(_table([node_report(n) for n in nodes]), console=out,
              refresh_per_second=1) as live:
        while True:
            time.sleep(pause)
            live.update(_table([node_report(n) for n in nodes]))


def _watch_lines(nodes: list[ConsortiumNode], pause: float) -> None:
    """A line per node when its pid, height, round or peers change, and at least every
    QUIET_S seconds: what a log file of ``make run > run.log`` shows."""
    shown: dict[str, tuple[tuple[Any, ...], float]] = {}
    while True:
        for report in (node_report(n) for n in nodes):
            seen = tuple(report[k] for k in ("pid", "running", "height", "round", "peers"))
            last = shown.get(report["name"])
            if last is None or last[0] != seen or time.monotonic() - last[1] >= QUIET_S:
                out.print(_line(report), highlight=False, markup=False)
                shown[report["name"]] = (seen, time.monotonic())
        time.sleep(pause)


def _say(line: str) -> None:
    out.print(line, highlight=False, markup=False)


def seed_demo(consortium: Consortium) -> bool:
    """Send the apps' demo transactions to a consortium not seeded before; print a line
    for each. Write ``ROOT/demo-seeded`` when all committed; return whether they did.
    Failures print a warning and stop nothing."""
    marker = consortium.root / DEMO_MARKER
    if marker.exists():
        return True
    keepers = {name: node for node in reversed(consortium.nodes)
               for name in Home(node.home).known_keys()}  # key name -> its (first) node
    genesis = Home(consortium.nodes[0].home).genesis()
    orgs = [org["id"] for org in genesis.organisations if org["id"] in keepers]
    demo = default_registry().demo(orgs)
    if not demo:
        return False
    if _status(consortium.nodes[0]) is None:
        _say(f"demo: warning: {consortium.nodes[0].name} is not answering; no demo data added")
        return False
    committed = 0
    for tx in demo:
        try:
            committed += _send_demo(consortium.chain_id, keepers[tx.signer], tx)
        except Exception as e:  # noqa: BLE001 -- a demo failure must not stop `net run`
            _say(f"demo: warning: {tx.type} signed by {tx.signer} failed: {e}")
    if committed != len(demo):
        _say(f"demo: {committed} of {len(demo)} demo transaction(s) committed; "
             f"`net run` will try again next time")
        return False
    marker.write_text(f"{len(demo)} demo transaction(s) committed\n")
    return True


def _send_demo(chain_id: str, node: ConsortiumNode, demo: DemoTx) -> bool:
    """Sign ``demo`` with its organisation's admin key, from ``node``'s home, and send it
    to ``node``; print what became of it."""
    signer = Home(node.home).member_keys(demo.signer).signing
    with Client(f"http://{node.api}", timeout=DEMO_WAIT_S + 15) as client:
        tx = Transaction.create(signer, chain_id, demo.type,
                                next_nonce(client, signer.public_key), demo.body)
        answer = client.submit(tx, wait=True, timeout=DEMO_WAIT_S)
    if answer.get("status") != "committed":
        _say(f"demo: warning: {demo.type} not committed in {DEMO_WAIT_S:.0f} s "
             f"(tx {tx.tx_id.hex()})")
        return False
    if answer.get("code") != "ok":
        _say(f"demo: warning: {demo.type} rejected in block {answer.get('height')}: "
             f"{answer.get('code')}: {answer.get('message')}")
        return False
    _say(f"demo: {demo.type} committed in block {answer['height']}")
    return True


@net_app.command("run")
@friendly
def net_run(home: RootOpt, every: Annotated[float, typer.Option(
        help="Seconds between looks at the nodes (at least 0.2).")] = 2.0,
        demo_data: Annotated[bool, typer.Option(
            "--demo-data/--no-demo-data",
            help="On a consortium's first run, add the apps' demo data (a registered "
                 "member, an anchored document, and demo patients with records, grants "
                 "and an emergency access) once the nodes answer.")] = True) -> None:
    """Start the consortium, show its nodes until Ctrl-C (SIGINT) or SIGTERM, then stop it.

    In a terminal it shows a live table; otherwise (output to a file or a pipe) it prints a
    line per node whenever the node changes, and at least every 30 s."""
    previous = _handle_stop_signals(_raise_stop)
    try:
        net_up(home)
        consortium = Consortium.load(home)
        if demo_data and seed_demo(consortium):
            seed_records_demo(consortium)
        _watch(consortium.nodes, every)
    except Stop as stop:
        out.print(f"{stop}: stopping the consortium...")
    finally:
        _handle_stop_signals(_already_stopping)
        try:
            net_down(home)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
