"""``medledger records guardians set|recover``: a patient's keystore split among
guardians as share files (:mod:`medledger.apps.records.guardians`), and recovered; and
``medledger records rotate``: the recovered patient moves to new keys, and their records'
content keys are re-wrapped for them (:mod:`medledger.apps.records.rotation`)."""

# No `from __future__ import annotations`: Typer reads the commands' annotations as objects.

from pathlib import Path
from typing import Annotated

import typer

from medledger.apps.host import CommandHost
from medledger.apps.identity import PATIENT_ROTATE, PatientRotateBody
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
from medledger.apps.records.rotation import MAX_REWRAP, RewrapBody
from medledger.crypto import Keystore

__all__ = ["guardian_commands", "rotate_command"]


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
            pseudonym = node.patient_keystore(client, keys, None, "splits their keys")
            recipients = {k: v for g in wanted
                          for k, v in node.encryption_of(client, g, "guardian").items()}
        try:
            files = shares.split(host.sealing, keys, pseudonym, recipients, threshold)
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
        say(f"recovered the keys of patient {files[0].patient} into {out}; move to new keys "
            f"with `medledger records rotate --key {out} --new-key NEW`, since whoever holds "
            "the lost keystore holds these keys too")


def rotate_command(group: typer.Typer, host: CommandHost) -> None:
    @group.command("rotate")
    def rotate(
        new_key: Annotated[Path, typer.Option(
            "--new-key", help="The patient's new keystore (from `medledger keys new --out "
                              "FILE`), opened with MEDLEDGER_PASSPHRASE or a prompt.")],
        key: KeyOpt = None,
        home: HomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Move a patient from their keys (--key, say those `guardians recover` wrote) to
        the keystore --new-key: the old key can no longer sign, the pseudonym stays, and
        every live record's content key is re-wrapped for the new keys, 64 in a
        transaction. Run it again to finish one that was interrupted."""
        old, new, node = host.keys(home, key), host.keystore(new_key), Node(host, home, api)
        pseudonym = _rotated(host, node, old, new)
        with host.client(home, api) as client:
            metas = [node.record(client, rid) for rid in node.record_ids(client, pseudonym)]
            todo = [m for m in metas if m["erased"] is None and node.wrapped_key(
                client, m["id"], new.signing.public_key.hex()) is None]
        rewrapped = node.rewrapped(old, todo, new.encryption.public_bytes(),
                                   new.encryption.suite)
        for start in range(0, len(rewrapped), MAX_REWRAP):
            page = rewrapped[start:start + MAX_REWRAP]
            host.progress(f"re-wrapping records {start + 1}-{start + len(page)} of "
                          f"{len(rewrapped)}")
            body = node.checked(RewrapBody, {"patient": pseudonym, "keys": page})
            host.submit(home, api, new.signing, "records.rewrap", body)
        lost = len(todo) - len(rewrapped)
        say(f"patient {pseudonym} now signs with {new.signing.public_key.hex()}; "
            f"{len(rewrapped)} records re-wrapped for the new keys"
            + (f" ({lost} had no content key for the old keys)" if lost else "")
            + "; the guardians' share files hold the old keys: split the new ones with "
              "`medledger records guardians set`")


def _rotated(host: CommandHost, node: Node, old: Keystore, new: Keystore) -> str:
    """Commit ``identity.patient.rotate`` from ``old`` to ``new`` unless it is already
    done; the patient's pseudonym."""
    old_hex, new_hex = old.signing.public_key.hex(), new.signing.public_key.hex()
    with host.client(node.home, node.api) as client:
        entry, taken = node.key_entry(client, old_hex), node.key_entry(client, new_hex)
    if entry is None or entry["kind"] != "patient":
        host.fail("--key is not a registered patient's keystore")
    if entry["status"] == "rotated":
        if entry["replaced_by"] != new_hex:
            host.fail(f"--key was already rotated, to {entry['replaced_by']}: give that "
                      "key's keystore as --key")
        host.progress("the keys were already rotated to --new-key: re-wrapping what is left")
        return str(entry["pseudonym"])
    if entry["status"] != "active":
        host.fail(f"--key is {entry['status']}")
    if taken is not None:
        host.fail("--new-key is already registered: make a new keystore with `medledger "
                  "keys new --out FILE`")
    body = node.checked(PatientRotateBody, {"new_key": new_hex,
                                            "enc_key": new.encryption.public_bytes().hex(),
                                            "enc_suite": new.encryption.suite})
    done = host.submit(node.home, node.api, old.signing, PATIENT_ROTATE, body)
    host.progress(f"rotated patient {entry['pseudonym']}'s keys in block {done['height']}")
    return str(entry["pseudonym"])
