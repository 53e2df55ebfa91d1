"""The records demo data: what ``medledger net run`` adds to a fresh local consortium, after
the apps' demo transactions (:func:`medledger.cli.net.seed_demo`), so that a newcomer sees
records at work.

- Two patients, ``patient-ana`` and ``patient-ben``, register themselves.
- ``st-mary``'s admin registers a clinician (``dr-cara``) and ``northgate``'s admin an
  emergency clinician (``dr-noor``).
- Dr Cara imports each patient's synthetic FHIR Bundle (carebundle, a fixed profile and
  seed): one record per category, sealed here, the ciphertext uploaded to node0's blob
  store, ``records.add`` committed.
- Ana grants Dr Noor her visit (``encounter``) for a few seconds of block time, a grant that
  has expired when the seeding ends, and grants ``org:northgate`` her labs and conditions
  for 30 days; her client re-wraps the covered records' content keys for the grantees.
- Each hospital's admin registers a share holder (``holder-st-mary``, ``holder-northgate``:
  admins with an encryption key), and Ben splits an emergency key between the two
  hospitals, both needed (``records emergency-key``).
- Dr Noor breaks the glass on Ben's records (reason ``ETREAT``) and leaves it unjustified:
  it is on Ben's access log at once, and the regulator's ``GET /v1/records/overdue`` lists
  it once 72 hours of block time pass without a justification. St Mary's holder releases
  its share to Dr Noor (``records release``); the hint shows the newcomer how Northgate's
  holder releases the second, after which Dr Noor reads Ben's records.

Each step is the command a person would type (``identity patient register``, ``identity
member register``, ``records import``, ``records grant``, ``records emergency-key``,
``records emergency``, ``records release``), run here
through the apps' command groups as the registry gives them (the command line reaches an
app through the registry, never by importing it), with a host that answers from the
homes' passphrases instead of a prompt. The expiring grant alone is made here, as ``records
grant`` makes a grant, since the command counts in days. Reads go through the node's API.

Each demo person's keys come from a fixed seed, so they are public knowledge: demo data only,
never for real records. Their keystores go to node0's ``keys/`` folder
(``patient-ana.key``, ..., under the home's passphrase), so that ``--key patient-ana --home
ROOT/node0`` works; node1 keeps ``northgate`` as its only key, which its commands sign with
by default.

``ROOT/records-demo-seeded`` records that all of it committed. Each step looks at the ledger
first and skips what is there, so a run that failed part-way goes on from there next time.
A failure prints a warning and stops nothing. Content passes through memory only (a pipe
feeds ``records import``); nothing here prints or writes it: only ids, categories and
counts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
import typer
from rich.console import Console

from medledger.apps import default_registry
from medledger.cli.host import CliHost, add_app_commands, api_url, next_nonce
from medledger.client import Client
from medledger.crypto import (
    DEFAULT_SUITE,
    Argon2idParams,
    EncryptionKey,
    KdfParams,
    Keystore,
    ScryptParams,
    SigningKey,
)
from medledger.ledger import Transaction
from medledger.node import Home
from medledger.node.consortium import Consortium, ConsortiumNode

__all__ = ["MEMBERS", "PATIENTS", "RECORDS_DEMO_MARKER", "DemoMember", "DemoPatient",
           "demo_bundle", "demo_keys", "seed_records_demo"]

RECORDS_DEMO_MARKER = "records-demo-seeded"  # in the consortium's folder
WAIT_S = 30.0  # how long one demo transaction may take to commit
EXPIRING_GRANT_MS = 4_000  # the expiring grant's life, in block time
EXPIRY_WAIT_S = 15.0  # how long to wait for block time to pass it
EMERGENCY_REASON = "ETREAT"

out = Console(soft_wrap=True)


@dataclass(frozen=True, slots=True)
class DemoPatient:
    key: str  # the keystore's name in node0's keys/ folder
    profile: str  # carebundle's
    seed: int
    sex: str


@dataclass(frozen=True, slots=True)
class DemoMember:
    key: str
    name: str
    org: str
    role: str


PATIENTS = (DemoPatient("patient-ana", "type2_diabetes", 11, "F"),
            DemoPatient("patient-ben", "hypertension", 12, "M"))
ANA, BEN = PATIENTS
MEMBERS = (DemoMember("dr-cara", "Dr Cara Demo", "st-mary", "clinician"),
           DemoMember("dr-noor", "Dr Noor Demo", "northgate", "emergency_clinician"),
           DemoMember("holder-st-mary", "St Mary share holder", "st-mary", "admin"),
           DemoMember("holder-northgate", "Northgate share holder", "northgate", "admin"))
CARA, NOOR, *HOLDERS = MEMBERS
ACTIVE_GRANT = ("org:northgate", "lab,condition", 30)  # grantee, categories, days
EXPIRING_GRANT = "encounter"  # its categories; the grantee is Dr Noor's key


def demo_keys(name: str) -> Keystore:
    """A demo person's keys, from a fixed seed: the same on every machine, so public."""
    seed = hashlib.sha256(f"medledger demo records {name}".encode()).digest()
    return Keystore(SigningKey.from_seed(seed), EncryptionKey.from_private_bytes(
        DEFAULT_SUITE, hashlib.sha256(b"enc " + seed).digest()))


