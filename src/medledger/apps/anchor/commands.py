"""``medledger anchor add|show``: anchor a digest, and show (and prove) an anchor.

Built on the command line's :class:`~medledger.apps.host.CommandHost`; nothing here
imports the node, the API, the SDK or the command line.
"""

# No `from __future__ import annotations`: the commands are closures over ``host`` and
# Typer reads their annotations as objects.

from typing import Annotated, Any

import typer

from medledger.apps.anchor import TYPE, AnchorApp, anchor_key
from medledger.apps.host import CommandHost
from medledger.apps.options import (
    NODE_HOME,
    ApiOpt,
    ReadHomeOpt,
    VerifyOpt,
    committed,
    genesis_option,
    hex_text,
    json_option,
    write_home_option,
)

__all__ = ["commands"]

DigestArg = Annotated[str, typer.Argument(help="The 32-byte digest, as 64 hex characters.")]
WriteHomeOpt = write_home_option(
    "The node's home directory: its keys sign, its config names the API.")
GenesisOpt = genesis_option("Trust this genesis file's validators (instead of --home's).")
KeyOpt = Annotated[str | None, typer.Option(
    "--key", help="A key name from the home's keys/ folder, or a keystore path (default: "
                  "admin, or the home's only key).")]
LabelOpt = Annotated[str, typer.Option("--label", help="A label stored with the digest.")]
JsonOpt = json_option("Print JSON (times as milliseconds since the epoch).")


def commands(host: CommandHost) -> typer.Typer:
    """The ``anchor`` command group over ``host``."""
    group = typer.Typer(no_args_is_help=True, help=AnchorApp.summary)

    @group.command("add")
    def add(digest: DigestArg, label: LabelOpt, home: WriteHomeOpt = NODE_HOME,
            key: KeyOpt = None, api: ApiOpt = None) -> None:
        """Anchor DIGEST under LABEL, wait for the commit and print the transaction id."""
        digest = hex_text(host, digest, "DIGEST", say_bytes=True)
        keys = host.keys(home, key)
        done = host.submit(home, api, keys.signing, TYPE, {"digest": digest, "label": label})
        committed("anchored", done)

    @group.command("show")
    def show(digest: DigestArg, verify: VerifyOpt = False, home: ReadHomeOpt = None,
             genesis: GenesisOpt = None, api: ApiOpt = None, as_json: JsonOpt = False) -> None:
        """Who anchored DIGEST, under which label, in which block and at what BFT time;
        with --verify, proven without trusting the node. Exit 1 when it is not anchored."""
        digest = hex_text(host, digest, "DIGEST", say_bytes=True)
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
