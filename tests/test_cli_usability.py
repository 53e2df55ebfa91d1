"""What a new user hits first: ``make run`` logged to a file and stopped by a signal it
inherited as ignored, the log of a normal start, which key ``anchor add`` signs with, a
consortium's folder given as a node's ``--home``, times a person can read, and help on
every option."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

import medledger.cli.host as cli_host
import medledger.cli.main as cli
import medledger.cli.net as net
from medledger.cli.errors import iso_time
from medledger.codec import decode
from medledger.crypto import SigningKey
from medledger.ledger import Transaction, Validator, ValidatorSet
from medledger.node import ConfigError, Genesis, Home, Node, NodeConfig
from medledger.node.consortium import Consortium
from medledger.store import SQLiteStore
from tests.localchain import open_local
from tests.nodeproc import FAST_KDF, engines_under, free_port
from tests.test_cli import flat, run

PASSPHRASE = "correct horse battery staple"
T = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z
T_ISO = "2023-11-14T22:13:20.123Z"
DIGEST = "ab" * 32


@pytest.fixture(autouse=True)
def passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLEDGER_PASSPHRASE", PASSPHRASE)


def make_consortium(root: Path, n: int = 4) -> Consortium:
    ports = [(free_port(), free_port()) for _ in range(n)]
    return Consortium.init(root, "usability-chain", n, kdf_params=FAST_KDF, ports=ports,
                           engine=True, block_interval_ms=200)


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Consortium:
    """Four homes under ``c``: node0 holds admin and st-mary, node1 only northgate."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv("MEDLEDGER_PASSPHRASE", PASSPHRASE)
        return make_consortium(tmp_path_factory.mktemp("usability") / "c")


