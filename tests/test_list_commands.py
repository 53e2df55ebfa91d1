"""The node's own lists on the command line: ``medledger blocks`` (recent blocks, newest
first) and ``medledger tx list --sender`` (a sender's transactions, newest first), each a
page at a time with the next page's ``--before``; and the SDK calls beneath them
(``Client.blocks``, ``Client.txs_by_sender``).

One single-validator demo node runs as a process on 127.0.0.1 for the whole module (as in
tests/test_app_commands.py); its blocks are the anchors the module adds, since a node with
an empty mempool commits no block.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

import medledger.cli.main as cli
from medledger.cli.errors import iso_time
from medledger.client import Client
from medledger.node import PASSPHRASE_ENV, Home
from tests.nodeproc import NodeProcess, make_home, wait_proven

pytestmark = pytest.mark.processes

PASSPHRASE = "correct horse battery staple"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class Chain:
    """The module's node: its home, its API and the anchors committed so far (oldest
    first, as ``(height, tx id)``), all signed by the home's admin key."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.api = home.config().api
        self.admin = home.member_keys("admin").signing.public_key.hex()
        self.anchors: list[tuple[int, str]] = []


@pytest.fixture(autouse=True)
def passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """A demo node process with five anchors committed, one block each."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv(PASSPHRASE_ENV, PASSPHRASE)
        home = make_home(tmp_path_factory.mktemp("lists") / "node", demo=True)
        proc = NodeProcess(home)
        proc.start()
        try:
            made = Chain(home)
            for n in range(5):
                made.anchors.append(anchor(home.path, f"list document {n}"))
            yield made
        finally:
            proc.stop()


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli.app, [str(a) for a in args])


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def anchor(home: Path, name: str) -> tuple[int, str]:
    """Anchor ``name``'s digest (signed by the admin key) and wait for its block."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    added = ok(run("anchor", "add", digest, "--label", name, "--home", home))
    match = re.search(r"in block (\d+): tx ([0-9a-f]{64})", flat(added.stdout))
    assert match is not None, added.output
    wait_proven(f"http://{Home(home).config().api}", int(match[1]))  # the next nonce
    return int(match[1]), match[2]


