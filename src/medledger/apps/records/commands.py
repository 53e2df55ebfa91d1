"""``medledger records ...``: a patient's encrypted medical records from the command line.

A clinician adds records (``add``, ``import``): the FHIR content is validated, split by
category, sealed on this machine for the patient, the author, the grantees of the category
and the patient's delegates, uploaded to the blob store as ciphertext, and recorded on the
ledger. The patient grants, revokes and erases with their own keystore (``--key FILE``);
``grant`` re-wraps the covered records' content keys for the grantee on the patient's
machine. A reader's ``read`` puts the read on the patient's access log before any node
serves the ciphertext. ``timeline`` and ``export`` decrypt the patient's records on the
patient's machine. ``guardians set|recover`` split the patient's keystore among guardians.
``emergency-key`` splits a patient's emergency key among hospitals; ``release`` gives an
emergency clinician a hospital's share; ``read --basis emergency:<id>`` opens a record with
the released shares.

Content is printed or written only where asked (stdout, ``--out``); errors name the FHIR
path that fails and never a value. Built on the :class:`~medledger.apps.host.CommandHost`.
"""

# No `from __future__ import annotations`: the commands are closures over ``host`` and
# Typer reads their annotations as objects.

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from medledger.apps.host import CommandHost
from medledger.apps.options import (
    MAX_PAGE,
    NODE_HOME,
    ApiOpt,
    GenesisOpt,
    JsonOpt,
    ReadHomeOpt,
    VerifyOpt,
    entry,
    hex_text,
)
from medledger.apps.records.access import AccessBody, EmergencyBody, JustifyBody
from medledger.apps.records.bundles import Part, join_records, timeline_rows
from medledger.apps.records.consent import GrantBody, RevokeBody
from medledger.apps.records.content import EraseBody
from medledger.apps.records.emergency_commands import emergency_commands
from medledger.apps.records.flows import Node
from medledger.apps.records.guardian_commands import guardian_commands, rotate_command
from medledger.apps.records.inputs import (
    HomeOpt,
    KeyOpt,
    OutOpt,
    PatientOpt,
    RecordArg,
    categories_text,
    grantee_text,
    id_list,
    parts_of,
    pretty,
    pseudonym_text,
    say,
    utc,
    write_private,
)
from medledger.apps.records.state import (
    ACCESS_LOG,
    BREAK_GLASS_REASONS,
    BY_PATIENT,
    CATEGORIES,
    record_key,
)
from medledger.standards.fhir import canonical_bytes

__all__ = ["commands"]

DAY_MS = 86_400_000
MAX_GRANT_KEYS = 64  # what records.grant takes (GrantBody.keys)


def commands(host: CommandHost) -> typer.Typer:
    """The ``records`` command group over ``host``."""
    group = typer.Typer(no_args_is_help=True, help=__doc__.split("\n\n")[0])
    guardians = typer.Typer(no_args_is_help=True, help=(
        "Split a patient's keystore among guardians (k of n) and recover it. The shares "
        "are files the patient hands to each guardian; nothing goes on the ledger."))
    group.add_typer(guardians, name="guardians")
    _content_commands(group, host)
    _consent_commands(group, host)
    _read_commands(group, host)
    _list_commands(group, host)
    emergency_commands(group, host)
    guardian_commands(guardians, host)
    rotate_command(group, host)
    return group


# records.add, import, erase ---------------------------------------------------------------
def _added(done: list[tuple[Part, dict[str, Any]]]) -> None:
    for part, answer in done:
        say(f"added record {answer['tx_id']} ({part.category}, {part.resources} "
             f"resource{'s' if part.resources != 1 else ''}) in block {answer['height']}")