def demo_bundle(patient: DemoPatient) -> bytes:
    """The patient's synthetic FHIR Bundle, as JSON: the same for the same profile and seed."""
    import carebundle  # here: it takes most of a second to import, and only seeding needs it

    return carebundle.to_json(carebundle.generate_bundle(  # type: ignore[no-any-return]
        profile=patient.profile, seed=patient.seed, sex=patient.sex)).encode()


class DemoFailed(Exception):
    """A step of the records demo failed; the message says which and why (never content)."""


class _DemoHost(CliHost):
    """The command line's host for seeding: keystores open with the home's passphrase (never
    a prompt), a transaction waits at most ``WAIT_S``, and a failure raises
    :class:`DemoFailed` instead of exiting."""

    def __init__(self, passphrase: str) -> None:
        self._passphrase = passphrase

    def client(self, home: Path | None, api: str | None) -> Client:
        return Client(api_url(api, home), timeout=WAIT_S + 15)

    def keystore(self, path: Path) -> Keystore:
        return Keystore.load(path, self._passphrase)

    def fail(self, message: str) -> NoReturn:
        raise DemoFailed(message)

    def submit(self, home: Path | None, api: str | None, signer: SigningKey, type_: str,
               body: dict[str, Any]) -> dict[str, Any]:
        with self.client(home, api) as client:
            tx = Transaction.create(signer, client.status()["chain_id"], type_,
                                    next_nonce(client, signer.public_key), body)
            answer = client.submit(tx, wait=True, timeout=WAIT_S)
        if answer.get("status") != "committed":
            raise DemoFailed(f"{type_} not committed in {WAIT_S:.0f} s (tx {tx.tx_id.hex()})")
        if answer.get("code") != "ok":
            raise DemoFailed(f"{type_} rejected in block {answer.get('height')}: "
                             f"{answer.get('code')}: {answer.get('message')}")
        return {**answer, "tx_id": tx.tx_id.hex()}


def _say(line: str) -> None:
    out.print(line, highlight=False, markup=False)


