"""The command line as the apps see it: :class:`CliHost`, the real
:class:`~medledger.apps.host.CommandHost`, and :func:`add_app_commands`, which adds every
registered app's command group as ``medledger <app> ...``.

The helpers the built-in commands share with the apps' commands live here too: the API
address a command talks to (:func:`api_url`), the passphrase of a keystore of its own
(:func:`passphrase`), a sender's next nonce (:func:`next_nonce`), and the validators a
proven answer is checked against (:func:`trusted_validators`, :func:`trusted_for`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from medledger.cli.errors import err, friendly, iso_time
from medledger.client import (
    ApiRefused,
    Client,
    Trusted,
    VerificationFailed,
    sets_through,
    verify_list_answer,
    verify_state_answer,
)
from medledger.client import emergency as emergency_keys
from medledger.client import records as record_sealing
from medledger.client.record_blobs import get_blob, put_blob
from medledger.crypto import Keystore, SigningKey
from medledger.ledger import Header, Transaction, ValidatorSet
from medledger.node import PASSPHRASE_ENV, ConfigError, Genesis, Home

if TYPE_CHECKING:
    from medledger.apps import App
    from medledger.apps.host import EmergencyKeys, RecordSealing
    from medledger.apps.lists import ProvableList

__all__ = ["CliHost", "add_app_commands", "api_url", "next_nonce", "passphrase",
           "trusted_for", "trusted_validators"]

out = Console(soft_wrap=True)
PLAIN_WIDTH = 200  # columns of a table printed to a file or a pipe
SHORT = 24  # a column whose values are all this short is never wrapped


# helpers shared with the built-in commands ----------------------------------------------------
def api_url(api: str | None, home: Path | None) -> str:
    """The URL of the node's API: ``api`` (``HOST:PORT`` or a URL), else ``home``'s config's."""
    if api is None:
        if home is None:
            raise ConfigError("give --api HOST:PORT or --home DIR")
        api = Home(home).config().api
    return api if "://" in api else f"http://{api}"


def passphrase(confirm: bool) -> str:
    """A keystore's passphrase: ``MEDLEDGER_PASSPHRASE``, else asked for in a terminal."""
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env
    if not sys.stdin.isatty():
        raise ConfigError(f"no passphrase: set {PASSPHRASE_ENV} or run in a terminal")
    return str(typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm))


def next_nonce(client: Client, sender: bytes) -> int:
    """The nonce ``sender``'s next transaction takes (1 before the first block)."""
    try:
        return client.next_nonce(sender)
    except ApiRefused as e:
        if e.code == "not_found":
            return 1
        raise


def trusted_validators(home: Path | None, genesis_file: Path | None,
                       client: Client) -> tuple[ValidatorSet, str]:
    """The validators and chain id answers are checked against: ``genesis_file``'s, else
    ``home``'s genesis; without either, the node's own genesis, with a warning."""
    if genesis_file is not None or home is not None:
        genesis = Genesis.load(genesis_file) if genesis_file else Home(home).genesis()  # type: ignore[arg-type]
        return genesis.validators, genesis.chain_id
    err.print("[yellow]warning:[/] no --home or --genesis: trusting the node's own genesis")
    genesis = Genesis.from_dict(client.genesis())
    return genesis.validators, genesis.chain_id


def trusted_for(answer: dict[str, Any], trusted: tuple[ValidatorSet, str],
                client: Client) -> tuple[Trusted, str]:
    """The trusted set, followed through governance's changes up to the last of the
    answer's signed headers (each change checked by the light client): the set of each
    height up to there."""
    validators, chain_id = trusted
    try:
        last = max(int(h["header"]["height"]) for h in answer["light"])
    except (KeyError, TypeError, ValueError):
        return trusted  # malformed: the header check says so
    return sets_through(validators, chain_id, last, client.validator_changes(),
                        client.validator_proof), chain_id


# the host ---------------------------------------------------------------------------------
def _cell(key: str, value: Any) -> Text:
    """A value as a table shows it: times in ISO 8601, nested values as compact JSON."""
    if value is None:
        return Text("-")
    if key == "time" or key.endswith("_time"):
        return Text(iso_time(value))
    if isinstance(value, dict | list):
        return Text(json.dumps(value, sort_keys=True, separators=(",", ":")))
    return Text(str(value))


