"""The ``medledger`` command line, through typer's CliRunner (in process).

Reads go to a node's API served in process (``httpx.MockTransport`` in front of the ASGI
app, so a test can make the node lie), the node on a local chain (``tests/localchain.py``)
whose answers carry CometBFT signed headers; one test, marked ``processes``, runs a real
``medledger up`` with its ``cometbft`` on loopback and drives it with ``anchor add`` and
``tx show --verify``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner, Result

import medledger.cli.main as cli
from medledger.api import create_app
from medledger.client import Client
from medledger.codec import decode, encode
from medledger.crypto import Keystore, ScryptParams, SigningKey
from medledger.ledger import Transaction
from medledger.node import PASSPHRASE_ENV, Home
from medledger.node.consortium import free_port
from tests.localchain import LocalNode, open_local

CHAIN = "test-chain"  # the conftest's demo chain
PASSPHRASE = "correct horse battery staple"
Answer = dict[str, Any]


@pytest.fixture(autouse=True)
def passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every keystore read or written here uses this passphrase (set before any home)."""
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(cli.app, list(args))


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def refused_plainly(result: Result, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def digest(n: int) -> str:
    return hashlib.sha256(f"document {n}".encode()).hexdigest()


def anchor(key: SigningKey, nonce: int, n: int) -> Transaction:
    return Transaction.create(key, CHAIN, "ledger.anchor", nonce,
                              {"digest": digest(n), "label": f"document {n}"})


# help ----------------------------------------------------------------------------------------
def command_paths() -> list[tuple[str, ...]]:
    def walk(command: Any, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield prefix
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, (*prefix, name))
    return list(walk(typer.main.get_command(cli.app), ()))


COMMANDS = command_paths()


def test_the_command_tree_is_what_the_readme_promises() -> None:
    assert {" ".join(p) for p in COMMANDS} >= {
        "", "init", "up", "verify", "status", "bench", "keys", "keys new", "keys show",
        "anchor", "anchor add", "tx", "tx show", "state", "state show"}


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "medledger")
def test_help_of_every_command_exits_0(path: tuple[str, ...], runner: CliRunner) -> None:
    result = run(runner, *path, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert "--help" in result.stdout


def test_python_dash_m_medledger_help_exits_0() -> None:
    done = subprocess.run([sys.executable, "-m", "medledger", "--help"], capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert b"init" in done.stdout and b"verify" in done.stdout


# init ----------------------------------------------------------------------------------------
def test_init_writes_a_home_whose_keys_open(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "h"
    result = run(runner, "init", "--home", str(path), "--chain-id", "c")
    assert result.exit_code == 0, result.output
    for name in ("config.json", "genesis.json", "validator.key", "keys/admin.key"):
        assert (path / name).is_file(), name
    assert not (path / "passphrase").exists()  # the passphrase came from the environment
    home = Home(path)
    genesis = home.genesis()
    assert genesis.chain_id == "c"
    assert [v.public_key for v in genesis.validators.validators] == [
        home.validator_key().public_key]
    assert "initialised chain c" in flat(result.stdout)


def test_init_twice_refuses_and_keeps_the_first_home(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "h"
    assert run(runner, "init", "--home", str(path), "--chain-id", "c").exit_code == 0
    genesis = (path / "genesis.json").read_bytes()
    again = run(runner, "init", "--home", str(path), "--chain-id", "d")
    refused_plainly(again)
    assert "already holds a node" in flat(again.stderr)
    assert (path / "genesis.json").read_bytes() == genesis


INIT_REFUSALS: dict[str, tuple[list[str], str]] = {
    "a chain id with a space": (["--chain-id", "bad chain"], "chain id"),
    "an API address without a port": (["--api", "localhost"], "is not HOST:PORT"),
}


@pytest.mark.parametrize("name", INIT_REFUSALS)
def test_init_refuses_bad_settings_and_writes_nothing(
        name: str, tmp_path: Path, runner: CliRunner) -> None:
    args, message = INIT_REFUSALS[name]
    path = tmp_path / "h"
    result = run(runner, "init", "--home", str(path), *args)
    refused_plainly(result)
    assert message in flat(result.stderr)
    assert not path.exists()
    retry = run(runner, "init", "--home", str(path))  # and the same home can be made after
    assert retry.exit_code == 0, retry.output


# keys ----------------------------------------------------------------------------------------
def test_keys_new_then_show_print_the_same_public_key(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "me.key"
    made = run(runner, "keys", "new", "--out", str(path))
    assert made.exit_code == 0, made.output
    match = re.search(r"signing key\s+([0-9a-f]{64})", made.stdout)
    assert match is not None, made.stdout
    shown = run(runner, "keys", "show", str(path))
    assert shown.exit_code == 0, shown.output
    assert f"signing key {match[1]}" in flat(shown.stdout)
    assert Keystore.load(path, PASSPHRASE).signing.public_key.hex() == match[1]


def existing_key(path: Path) -> Path:
    Keystore.generate("x25519").save(path, PASSPHRASE, kdf_params=ScryptParams(n=2**10, r=8, p=1))
    return path


KEY_REFUSALS: dict[str, tuple[Callable[[Path], list[str]], dict[str, str | None], str]] = {
    "new over an existing file": (
        lambda d: ["keys", "new", "--out", str(existing_key(d / "k"))], {}, "exists"),
    "new without a passphrase": (
        lambda d: ["keys", "new", "--out", str(d / "k")], {PASSPHRASE_ENV: None},
        "no passphrase"),
    "new with an unknown suite": (
        lambda d: ["keys", "new", "--out", str(d / "k"), "--suite", "rot13"], {}, "rot13"),
    "show with the wrong passphrase": (
        lambda d: ["keys", "show", str(existing_key(d / "k"))], {PASSPHRASE_ENV: "wrong"},
        "passphrase"),
    "show a missing file": (lambda d: ["keys", "show", str(d / "nothing")], {}, "error"),
}


@pytest.mark.parametrize("name", KEY_REFUSALS)
def test_keys_refusals_are_one_plain_line(
        name: str, tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    make_args, env, message = KEY_REFUSALS[name]
    args = make_args(tmp_path)
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key)
        else:
            monkeypatch.setenv(key, value)
    result = run(runner, *args)
    refused_plainly(result)
    assert message in flat(result.stderr)
    assert flat(result.stderr).startswith("error:")


# verify --------------------------------------------------------------------------------------
@pytest.fixture
def three_blocks(demo_home: Home, demo_admin_key: SigningKey) -> Home:
    """The demo home with blocks 1, 3, 5, each anchoring ``document N`` (2, 4, 6: the empty
    blocks whose headers sign their state); the node closed."""
    node = open_local(demo_home)
    try:
        for n in (1, 2, 3):
            assert node.submit(anchor(demo_admin_key, n, n)).accepted
            assert node.produce_block() is not None
    finally:
        node.close()
    return demo_home


def test_verify_says_intact(three_blocks: Home, runner: CliRunner) -> None:
    result = run(runner, "verify", "--home", str(three_blocks.path))
    assert result.exit_code == 0, result.output
    assert "intact: 6 blocks, 3 transactions" in flat(result.stdout)


def _edit_tx_raw(db: sqlite3.Connection) -> None:
    (raw,) = db.execute("SELECT raw FROM txs WHERE height = 3 AND idx = 0").fetchone()
    raw = bytes(raw)
    at = raw.index(b"document 2") + 3  # one byte inside the label
    db.execute("UPDATE txs SET raw = ? WHERE height = 3 AND idx = 0",
               (raw[:at] + b"X" + raw[at + 1:],))


def _edit_header_time(db: sqlite3.Connection) -> None:
    (raw,) = db.execute("SELECT header FROM blocks WHERE height = 1").fetchone()
    header = decode(bytes(raw))
    db.execute("UPDATE blocks SET header = ? WHERE height = 1",
               (encode({**header, "time": header["time"] + 1}),))


def _edit_state_value(db: sqlite3.Connection) -> None:
    db.execute("UPDATE state SET value = ? WHERE key = ?",
               (encode({"label": "forged"}), f"anchor/{digest(1)}"))


# name: (edit of data/chain.db, the height verify must name)
TAMPERS: dict[str, tuple[Callable[[sqlite3.Connection], object], int]] = {
    "one byte inside a stored transaction": (_edit_tx_raw, 3),
    "a stored result code": (
        lambda db: db.execute("UPDATE txs SET code = 'exists' WHERE height = 3"), 3),
    "a block header's time": (_edit_header_time, 1),
    "a missing block": (lambda db: db.execute("DELETE FROM blocks WHERE height = 2"), 2),
    "a state value": (_edit_state_value, 6),
}


@pytest.mark.parametrize("name", TAMPERS)
def test_verify_names_the_height_of_a_tampered_store(
        name: str, three_blocks: Home, runner: CliRunner) -> None:
    edit, height = TAMPERS[name]
    db = sqlite3.connect(three_blocks.store_path)
    try:
        with db:
            edit(db)
    finally:
        db.close()
    result = run(runner, "verify", "--home", str(three_blocks.path))
    refused_plainly(result, code=2)
    assert f"TAMPERED at height {height}:" in flat(result.stderr)
    assert "intact" not in result.stdout


VERIFY_REFUSALS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a directory that is no home": (lambda d: d / "nothing", "not found"),
    "a home without a store": (
        lambda d: Home.init(d / "h", "c", kdf_params=ScryptParams(n=2**10, r=8, p=1)).path,
        "no store"),
}


@pytest.mark.parametrize("name", VERIFY_REFUSALS)
def test_verify_without_a_store_refuses_plainly(
        name: str, tmp_path: Path, runner: CliRunner) -> None:
    make, message = VERIFY_REFUSALS[name]
    result = run(runner, "verify", "--home", str(make(tmp_path)))
    refused_plainly(result)
    assert message in flat(result.stderr)


# reads against a node served in process, honest or lying ---------------------------------------
class ServedNode:
    """A node's API behind ``httpx.MockTransport``; ``lies[path]`` edits the answer to it."""

    def __init__(self, node: LocalNode) -> None:
        self.app = create_app(node, run_node=False)
        self.lies: dict[str, Callable[[Answer], Answer]] = {}

    async def _forward(self, request: httpx.Request) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as http:
            return await http.request(request.method, request.url.raw_path.decode(),
                                      content=request.content)

    def handle(self, request: httpx.Request) -> httpx.Response:
        response = asyncio.run(self._forward(request))
        lie = self.lies.get(request.url.path)
        if lie is None:
            return httpx.Response(response.status_code, content=response.content)
        return httpx.Response(response.status_code, json=lie(response.json()))

    def fetch(self, path: str) -> Answer:
        answer: Answer = self.handle(httpx.Request("GET", f"http://node.test{path}")).json()
        return answer


@pytest.fixture
def served(demo_home: Home, demo_admin_key: SigningKey, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[ServedNode, dict[str, str]]]:
    """Block 1 holds anchors of documents 1 and 2 and a refused second anchor of 2 (block 2,
    empty, signs its state). Yields the served node and the ids: ``one``, ``two``,
    ``refused``."""
    node = open_local(demo_home)
    hospital = demo_home.member_keys("st-mary").signing
    txs = {"one": anchor(demo_admin_key, 1, 1), "two": anchor(demo_admin_key, 2, 2),
           "refused": anchor(hospital, 1, 2)}
    for tx in txs.values():
        assert node.submit(tx).accepted
    assert node.produce_block() is not None
    server = ServedNode(node)
    monkeypatch.setattr(cli, "Client", functools.partial(
        Client, transport=httpx.MockTransport(server.handle)))
    yield server, {name: tx.tx_id.hex() for name, tx in txs.items()}
    node.close()


def test_status_json_prints_the_height(
        served: tuple[ServedNode, dict[str, str]], demo_home: Home, runner: CliRunner) -> None:
    result = run(runner, "status", "--home", str(demo_home.path), "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert (status["chain_id"], status["height"], status["total_txs"]) == (CHAIN, 2, 3)


def test_tx_show_prints_the_transaction(
        served: tuple[ServedNode, dict[str, str]], demo_home: Home, runner: CliRunner) -> None:
    _, ids = served
    result = run(runner, "tx", "show", ids["refused"], "--home", str(demo_home.path))
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["tx_id"], shown["height"], shown["index"], shown["code"]) == (
        ids["refused"], 1, 2, "exists")


def _other_tx(server: ServedNode, ids: dict[str, str]) -> Callable[[Answer], Answer]:
    return lambda a: server.fetch(f"/v1/txs/{ids['two']}")


def _edit(**changes: Any) -> Callable[[ServedNode, dict[str, str]], Callable[[Answer], Answer]]:
    return lambda server, ids: lambda a: {**a, **changes}


# name: (the tx asked for, the lie told about it or None, exit code, what the CLI says)
TX_SHOW: dict[str, tuple[str, Any, int, str]] = {
    "an honest node": ("one", None, 0, "verified: transaction"),
    "an honest node, a refused tx": ("refused", None, 0, "verified: transaction"),
    "a node answering with another committed tx": (
        "one", _other_tx, 2, "NOT VERIFIED: the node answered with another transaction"),
    "a node claiming a refused tx succeeded": (
        "refused", _edit(code="ok", message=""), 2, "NOT VERIFIED: the result's proof"),
    "a node re-dating the signed header of its block": (
        "one", lambda s, i: lambda a: {**a, "light": [
            {**a["light"][0], "header": {**a["light"][0]["header"],
                                         "time": "2030-01-01T00:00:00Z"}}, a["light"][1]]},
        2, "NOT VERIFIED: the engine's signed header does not check out"),
    "a node moving the tx to another index": (
        "one", lambda s, i: lambda a: {**a, "proof": {**a["proof"], "leaf_index": 1}}, 2,
        "NOT VERIFIED"),
}


@pytest.mark.parametrize("name", TX_SHOW)
def test_tx_show_verify_checks_the_answer_alone(
        name: str, served: tuple[ServedNode, dict[str, str]], demo_home: Home,
        runner: CliRunner) -> None:
    server, ids = served
    which, lie, code, says = TX_SHOW[name]
    if lie is not None:
        server.lies[f"/v1/txs/{ids[which]}"] = lie(server, ids)
    result = run(runner, "tx", "show", ids[which], "--verify", "--home", str(demo_home.path))
    assert result.exit_code == code, result.output
    assert says in flat(result.output)
    if code == 0:
        assert "is in block 1" in flat(result.stdout)


# name: (the document asked for, the document the node answers for, the lie, exit code, says)
STATE_SHOW: dict[str, tuple[int, int, Callable[[Answer], Answer] | None, int, str]] = {
    "an honest node, an anchored digest": (1, 1, None, 0, "is present at height 2"),
    "an honest node, a digest never anchored": (9, 9, None, 0, "is absent at height 2"),
    "a node answering for another key": (
        9, 1, None, 2, "NOT VERIFIED: the node answered for another key"),
    "a node hiding an anchored digest": (
        1, 1, lambda a: {**a, "value": None}, 2, "NOT VERIFIED: the proof of the key's absence"),
}


@pytest.mark.parametrize("name", STATE_SHOW)
def test_state_show_verify_checks_the_answer_alone(
        name: str, served: tuple[ServedNode, dict[str, str]], demo_home: Home,
        runner: CliRunner) -> None:
    server, _ = served
    asked, answered, lie, code, says = STATE_SHOW[name]
    path = f"/v1/state/anchor/{digest(asked)}"
    if answered != asked:
        server.lies[path] = lambda a: server.fetch(f"/v1/state/anchor/{digest(answered)}")
    elif lie is not None:
        server.lies[path] = lie
    result = run(runner, "state", "show", f"anchor/{digest(asked)}", "--verify", "--home",
                 str(demo_home.path))
    assert result.exit_code == code, result.output
    assert says in flat(result.output)


def test_verify_without_a_trusted_genesis_warns(
        served: tuple[ServedNode, dict[str, str]], runner: CliRunner) -> None:
    _, ids = served
    result = run(runner, "tx", "show", ids["one"], "--verify", "--api", "http://node.test")
    assert result.exit_code == 0, result.output
    assert "trusting the node's own genesis" in flat(result.stderr)


def test_a_node_that_is_not_running_is_one_plain_line(tmp_path: Path, runner: CliRunner) -> None:
    result = run(runner, "status", "--api", f"127.0.0.1:{free_port()}")
    refused_plainly(result)
    assert "no answer from" in flat(result.stderr)


# a real node process -------------------------------------------------------------------------
def wait_until_serving(url: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the node exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/v1/status", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the node did not answer at {url} within {seconds} s")


@pytest.mark.processes
def test_anchor_add_then_tx_show_verify_against_a_running_node(
        tmp_path: Path, runner: CliRunner) -> None:
    api = f"127.0.0.1:{free_port()}"
    home = Home.init(tmp_path / "node", "proc-chain", api=api,
                     kdf_params=ScryptParams(n=2**10, r=8, p=1),
                     p2p=f"127.0.0.1:{free_port()}", engine_rpc=f"127.0.0.1:{free_port()}")
    log_path = tmp_path / "node.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medledger", "up", "--home", str(home.path), "--api", api],
            env={**os.environ, PASSPHRASE_ENV: PASSPHRASE}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(f"http://{api}", proc, 60)
        added = run(runner, "anchor", "add", digest(1), "--label", "L", "--home", str(home.path))
        assert added.exit_code == 0, added.output + log_path.read_text()
        match = re.search(r"anchored in block (\d+): tx ([0-9a-f]{64})", flat(added.stdout))
        assert match is not None, added.stdout
        height, tx_id = int(match[1]), match[2]

        shown = run(runner, "tx", "show", tx_id, "--verify", "--home", str(home.path))
        assert shown.exit_code == 0, shown.output
        assert f"verified: transaction {tx_id[:16]}... is in block {height}" in flat(shown.stdout)

        status = run(runner, "status", "--home", str(home.path), "--json")
        assert status.exit_code == 0, status.output
        assert json.loads(status.stdout)["height"] >= height

        state = run(runner, "state", "show", f"anchor/{digest(1)}", "--verify",
                    "--home", str(home.path))
        assert state.exit_code == 0, state.output
        assert "is present" in flat(state.stdout)

        again = run(runner, "anchor", "add", digest(1), "--label", "L", "--home", str(home.path))
        refused_plainly(again)
        assert "exists" in flat(again.stderr)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
