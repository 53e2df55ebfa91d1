"""``medledger identity org|member|patient ...``: organisations, their members, patients.

An organisation's admin registers, suspends and rotates its members, signing with its key
in the node's home (``--as``, by default the key named after the organisation); a patient
registers themselves with their own keystore (``medledger keys new --out FILE``). Reads
take ``--verify`` to check the node's answer against the trusted validators. Built on the
command line's :class:`~medledger.apps.host.CommandHost`.
"""

# No `from __future__ import annotations`: the commands are closures over ``host`` and
# Typer reads their annotations as objects.

from pathlib import Path
from typing import Annotated, Any

import typer

from medledger.apps.base import Rejected
from medledger.apps.body import decode_body
from medledger.apps.host import CommandHost
from medledger.apps.identity import (
    _ORG_ID,
    MEMBER_ROLES,
    MEMBERS,
    NODE_ADD,
    PATIENT,
    REGISTER,
    ROTATE,
    SUSPEND,
    IdentityApp,
    NodeBody,
    PatientBody,
    RegisterBody,
    RotateBody,
    SuspendBody,
    key_key,
    org_key,
    patient_key,
    pseudonym_of,
)
from medledger.apps.options import (
    MAX_PAGE,
    NODE_HOME,
    ApiOpt,
    GenesisOpt,
    JsonOpt,
    LimitOpt,
    ReadHomeOpt,
    VerifyOpt,
    committed,
    entry,
    hex_text,
    more,
    show_page,
    write_home_option,
)
from medledger.crypto import DEFAULT_SUITE, SUITES

__all__ = ["commands"]

_OPTION_OF_FIELD = {"org": "--org", "key": "--public-key", "new_key": "--new-key",
                    "role": "--role", "name": "--name", "enc_key": "--enc-key",
                    "enc_suite": "--enc-suite"}

# options ------------------------------------------------------------------------------------
WriteHomeOpt = write_home_option(
    "The node's home directory: its keys/ folder holds the signing key, its config names the "
    "API (unless --api).")
PatientHomeOpt = write_home_option(
    "A node's home directory, whose config names the API (unless --api).")
OrgArg = Annotated[str, typer.Argument(help="The organisation's id, such as st-mary.")]
OrgOpt = Annotated[str, typer.Option("--org", help="The organisation's id, such as st-mary.")]
MaybeOrgOpt = Annotated[str | None, typer.Option(
    "--org", help="The member's organisation (default: the one the key is registered "
                  "with).")]
AsOpt = Annotated[str | None, typer.Option(
    "--as", help="The admin key that signs: a key name from the home's keys/ folder, or a "
                 "keystore path (default: the key named after the organisation, or the "
                 "home's only key).")]
KeyArg = Annotated[str, typer.Argument(help="The member's signing key, as 64 hex characters.")]
KeyFileOpt = Annotated[Path | None, typer.Option(
    "--key-file", help="The member's keystore (from `medledger keys new`): its signing and "
                       "encryption keys are registered; opened with MEDLEDGER_PASSPHRASE "
                       "or a prompt.")]
EncKeyOpt = Annotated[str | None, typer.Option(
    "--enc-key", help="With a key in hex: the member's encryption public key, in hex.")]
EncSuiteOpt = Annotated[str, typer.Option(
    "--enc-suite", help=f"With --enc-key: its HPKE suite, one of {', '.join(SUITES)}.")]


# checks of input ------------------------------------------------------------------------------
def _org(host: CommandHost, text: str) -> str:
    if not _ORG_ID.fullmatch(text):
        host.fail(f"organisation id {text!r}: use 2-63 of a-z 0-9 - (starting with a letter "
                  "or digit)")
    return text


