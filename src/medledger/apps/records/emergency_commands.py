"""``medledger records emergency-key`` and ``medledger records release``: a patient's
emergency key split among hospitals (:mod:`medledger.apps.records.break_glass`), and a
hospital's share released to the emergency clinician of an open emergency."""

# No `from __future__ import annotations`: Typer reads the commands' annotations as objects.

from typing import Annotated

import typer

from medledger.apps.host import CommandHost
from medledger.apps.options import NODE_HOME, ApiOpt, hex_text
from medledger.apps.records.break_glass import EmergencyKeyBody, ReleaseBody
from medledger.apps.records.flows import Holder, Node
from medledger.apps.records.inputs import HomeOpt, KeyOpt, PatientOpt, pseudonym_text, say
from medledger.crypto import Keystore

__all__ = ["emergency_commands"]

MAX_KEYS = 64  # what records.emergency_key takes (EmergencyKeyBody.keys)
DEFAULT_SHARES = 5


def _chosen(host: CommandHost, holders: dict[str, Holder], orgs: list[str] | None
            ) -> dict[str, Holder]:
    """The hospitals named by --org, or the first five (in id order) with a holder."""
    if not orgs:
        chosen = dict(sorted(holders.items())[:DEFAULT_SHARES])
        if not chosen:
            host.fail("no hospital has an admin with an encryption key to hold a share "
                      "(an admin registers one with `medledger identity member register "
                      "--role admin`)")
        return chosen
    lacking = [o for o in orgs if o not in holders]
    if lacking:
        host.fail(f"--org {lacking[0]}: not an active hospital with an admin who has an "
                  "encryption key")
    if len(set(orgs)) != len(orgs):
        host.fail("--org names an organisation twice")
    return {o: holders[o] for o in orgs}


def _rewrapped(host: CommandHost, node: Node, keys: Keystore, pseudonym: str,
               public: bytes, suite: str) -> list[dict[str, str]]:
    """The patient's current records' content keys, unwrapped with the patient's key and
    wrapped for the new emergency key (the most recent 64)."""
    with host.client(node.home, node.api) as client:
        metas = node.current_records(client, pseudonym)
    if len(metas) > MAX_KEYS:
        host.progress(f"{len(metas) - MAX_KEYS} older records are not re-wrapped: one "
                      f"transaction carries at most {MAX_KEYS}")
        metas = metas[-MAX_KEYS:]
    return node.rewrapped(keys, metas, public, suite)


def emergency_commands(group: typer.Typer, host: CommandHost) -> None:
    @group.command("emergency-key")
    def emergency_key(
        patient: PatientOpt,
        org: Annotated[list[str] | None, typer.Option(
            "--org", help="A hospital to hold a share (repeat for each; default: the first "
                          "five hospitals, in id order, with an admin who has an encryption "
                          "key).")] = None,
        threshold: Annotated[int | None, typer.Option(
            "--threshold", help="How many hospitals together release the key (default: 3, "
                                "or all of them when fewer than 3 hold a share).")] = None,
        key: KeyOpt = None,
        home: HomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Set (or replace) the patient's emergency key, signed by the patient (--key): a
        new key pair made here, its private key split among hospitals (THRESHOLD of them
        needed), each share wrapped for the hospital's holding admin; the patient's current
        records are re-wrapped for it, and every record added later is sealed for it."""
        pseudonym = pseudonym_text(host, patient)
        node, keys = Node(host, home, api), host.keys(home, key)
        with host.client(home, api) as client:
            node.patient(client, pseudonym)
            node.patient_keystore(client, keys, pseudonym, "sets their emergency key")
            holders = _chosen(host, node.share_holders(client), org)
        try:
            made = host.emergency.create_emergency_key(holders, threshold,
                                                       suite=keys.encryption.suite)
        except ValueError as e:
            host.fail(str(e))
        rewrapped = _rewrapped(host, node, keys, pseudonym, made.enc_key, made.enc_suite)
        body = node.checked(EmergencyKeyBody, made.body(pseudonym, rewrapped))
        done = host.submit(home, api, keys.signing, "records.emergency_key", body)
        say(f"emergency key of {pseudonym} set in block {done['height']}: any "
            f"{made.threshold} of {', '.join(sorted(holders))} release it; "
            f"{len(rewrapped)} records re-wrapped for it")

    @group.command("release")
    def release(
        emergency_id: Annotated[str, typer.Argument(help="The emergency's id (64 hex).")],
        org: Annotated[str, typer.Option(
            "--org", help="Your organisation, which holds a share of the patient's emergency "
                          "key.")],
        key: KeyOpt = None,
        home: HomeOpt = NODE_HOME,
        api: ApiOpt = None,
    ) -> None:
        """Release your hospital's share of the patient's emergency key to the emergency
        clinician, signed by the admin holding it (--key): the share is opened here and
        re-wrapped for the clinician's key; allowed while the emergency is open, once."""
        emergency_id = hex_text(host, emergency_id, "EMERGENCY")
        node, keys = Node(host, home, api), host.keys(home, key)
        signer = keys.signing.public_key.hex()
        with host.client(home, api) as client:
            emergency = client.get(f"/v1/records/emergencies/{emergency_id}",
                                   {"prove": True})["value"]
            if emergency is None:
                host.fail(f"no emergency {emergency_id}")
            escrow = node.escrow(client, emergency["patient"])
            clinician = node.encryption_of(client, emergency["reader"], "emergency clinician")
        if escrow is None:
            host.fail(f"patient {emergency['patient']} has no emergency key")
        share = escrow["shares"].get(org)
        if share is None:
            host.fail(f"{org} holds no share of patient {emergency['patient']}'s emergency "
                      f"key (holders: {', '.join(sorted(escrow['shares']))})")
        if share["holder"] != signer:
            host.fail(f"the share of {org} is wrapped for its admin {share['holder']}: sign "
                      "with that admin's keystore (--key)")
        public, suite = clinician[emergency["reader"]]
        try:
            rewrapped = host.emergency.release_share(
                share["wrapped"], keys.encryption, emergency_id=emergency_id,
                clinician_key=public, clinician_suite=suite)
        except ValueError as e:
            host.fail(str(e))
        body = node.checked(ReleaseBody, {"emergency": emergency_id, "share": rewrapped})
        done = host.submit(home, api, keys.signing, "records.release", body)
        say(f"{org} released its share for emergency {emergency_id} to "
            f"{emergency['reader']} in block {done['height']}")