# 1. net run: lines in a log file, and its own SIGINT / SIGTERM handlers -----------------------
class FakeNodes:
    """``node_report`` of two nodes whose height grows by one per look; after ``signal_after``
    looks at node1 it sends ``signum`` to this process. It fails the test instead of looking
    forever when the signal does not stop the run."""

    def __init__(self, signum: int, signal_after: int = 3) -> None:
        self.signum, self.signal_after, self.looks = signum, signal_after, 0

    def report(self, node: Any) -> dict[str, Any]:
        if node.name == "node1":
            self.looks += 1
            if self.looks == self.signal_after:
                os.kill(os.getpid(), self.signum)
            if self.looks > 40:
                raise AssertionError(f"{signal.Signals(self.signum).name} did not stop net run")
        return {"name": node.name, "home": "-", "api": f"http://{node.api}", "pid": 4242,
                "running": True, "height": self.looks, "round": 0, "peers": 1,
                "last_block_time": T}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_net_run_without_a_terminal_prints_lines_and_stops_on_a_signal_even_if_ignored(
        signum: int, tmp_path: Path, runner: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    c = make_consortium(tmp_path / "c", 2)
    calls: list[str] = []
    monkeypatch.setattr(net, "net_up", lambda home: calls.append("up"))
    monkeypatch.setattr(net, "net_down", lambda home: calls.append("down"))
    monkeypatch.setattr(net, "node_report", FakeNodes(signum).report)
    before = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:  # as a shell leaves them for `make run &`
        result = runner.invoke(net.net_app, ["run", "--home", str(c.root), "--every", "0.2"])
        after = {s: signal.getsignal(s) for s in before}
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    assert result.exit_code == 0, result.output
    assert calls == ["up", "down"]
    assert after == {s: signal.SIG_IGN for s in before}  # its handlers are gone again
    lines = result.stdout.splitlines()
    for name in ("node0", "node1"):
        mine = [line for line in lines if f" {name}: height " in line]
        assert len(mine) >= 2, result.stdout  # a line per look: each look saw a new height
        assert re.fullmatch(rf"\S+Z {name}: height \d+, round 0, peers 1, last block "
                            rf"{T_ISO} \(pid 4242, http://\S+\)", mine[0]), mine[0]
    assert f"{signal.Signals(signum).name}: stopping the consortium" in result.stdout
    assert "\x1b[" not in result.stdout  # no live table's cursor moves in a log file


def test_net_run_lines_repeat_only_on_a_change_or_after_a_quiet_spell(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    c = make_consortium(tmp_path / "c", 1)
    looks = {"n": 0}

    def report(node: Any) -> dict[str, Any]:
        looks["n"] += 1
        if looks["n"] == 4:
            raise net.Stop(signal.SIGTERM)
        return {"name": node.name, "api": "x", "pid": None, "running": False,
                "height": None, "round": None, "peers": None, "last_block_time": None}

    monkeypatch.setattr(net, "node_report", report)
    monkeypatch.setattr(net.time, "sleep", lambda s: None)
    with pytest.raises(net.Stop):
        net._watch_lines(list(c.nodes), 0.2)
    assert capsys.readouterr().out.count("node0: not running") == 1
    looks["n"] = 0
    monkeypatch.setattr(net, "QUIET_S", 0.0)
    with pytest.raises(net.Stop):
        net._watch_lines(list(c.nodes), 0.2)
    assert capsys.readouterr().out.count("node0: not running") == 3


def _wait_for_lines(log: Path, proc: subprocess.Popen[bytes], names: list[str],
                    seconds: float) -> str:
    """Wait until the log holds a line with a height of at least 1 for each node."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = log.read_text()
        if all(re.search(rf" {n}: height [1-9]", text) for n in names):
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"no progress lines for every node in {log}:\n{log.read_text()}")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.processes
def test_make_run_logged_to_a_file_shows_progress_and_stops_on_sigint(tmp_path: Path) -> None:
    """``make run > run.log &`` from a script: the log shows each node's progress, node1's
    only key signs an anchor, and SIGINT (inherited as ignored) stops the nodes."""
    c = make_consortium(tmp_path / "c")
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medledger", "net", "run", "--home", str(c.root),
             "--every", "0.3"], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, preexec_fn=_ignore_sigint)
    try:
        _wait_for_lines(log, proc, [n.name for n in c.nodes], 90)
        pids = [net.running_pid(n) for n in c.nodes]
        assert all(pids), pids
        assert len(engines_under(c.root)) == 4  # each node runs its cometbft
        added = subprocess.run(
            [sys.executable, "-m", "medledger", "anchor", "add", DIGEST, "--label", "x",
             "--home", str(c.nodes[1].home)], capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stdout + added.stderr
        assert "anchored in block" in added.stdout
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
            subprocess.run([sys.executable, "-m", "medledger", "net", "down", "--home",
                            str(c.root)], capture_output=True, timeout=60)
    text = log.read_text()
    assert "SIGINT: stopping the consortium" in text and "stopped 4 node(s)" in text, text
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert engines_under(c.root) == [], "a node's cometbft outlived it"


# 2. a normal start of a consortium's validator logs no warning ---------------------------------
KEYS = [SigningKey.from_seed(bytes([0x50 + i]) * 32) for i in range(5)]
FOUR = Genesis(chain_id="log-chain", genesis_time=T, organisations=(), validators=ValidatorSet.of(
    [Validator(k.public_key, 10, f"node{i}") for i, k in enumerate(KEYS[:4])]))


@pytest.mark.parametrize("key,said", [(KEYS[0], "holds 10 of 40 voting power"),
                                       (KEYS[4], "follows the chain without voting")])
def test_a_node_says_what_its_key_is_and_warns_of_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, key: SigningKey, said: str) -> None:
    """A validator holding part of the power, or a full node (joining, or removed from the
    set), is a normal start on CometBFT: an INFO line, no warning."""
    with caplog.at_level(logging.INFO, logger="medledger.node"):
        node = Node(SQLiteStore(tmp_path / "n.db"), FOUR, key, NodeConfig())
    node.close()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any(r.levelno == logging.INFO and said in r.getMessage() for r in caplog.records)


# 3. which key anchor add signs with -------------------------------------------------------------
def public_key(home: Home, name: str) -> bytes:
    return home.member_keys(name).signing.public_key


def test_resolve_keys_defaults_to_admin_then_to_the_only_key(consortium: Consortium) -> None:
    node0, node1 = Home(consortium.nodes[0].home), Home(consortium.nodes[1].home)
    assert node0.known_keys() == ["admin", "st-mary"]
    assert node0.resolve_keys(None).signing.public_key == public_key(node0, "admin")
    assert node1.known_keys() == ["northgate"]
    assert node1.resolve_keys(None).signing.public_key == public_key(node1, "northgate")
    assert node0.resolve_keys(None, default="st-mary").signing.public_key == \
        public_key(node0, "st-mary")


def test_resolve_keys_takes_a_name_or_a_path(consortium: Consortium) -> None:
    node0, node1 = Home(consortium.nodes[0].home), Home(consortium.nodes[1].home)
    northgate = public_key(node1, "northgate")
    assert node1.resolve_keys("northgate").signing.public_key == northgate
    assert node1.resolve_keys("northgate.key").signing.public_key == northgate
    assert node0.resolve_keys(str(node1.key_path("northgate"))).signing.public_key == northgate
    with pytest.raises(ConfigError, match=r"no key 'carewell'.*known: \['admin', 'st-mary'\]"):
        node0.resolve_keys("carewell")


def test_resolve_keys_without_admin_and_several_keys_names_them(tmp_path: Path) -> None:
    home = Home.init(tmp_path / "h", "c", kdf_params=FAST_KDF, demo=True)
    home.key_path("admin").unlink()
    with pytest.raises(ConfigError, match=r"no key 'admin'.*\['acme-pharma', 'carewell', "
                                          r"'northgate', 'st-mary'\].*--key"):
        home.resolve_keys(None)
    for other in ("acme-pharma", "carewell", "northgate", "st-mary"):
        home.key_path(other).unlink()
    with pytest.raises(ConfigError, match="no key in"):
        home.resolve_keys(None)


class RecordingClient:
    """A node that commits whatever it is sent at once; ``signed`` holds what it got."""

    signed: list[Transaction] = []

    def __init__(self, url: str, **_: Any) -> None:
        self.url = url

    def __enter__(self) -> RecordingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"chain_id": "usability-chain", "latest_block_time": T}

    def next_nonce(self, sender: bytes) -> int:
        return 1

    def submit(self, tx: Transaction, *, wait: bool = False) -> dict[str, Any]:
        RecordingClient.signed.append(tx)
        return {"status": "committed", "code": "ok", "height": 7}


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Transaction]]:
    RecordingClient.signed = []
    monkeypatch.setattr(cli, "Client", RecordingClient)
    monkeypatch.setattr(cli_host, "Client", RecordingClient)  # app commands' client
    yield RecordingClient.signed


@pytest.mark.parametrize("key", [None, "northgate", "path"])
def test_anchor_add_on_node1_signs_with_northgate(
        key: str | None, consortium: Consortium, recording: list[Transaction],
        runner: CliRunner) -> None:
    node1 = Home(consortium.nodes[1].home)
    extra = [] if key is None else [
        "--key", str(node1.key_path("northgate")) if key == "path" else key]
    result = run(runner, "anchor", "add", DIGEST, "--label", "x", "--home", str(node1.path),
                 *extra)
    assert result.exit_code == 0, result.output
    assert "anchored in block 7" in result.stdout
    assert [tx.sender for tx in recording] == [public_key(node1, "northgate")]


def test_anchor_add_with_an_unknown_key_names_the_known_ones(
        consortium: Consortium, recording: list[Transaction], runner: CliRunner) -> None:
    result = run(runner, "anchor", "add", DIGEST, "--label", "x", "--home",
                 str(consortium.nodes[1].home), "--key", "admin")
    assert result.exit_code == 1
    assert "known: ['northgate']" in flat(result.stderr)
    assert recording == [] and "Traceback" not in result.output


def test_anchor_add_key_help_says_name_or_path() -> None:
    param = _params()["anchor add"]["key"]
    assert "a key name from the home's keys/ folder, or a keystore path" in \
        (param.help or "").lower()


# 4. a consortium's folder, or a missing home, given as a node's --home -------------------------
@pytest.mark.parametrize("command", [["status"], ["tx", "show", "ab" * 32, "--verify"],
                                     ["anchor", "add", DIGEST, "--label", "x"],
                                     ["governance", "identity"]], ids=" ".join)
def test_a_consortium_folder_as_a_node_home_says_so(
        command: list[str], tmp_path: Path, runner: CliRunner) -> None:
    c = make_consortium(tmp_path / "c", 2)
    before = sorted(p.relative_to(c.root) for p in c.root.rglob("*"))
    result = run(runner, *command, "--home", str(c.root))
    assert result.exit_code == 1, result.output
    says = flat(result.stderr)
    assert "consortium" in says and "consortium.json" in says, says
    assert f"medledger net status --home {c.root}" in says, says
    assert f"--home {c.root / 'node0'}" in says, says
    assert "medledger init" not in says
    assert sorted(p.relative_to(c.root) for p in c.root.rglob("*")) == before


def test_a_missing_default_home_is_named_with_a_hint(
        tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(runner, "anchor", "add", DIGEST, "--label", "x")  # --home .medledger/node
    assert result.exit_code == 1, result.output
    says = flat(result.stderr)
    assert ".medledger/node not found" in says and "medledger init --home" in says, says
    make_consortium(tmp_path / ".medledger" / "consortium", 2)  # what `make run` makes
    result = run(runner, "status", "--home", ".medledger/node")
    says = flat(result.stderr)
    assert ".medledger/node not found" in says, says
    assert "--home .medledger/consortium/node0" in says, says


def test_net_commands_given_a_node_home_point_to_its_consortium(
        consortium: Consortium, runner: CliRunner) -> None:
    result = run(runner, "net", "status", "--home", str(consortium.nodes[0].home))
    assert result.exit_code == 1, result.output
    says = flat(result.stderr)
    assert "is a node's home" in says and f"--home {consortium.root}" in says, says


# 5. times a person reads, raw in --json; help on every option -----------------------------------
def test_iso_time() -> None:
    assert iso_time(T) == T_ISO
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(None) == "-"
    assert iso_time("later") == "later"


def test_status_prints_iso_times_and_raw_ones_in_json(
        recording: list[Transaction], runner: CliRunner) -> None:
    shown = run(runner, "status", "--api", "node.test")
    assert shown.exit_code == 0, shown.output
    assert T_ISO in shown.stdout and str(T) not in shown.stdout
    as_json = run(runner, "status", "--api", "node.test", "--json")
    assert json.loads(as_json.stdout)["latest_block_time"] == T


def test_net_status_prints_iso_times_and_raw_ones_in_json(
        consortium: Consortium, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(net, "running_pid", lambda node: 4242)
    monkeypatch.setattr(net, "_status", lambda node, timeout=2.0: {
        "height": 3, "round": 0, "peers": 3, "latest_block_time": T})
    shown = run(runner, "net", "status", "--home", str(consortium.root))
    assert shown.exit_code == 0, shown.output
    assert T_ISO in shown.stdout and str(T) not in shown.stdout
    as_json = run(runner, "net", "status", "--home", str(consortium.root), "--json")
    assert {r["last_block_time"] for r in json.loads(as_json.stdout)} == {T}


def test_tx_and_state_show_verify_print_the_bft_time_in_iso(
        tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from medledger.api import create_app
    from medledger.client import Client

    home = Home.init(tmp_path / "node", "iso-chain", kdf_params=FAST_KDF, genesis_time=T)
    node = open_local(home)
    admin = home.member_keys("admin").signing
    tx = Transaction.create(admin, "iso-chain", "ledger.anchor", 1,
                            {"digest": DIGEST, "label": "x"})
    assert node.submit(tx).accepted
    block = node.produce_block()
    assert block is not None
    app = create_app(node, run_node=False)

    def handle(request: httpx.Request) -> httpx.Response:
        import asyncio

        async def forward() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://node.test") as http:
                return await http.request(request.method, request.url.raw_path.decode(),
                                          content=request.content)
        answer = asyncio.run(forward())
        return httpx.Response(answer.status_code, content=answer.content)

    monkeypatch.setattr(cli, "Client", lambda url, **kw: Client(
        url, transport=httpx.MockTransport(handle), **kw))
    try:
        def header_time(height: int) -> int:
            return decode(node.store.get_block(height).header)["time"]  # type: ignore[union-attr]

        proven = node.chain.proven_height()
        assert proven is not None and header_time(proven) != header_time(block.height)
        shown = run(runner, "tx", "show", tx.tx_id.hex(), "--verify", "--home", str(home.path))
        assert shown.exit_code == 0, shown.output
        assert f"(BFT time {iso_time(header_time(block.height))})" in flat(shown.stdout), \
            shown.stdout  # the time of the transaction's block
        state = run(runner, "state", "show", f"anchor/{DIGEST}", "--verify", "--home",
                    str(home.path))
        assert state.exit_code == 0, state.output
        assert f"(BFT time {iso_time(header_time(proven))})" in flat(state.stdout), \
            state.stdout  # the time of the height whose state proves it
    finally:
        node.close()


def _params() -> dict[str, dict[str, Any]]:
    """Every command's parameters by name, keyed by the command's path (``tx show``)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, (*path, name))
            return
        found[" ".join(path)] = {p.name: p for p in command.params}

    walk(typer.main.get_command(cli.app), ())
    return found


def test_every_option_and_argument_of_every_command_has_help() -> None:
    params = _params()
    assert {"status", "tx show", "state show", "net run", "anchor add"} <= set(params)
    lacking = [f"{command} {name}" for command, by_name in params.items()
               for name, param in by_name.items() if not (getattr(param, "help", "") or
                                                          "").strip()]
    assert lacking == [], f"options and arguments without help: {lacking}"
