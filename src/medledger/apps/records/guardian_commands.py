"""``medledger records guardians set|recover``: a patient's keystore split among
guardians as share files (:mod:`medledger.apps.records.guardians`), and recovered."""

# No `from __future__ import annotations`: Typer reads the commands' annotations as objects.

from pathlib import Path
from typing import Annotated

import typer

from medledger.apps.host import CommandHost
from medledger.apps.identity import pseudonym_of
from medledger.apps.options import NODE_HOME, ApiOpt
from medledger.apps.records import guardians as shares
from medledger.apps.records.flows import Node
from medledger.apps.records.inputs import (
    HomeOpt,
    KeyOpt,
    id_list,
    read_input,
    say,
    write_private,
)

__all__ = ["guardian_commands"]


def guardian_commands(group: typer.Typer, host: CommandHost) -> None:
    @group.command("set")
    def set_(
        guardian: Annotated[list[str], typer.Option(
            "--guardian", help="A guardian's registered key (64 hex); repeat for each.")],
        threshold: Annotated[int, typer.Option(
            "--threshold", help="How many guardians together recover the keys (2 to their "
                                "number).")],
        out: Annotated[Path, typer.Option(
            "--out", help="A new directory for the share files, one per guardian, each to "
                          "hand to its guardian (only that guardian's key opens it).")],
        key: KeyOpt = None,
        home: HomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Split the patient's keystore (--key) among guardians, THRESHOLD of them needed:
        one share file per guardian, written to --out, for the patient to hand out. Nothing
        goes on the ledger; the guardians' encryption keys come from it."""
        wanted = id_list(host, guardian, "--guardian")
        if len(set(wanted)) != len(wanted):
            host.fail("--guardian names a guardian twice")
        if out.exists():
            host.fail(f"--out {out} exists: give a new directory (nothing was written)")
        keys, node = host.keys(home, key), Node(host, home, api)
        with host.client(home, api) as client:
            recipients = {k: v for g in wanted
                          for k, v in node.encryption_of(client, g, "guardian").items()}
        try:
            files = shares.split(host.sealing, keys, pseudonym_of(keys.signing.public_key),
                                 recipients, threshold)
        except ValueError as e:
            host.fail(str(e))
        out.mkdir(parents=True)
        for share in files:
            write_private(host, out / f"guardian-{share.guardian[:16]}.share.json",
                           share.encode())
        say(f"wrote {len(files)} share files to {out}: hand each to its guardian; any "
             f"{threshold} of them recover the keys (`medledger records guardians recover`)")

    @group.command("recover")
    def recover(
        share_files: Annotated[list[Path], typer.Argument(
            help="Share files from `guardians set`, at least THRESHOLD of them.")],
        guardian_key: Annotated[list[Path], typer.Option(
            "--guardian-key", help="The keystore of a guardian whose file is given (repeat "
                                   "for each), opened with MEDLEDGER_PASSPHRASE or a "
                                   "prompt.")],
        out: Annotated[Path, typer.Option(
            "--out", help="The new keystore file to write the recovered keys to (under a "
                          "new passphrase).")],
    ) -> None:
        """Recover a patient's keystore from their guardians' share files, each opened with
        its guardian's keystore; write it to --out."""
        if out.exists():
            host.fail(f"--out {out} exists: give a new file (nothing was written)")
        try:
            files = [shares.ShareFile.decode(read_input(host, p)) for p in share_files]
        except ValueError as e:
            host.fail(str(e))
        openers = {}
        for path in guardian_key:
            opened = host.keystore(path)
            openers[opened.signing.public_key.hex()] = opened.encryption
        try:
            keys = shares.recover(host.sealing, files, openers)
        except ValueError as e:
            host.fail(str(e))
        host.save_keystore(keys, out)
        say(f"recovered the keys of patient {files[0].patient} into {out}")