def _content_commands(group: typer.Typer, host: CommandHost) -> None:
    @group.command("add")
    def add(
        file: Annotated[Path, typer.Argument(
            help="A FHIR R4 resource or Bundle, as JSON. A Bundle with entries of several "
                 "categories becomes one record per category.")],
        patient: PatientOpt,
        previous: Annotated[str | None, typer.Option(
            "--previous", help="The record this one amends (its id); the file must then "
                               "make one record.")] = None,
        key: KeyOpt = None,
        home: HomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Add a patient's record, signed by a clinician (--key): validate the FHIR, seal it
        here for the patient, the author, the category's grantees and the patient's
        delegates, upload the ciphertext, record it; print each record's id."""
        pseudonym = pseudonym_text(host, patient)
        if previous is not None:
            previous = hex_text(host, previous, "--previous")
        parts = parts_of(host, file)
        if previous is not None and len(parts) != 1:
            host.fail(f"--previous amends one record, but {file} makes {len(parts)} (one "
                      "per category)")
        keys = host.keys(home, key)
        _added(Node(host, home, api).add(keys, pseudonym, parts, previous))

    @group.command("import")
    def import_(
        bundle: Annotated[Path, typer.Argument(
            help="A FHIR R4 Bundle, as JSON (a visit, a patient summary, an export).")],
        patient: PatientOpt,
        key: KeyOpt = None,
        home: HomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Import a Bundle as the patient's records, signed by a clinician (--key): one
        record per category, each sealed, uploaded and recorded in turn, with progress."""
        pseudonym = pseudonym_text(host, patient)
        parts = parts_of(host, bundle, bundle_only=True)
        keys = host.keys(home, key)
        total = sum(p.resources for p in parts)
        host.progress(f"importing {total} resources as {len(parts)} records")
        done = Node(host, home, api).add(keys, pseudonym, parts, None)
        _added(done)
        say(f"imported {total} resources of {bundle} as {len(done)} records")

    @group.command("erase")
    def erase(record: RecordArg, key: KeyOpt = None, home: HomeOpt = NODE_HOME,
              api: ApiOpt = None) -> None:
        """Erase a record's content, signed by the patient (--key): nodes drop the
        ciphertext and serve it to nobody; its metadata stays on the ledger."""
        node = Node(host, home, api)
        body = node.checked(EraseBody, {"record": hex_text(host, record, "RECORD")})
        done = host.submit(home, api, host.keys(home, key).signing, "records.erase", body)
        say(f"erased record {body['record']} in block {done['height']}")


# consent --------------------------------------------------------------------------------------
def _grant_keys(host: CommandHost, node: Node, keys: Any, records: list[dict[str, Any]],
                grantees: dict[str, tuple[bytes, str]]) -> list[dict[str, str]]:
    """The covered records' content keys, unwrapped with the signer's key and wrapped for
    each grantee key."""
    signer = keys.signing.public_key.hex()
    out: list[dict[str, str]] = []
    with host.client(node.home, node.api) as client:
        wrapped = {m["id"]: node.wrapped_key(client, m["id"], signer) for m in records}
    for meta in records:
        if wrapped[meta["id"]] is None:
            host.progress(f"record {meta['id']}: no content key for {signer}; not given")
            continue
        try:
            content_key = host.sealing.unwrap(wrapped[meta["id"]], meta["digest"],
                                              keys.encryption)
            out += [{"record": meta["id"], "reader": reader,
                     "wrapped": host.sealing.wrap_for(content_key, meta["digest"], pub, suite)}
                    for reader, (pub, suite) in sorted(grantees.items())]
        except ValueError as e:
            host.fail(str(e))
    return out


def _consent_commands(group: typer.Typer, host: CommandHost) -> None:
    @group.command("grant")
    def grant(
        patient: PatientOpt,
        to: Annotated[str, typer.Option(
            "--to", help="Who may read: a member's key (64 hex) or org:<organisation id> "
                         "(every active member of it).")],
        categories: Annotated[str, typer.Option(
            "--categories", help=f"Comma-separated categories: {', '.join(CATEGORIES)}.")],
        days: Annotated[int, typer.Option(
            "--days", min=1, max=3650, help="How long, in days of block time.")],
        purpose: Annotated[str, typer.Option(
            "--purpose", help="Why, best a v3 PurposeOfUse code (TREAT); every member sees "
                              "it, so no clinical detail (at most 64 characters).")],
        key: KeyOpt = None,
        home: HomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Let a member or an organisation read the patient's records of some categories,
        signed by the patient (--key): the content keys of the covered records are
        unwrapped here with the patient's key and wrapped for the grantee."""
        pseudonym, grantee = pseudonym_text(host, patient), grantee_text(host, to)
        cats = categories_text(host, categories)
        node, keys = Node(host, home, api), host.keys(home, key)
        with host.client(home, api) as client:
            node.patient(client, pseudonym)
            expires = node.now(client) + days * DAY_MS
            readers = node.grantee_readers(client, grantee)
            covered = [m for m in node.current_records(client, pseudonym)
                       if m["category"] in cats]
        if not readers:
            host.fail(f"{grantee} has no active member with an encryption key")
        wrapped = _grant_keys(host, node, keys, covered, readers)
        if len(wrapped) > MAX_GRANT_KEYS:
            host.fail(f"this grant needs {len(wrapped)} wrapped keys; one grant takes at most "
                      f"{MAX_GRANT_KEYS} (grant fewer categories, or a key rather than an "
                      "organisation)")
        body = node.checked(GrantBody, {"patient": pseudonym, "grantee": grantee,
                                        "categories": cats, "purpose": purpose,
                                        "expires": expires, "keys": wrapped})
        done = host.submit(home, api, keys.signing, "records.grant", body)
        say(f"granted {done['tx_id']} to {grantee} ({', '.join(cats)}, until "
             f"{utc(expires)} block time; {len(covered)} records) in block {done['height']}")

    @group.command("revoke")
    def revoke(grant_id: Annotated[str, typer.Argument(help="The grant's id (64 hex).")],
               key: KeyOpt = None, home: HomeOpt = NODE_HOME, api: ApiOpt = None) -> None:
        """End a grant now, signed by the patient or a delegate (--key): from the next
        block its grantee's reads are refused."""
        node = Node(host, home, api)
        body = node.checked(RevokeBody, {"grant": hex_text(host, grant_id, "GRANT")})
        done = host.submit(home, api, host.keys(home, key).signing, "records.revoke", body)
        say(f"revoked grant {body['grant']} in block {done['height']}")

    @group.command("emergency")
    def emergency(
        patient: PatientOpt,
        reason: Annotated[str, typer.Option(
            "--reason", help=f"A break-glass reason: {', '.join(BREAK_GLASS_REASONS)} (HL7 "
                             "v3 ActReason).")],
        records: Annotated[list[str], typer.Option(
            "--records", help="The records needed (ids; repeat it or separate with commas; "
                              "at most 32).")],
        key: KeyOpt = None,
        home: HomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Break the glass on a patient's records, signed by an emergency clinician
        (--key): the read goes on the patient's access log at once, and a justification
        falls due within 72 hours of block time; print the emergency's id."""
        node = Node(host, home, api)
        if reason not in BREAK_GLASS_REASONS:
            host.fail(f"--reason must be one of {', '.join(BREAK_GLASS_REASONS)}")
        body = node.checked(EmergencyBody, {"patient": pseudonym_text(host, patient),
                                            "reason": reason,
                                            "records": id_list(host, records, "--records")})
        done = host.submit(home, api, host.keys(home, key).signing, "records.emergency", body)
        say(f"emergency {done['tx_id']} on {len(body['records'])} records of "
             f"{body['patient']} in block {done['height']}")

    @group.command("justify")
    def justify(
        emergency_id: Annotated[str, typer.Argument(help="The emergency's id (64 hex).")],
        text: Annotated[str, typer.Option(
            "--text", help="The justification: a case reference or a short statement, never "
                           "clinical detail (every member reads it; at most 500 "
                           "characters).")],
        key: KeyOpt = None,
        home: HomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Justify an emergency access, signed by a member of the organisation that broke
        the glass (--key)."""
        node = Node(host, home, api)
        body = node.checked(JustifyBody, {"emergency": hex_text(host, emergency_id,
                                                                "EMERGENCY"), "text": text})
        done = host.submit(home, api, host.keys(home, key).signing, "records.justify", body)
        say(f"justified emergency {body['emergency']} in block {done['height']}")


# reading content ------------------------------------------------------------------------------
def _basis(host: CommandHost, node: Node, meta: dict[str, Any], reader: str,
           entry_: dict[str, Any] | None) -> str:
    """A grant of the patient's that covers ``meta`` for ``reader`` now."""
    grantees = {reader} | ({f"org:{entry_['org']}"} if entry_ and entry_.get("org") else set())
    with host.client(node.home, node.api) as client:
        grants = node.active_grants(client, meta["patient"], node.now(client))
    for grant in reversed(grants):
        if grant["grantee"] in grantees and meta["category"] in grant["categories"]:
            return f"grant:{grant['id']}"
    host.fail(f"no active grant of the patient covers this {meta['category']} record for key "
              f"{reader}: ask the patient for one, or give --basis emergency:<id>")


def _emit(host: CommandHost, content: bytes, out: Path | None, what: str) -> None:
    if out is None:
        typer.echo(pretty(content).decode(), nl=False)
        return
    write_private(host, out, pretty(content))
    host.progress(f"wrote {what} to {out}")


def _patient_keys(host: CommandHost, node: Node, pseudonym: str, key: str | None) -> Any:
    keys = host.keys(node.home or NODE_HOME, key)  # --home defaults to NODE_HOME
    with host.client(node.home, node.api) as client:
        patient = node.patient(client, pseudonym)
    if patient["key"] != keys.signing.public_key.hex():
        host.fail(f"--key is not patient {pseudonym}'s keystore: their records are opened "
                  "with it")
    return keys


def _open_all(host: CommandHost, node: Node, keys: Any, pseudonym: str
              ) -> list[tuple[dict[str, Any], bytes]]:
    with host.client(node.home, node.api) as client:
        metas = node.current_records(client, pseudonym)
    opened = []
    for i, meta in enumerate(metas, 1):
        if len(metas) > 1:
            host.progress(f"[{i}/{len(metas)}] opening the {meta['category']} record "
                          f"{meta['id'][:16]}")
        opened.append((meta, node.open(keys, meta)))
    return opened


def _read_commands(group: typer.Typer, host: CommandHost) -> None:
    @group.command("read")
    def read(
        record: RecordArg,
        basis: Annotated[str | None, typer.Option(
            "--basis", help="grant:<id> or emergency:<id> (default: an active grant of the "
                            "patient's that covers the record for you). On an emergency, "
                            "without a key of your own, the content key comes from the "
                            "patient's emergency key, recovered from the shares the "
                            "hospitals released to you.")] = None,
        out: OutOpt = None,
        key: KeyOpt = None,
        home: HomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Read a record: unless you are its patient or author, commit the read on the
        patient's access log first (records.access), then fetch the ciphertext, unwrap its
        key with --key and decrypt it here; print the FHIR JSON or write it to --out."""
        node, keys = Node(host, home, api), host.keys(home, key)
        reader = keys.signing.public_key.hex()
        with host.client(home, api) as client:
            meta = node.record(client, hex_text(host, record, "RECORD"))
            who = node.key_entry(client, reader)
        own = reader == meta["author"] or (who is not None and who["kind"] == "patient"
                                           and who.get("pseudonym") == meta["patient"])
        material, emergency_id = None, ""
        if not own and meta["erased"] is None:
            chosen = basis or _basis(host, node, meta, reader, who)
            body = node.checked(AccessBody, {"records": [meta["id"]], "basis": chosen})
            if chosen.startswith("emergency:"):  # no key of our own: the released shares
                with host.client(home, api) as client:
                    if node.wrapped_key(client, meta["id"], reader) is None:
                        emergency_id = chosen.removeprefix("emergency:")
                        material = node.emergency_material(client, meta, reader, emergency_id)
            done = host.submit(home, api, keys.signing, "records.access", body)
            host.progress(f"read logged on {chosen} in block {done['height']}")
        content = (node.open(keys, meta) if material is None else
                   node.open_emergency(keys, meta, emergency_id, material))
        _emit(host, content, out, f"record {meta['id']}")

    @group.command("timeline")
    def timeline(patient: PatientOpt, key: KeyOpt = None, home: HomeOpt = NODE_HOME,
                 api: ApiOpt = None, as_json: JsonOpt = False) -> None:
        """The patient's records by date, decrypted here with the patient's keystore
        (--key): each resource's date, category, what it is, and its status (an
        Appointment's, a CarePlan's activities done)."""
        pseudonym = pseudonym_text(host, patient)
        node = Node(host, home, api)
        keys = _patient_keys(host, node, pseudonym, key)
        try:
            rows = timeline_rows(_open_all(host, node, keys, pseudonym))
        except ValueError as e:
            host.fail(f"a record does not read as FHIR: {e}")
        host.show(rows, as_json=as_json, title="records")

    @group.command("export")
    def export(
        patient: PatientOpt,
        out: Annotated[Path, typer.Option(
            "--out", help="The Bundle file to write (readable by you only).")],
        key: KeyOpt = None,
        home: HomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Export the patient's current records as one FHIR Bundle, decrypted here with the
        patient's keystore (--key): an imported Bundle comes back resource for resource,
        in its order."""
        pseudonym = pseudonym_text(host, patient)
        node = Node(host, home, api)
        keys = _patient_keys(host, node, pseudonym, key)
        opened = _open_all(host, node, keys, pseudonym)
        try:
            bundle = join_records(content for _, content in opened)
        except ValueError as e:
            host.fail(f"the records do not join into a Bundle: {e}")
        write_private(host, out, pretty(canonical_bytes(bundle)))
        say(f"exported {len(bundle.entry or ())} resources from {len(opened)} records "
             f"to {out}")


# metadata and lists ---------------------------------------------------------------------------
def _row(meta: dict[str, Any]) -> dict[str, Any]:
    return {"id": meta["id"], "category": meta["category"], "time": meta["time"],
            "org": meta["org"], "size": meta["size"], "previous": meta["previous"],
            "amended_by": meta["amended_by"],
            "erased": None if meta["erased"] is None else "erased"}


def _proven_list(host: CommandHost, path: str, lst: Any, owner: str, verify: bool,
                 home: Path | None, genesis: Path | None, api: str | None) -> list[Any]:
    items: list[Any] = []
    with host.client(home, api) as client:
        while True:
            start = len(items) + 1
            answer = client.get(path, {"start": start, "limit": MAX_PAGE, "prove": verify})
            page = (host.verify_list(answer, home, genesis, client, lst, owner, start,
                                     MAX_PAGE) if verify
                    else [item["value"] for item in answer["items"]])
            items += page
            if not page or len(items) >= answer["count"]:
                return items


def _list_commands(group: typer.Typer, host: CommandHost) -> None:
    @group.command("show")
    def show(
        record: RecordArg,
        out: Annotated[Path | None, typer.Option(
            "--out", help="Also write the metadata as JSON to this file.")] = None,
        verify: VerifyOpt = False,
        home: ReadHomeOpt = None,
        genesis: GenesisOpt = None,
        api: ApiOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Show a record's metadata (never its content): patient, category, digest, size,
        author, organisation, time, versions, readers, erasure; with --verify, proven."""
        record = hex_text(host, record, "RECORD")
        meta = entry(host, f"/v1/records/records/{record}", record_key(record), verify, home,
                     genesis, api, f"no record {record}")
        if out is not None:
            write_private(host, out, json.dumps(meta, indent=2, sort_keys=True).encode())
        host.show(meta, as_json=as_json, title="record")

    @group.command("list")
    def list_(patient: PatientOpt, verify: VerifyOpt = False, home: ReadHomeOpt = None,
              genesis: GenesisOpt = None, api: ApiOpt = None, as_json: JsonOpt = False) -> None:
        """List the patient's records in the order they were added; with --verify, the
        whole list is proven (none left out, added or reordered)."""
        pseudonym = pseudonym_text(host, patient)
        ids = _proven_list(host, f"/v1/records/patients/{pseudonym}/records", BY_PATIENT,
                           pseudonym, verify, home, genesis, api)
        node = Node(host, home, api)
        with host.client(home, api) as client:
            rows = [_row(node.record(client, rid)) for rid in ids]
        host.show(rows, as_json=as_json, title=f"records of {pseudonym}")

    @group.command("access-log")
    def access_log(patient: PatientOpt, verify: VerifyOpt = False, home: ReadHomeOpt = None,
                   genesis: GenesisOpt = None, api: ApiOpt = None,
                   as_json: JsonOpt = False) -> None:
        """Every read of the patient's records (reader, organisation, records, basis, block
        time); with --verify, the whole log is proven (no read left out)."""
        pseudonym = pseudonym_text(host, patient)
        rows = _proven_list(host, f"/v1/records/patients/{pseudonym}/access", ACCESS_LOG,
                            pseudonym, verify, home, genesis, api)
        host.show(rows, as_json=as_json, title=f"access log of {pseudonym}")