def refused_in_one_line(result: Result, says: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert says in lines[0], lines[0]


# help -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [("blocks",), ("tx", "list")])
def test_every_option_has_help(path: tuple[str, ...]) -> None:
    command: Any = typer.main.get_command(cli.app)
    for name in path:
        command = command.commands[name]
    lacking = [p.name for p in command.params if not (getattr(p, "help", "") or "").strip()]
    assert lacking == []
    names = {opt for p in command.params for opt in p.opts}
    assert {"--before", "--limit", "--home", "--api", "--json"} <= names
    result = CliRunner().invoke(cli.app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output


# blocks ---------------------------------------------------------------------------------------
def test_blocks_lists_the_anchors_blocks_newest_first(chain: Chain) -> None:
    top = chain.anchors[-1][0]
    page = as_json(run("blocks", "--home", chain.home.path, "--json", "--limit", "100"))
    heights = [b["height"] for b in page["blocks"]]
    # the tip: the last anchor's block, or the empty one CometBFT makes to sign its state
    assert heights[0] in (top, top + 1)
    assert heights == list(range(heights[0], 0, -1)) and page["next"] is None
    by_height = {b["height"]: b for b in page["blocks"]}
    anchored = {height for height, _ in chain.anchors}
    assert {h: b["tx_count"] for h, b in by_height.items()} == {
        h: int(h in anchored) for h in heights}
    for block in page["blocks"]:
        assert re.fullmatch("[0-9a-f]{64}", block["hash"]), block
        assert type(block["time"]) is int  # --json keeps milliseconds

    shown = ok(run("blocks", "--home", chain.home.path, "--before", top + 1, "--limit", "2"))
    text = flat(shown.stdout)
    newest = by_height[top]
    assert "time (UTC)" in text and iso_time(newest["time"]) in text
    assert ISO.search(text)
    assert newest["hash"][:16] in text and newest["proposer"][:16] in text
    assert newest["hash"] not in text  # a prefix, not the whole hash
    assert text.endswith(f"more: --before {top - 1}")


def test_blocks_pages_with_before(chain: Chain) -> None:
    top = chain.anchors[-1][0]
    first = as_json(run("blocks", "--api", chain.api, "--before", top + 1, "--limit", "2",
                        "--json"))
    assert [b["height"] for b in first["blocks"]] == [top, top - 1]
    assert first["next"] == top - 1
    second = as_json(run("blocks", "--api", chain.api, "--before", first["next"], "--limit",
                         "2", "--json"))
    assert [b["height"] for b in second["blocks"]] == [top - 2, top - 3]

    last = ok(run("blocks", "--api", chain.api, "--before", "3", "--limit", "5"))
    assert "more:" not in last.stdout  # blocks 2 and 1: nothing further
    assert as_json(run("blocks", "--api", chain.api, "--before", "3", "--json"))["next"] is None

    with Client(f"http://{chain.api}") as client:
        assert client.blocks(top + 1, 2) == first
        assert [b["height"] for b in client.blocks(2)["blocks"]] == [1]


def test_blocks_refuses_a_limit_out_of_range(chain: Chain) -> None:
    result = run("blocks", "--api", chain.api, "--limit", "0")
    assert result.exit_code == 2 and "Traceback" not in result.output


# tx list --------------------------------------------------------------------------------------
def test_tx_list_of_the_admin_newest_first(chain: Chain) -> None:
    page = as_json(run("tx", "list", "--sender", chain.admin.upper(), "--home",
                       chain.home.path, "--json", "--limit", "100"))
    mine = [(t["height"], t["tx_id"]) for t in page["txs"]]
    assert mine[: len(chain.anchors)] == list(reversed(chain.anchors))
    for tx in page["txs"]:
        assert (tx["type"], tx["code"], tx["index"]) == ("ledger.anchor", "ok", 0)
    assert page["next"] is None

    newest_height, newest_id = chain.anchors[-1]
    shown = ok(run("tx", "list", "--sender", chain.admin, "--home", chain.home.path,
                   "--limit", "1"))
    text = flat(shown.stdout)
    assert newest_id in text and "ledger.anchor" in text and "ok" in text
    assert text.endswith(f"more: --before {newest_height}:0")


def test_tx_list_pages_with_before(chain: Chain) -> None:
    first = as_json(run("tx", "list", "--sender", chain.admin, "--api", chain.api,
                        "--limit", "2", "--json"))
    second = as_json(run("tx", "list", "--sender", chain.admin, "--api", chain.api,
                         "--before", first["next"], "--limit", "2", "--json"))
    ids = [t["tx_id"] for t in first["txs"] + second["txs"]]
    assert ids == [tx_id for _, tx_id in reversed(chain.anchors)][:4]

    with Client(f"http://{chain.api}") as client:
        assert client.txs_by_sender(bytes.fromhex(chain.admin), limit=2) == first
        assert client.txs_by_sender(chain.admin, first["next"], 2) == second


def test_tx_list_of_a_sender_with_none(chain: Chain) -> None:
    nobody = "ab" * 32
    shown = ok(run("tx", "list", "--sender", nobody, "--api", chain.api))
    assert "no transactions" in shown.stdout and "more:" not in shown.stdout
    assert as_json(run("tx", "list", "--sender", nobody, "--api", chain.api, "--json")) == {
        "txs": [], "next": None}


@pytest.mark.parametrize(("args", "says"), [
    (["--sender", "xyz"], "--sender must be 64 hex characters, not 'xyz'"),
    (["--sender", "ab" * 31], "--sender must be 64 hex characters"),
    (["--sender", "ab" * 32, "--before", "7"], "--before must be HEIGHT:INDEX"),
])
def test_tx_list_refuses_malformed_input_in_one_line(args: list[str], says: str) -> None:
    refused_in_one_line(run("tx", "list", *args, "--api", "127.0.0.1:9"), says)  # never asked
