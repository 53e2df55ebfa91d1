"""Start and stop real node processes on 127.0.0.1 for tests (bounded waits, own pids only).

A node is two processes: ``python -m medledger up`` (:class:`NodeProcess`) and the
``cometbft`` it starts as its child. :func:`make_home` writes a single-validator home on
CometBFT, as ``medledger init`` does, on free ports. A ``cometbft`` child is known by its
pid and start time (:class:`Pid`), found under its parent in /proc; start, kill and stop
wait (bounded) until no engine of the node is left running.
"""

from __future__ import annotations

import abc
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from medledger.crypto import ScryptParams
from medledger.node import Genesis, Home
from medledger.node.consortium import free_port
from medledger.node.engine import EngineHome

__all__ = ["CHAIN", "FAST_KDF", "NodeProcess", "Pid", "children", "engines_under", "free_port",
           "gone", "make_home", "save_genesis", "set_block_interval", "set_engine_option",
           "wait_proven"]

FAST_KDF = ScryptParams(n=2**10, r=8, p=1)
CHAIN = "proc-chain"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0  # `medledger up` gives its engine 20 s to stop after SIGTERM
ENGINE_END_TIMEOUT = 20.0


def make_home(path: Path, *, block_interval_ms: int = 50, demo: bool = False,
              chain_id: str = CHAIN) -> Home:
    """A single-validator home on CometBFT (``medledger init``): its API, p2p and engine
    RPC on free ports of 127.0.0.1, a block at most every ``block_interval_ms`` (CometBFT's
    ``timeout_commit``)."""
    home = Home.init(path, chain_id, kdf_params=FAST_KDF, demo=demo,
                     api=f"127.0.0.1:{free_port()}", p2p=f"127.0.0.1:{free_port()}",
                     engine_rpc=f"127.0.0.1:{free_port()}")
    set_block_interval(home, block_interval_ms)
    return home


def set_block_interval(home: Home, block_interval_ms: int) -> None:
    """Set the pause between heights in the node's config and its engine's
    ``timeout_commit``."""
    replace(home.config(), block_interval_ms=block_interval_ms).save(home.path)
    set_engine_option(home, "consensus", "timeout_commit", f'"{block_interval_ms}ms"')


def set_engine_option(home: Home, section: str, key: str, value: str) -> None:
    """Set ``key = value`` (a TOML literal) in ``[section]`` of the home's CometBFT
    ``config.toml``; the key must be there already."""
    path = EngineHome(home.path).config_dir / "config.toml"
    text = path.read_text()
    start = text.index(f"\n[{section}]\n")
    end = text.find("\n[", start + 1)
    end = len(text) if end < 0 else end
    body, count = re.subn(rf"^{re.escape(key)} = .*$", f"{key} = {value}", text[start:end],
                          count=1, flags=re.MULTILINE)
    assert count == 1, f"no {key} in [{section}] of {path}"
    path.write_text(text[:start] + body + text[end:])


def save_genesis(home: Home, genesis: Genesis) -> None:
    """Replace the home's genesis, in ``genesis.json`` and as the ``app_state`` of its
    CometBFT genesis (which must name the same validators)."""
    genesis.save(home.genesis_path)
    path = EngineHome(home.path).config_dir / "genesis.json"
    doc = json.loads(path.read_text())
    keys = {base64.b64decode(v["pub_key"]["value"]) for v in doc["validators"]}
    assert keys == {v.public_key for v in genesis.validators.validators}, \
        "CometBFT's genesis names other validators"
    doc["app_state"] = genesis.to_dict()
    path.write_text(json.dumps(doc, indent=2) + "\n")


def wait_proven(url: str, height: int, timeout: float = 15.0) -> None:
    """Wait until the node at ``url`` answers state queries proven at ``height`` or above.

    On CometBFT the state after block ``h`` is proven by the header of ``h + 1``: until
    CometBFT makes that block, answers (the nonce a command signs its next transaction
    with among them) are those of ``h - 1``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = httpx.get(f"{url}/v1/state/identity/org/local", timeout=5)
            if answer.status_code == 200 and answer.json()["height"] >= height:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} answered no state proven at {height} in {timeout} s")
        time.sleep(0.05)


# processes --------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, list[str]] | None:
    """``(name, fields from the state on)`` of /proc/<pid>/stat, or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = text.split(" (", 1)[1].rsplit(")", 1)
    return name, rest.split()


@dataclass(frozen=True, slots=True)
class Pid:
    """A process known by its pid and its start time (field 22 of /proc/<pid>/stat)."""

    pid: int
    started: int

    @classmethod
    def of(cls, pid: int) -> Pid | None:
        stat = _stat(pid)
        return None if stat is None else cls(pid, int(stat[1][19]))

    def alive(self) -> bool:
        """Running or stopped (a zombie counts as gone)."""
        stat = _stat(self.pid)
        return stat is not None and int(stat[1][19]) == self.started and stat[1][0] != "Z"

    def send(self, sig: signal.Signals) -> bool:
        """Send ``sig`` if this very process still runs; say whether it was sent."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True


def children(pid: int, name: str = "cometbft") -> list[Pid]:
    """The processes called ``name`` whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None and stat[0] == name and int(stat[1][1]) == pid:
            process = Pid.of(int(entry.name))
            if process is not None:
                found.append(process)
    return found


