"""``medledger anchor add|show``: anchor a digest, and show (and prove) an anchor.

Built on the command line's :class:`~medledger.apps.host.CommandHost`; nothing here
imports the node, the API, the SDK or the command line.
"""

# No `from __future__ import annotations`: the commands are closures over ``host`` and
# Typer reads their annotations as objects.

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from medledger.apps.anchor import TYPE, AnchorApp, anchor_key
from medledger.apps.host import CommandHost

__all__ = ["commands"]

_DIGEST = re.compile(r"[0-9a-fA-F]{64}")

DigestArg = Annotated[str, typer.Argument(help="The 32-byte digest, as 64 hex characters.")]
WriteHomeOpt = Annotated[Path, typer.Option(
    "--home", help="The node's home directory: its keys sign, its config names the API.")]
ReadHomeOpt = Annotated[Path | None, typer.Option(
    "--home", help="Trust this home's genesis (its config names the API unless --api).")]
GenesisOpt = Annotated[Path | None, typer.Option(
    "--genesis", help="Trust this genesis file's validators (instead of --home's).")]
ApiOpt = Annotated[str | None, typer.Option(
    "--api", help="The node's API as HOST:PORT or URL (default: from the home's config).")]
KeyOpt = Annotated[str | None, typer.Option(
    "--key", help="A key name from the home's keys/ folder, or a keystore path (default: "
                  "admin, or the home's only key).")]
LabelOpt = Annotated[str, typer.Option("--label", help="A label stored with the digest.")]
VerifyOpt = Annotated[bool, typer.Option(
    "--verify", help="Check the proof, header and certificate locally.")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print JSON (times as milliseconds since the epoch).")]


def _digest(host: CommandHost, text: str) -> str:
    if not _DIGEST.fullmatch(text):
        host.fail(f"DIGEST must be 32 bytes as 64 hex characters, not {text!r}")
    return text.lower()


def commands(host: CommandHost) -> typer.Typer:
    """The ``anchor`` command group over ``host``."""
    group = typer.Typer(no_args_is_help=True, help=AnchorApp.summary)
    out = Console(soft_wrap=True)

    @group.command("add")
    def add(digest: DigestArg, label: LabelOpt, home: WriteHomeOpt = Path(".medledger/node"),
            key: KeyOpt = None, api: ApiOpt = None) -> None:
        """Anchor DIGEST under LABEL, wait for the commit and print the transaction id."""
        digest = _digest(host, digest)
        keys = host.keys(home, key)
        done = host.submit(home, api, keys.signing, TYPE, {"digest": digest, "label": label})
        out.print(f"anchored in block {done['height']}: tx {done['tx_id']}", highlight=False)

    @group.command("show")
    def show(digest: DigestArg, verify: VerifyOpt = False, home: ReadHomeOpt = None,
             genesis: GenesisOpt = None, api: ApiOpt = None, as_json: JsonOpt = False) -> None:
        """Who anchored DIGEST, under which label, in which block and at what BFT time;
        with --verify, proven without trusting the node. Exit 1 when it is not anchored."""
        digest = _digest(host, digest)
        path = f"/v1/anchor/{digest}"
        with host.client(home, api) as client:
            if verify:
                answer = client.get(path, {"prove": True})
                value: Any = host.verify(answer, home, genesis, client,
                                         key=anchor_key(bytes.fromhex(digest)))
                if value is None:
                    host.fail(f"digest {digest} is not anchored (its absence is proven)")
            else:
                value = client.get(path)["value"]
        host.show({"digest": digest, **value}, as_json=as_json, title="anchor")

    return group
