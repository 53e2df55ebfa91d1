"""Start and stop real node processes on 127.0.0.1 for tests (bounded waits, own pids only)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from medledger.crypto import ScryptParams
from medledger.node import Home, NodeConfig
from medledger.node.consortium import free_port

__all__ = ["FAST_KDF", "NodeProcess", "free_port", "make_home"]

FAST_KDF = ScryptParams(n=2**10, r=8, p=1)


def make_home(path: Path, *, block_interval_ms: int = 50, demo: bool = False) -> Home:
    home = Home.init(path, "proc-chain", kdf_params=FAST_KDF, demo=demo)
    NodeConfig(api=f"127.0.0.1:{free_port()}", block_interval_ms=block_interval_ms).save(home.path)
    return home


class NodeProcess:
    """``python -m medledger up`` for one home; ``url`` is its API."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.url = f"http://{home.config().api}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home.path / "node.log"

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, "MEDLEDGER_PASSPHRASE": self.home.passphrase()}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "medledger", "up", "--home", str(self.home.path)],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                httpx.get(f"{self.url}/v1/status", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("node did not answer in time")

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