def _kdf_of(keystore: Path) -> KdfParams | None:
    """The KDF cost of an existing keystore, so that the demo keystores cost as much to open
    as the home's own keys (None: the default)."""
    try:
        kdf = dict(json.loads(keystore.read_text())["kdf"])
        cls = {"argon2id": Argon2idParams, "scrypt": ScryptParams}[kdf.pop("name")]
        kdf.pop("salt", None)
        return cls(**kdf)  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def _piped(data: bytes) -> Iterator[Path]:
    """A path that reads as ``data`` once: a pipe that a thread feeds, so that content
    passes through memory only and never through a file."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        try:
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(data)
        except OSError:  # the reader went away (a failed command): nothing to feed
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield Path(f"/dev/fd/{read_fd}")
    finally:
        os.close(read_fd)
        feeder.join(timeout=5)


def seed_records_demo(consortium: Consortium) -> bool:
    """Add the records demo data to a consortium whose apps' demo data is committed, unless
    it was added before; print a line per step and, at the end, commands to try. Write
    ``ROOT/records-demo-seeded`` when all of it committed; return whether it did. Failures
    print a warning and stop nothing."""
    marker = consortium.root / RECORDS_DEMO_MARKER
    if marker.exists():
        return True
    keepers = {name: node for node in reversed(consortium.nodes)
               for name in Home(node.home).known_keys()}  # key name -> its (first) node
    missing = sorted({m.org for m in MEMBERS} - keepers.keys())
    if missing:
        _say(f"demo: no records demo data: no node home holds the admin key of "
             f"{', '.join(missing)}")
        return False
    try:
        seeder = _Seeder(consortium, keepers)
        seeder.run()
    except Exception as e:  # noqa: BLE001 -- a demo failure must not stop `net run`
        _say(f"demo: warning: records demo data: {e}; `net run` will try again next time")
        return False
    marker.write_text("records demo data committed\n")
    seeder.hint()
    return True


class _Seeder:
    """The records demo's steps, in order, each skipped when the ledger already has it."""

    def __init__(self, consortium: Consortium, keepers: dict[str, ConsortiumNode]) -> None:
        self.consortium = consortium
        self.keepers = keepers
        self.node0 = consortium.nodes[0]
        self.home0 = Home(self.node0.home)
        self.host = _DemoHost(self.home0.passphrase())
        root = typer.Typer()
        add_app_commands(root, default_registry().apps, self.host)
        self.cli = typer.main.get_command(root)
        self.keys = {p.key: demo_keys(p.key) for p in (*PATIENTS, *MEMBERS)}
        self.pseudonyms: dict[str, str] = {}
        self.expiring: dict[str, Any] | None = None  # the expiring grant, when made now
        self.ana_lab = "RECORD"  # the id of Ana's lab record, for the hint
        self.ben_emergency = "EMERGENCY"  # the id of Dr Noor's emergency, for the hint
        self.ben_record = "RECORD"  # one record it covers, for the hint

    def run(self) -> None:
        self.save_keystores()
        for patient in PATIENTS:
            self.register_patient(patient)
        for member in MEMBERS:
            self.register_member(member)
        self.import_records(ANA)
        self.expiring_grant(ANA)
        self.import_records(BEN)
        self.active_grant(ANA)
        self.emergency_key(BEN)
        self.emergency(BEN)
        self.release(BEN, HOLDERS[0])
        self.check_expired()
        self.ana_lab = next((m["id"] for m in self.records(self.pseudonyms[ANA.key])
                             if m["category"] == "lab"), self.ana_lab)

    # plumbing -------------------------------------------------------------------------------
    def command(self, who: str, *args: str, shown: str = "") -> list[str]:
        """Run ``medledger ARGS`` here, its output captured; print each line of it that
        starts with ``shown`` as ``demo: WHO: LINE``; return the output's lines."""
        stdout, stderr = io.StringIO(), io.StringIO()
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                code = self.cli.main(list(args), prog_name="medledger", standalone_mode=False)
            except click.ClickException as e:
                raise DemoFailed(f"`medledger {' '.join(args[:2])}`: "
                                 f"{e.format_message()}") from None
        if code not in (None, 0):
            said = stderr.getvalue().strip().splitlines() or [f"exit code {code}"]
            raise DemoFailed(f"`medledger {' '.join(args[:2])}` failed: {said[-1]}")
        lines = stdout.getvalue().splitlines()
        for line in lines:
            if line.startswith(shown):
                _say(f"demo: {who}: {line}")
        return lines

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        with self.host.client(self.node0.home, None) as client:
            return client.get(path, params or {})

    def value(self, path: str) -> Any:
        """A single entry of the API at the tip (None: absent)."""
        return self.get(path, {"prove": True})["value"]

    def listed(self, path: str) -> list[Any]:
        return [item["value"] for item in self.get(path, {"limit": 100})["items"]]

    def records(self, pseudonym: str) -> list[dict[str, Any]]:
        return [self.value(f"/v1/records/records/{rid}")
                for rid in self.listed(f"/v1/records/patients/{pseudonym}/records")]

    def grants(self, pseudonym: str) -> list[dict[str, Any]]:
        return [self.value(f"/v1/records/grants/{gid}")
                for gid in self.listed(f"/v1/records/patients/{pseudonym}/grants")]

    def key_hex(self, name: str) -> str:
        return self.keys[name].signing.public_key.hex()

    def now(self) -> int:
        with self.host.client(self.node0.home, None) as client:
            return int(client.status()["latest_block_time"])

    # keys and identities ----------------------------------------------------------------------
    def save_keystores(self) -> None:
        kdf = _kdf_of(self.home0.validator_key_path)
        written = []
        for name, keys in self.keys.items():
            path = self.home0.key_path(name)
            if not path.exists():
                keys.save(path, self.home0.passphrase(), kdf_params=kdf)
                written.append(name)
        if written:
            _say(f"demo: keystores of {', '.join(written)} written to "
                 f"{self.consortium.root / self.node0.name / 'keys'}")

    def register_patient(self, patient: DemoPatient) -> None:
        if self.value(f"/v1/identity/keys/{self.key_hex(patient.key)}") is None:
            self.command(patient.key, "identity", "patient", "register", "--key-file",
                         str(self.home0.key_path(patient.key)), "--home", str(self.node0.home))
        entry = self.value(f"/v1/identity/keys/{self.key_hex(patient.key)}")
        if entry is None or not entry.get("pseudonym"):
            raise DemoFailed(f"{patient.key} is not a registered patient")
        self.pseudonyms[patient.key] = entry["pseudonym"]

    def register_member(self, member: DemoMember) -> None:
        if self.value(f"/v1/identity/keys/{self.key_hex(member.key)}") is not None:
            return
        self.command(member.org, "identity", "member", "register", "--org", member.org,
                     "--role", member.role, "--name", member.name, "--key-file",
                     str(self.home0.key_path(member.key)), "--as", member.org,
                     "--home", str(self.keepers[member.org].home))

    # records and consent ----------------------------------------------------------------------
    def import_records(self, patient: DemoPatient) -> None:
        pseudonym = self.pseudonyms[patient.key]
        if self.listed(f"/v1/records/patients/{pseudonym}/records"):
            return
        with _piped(demo_bundle(patient)) as bundle:
            self.command(CARA.key, "records", "import", str(bundle), "--patient", pseudonym,
                         "--key", CARA.key, "--home", str(self.node0.home),
                         shown="added record")

    def active_grant(self, patient: DemoPatient) -> None:
        pseudonym = self.pseudonyms[patient.key]
        grantee, categories, days = ACTIVE_GRANT
        if any(g["grantee"] == grantee for g in self.grants(pseudonym)):
            return
        self.command(patient.key, "records", "grant", "--patient", pseudonym, "--to", grantee,
                     "--categories", categories, "--days", str(days), "--purpose", "TREAT",
                     "--key", patient.key, "--home", str(self.node0.home))

    def expiring_grant(self, patient: DemoPatient) -> None:
        """What ``records grant`` does, with an expiry a few seconds of block time away (the
        command counts in days): the covered records' content keys, unwrapped with the
        patient's key and wrapped for Dr Noor's, and the grant, signed by the patient."""
        pseudonym, grantee = self.pseudonyms[patient.key], self.key_hex(NOOR.key)
        if any(g["grantee"] == grantee for g in self.grants(pseudonym)):
            return
        keys, sealing = self.keys[patient.key], self.host.sealing
        reader = self.value(f"/v1/identity/keys/{grantee}")
        wrapped = []
        for meta in self.records(pseudonym):
            if meta["category"] != EXPIRING_GRANT or meta["amended_by"] or meta["erased"]:
                continue
            mine = self.value(f"/v1/records/records/{meta['id']}/keys/"
                              f"{self.key_hex(patient.key)}")
            if mine is None:
                raise DemoFailed(f"record {meta['id']} has no content key for {patient.key}")
            content_key = sealing.unwrap(mine["wrapped"], meta["digest"], keys.encryption)
            wrapped.append({"record": meta["id"], "reader": grantee,
                            "wrapped": sealing.wrap_for(content_key, meta["digest"],
                                                        bytes.fromhex(reader["enc_key"]),
                                                        reader["enc_suite"])})
        # block time follows the validators' clocks (BFT time): a few seconds from now
        expires = max(self.now(), time.time_ns() // 10**6) + EXPIRING_GRANT_MS
        done = self.host.submit(self.node0.home, None, keys.signing, "records.grant", {
            "patient": pseudonym, "grantee": grantee, "categories": [EXPIRING_GRANT],
            "purpose": "TREAT", "expires": expires, "keys": wrapped})
        _say(f"demo: {patient.key}: granted {done['tx_id']} to {NOOR.key} ({EXPIRING_GRANT}; "
             f"{len(wrapped)} record{'s' if len(wrapped) != 1 else ''}; expires "
             f"{EXPIRING_GRANT_MS // 1000} s later in block time) in block {done['height']}")
        self.expiring = {"id": done["tx_id"], "expires": expires}

    def emergency_key(self, patient: DemoPatient) -> None:
        pseudonym = self.pseudonyms[patient.key]
        if self.value(f"/v1/records/patients/{pseudonym}/emergency-key") is not None:
            return
        orgs = [w for holder in HOLDERS for w in ("--org", holder.org)]
        self.command(patient.key, "records", "emergency-key", "--patient", pseudonym, *orgs,
                     "--threshold", str(len(HOLDERS)), "--key", patient.key,
                     "--home", str(self.node0.home), shown="emergency key")

    def release(self, patient: DemoPatient, holder: DemoMember) -> None:
        """``holder``'s hospital releases its share for the patient's emergency."""
        pseudonym = self.pseudonyms[patient.key]
        emergency = next((str(e["basis"]).removeprefix("emergency:") for e in self.listed(
            f"/v1/records/patients/{pseudonym}/access")
            if str(e["basis"]).startswith("emergency:")), None)
        if emergency is None:
            raise DemoFailed(f"no emergency on {patient.key}'s records to release a share for")
        self.ben_emergency = emergency
        self.ben_record = self.value(f"/v1/records/emergencies/{emergency}")["records"][0]
        if self.value(f"/v1/records/emergencies/{emergency}/releases/{holder.org}"):
            return
        self.command(holder.key, "records", "release", emergency, "--org", holder.org,
                     "--key", holder.key, "--home", str(self.node0.home), shown=holder.org)

    def emergency(self, patient: DemoPatient) -> None:
        """Dr Noor breaks the glass on the patient's current records, once the clocks are
        past the expiring grant, so that block time has passed it by the end."""
        pseudonym = self.pseudonyms[patient.key]
        if any(str(entry["basis"]).startswith("emergency:")
               for entry in self.listed(f"/v1/records/patients/{pseudonym}/access")):
            return
        records = [m["id"] for m in self.records(pseudonym)
                   if m["amended_by"] is None and m["erased"] is None]
        if self.expiring is not None:
            until = self.expiring["expires"] / 1000 + 0.5
            time.sleep(max(0.0, min(until - time.time(), EXPIRY_WAIT_S)))
        self.command(NOOR.key, "records", "emergency", "--patient", pseudonym, "--reason",
                     EMERGENCY_REASON, "--records", ",".join(records), "--key", NOOR.key,
                     "--home", str(self.node0.home))
        _say(f"demo: {NOOR.key}: left unjustified: the justification falls due 72 hours "
             f"later in block time")

    def check_expired(self) -> None:
        """Wait (bounded) until the tip's block time passes the expiring grant's expiry."""
        if self.expiring is None:
            return
        deadline = time.monotonic() + EXPIRY_WAIT_S
        while self.now() < self.expiring["expires"]:
            if time.monotonic() > deadline:
                raise DemoFailed(f"block time has not reached the expiry of grant "
                                 f"{self.expiring['id']} in {EXPIRY_WAIT_S:.0f} s")
            time.sleep(0.2)
        _say(f"demo: grant {self.expiring['id']} to {NOOR.key} has expired (block time)")

    # the end --------------------------------------------------------------------------------
    def hint(self) -> None:
        home = self.consortium.root / self.node0.name  # as the user named the consortium
        ana, ben = self.pseudonyms[ANA.key], self.pseudonyms[BEN.key]
        _say(f"demo: records demo data added: patients {ANA.key} ({ana}) and {BEN.key} "
             f"({ben}); their keys, {CARA.key}'s and {NOOR.key}'s are in {home}/keys. Try:")
        read = (f"medledger records read {self.ana_lab} --key {NOOR.key} --home {home}  "
                f"(Ana's lab record, read on her grant to org:northgate: logged first)")
        second = HOLDERS[1]
        for line in (
                f"medledger records list --patient {ana} --verify --home {home}",
                f"medledger records timeline --patient {ana} --key {ANA.key} --home {home}",
                f"medledger records access-log --patient {ben} --verify --home {home}",
                f"curl http://{self.node0.api}/v1/records/patients/{ana}/grants", read,
                f"medledger records release {self.ben_emergency} --org {second.org} --key "
                f"{second.key} --home {home}  (the second share of Ben's emergency key)",
                f"medledger records read {self.ben_record} --basis emergency:"
                f"{self.ben_emergency} --key {NOOR.key} --home {home}  (then Dr Noor opens "
                f"one of Ben's records with the two released shares)"):
            _say(f"  {line}")
