"""What the ``records`` commands share: their option types, the checks of their input
(each refusal one line naming the option), and the writing of what they were asked to
write (readable by its owner only)."""

# No `from __future__ import annotations`: Typer reads the options' annotations as objects.

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from medledger.apps.host import CommandHost
from medledger.apps.options import hex_text, write_home_option
from medledger.apps.records.bundles import Part, record_parts
from medledger.apps.records.state import CATEGORIES
from medledger.standards.fhir import Bundle, validate

__all__ = ["HomeOpt", "KeyOpt", "OutOpt", "PatientOpt", "RecordArg", "categories_text",
           "grantee_text", "id_list", "parts_of", "pretty", "pseudonym_text", "read_input",
           "say", "utc", "write_private"]

# options ------------------------------------------------------------------------------------
HomeOpt = write_home_option(
    "A node's home directory: its config names the API (unless --api), its keys/ folder "
    "holds --key by name.")
KeyOpt = Annotated[str | None, typer.Option(
    "--key", help="Who signs: a key name in --home's keys/ folder, or a keystore file (a "
                  "patient's, a clinician's), opened with MEDLEDGER_PASSPHRASE or a prompt.")]
PatientOpt = Annotated[str, typer.Option(
    "--patient", help="The patient's pseudonym, 32 hex characters (`medledger identity "
                      "patient register` prints it).")]
RecordArg = Annotated[str, typer.Argument(help="The record's id (64 hex characters: the id "
                                               "of the transaction that added it).")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Write the FHIR JSON to this file (readable by you only) instead of "
                  "printing it.")]


# checks of input ------------------------------------------------------------------------------
def pseudonym_text(host: CommandHost, text: str) -> str:
    return hex_text(host, text, "--patient", 16)


def categories_text(host: CommandHost, text: str) -> list[str]:
    cats = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in cats if c not in CATEGORIES]
    if not cats or unknown:
        host.fail(f"--categories: unknown category {unknown[0]!r}; known: "
                  f"{', '.join(CATEGORIES)}" if unknown else
                  "--categories: give one or more, comma-separated")
    if len(set(cats)) != len(cats):
        host.fail("--categories names a category twice")
    return cats


def id_list(host: CommandHost, given: list[str], what: str) -> list[str]:
    ids = [hex_text(host, x.strip(), what) for text in given for x in text.split(",")
           if x.strip()]
    if not ids:
        host.fail(f"give {what} at least once")
    return ids


def grantee_text(host: CommandHost, text: str) -> str:
    if text.startswith("org:"):
        return text
    return hex_text(host, text, "--to")


def read_input(host: CommandHost, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        host.fail(f"cannot read {path}: {e.strerror or e}")


def parts_of(host: CommandHost, path: Path, *, bundle_only: bool = False) -> list[Part]:
    raw = read_input(host, path)
    try:
        if bundle_only and not isinstance(validate(raw), Bundle):
            host.fail(f"{path}: resourceType: expected a Bundle (use `records add` for one "
                      "resource)")
        return record_parts(raw)
    except ValueError as e:  # FhirError: the failing path, never a value
        host.fail(f"{path}: {e}")


def write_private(host: CommandHost, path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable by its owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        host.fail(f"cannot write {path}: {e.strerror or e}")


def pretty(content: bytes) -> bytes:
    return json.dumps(json.loads(content), indent=2, ensure_ascii=False).encode() + b"\n"


def utc(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def say(text: str) -> None:
    typer.echo(text)