def engines_under(root: Path) -> list[Pid]:
    """The running ``cometbft`` processes whose home lies under ``root`` (by their command
    line): what a test that started nodes through the command line checks is gone."""
    prefix = str(root.resolve()) + os.sep
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if words and Path(words[0]).name == "cometbft" and "--home" in words[:-1] and \
                words[words.index("--home") + 1].startswith(prefix):
            process = Pid.of(int(entry.name))
            if process is not None and process.alive():
                found.append(process)
    return found


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class EngineChildren(abc.ABC):
    """What a wrapper of one ``medledger up`` process knows of the ``cometbft`` it runs.
    A subclass sets ``engine_log`` and ``engines`` (every cometbft seen, for cleanup) and
    gives :meth:`_popen`."""

    engine_log: Path
    engines: list[Pid]

    @abc.abstractmethod
    def _popen(self) -> subprocess.Popen[bytes] | None:
        """The ``medledger up`` process, or None before it starts."""

    def _engine_tail(self) -> str:
        try:
            return "cometbft.log: " + self.engine_log.read_text()[-2000:]
        except OSError:
            return "no cometbft.log"

    def running(self) -> bool:
        popen = self._popen()
        return popen is not None and popen.poll() is None

    def engine(self) -> Pid | None:
        """The cometbft child of the running ``medledger up`` (remembered for cleanup)."""
        popen = self._popen()
        if popen is None or popen.poll() is not None:
            return None
        found = children(popen.pid)
        for process in found:
            if process not in self.engines:
                self.engines.append(process)
        return found[0] if len(found) == 1 else None

    def live_engines(self) -> list[Pid]:
        return [p for p in self.engines if p.alive()]


class NodeProcess(EngineChildren):
    """``python -m medledger up`` for one home and the ``cometbft`` it runs; ``url`` is its
    API, ``rpc`` its engine's RPC."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.url = f"http://{home.config().api}"
        self.engine_home = EngineHome(home.path)
        self.rpc = f"http://{self.engine_home.rpc()}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home.path / "node.log"
        self.engine_log = self.engine_home.path / "cometbft.log"
        self.engines: list[Pid] = []  # every cometbft seen under this node, for cleanup

    def start(self, timeout: float = START_TIMEOUT, env: dict[str, str] | None = None,
              *, proven: bool = True) -> None:
        """Start ``medledger up`` and wait until its API and its engine's RPC answer, and
        with ``proven`` until it answers state queries (the nonce a command signs with)
        proven by a signed header, which a lone validator does within a block or two; on
        failure, stop what started and raise."""
        assert self.proc is None or self.proc.poll() is not None, "the node runs"
        full_env = {**os.environ, "MEDLEDGER_PASSPHRASE": self.home.passphrase(), **(env or {})}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "medledger", "up", "--home", str(self.home.path)],
                env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"node exited with {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}\n{self._engine_tail()}")
            if self.engine() is not None and _answers(f"{self.url}/v1/status") \
                    and _answers(f"{self.rpc}/status") \
                    and (not proven or _answers(f"{self.url}/v1/state/identity/org/local")):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"node did not answer in {timeout} s: {self.log.read_text()[-2000:]}"
                           f"\n{self._engine_tail()}")

    def _popen(self) -> subprocess.Popen[bytes] | None:
        return self.proc

    def kill(self) -> None:
        """SIGKILL ``medledger up``: no chance to clean up; its cometbft gets SIGKILL from
        the kernel (ADR 0009), which this waits for."""
        assert self.proc is not None
        self.engine()  # remember the child before its parent goes
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)
        self._wait_engines_gone()

    def kill_engine(self) -> None:
        """SIGKILL the node's cometbft; ``medledger up`` sees it gone and stops."""
        deadline = time.monotonic() + 10
        engine = self.engine()
        while engine is None and time.monotonic() < deadline:
            time.sleep(0.05)
            engine = self.engine()
        assert engine is not None, "the node runs no single cometbft"
        engine.send(signal.SIGKILL)
        assert self.proc is not None
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
            raise AssertionError("medledger up went on without its engine") from None
        self._wait_engines_gone()

    def stop(self) -> None:
        """SIGTERM ``medledger up`` (it stops its engine), SIGKILL if it does not end in
        time; then end any cometbft left from it, by pid."""
        self.engine()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._wait_engines_gone()

    def _wait_engines_gone(self) -> None:
        """Wait until every cometbft seen under this node has ended; SIGKILL one that
        outlives the bound (it must not hold the ports and store of a restart)."""
        deadline = time.monotonic() + ENGINE_END_TIMEOUT
        while self.live_engines() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.live_engines()
        for engine in left:
            engine.send(signal.SIGCONT)
            engine.send(signal.SIGKILL)
        deadline = time.monotonic() + ENGINE_END_TIMEOUT
        while self.live_engines() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"cometbft {[p.pid for p in left]} outlived its node"


def gone(pid: int) -> bool:
    """The process ``pid`` has exited and been reaped (a bench waits for its processes)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