def _column(header: str, cells: list[Text]) -> Column:
    """A column that never wraps short values, and folds long ones (keys, hashes)."""
    if all(len(cell) <= SHORT for cell in cells):
        return Column(header, no_wrap=True)
    return Column(header, overflow="fold")


def _label(key: str) -> str:
    return key + (" (UTC)" if key == "time" or key.endswith("_time") else "")


def _not_verified(reason: str) -> NoReturn:
    err.print(f"[bold red]NOT VERIFIED[/]: {escape(reason)}", highlight=False)
    raise typer.Exit(2)


def _verified(what: str, header: Header) -> None:
    err.print(f"[bold green]verified[/]: {escape(what)} at height {header.height} (BFT time "
              f"{iso_time(header.time)}), signed by more than 2/3 of the trusted validators",
              highlight=False)


class CliHost:
    """The :class:`~medledger.apps.host.CommandHost` of the ``medledger`` command line."""

    def client(self, home: Path | None, api: str | None) -> Client:
        return Client(api_url(api, home))

    def keys(self, home: Path, key: str | None, default: str = "admin") -> Keystore:
        return Home(home).resolve_keys(key, default)

    def keystore(self, path: Path) -> Keystore:
        if not path.is_file():
            raise ConfigError(f"no keystore at {path} (make one with `medledger keys new "
                              f"--out {path}`)")
        return Keystore.load(path, passphrase(confirm=False))

    def validator_key(self, home: Path) -> SigningKey:
        return Home(home).validator_key()

    def node_identity(self, home: Path) -> dict[str, str]:
        from medledger.node.engine import EngineHome

        key = self.validator_key(home)  # says what a folder that is no node's home is
        engine = EngineHome(home)
        if not engine.exists():
            raise ConfigError(f"{home} has no CometBFT home ({engine.path}): make the node's "
                              f"home with `medledger init` or `medledger join`")
        return {"node_key": key.public_key.hex(), "node_id": engine.node_id()}

    def submit(self, home: Path | None, api: str | None, signer: SigningKey, type_: str,
               body: dict[str, Any]) -> dict[str, Any]:
        with self.client(home, api) as client:
            chain_id = client.status()["chain_id"]
            nonce = next_nonce(client, signer.public_key)
            tx = Transaction.create(signer, chain_id, type_, nonce, body)
            answer = client.submit(tx, wait=True)
        if answer.get("status") != "committed":
            out.print(f"submitted {tx.tx_id.hex()}; not committed yet")
            raise typer.Exit(0)
        if answer["code"] != "ok":
            err.print(f"[bold red]rejected[/] in block {answer['height']}: {answer['code']}: "
                      f"{escape(str(answer['message']))}", highlight=False)
            raise typer.Exit(1)
        return {**answer, "tx_id": tx.tx_id.hex()}

    def show(self, data: Any, *, as_json: bool, title: str = "") -> None:
        if as_json:
            out.print_json(json.dumps(data))
            return
        if isinstance(data, list) and not data:
            out.print(f"no {title}" if title else "none", highlight=False)
            return
        if isinstance(data, dict):
            table = Table(Column(no_wrap=True), Column(overflow="fold"), show_header=False,
                          title=title or None)
            for key, value in data.items():
                table.add_row(_label(key), _cell(key, value))
        elif isinstance(data, list) and all(isinstance(row, dict) for row in data):
            keys = list(dict.fromkeys(key for row in data for key in row))
            cells = [[_cell(key, row.get(key)) for key in keys] for row in data]
            table = Table(*(_column(_label(key), [row[i] for row in cells])
                            for i, key in enumerate(keys)), title=title or None)
            for row in cells:
                table.add_row(*row)
        elif isinstance(data, list):
            cells = [_cell("", value) for value in data]
            table = Table(_column(title or "value", cells), show_header=bool(title))
            for cell in cells:
                table.add_row(cell)
        else:
            out.print(_cell("", data))
            return
        if out.is_terminal:
            out.print(table)
        else:  # a file or a pipe has no width: print the whole table, not cut at 80 columns
            Console(file=out.file, width=PLAIN_WIDTH, soft_wrap=True).print(table)

    def _trusted(self, answer: dict[str, Any], home: Path | None, genesis: Path | None,
                 client: Client) -> tuple[ValidatorSet, str]:
        try:
            return trusted_for(answer, trusted_validators(home, genesis, client), client)
        except VerificationFailed as e:
            _not_verified(e.reason)

    def verify(self, answer: dict[str, Any], home: Path | None, genesis: Path | None,
               client: Client, key: str | None = None) -> Any:
        trusted = self._trusted(answer, home, genesis, client)
        try:
            checked = verify_state_answer(answer, *trusted)
        except VerificationFailed as e:
            _not_verified(e.reason)
        if key is not None and checked.key != key:
            _not_verified("the node answered for another key than the one asked for")
        _verified(f"{checked.key} is {'absent' if checked.value is None else 'present'}",
                  checked.header)
        return checked.value

    def verify_list(self, answer: dict[str, Any], home: Path | None, genesis: Path | None,
                    client: Client, lst: ProvableList, owner: str, start: int = 1,
                    limit: int | None = None) -> list[Any]:
        trusted = self._trusted(answer, home, genesis, client)
        try:
            checked = verify_list_answer(answer, *trusted, lst.prefix, lst.name, owner,
                                         start, limit)
        except VerificationFailed as e:
            _not_verified(e.reason)
        shown = (f"items {start} to {start + len(checked.items) - 1}" if checked.items
                 else "no items")
        _verified(f"{lst.path} of {owner} holds {checked.count} items ({shown} here)",
                  checked.header)
        return checked.items

    def fail(self, message: str) -> NoReturn:
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        raise typer.Exit(1)

    @property
    def sealing(self) -> RecordSealing:
        return record_sealing  # type: ignore[return-value]  # the module is the protocol

    @property
    def emergency(self) -> EmergencyKeys:
        return emergency_keys  # type: ignore[return-value]  # the module is the protocol

    def put_blob(self, home: Path | None, api: str | None, signer: SigningKey,
                 ciphertext: bytes) -> str:
        with self.client(home, api) as client:
            return put_blob(client, signer, ciphertext)

    def get_blob(self, home: Path | None, api: str | None, signer: SigningKey,
                 digest: str) -> bytes:
        with self.client(home, api) as client:
            return get_blob(client, signer, digest)

    def save_keystore(self, keys: Keystore, path: Path) -> None:
        if path.exists():
            raise ConfigError(f"{path} exists: give --out a new file (nothing was written)")
        keys.save(path, passphrase(confirm=True))

    def progress(self, message: str) -> None:
        err.print(escape(message), highlight=False)


