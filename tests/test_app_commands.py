"""The apps' command groups (``medledger anchor|governance|identity ...``) against a real
single-validator demo node process on 127.0.0.1, through typer's CliRunner.

The groups are added to a root command exactly as the ``medledger`` command line adds them
(:func:`medledger.cli.host.add_app_commands` over the registry's apps). One node serves the
whole module; each test uses digests, keys and organisations of its own. A node that lies
is a client whose answers a test edits (``medledger.cli.host.Client`` patched).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

import medledger.cli.host as cli_host
from medledger.apps import default_registry
from medledger.cli.host import CliHost, add_app_commands
from medledger.client import Client
from medledger.crypto import Keystore
from medledger.node import PASSPHRASE_ENV, Home
from medledger.node.engine import EngineHome
from tests.nodeproc import FAST_KDF, NodeProcess, make_home, wait_proven

pytestmark = pytest.mark.processes

PASSPHRASE = "correct horse battery staple"
Answer = dict[str, Any]


def root_command() -> typer.Typer:
    root = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

    @root.callback()
    def main() -> None:
        """medledger (the apps' groups only)."""

    assert add_app_commands(root, default_registry().apps, CliHost()) == [
        "identity", "patient", "anchor", "governance", "records", "guardians", "trace", "drugs"]
    return root


ROOT = root_command()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """A demo home (local, st-mary, northgate, acme-pharma, carewell; each admin key in
    its keys/ folder) whose node runs as a process for the whole module."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv(PASSPHRASE_ENV, PASSPHRASE)
        home = make_home(tmp_path_factory.mktemp("apps") / "node", demo=True)
        proc = NodeProcess(home)
        proc.start()
        try:
            yield home
        finally:
            proc.stop()


@pytest.fixture(autouse=True)
def passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)


def run(runner: CliRunner, *args: str | Path) -> Result:
    """Run a command; after one that committed a transaction, wait until the node's state
    answers are proven at its block (the next command signs with the nonce they give)."""
    words = [str(a) for a in args]
    result = runner.invoke(ROOT, words)
    block = re.search(r'in block (\d+)|"(?:height|approved_in)": (\d+)', flat(result.stdout))
    if result.exit_code == 0 and block is not None and "--home" in words:
        home = Home(words[words.index("--home") + 1])
        wait_proven(f"http://{home.config().api}", int(block[1] or block[2]))
    return result


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def refused_plainly(result: Result, says: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert says in flat(result.output), result.output


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def new_keystore(path: Path, suite: str = "x25519") -> Keystore:
    keys = Keystore.generate(suite)
    keys.save(path, PASSPHRASE, kdf_params=FAST_KDF)
    return keys


def committed(result: Result) -> tuple[int, str]:
    match = re.search(r"in block (\d+): tx ([0-9a-f]{64})", flat(result.stdout))
    assert match is not None, result.output
    return int(match[1]), match[2]


# help and input -------------------------------------------------------------------------------
def command_paths() -> list[tuple[str, ...]]:
    def walk(command: Any, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield prefix
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, (*prefix, name))
    return list(walk(typer.main.get_command(ROOT), ()))[1:]


def test_the_groups_hold_the_promised_commands() -> None:
    assert {" ".join(p) for p in command_paths()} >= {
        "anchor add", "anchor show",
        "governance identity", "governance propose", "governance approve", "governance show",
        "governance proposals", "governance evidence",
        "identity org list", "identity org show", "identity member register",
        "identity member suspend", "identity member rotate", "identity member list",
        "identity member show", "identity patient register", "identity patient show"}


def test_every_option_and_argument_has_help() -> None:
    lacking = []
    for path in command_paths():
        command: Any = typer.main.get_command(ROOT)
        for name in path:
            command = command.commands[name]
        lacking += [f"{' '.join(path)} {p.name}" for p in getattr(command, "params", [])
                    if not (getattr(p, "help", "") or "").strip()]
    assert lacking == []


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_help_exits_0(path: tuple[str, ...], runner: CliRunner) -> None:
    result = ok(run(runner, *path, "--help"))
    assert "Usage:" in result.stdout


# name: (arguments, what the one line says); none of them reaches a node
BAD_INPUT: dict[str, tuple[list[str], str]] = {
    "anchor add, a short digest": (["anchor", "add", "abc", "--label", "x"],
                                   "DIGEST must be 32 bytes as 64 hex characters"),
    "anchor show, not hex": (["anchor", "show", "z" * 64], "DIGEST must be 32 bytes"),
    "governance propose, an unknown kind": (["governance", "propose", "grant_all", "{}"],
                                            "kind must be one of"),
    "governance propose, not JSON": (["governance", "propose", "validator_add", "{not json"],
                                     "JSON object"),
    "governance propose, a float": (["governance", "propose", "validator_power",
                                     '{"power": 1.5}'], "JSON object the ledger can carry"),
    "governance show, a short id": (["governance", "show", "ab"], "PROPOSAL must be 64 hex"),
    "identity org show, a bad id": (["identity", "org", "show", "St Mary"],
                                    "organisation id 'St Mary'"),
    "identity member register, no keys": (
        ["identity", "member", "register", "--org", "st-mary", "--role", "clinician",
         "--name", "A"], "give the member's keys as --key-file KEYSTORE or as --public-key"),
    "identity member register, both keys": (
        ["identity", "member", "register", "--org", "st-mary", "--role", "clinician",
         "--name", "A", "--key-file", "k", "--public-key", "ab" * 32],
        "one of the two"),
    "identity member register, a bad role": (
        ["identity", "member", "register", "--org", "st-mary", "--role", "surgeon",
         "--name", "A", "--public-key", "ab" * 32, "--enc-key", "cd" * 32,
         "--enc-suite", "x25519"], "--role must be one of clinician"),
    "identity member register, a short encryption key": (
        ["identity", "member", "register", "--org", "st-mary", "--role", "clinician",
         "--name", "A", "--public-key", "ab" * 32, "--enc-key", "cd" * 4,
         "--enc-suite", "x25519"], "--enc-key must be 32 bytes"),
    "identity member register, an unknown suite": (
        ["identity", "member", "register", "--org", "st-mary", "--role", "clinician",
         "--name", "A", "--public-key", "ab" * 32, "--enc-key", "cd" * 32,
         "--enc-suite", "rot13"], "--enc-suite must be one of"),
    "identity patient show, a bad pseudonym": (["identity", "patient", "show", "xyz"],
                                               "PSEUDONYM must be 32 hex characters"),
    "identity patient register, no keystore": (
        ["identity", "patient", "register", "--key-file", "/nonexistent/me.key"],
        "no keystore at /nonexistent/me.key"),
}


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_is_one_plain_line(name: str, runner: CliRunner, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args, says = BAD_INPUT[name]
    result = run(runner, *args, "--api", "127.0.0.1:9")  # never asked
    refused_plainly(result, says)
    assert flat(result.stderr).startswith("error:")


# anchor ---------------------------------------------------------------------------------------
def test_anchor_add_then_show_verify(node: Home, runner: CliRunner) -> None:
    d = digest("anchor show")
    added = ok(run(runner, "anchor", "add", d.upper(), "--label", "discharge letter",
                   "--home", node.path))
    assert "anchored in block" in added.stdout
    height, _ = committed(added)

    shown = ok(run(runner, "anchor", "show", d, "--verify", "--home", node.path))
    assert f"verified: anchor/{d} is present at height" in flat(shown.stderr)
    assert "discharge letter" in shown.stdout

    as_json = ok(run(runner, "anchor", "show", d, "--home", node.path, "--json"))
    value = json.loads(as_json.stdout)
    assert (value["digest"], value["label"], value["height"]) == (d, "discharge letter", height)
    assert value["sender"] == node.member_keys("admin").signing.public_key.hex()

    again = run(runner, "anchor", "add", d, "--label", "again", "--home", node.path)
    refused_plainly(again, "exists")


def test_anchor_add_signs_with_the_key_asked_for(node: Home, runner: CliRunner) -> None:
    d = digest("signed by st-mary")
    ok(run(runner, "anchor", "add", d, "--label", "x", "--key", "st-mary", "--home", node.path))
    value = json.loads(ok(run(runner, "anchor", "show", d, "--home", node.path,
                              "--json")).stdout)
    assert value["sender"] == node.member_keys("st-mary").signing.public_key.hex()


def test_anchor_show_of_a_digest_never_anchored(node: Home, runner: CliRunner) -> None:
    d = digest("never")
    proven = run(runner, "anchor", "show", d, "--verify", "--home", node.path)
    refused_plainly(proven, "is not anchored (its absence is proven)")
    assert f"verified: anchor/{d} is absent" in flat(proven.stderr)
    unproven = run(runner, "anchor", "show", d, "--home", node.path)
    refused_plainly(unproven, "not anchored")


# a node that lies -----------------------------------------------------------------------------
def lying(monkeypatch: pytest.MonkeyPatch, edit: Callable[[str, Any, Client], Any]) -> None:
    """Every ``get`` the commands make is answered with ``edit(path, answer, client)``."""

    class LyingClient(Client):
        def get(self, path: str, params: Any = None) -> Any:
            return edit(path, super().get(path, params), self)

    monkeypatch.setattr(cli_host, "Client", LyingClient)


def test_anchor_show_verify_catches_a_forged_label(
        node: Home, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    d = digest("forged")
    ok(run(runner, "anchor", "add", d, "--label", "real", "--home", node.path))
    lying(monkeypatch, lambda path, a, c: {**a, "value": {**a["value"], "label": "forged"}})
    result = run(runner, "anchor", "show", d, "--verify", "--home", node.path)
    refused_plainly(result, "NOT VERIFIED: the proof of the key's value", code=2)
    assert "forged" not in result.stdout


def test_anchor_show_verify_catches_an_answer_for_another_digest(
        node: Home, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    real = digest("really anchored")
    ok(run(runner, "anchor", "add", real, "--label", "real", "--home", node.path))
    lying(monkeypatch, lambda path, a, c: Client.get(c, f"/v1/anchor/{real}", {"prove": True}))
    result = run(runner, "anchor", "show", digest("asked"), "--verify", "--home", node.path)
    refused_plainly(result, "NOT VERIFIED: the node answered for another key", code=2)


def test_member_list_verify_catches_a_key_left_out(
        node: Home, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    lying(monkeypatch, lambda path, a, c: {**a, "items": a["items"][1:]}
          if path.endswith("/members") else a)
    result = run(runner, "identity", "member", "list", "--org", "carewell", "--verify",
                 "--home", node.path)
    refused_plainly(result, "NOT VERIFIED", code=2)


# governance -------------------------------------------------------------------------------------
def test_governance_identity_prints_the_node_key(node: Home, runner: CliRunner) -> None:
    shown = json.loads(ok(run(runner, "governance", "identity", "--home", node.path)).stdout)
    assert shown == {"node_key": node.validator_key().public_key.hex(),
                     "node_id": EngineHome(node.path).node_id()}


def test_governance_org_admit_by_the_lone_validator(
        node: Home, runner: CliRunner, tmp_path: Path) -> None:
    """The lone validator holds all the power: its proposal is approved as it is made, and
    identity admits the organisation at once."""
    admin = new_keystore(tmp_path / "riverside.key")
    change = json.dumps({"id": "riverside", "name": "Riverside Pharmacy", "role": "pharmacy",
                         "admins": [admin.signing.public_key.hex()]})
    proposed = ok(run(runner, "governance", "propose", "org_admit", change,
                      "--home", node.path))
    proposal = json.loads(proposed.stdout)
    assert proposal["effective_height"] > proposal["height"]

    shown = json.loads(ok(run(runner, "governance", "show", proposal["proposal"],
                              "--verify", "--home", node.path)).stdout)
    assert (shown["kind"], shown["status"]) == ("org_admit", "approved")

    listed = ok(run(runner, "governance", "proposals", "--home", node.path, "--json"))
    assert proposal["proposal"] in {p["id"] for p in json.loads(listed.stdout)["proposals"]}
    table = ok(run(runner, "governance", "proposals", "--home", node.path))
    assert "org_admit" in table.stdout and "approved" in table.stdout

    approved = run(runner, "governance", "approve", proposal["proposal"], "--home", node.path)
    refused_plainly(approved, "closed: the proposal is already approved")

    org = ok(run(runner, "identity", "org", "show", "riverside", "--verify", "--home",
                 node.path))
    assert "Riverside Pharmacy" in org.stdout
    assert "verified: identity/org/riverside is present" in flat(org.stderr)
    members = ok(run(runner, "identity", "member", "list", "--org", "riverside", "--verify",
                     "--home", node.path, "--json"))
    assert [m["key"] for m in json.loads(members.stdout)["members"]] == [
        admin.signing.public_key.hex()]


def test_governance_show_of_an_unknown_proposal(node: Home, runner: CliRunner) -> None:
    result = run(runner, "governance", "show", "ab" * 32, "--home", node.path)
    refused_plainly(result, f"no proposal {'ab' * 32}")


def test_governance_evidence_lists_none(node: Home, runner: CliRunner) -> None:
    listed = ok(run(runner, "governance", "evidence", "--home", node.path, "--json"))
    assert json.loads(listed.stdout) == {"evidence": [], "next": None}
    assert "no evidence" in ok(run(runner, "governance", "evidence", "--home",
                                   node.path)).stdout
    missing = run(runner, "governance", "evidence", "cd" * 32, "--verify", "--home", node.path)
    refused_plainly(missing, f"no evidence {'cd' * 32}")


# identity -------------------------------------------------------------------------------------
def test_identity_org_list_and_show(node: Home, runner: CliRunner) -> None:
    page = json.loads(ok(run(runner, "identity", "org", "list", "--home", node.path,
                             "--json")).stdout)
    ids = [o["id"] for o in page["orgs"]]
    assert {"local", "st-mary", "northgate", "acme-pharma", "carewell"} <= set(ids)
    assert ids == sorted(ids)
    first = json.loads(ok(run(runner, "identity", "org", "list", "--limit", "2", "--home",
                              node.path, "--json")).stdout)
    rest = json.loads(ok(run(runner, "identity", "org", "list", "--after", first["next"],
                             "--home", node.path, "--json")).stdout)
    assert [o["id"] for o in first["orgs"] + rest["orgs"]] == ids
    table = ok(run(runner, "identity", "org", "list", "--home", node.path))
    assert "St Mary's Hospital" in table.stdout

    shown = ok(run(runner, "identity", "org", "show", "st-mary", "--home", node.path,
                   "--json"))
    assert json.loads(shown.stdout) == {"id": "st-mary", "name": "St Mary's Hospital",
                                        "role": "hospital", "status": "active"}
    missing = run(runner, "identity", "org", "show", "nowhere", "--verify", "--home",
                  node.path)
    refused_plainly(missing, "no organisation nowhere")


def test_identity_member_register_list_show_suspend(
        node: Home, runner: CliRunner, tmp_path: Path) -> None:
    member = new_keystore(tmp_path / "dr-who.key")
    key = member.signing.public_key.hex()
    registered = ok(run(runner, "identity", "member", "register", "--org", "st-mary",
                        "--key-file", tmp_path / "dr-who.key", "--role", "clinician",
                        "--name", "Dr Who", "--home", node.path))
    assert f"registered clinician {key} in st-mary in block" in flat(registered.stdout)

    listed = ok(run(runner, "identity", "member", "list", "--org", "st-mary", "--verify",
                    "--home", node.path))
    assert key in listed.stdout
    assert "verified: identity/members of st-mary holds 2 items" in flat(listed.stderr)
    as_json = json.loads(ok(run(runner, "identity", "member", "list", "--org", "st-mary",
                                "--home", node.path, "--json")).stdout)
    assert as_json["count"] == 2 and as_json["members"][1] == {"seq": 2, "key": key}
    second = json.loads(ok(run(runner, "identity", "member", "list", "--org", "st-mary",
                               "--start", "2", "--verify", "--home", node.path,
                               "--json")).stdout)
    assert second["members"] == [{"seq": 2, "key": key}]

    shown = json.loads(ok(run(runner, "identity", "member", "show", key, "--verify",
                              "--home", node.path, "--json")).stdout)
    assert (shown["org"], shown["role"], shown["name"], shown["status"]) == (
        "st-mary", "clinician", "Dr Who", "active")
    assert shown["enc_key"] == member.encryption.public_bytes().hex()

    suspended = ok(run(runner, "identity", "member", "suspend", key, "--home", node.path))
    assert f"suspended {key} of st-mary" in flat(suspended.stdout)
    shown = json.loads(ok(run(runner, "identity", "member", "show", key, "--home", node.path,
                              "--json")).stdout)
    assert shown["status"] == "suspended"
    again = run(runner, "identity", "member", "suspend", key, "--home", node.path)
    refused_plainly(again, "key_suspended")


def test_identity_member_register_by_hex_then_rotate(
        node: Home, runner: CliRunner, tmp_path: Path) -> None:
    old = Keystore.generate("x25519")
    key = old.signing.public_key.hex()
    ok(run(runner, "identity", "member", "register", "--org", "northgate", "--public-key", key,
           "--enc-key", old.encryption.public_bytes().hex(), "--enc-suite", "x25519",
           "--role", "pharmacist", "--name", "P. Harmacist", "--as", "northgate",
           "--home", node.path))
    new = new_keystore(tmp_path / "new.key", "mlkem768-x25519")
    rotated = ok(run(runner, "identity", "member", "rotate", key, "--key-file",
                     tmp_path / "new.key", "--home", node.path))
    new_key = new.signing.public_key.hex()
    assert f"rotated {key} of northgate to {new_key}" in flat(rotated.stdout)
    was = json.loads(ok(run(runner, "identity", "member", "show", key, "--home", node.path,
                            "--json")).stdout)
    assert (was["status"], was["replaced_by"]) == ("rotated", new_key)
    now = json.loads(ok(run(runner, "identity", "member", "show", new_key, "--verify",
                            "--home", node.path, "--json")).stdout)
    assert (now["status"], now["role"], now["enc_suite"]) == (
        "active", "pharmacist", "mlkem768-x25519")


def test_identity_member_register_by_another_orgs_admin_is_refused(
        node: Home, runner: CliRunner) -> None:
    other = Keystore.generate("x25519")
    result = run(runner, "identity", "member", "register", "--org", "acme-pharma",
                 "--public-key", other.signing.public_key.hex(),
                 "--enc-key", other.encryption.public_bytes().hex(), "--enc-suite", "x25519",
                 "--role", "auditor", "--name", "Mallory", "--as", "carewell",
                 "--home", node.path)
    refused_plainly(result, "unauthorized: only an admin of acme-pharma may do this")


def test_identity_member_commands_name_a_missing_key(node: Home, runner: CliRunner) -> None:
    result = run(runner, "identity", "member", "register", "--org", "local", "--public-key",
                 "ab" * 32, "--enc-key", "cd" * 32, "--enc-suite", "x25519", "--role",
                 "auditor", "--name", "A", "--home", node.path)
    refused_plainly(result, "no key 'local'")  # the local org's key is named admin
    unknown = run(runner, "identity", "member", "suspend", "ef" * 32, "--home", node.path)
    refused_plainly(unknown, f"no registered key {'ef' * 32}")


def test_identity_patient_register_and_show(
        node: Home, runner: CliRunner, tmp_path: Path) -> None:
    from medledger.apps.identity import pseudonym_of

    patient = new_keystore(tmp_path / "me.key")
    pseudonym = pseudonym_of(patient.signing.public_key)
    registered = ok(run(runner, "identity", "patient", "register", "--key-file",
                        tmp_path / "me.key", "--home", node.path))
    assert f"registered patient {pseudonym} in block" in flat(registered.stdout)
    shown = ok(run(runner, "identity", "patient", "show", pseudonym, "--verify", "--home",
                   node.path, "--json"))
    value = json.loads(shown.stdout)
    assert value["key"] == patient.signing.public_key.hex()
    assert value["enc_key"] == patient.encryption.public_bytes().hex()
    assert f"verified: identity/patient/{pseudonym} is present" in flat(shown.stderr)
    again = run(runner, "identity", "patient", "register", "--key-file", tmp_path / "me.key",
                "--home", node.path)
    refused_plainly(again, "exists: that key is already registered")
    key_entry = json.loads(ok(run(runner, "identity", "member", "show",
                                  patient.signing.public_key.hex(), "--home", node.path,
                                  "--json")).stdout)
    assert (key_entry["kind"], key_entry["pseudonym"]) == ("patient", pseudonym)
    suspend = run(runner, "identity", "member", "suspend", patient.signing.public_key.hex(),
                  "--home", node.path)
    refused_plainly(suspend, "is a patient's, not an organisation member's")


def test_identity_patient_register_with_a_wrong_passphrase(
        node: Home, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    new_keystore(tmp_path / "me.key")
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    result = run(runner, "identity", "patient", "register", "--key-file", tmp_path / "me.key",
                 "--api", "127.0.0.1:9")
    refused_plainly(result, "passphrase")


def test_a_node_that_is_not_running_is_one_plain_line(runner: CliRunner) -> None:
    result = run(runner, "identity", "org", "list", "--api", "127.0.0.1:9")
    refused_plainly(result, "no answer from")
