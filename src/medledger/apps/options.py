"""What the apps' command groups share: their Typer option types, the checks of hex input,
and the reading and printing of an entry or a page of one of their routes.

Every app's command module (``apps/<app>/commands.py``) is built from these over the
command line's :class:`~medledger.apps.host.CommandHost`, so that it holds only its own
commands, arguments and checks. An option whose help says something of one app's own is
made with the factory of its kind (``json_option("Print JSON (...).")``).
"""

# No `from __future__ import annotations`: Typer reads the options' annotations as objects.

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from medledger.apps.host import CommandHost

__all__ = ["MAX_PAGE", "NODE_HOME", "ApiOpt", "GenesisOpt", "JsonOpt", "LimitOpt",
           "ReadHomeOpt", "VerifyOpt", "api_option", "committed", "entry", "genesis_option",
           "hex_text", "json_option", "more", "show_page", "write_home_option"]

MAX_PAGE = 100  # what the routes serve at most in one page
NODE_HOME = Path(".medledger/node")  # the default --home of a command that signs

_out = Console(soft_wrap=True)


# options ------------------------------------------------------------------------------------
def api_option(says: str = "The node's API as HOST:PORT or URL (default: from the home's "
                           "config).") -> Any:
    """The type of ``--api``, its help ``says``."""
    return Annotated[str | None, typer.Option("--api", help=says)]


def genesis_option(says: str = "With --verify: trust this genesis file's validators (instead "
                               "of --home's).") -> Any:
    """The type of ``--genesis`` (the validators a proven answer is checked against), its
    help ``says``."""
    return Annotated[Path | None, typer.Option("--genesis", help=says)]


def json_option(says: str = "Print JSON instead of a table.") -> Any:
    """The type of ``--json``, its help ``says``."""
    return Annotated[bool, typer.Option("--json", help=says)]


def write_home_option(says: str) -> Any:
    """The type of the ``--home`` of a command that signs (its default is
    :data:`NODE_HOME`), its help ``says``."""
    return Annotated[Path, typer.Option("--home", help=says)]


ApiOpt = api_option()
GenesisOpt = genesis_option()
JsonOpt = json_option()
ReadHomeOpt = Annotated[Path | None, typer.Option(
    "--home", help="Trust this home's genesis (its config names the API unless --api).")]
VerifyOpt = Annotated[bool, typer.Option(
    "--verify", help="Check the proof, header and certificate locally.")]
LimitOpt = Annotated[int, typer.Option(
    "--limit", min=1, max=MAX_PAGE, help=f"How many to list (1 to {MAX_PAGE}).")]


# checks of input ----------------------------------------------------------------------------
def hex_text(host: CommandHost, text: str, what: str, size: int = 32, *,
             say_bytes: bool = False) -> str:
    """``text`` in lower case when it is ``size`` bytes in hex; else fail with ``<what> must
    be [<size> bytes as] <2*size> hex characters``."""
    if not re.fullmatch(f"[0-9a-fA-F]{{{2 * size}}}", text):
        shape = f"{size} bytes as " if say_bytes else ""
        host.fail(f"{what} must be {shape}{2 * size} hex characters, not {text!r}")
    return text.lower()


# reading and printing -----------------------------------------------------------------------
def entry(host: CommandHost, path: str, key: str, verify: bool, home: Path | None,
          genesis: Path | None, api: str | None, missing: str) -> Any:
    """The value at the app route ``path`` (a single entry at state key ``key``), proven
    with ``verify``; fail with ``missing`` when it is absent."""
    with host.client(home, api) as client:
        answer = client.get(path, {"prove": True})
        value = answer["value"]
        if verify:
            value = host.verify(answer, home, genesis, client, key=key)
    if value is None:
        host.fail(missing)
    return value


def show_page(host: CommandHost, page: dict[str, Any], name: str, *, as_json: bool,
              title: str, row: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
              cursor: str = "--after") -> None:
    """Print a page of a paged route: as JSON as it came with ``as_json``; else its list
    ``name`` as a table (each item through ``row``) and, when there is a next page, the
    option that lists it (``more: --after <next>``)."""
    if as_json:
        host.show(page, as_json=True)
        return
    items = page[name] if row is None else [row(item) for item in page[name]]
    host.show(items, as_json=False, title=title)
    if page.get("next"):
        more(cursor, page["next"])


def more(option: str, value: Any) -> None:
    """Say how to list the next page: ``more: <option> <value>``."""
    _out.print(f"more: {option} {value}", highlight=False)


def committed(what: str, done: dict[str, Any]) -> None:
    """Say what a committed transaction (``host.submit``'s answer) did:
    ``<what> in block <height>: tx <id>``."""
    _out.print(f"{what} in block {done['height']}: tx {done['tx_id']}", highlight=False)