def _body(host: CommandHost, cls: type, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` checked as the app will check it, its refusal named by the option."""
    try:
        decode_body(cls, body)
    except Rejected as e:
        field, _, rest = e.message.partition(" ")
        host.fail(f"{_OPTION_OF_FIELD.get(field, field)} {rest}".strip())
    return body


def _new_keys(host: CommandHost, key_file: Path | None, public_key: str | None,
              enc_key: str | None, enc_suite: str, key_option: str) -> tuple[str, str, str]:
    """(signing key, encryption key, suite) in hex: from a keystore, or as given."""
    if (key_file is None) == (public_key is None):
        host.fail(f"give the member's keys as --key-file KEYSTORE or as {key_option} HEX "
                  "--enc-key HEX (one of the two)")
    if key_file is not None:
        if enc_key is not None:
            host.fail("--enc-key comes from --key-file's keystore: give one or the other")
        keys = host.keystore(key_file)
        return (keys.signing.public_key.hex(), keys.encryption.public_bytes().hex(),
                keys.encryption.suite)
    if enc_key is None:
        host.fail(f"{key_option} needs --enc-key HEX (and --enc-suite)")
    return hex_text(host, public_key or "", key_option), enc_key.lower(), enc_suite


def commands(host: CommandHost) -> typer.Typer:
    """The ``identity`` command group over ``host``."""
    group = typer.Typer(no_args_is_help=True, help=IdentityApp.summary)
    orgs = typer.Typer(no_args_is_help=True, help="List and show organisations.")
    members = typer.Typer(no_args_is_help=True, help="Register, suspend, rotate, list and "
                                                     "show an organisation's members.")
    patients = typer.Typer(no_args_is_help=True, help="Register and show patients.")
    group.add_typer(orgs, name="org")
    group.add_typer(members, name="member")
    group.add_typer(patients, name="patient")
    nodes = typer.Typer(no_args_is_help=True, help="Add the nodes an organisation runs.")
    group.add_typer(nodes, name="node")

    # organisations ----------------------------------------------------------------------
    @orgs.command("list")
    def org_list(
        after: Annotated[str | None, typer.Option(
            "--after", help="List the organisations whose id comes after this one (the "
                            "`next` of the previous page).")] = None,
        limit: LimitOpt = 20,
        home: ReadHomeOpt = None,
        api: ApiOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List organisations in id order: genesis's and those governance admitted."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = _org(host, after)
        with host.client(home, api) as client:
            page = client.get("/v1/identity/orgs", params)
        show_page(host, page, "orgs", as_json=as_json, title="organisations")

    @orgs.command("show")
    def org_show(org: OrgArg, verify: VerifyOpt = False, home: ReadHomeOpt = None,
                 genesis: GenesisOpt = None, api: ApiOpt = None,
                 as_json: JsonOpt = False) -> None:
        """Show an organisation: name, role, status; with --verify, proven without
        trusting the node."""
        org = _org(host, org)
        value = entry(host, f"/v1/identity/orgs/{org}", org_key(org), verify, home, genesis, api,
                      f"no organisation {org}")
        host.show(value, as_json=as_json, title="organisation")

    # members ----------------------------------------------------------------------------
    @members.command("register")
    def member_register(
        org: OrgOpt,
        role: Annotated[str, typer.Option(
            "--role", help=f"The member's role: {', '.join(MEMBER_ROLES)}.")],
        name: Annotated[str, typer.Option("--name", help="The member's name, as shown.")],
        key_file: KeyFileOpt = None,
        public_key: Annotated[str | None, typer.Option(
            "--public-key", help="Instead of --key-file: the member's signing key, 64 hex "
                                 "characters.")] = None,
        enc_key: EncKeyOpt = None,
        enc_suite: EncSuiteOpt = DEFAULT_SUITE,
        as_: AsOpt = None,
        home: WriteHomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Register a member of ORG with its signing and encryption keys, signed by one of
        ORG's admins; wait for the commit."""
        org = _org(host, org)
        key, enc, suite = _new_keys(host, key_file, public_key, enc_key, enc_suite,
                                    "--public-key")
        body = _body(host, RegisterBody, {"org": org, "key": key, "role": role, "name": name,
                                          "enc_key": enc, "enc_suite": suite})
        signer = host.keys(home, as_, default=org)
        done = host.submit(home, api, signer.signing, REGISTER, body)
        committed(f"registered {role} {key} in {org}", done)

    def member_org(org: str | None, key: str, home: Path | None, api: str | None) -> str:
        """``org``, or the organisation ``key`` is registered with."""
        if org is not None:
            return _org(host, org)
        with host.client(home, api) as client:
            found = client.get(f"/v1/identity/keys/{key}", {"prove": True})["value"]
        if found is None:
            host.fail(f"no registered key {key}")
        if found["org"] is None:
            host.fail(f"key {key} is a patient's, not an organisation member's")
        return str(found["org"])

    @members.command("suspend")
    def member_suspend(key: KeyArg, org: MaybeOrgOpt = None, as_: AsOpt = None,
                       home: WriteHomeOpt = NODE_HOME,
                       api: ApiOpt = None) -> None:
        """Suspend a member's key, signed by one of its organisation's admins: the key can
        no longer sign anything."""
        key = hex_text(host, key, "KEY")
        org_id = member_org(org, key, home, api)
        body = _body(host, SuspendBody, {"org": org_id, "key": key})
        signer = host.keys(home, as_, default=org_id)
        done = host.submit(home, api, signer.signing, SUSPEND, body)
        committed(f"suspended {key} of {org_id}", done)

    @members.command("rotate")
    def member_rotate(
        key: KeyArg,
        key_file: Annotated[Path | None, typer.Option(
            "--key-file", help="The member's new keystore (from `medledger keys new`); "
                               "opened with MEDLEDGER_PASSPHRASE or a prompt.")] = None,
        new_key: Annotated[str | None, typer.Option(
            "--new-key", help="Instead of --key-file: the new signing key, 64 hex "
                              "characters.")] = None,
        enc_key: EncKeyOpt = None,
        enc_suite: EncSuiteOpt = DEFAULT_SUITE,
        org: MaybeOrgOpt = None,
        as_: Annotated[str | None, typer.Option(
            "--as", help="Who signs: an admin's key name in the home's keys/ folder, or a "
                         "keystore path (the member's own old keystore may sign too; "
                         "default: the key named after the organisation, or the home's "
                         "only key).")] = None,
        home: WriteHomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Replace a member's key with a new one (same organisation, role and name): the
        old key can no longer sign."""
        key = hex_text(host, key, "KEY")
        new, enc, suite = _new_keys(host, key_file, new_key, enc_key, enc_suite, "--new-key")
        org_id = member_org(org, key, home, api)
        body = _body(host, RotateBody, {"org": org_id, "key": key, "new_key": new,
                                        "enc_key": enc, "enc_suite": suite})
        signer = host.keys(home, as_, default=org_id)
        done = host.submit(home, api, signer.signing, ROTATE, body)
        committed(f"rotated {key} of {org_id} to {new}", done)

    @members.command("list")
    def member_list(
        org: OrgOpt,
        start: Annotated[int, typer.Option(
            "--start", min=1, help="List from the START-th key, in the order registered.")
        ] = 1,
        limit: LimitOpt = MAX_PAGE,
        verify: VerifyOpt = False,
        home: ReadHomeOpt = None,
        genesis: GenesisOpt = None,
        api: ApiOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List the keys ORG registered, its admins first, in order; with --verify, proven
        complete (no key left out, added or changed) without trusting the node."""
        org = _org(host, org)
        params: dict[str, Any] = {"start": start, "limit": limit, "prove": verify}
        with host.client(home, api) as client:
            answer = client.get(f"/v1/identity/orgs/{org}/members", params)
            if verify:
                keys = host.verify_list(answer, home, genesis, client, MEMBERS, org, start,
                                        limit)
            else:
                keys = [item["value"] for item in answer["items"]]
        rows = [{"seq": start + i, "key": k} for i, k in enumerate(keys)]
        if as_json:
            host.show({"org": org, "count": answer["count"], "start": start, "members": rows},
                      as_json=True)
            return
        host.show(rows, as_json=False, title=f"members of {org} ({answer['count']} in all)")
        if start + len(rows) <= answer["count"]:
            more("--start", start + len(rows))

    @members.command("show")
    def member_show(
        key: Annotated[str, typer.Argument(
            help="A registered signing key (a member's, an admin's or a patient's), as 64 "
                 "hex characters.")],
        verify: VerifyOpt = False,
        home: ReadHomeOpt = None,
        genesis: GenesisOpt = None,
        api: ApiOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Show whose key it is (organisation, role, name), whether it may sign (status),
        its encryption key and the key that replaced it; with --verify, proven."""
        key = hex_text(host, key, "KEY")
        value = entry(host, f"/v1/identity/keys/{key}", key_key(key), verify, home, genesis, api,
                      f"no registered key {key}")
        host.show({"key": key, **value}, as_json=as_json, title="key")

    # nodes ------------------------------------------------------------------------------
    @nodes.command("add")
    def node_add(node_id: Annotated[str, typer.Argument(
                     help="The node's CometBFT node ID (40 hex characters: `cometbft "
                          "show-node-id --home HOME/cometbft` on that node).")],
                 org: OrgOpt, as_: AsOpt = None, home: WriteHomeOpt = NODE_HOME,
                 api: ApiOpt = None) -> None:
        """Add a node ORG runs, signed by one of its admins: the members' nodes then
        accept it as a peer (only nodes that genesis or an admin lists may connect)."""
        org = _org(host, org)
        body = _body(host, NodeBody, {"org": org, "node_id": node_id.lower()})
        signer = host.keys(home, as_, default=org)
        done = host.submit(home, api, signer.signing, NODE_ADD, body)
        committed(f"added node {body['node_id']} of {org}", done)

    # patients ---------------------------------------------------------------------------
    @patients.command("register")
    def patient_register(
        key_file: Annotated[Path, typer.Option(
            "--key-file", help="The patient's keystore (from `medledger keys new --out "
                               "FILE`), opened with MEDLEDGER_PASSPHRASE or a prompt; its "
                               "signing key signs.")],
        home: PatientHomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Register the keystore's owner as a patient, under the pseudonym of their
        signing key; print the pseudonym."""
        keys = host.keystore(key_file)
        body = _body(host, PatientBody, {"enc_key": keys.encryption.public_bytes().hex(),
                                         "enc_suite": keys.encryption.suite})
        done = host.submit(home, api, keys.signing, PATIENT, body)
        committed(f"registered patient {pseudonym_of(keys.signing.public_key)}", done)
        host.progress("next: `medledger records emergency-key`, so that hospitals can open "
                      "the records in an emergency, and `medledger guardians set`, so that "
                      "a lost keystore can be recovered")

    @patients.command("show")
    def patient_show(
        pseudonym: Annotated[str, typer.Argument(
            help="The patient's pseudonym, 32 hex characters.")],
        verify: VerifyOpt = False,
        home: ReadHomeOpt = None,
        genesis: GenesisOpt = None,
        api: ApiOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Show a patient's signing key, encryption key and registration height; with
        --verify, proven without trusting the node."""
        pseudonym = hex_text(host, pseudonym, "PSEUDONYM", 16)
        value = entry(host, f"/v1/identity/patients/{pseudonym}", patient_key(pseudonym), verify,
                      home, genesis, api, f"no patient {pseudonym}")
        host.show({"pseudonym": pseudonym, **value}, as_json=as_json, title="patient")

    return group
