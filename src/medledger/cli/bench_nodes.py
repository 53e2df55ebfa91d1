"""The node processes of a local bench consortium: started as ``medledger up`` processes,
watched (``/v1/status`` of node 0, each height's first sight), their CPU time read from
``/proc`` by role (``cometbft``, the app, the app's workers), and stopped by pid on every
way out. :mod:`medledger.cli.bench_consortium` and the app benches drive them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from medledger.node import Home

NODE_STOP_S = 15.0
MESH_WAIT_S = 30.0  # see _Nodes.wait_connected
WATCH_EVERY_S = 0.01
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_ticks(pid: int) -> int | None:
    """User + system CPU ticks of process ``pid`` so far (all its threads), or None when it
    is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat


def _children() -> dict[int, list[tuple[int, str]]]:
    """Every process's children as (pid, command name), by parent pid."""
    out: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        out.setdefault(parent, []).append((int(entry.name), comm))
    return out


# a node's processes by role: the engine, the app's own process, the app's worker processes
_ROLES = ("cometbft", "app", "app_workers")


def _log_tail(home: Home, chars: int = 3000) -> str:
    try:
        return (home.path / "node.log").read_text(errors="replace")[-chars:]
    except OSError:
        return "(no node.log)"


def end_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``proc`` (one this run started), SIGKILL after ``NODE_STOP_S``; wait."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(NODE_STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class _Nodes:
    """The consortium's node processes: started, watched, and stopped by pid."""

    def __init__(self, homes: list[Home], started: list[int] | None) -> None:
        self.homes = homes
        self.urls = [f"http://{home.config().api}" for home in homes]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = started

    def start(self) -> None:
        self.procs = [self._launch(home) for home in self.homes]

    def _launch(self, home: Home) -> subprocess.Popen[bytes]:
        env = {**os.environ, "MEDLEDGER_PASSPHRASE": home.passphrase()}
        with open(home.path / "node.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "medledger", "up", "--home", str(home.path)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if self.started is not None:
            self.started.append(proc.pid)
        return proc

    def _restart(self, index: int) -> None:
        end_process(self.procs[index])
        self.procs[index] = self._launch(self.homes[index])

    def check_alive(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                raise SystemExit(f"node{i} (pid {proc.pid}) exited with code {proc.returncode}; "
                                 f"the end of its node.log:\n{_log_tail(self.homes[i])}")

    def wait_connected(self, timeout: float) -> None:
        """Until every node answers ``/v1/status`` with all N-1 peers connected. Two
        CometBFTs that dial each other at the same moment can end with one side holding a
        connection the other dropped, until its ping times out (up to about 105 s): a node
        that answers but is short of peers after ``MESH_WAIT_S`` is restarted, once."""
        deadline = time.monotonic() + timeout
        restart_at = time.monotonic() + min(MESH_WAIT_S, timeout / 2)
        want = len(self.procs) - 1
        peers: list[int] = [-1] * len(self.procs)
        while time.monotonic() < deadline:
            self.check_alive()
            for i, url in enumerate(self.urls):
                try:
                    peers[i] = int(httpx.get(f"{url}/v1/status", timeout=2).json().get("peers", -1))
                except (httpx.HTTPError, ValueError):
                    peers[i] = -1
            if all(p == want for p in peers):
                return
            if time.monotonic() > restart_at and all(p >= 0 for p in peers):
                restart_at = deadline
                for i in [i for i, p in enumerate(peers) if p < want]:
                    self._restart(i)
            time.sleep(0.2)
        raise SystemExit(f"the nodes were not all connected within {timeout:.0f} s "
                         f"(peers per node: {peers}, want {want})")

    def cpu(self) -> list[dict[int, tuple[str, int]]]:
        """Per node, the CPU ticks so far of each of its processes, as pid -> (role, ticks)."""
        children = _children()
        out = []
        for proc in self.procs:
            found: dict[int, tuple[str, int]] = {}
            for pid, role in [(proc.pid, "app"), *(
                    (child, "cometbft" if comm == "cometbft" else "app_workers")
                    for child, comm in children.get(proc.pid, []))]:
                ticks = _cpu_ticks(pid)
                if ticks is not None:
                    found[pid] = (role, ticks)
            out.append(found)
        return out

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + NODE_STOP_S
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class _Watcher(threading.Thread):
    """Polls one node's ``/v1/status`` and keeps, per height, the wall time it was first seen
    committed (the time the answer arrived: an upper bound)."""

    def __init__(self, url: str, nodes: _Nodes) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.nodes = nodes
        self.seen: dict[int, float] = {}
        self.height = -1
        self.total_txs = -1
        self.mempool_size = -1
        self.error: str | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.halt.is_set():
                try:
                    status = client.get("/v1/status").json()
                except (httpx.HTTPError, ValueError) as e:
                    self.error = str(e)
                    self.halt.wait(0.1)
                    continue
                now = time.time()
                height = int(status["height"])
                if self.height >= 0:
                    for h in range(self.height + 1, height + 1):
                        self.seen.setdefault(h, now)
                self.height = max(self.height, height)
                self.total_txs = int(status["total_txs"])
                size = status.get("mempool_size")  # None on CometBFT: its mempool is its own
                self.mempool_size = -1 if size is None else int(size)
                self.halt.wait(WATCH_EVERY_S)

    def wait_total(self, total: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.nodes.check_alive()
            if self.total_txs >= total:
                return
            time.sleep(0.005)
        raise SystemExit(f"not every transaction was committed within {timeout:.0f} s "
                         f"({self.total_txs} of {total}; last poll error: {self.error})")


def _stop_on_sigterm() -> Any:
    """In the main thread, make SIGTERM raise SystemExit, so the node processes are stopped
    on that way out too; returns the previous handler (None when not installed)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    return signal.signal(signal.SIGTERM, stop)


def _cpu_split(before: list[dict[int, tuple[str, int]]], after: list[dict[int, tuple[str, int]]],
               seconds: float, committed: int) -> dict[str, Any]:
    """The CPU time each role of process used between two samples of :meth:`_Nodes.cpu`:
    in all, per node, as shares, and per committed transaction on one node."""
    per_node = []
    for was, now in zip(before, after, strict=True):
        used = dict.fromkeys(_ROLES, 0.0)
        for pid, (role, ticks) in now.items():
            used[role] += (ticks - was.get(pid, (role, 0))[1]) / _CLOCK_TICKS
        per_node.append({role: round(value, 2) for role, value in used.items()})
    total = {role: sum(node[role] for node in per_node) for role in _ROLES}
    everything = sum(total.values()) or 1.0
    app = total["app"] + total["app_workers"]
    nodes = len(per_node)
    return {
        "window_s": round(seconds, 3),
        "seconds": {role: round(value, 2) for role, value in total.items()},
        "share": {"cometbft": round(total["cometbft"] / everything, 3),
                  "app": round(app / everything, 3)},
        "cores_busy": round(everything / seconds, 2) if seconds > 0 else None,
        "us_per_tx_per_node": {role: round(total[role] / nodes / committed * 1e6, 1)
                               for role in _ROLES} if committed else None,
        "per_node": per_node,
    }