# the apps' command groups -----------------------------------------------------------------
def _friendly_commands(group: typer.Typer) -> None:
    """Make each command of ``group`` (and of its subgroups) print known errors as one
    line (:func:`medledger.cli.errors.friendly`) instead of a traceback."""
    for info in group.registered_commands:
        callback = info.callback
        if callback is not None and not getattr(callback, "_friendly", False):
            wrapped: Callable[..., Any] = friendly(callback)
            wrapped._friendly = True  # type: ignore[attr-defined]
            info.callback = wrapped
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _friendly_commands(sub.typer_instance)


def add_app_commands(root: typer.Typer, apps: Iterable[App], host: CliHost | None = None
                     ) -> list[str]:
    """Add each app's command group to ``root`` as ``<app name>``, its help the app's
    summary, and its :attr:`~medledger.apps.App.shortcuts`, every command made friendly to
    errors; return the names added."""
    host = host or CliHost()
    added = []
    for app in apps:
        group = app.commands(host)
        if group is None:
            continue
        _friendly_commands(group)
        root.add_typer(group, name=app.name, help=app.summary or None)
        added.append(app.name)
        subgroups = {info.name: info for info in group.registered_groups}
        for name, sub in app.shortcuts.items():
            sub_group = subgroups[sub].typer_instance if sub else group
            assert sub_group is not None
            same = f"medledger {app.name} {sub}".rstrip()
            root.add_typer(sub_group, name=name,
                           help=f"{sub_group.info.help or app.summary} (the same as `{same}`)")
            added.append(name)
    return added
