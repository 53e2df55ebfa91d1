"""The client's part of the records commands, over the command line's
:class:`~medledger.apps.host.CommandHost`: reading what the ledger says of a patient (their
keys, records, grants, delegates), choosing who a new record is sealed for, and sealing,
uploading, fetching and opening records.

Content is sealed and opened on this machine (:attr:`CommandHost.sealing`, ADR 0011); the
node sees ciphertext, digests and wrapped keys only. Nothing here prints content.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medledger.apps.base import Rejected
from medledger.apps.body import decode_body
from medledger.apps.host import AppClient, CommandHost, SealedContent
from medledger.apps.records.break_glass import SHARE_ORG_ROLE
from medledger.apps.records.bundles import Part
from medledger.apps.records.content import AddBody
from medledger.crypto import Keystore

__all__ = ["MAX_READERS", "Holder", "Node", "Reader"]

MAX_READERS = 32  # what records.add takes (AddBody.keys)
PAGE = 100
ROUTES = "/v1/records"

#: A reader as sealing wants it: key hex -> (encryption public key, suite).
Reader = dict[str, tuple[bytes, str]]
#: An organisation's share holder: (admin key hex, encryption public key, suite).
Holder = tuple[str, bytes, str]


def _value(client: AppClient, path: str) -> Any:
    """An app route's single entry at the tip (None when absent: proven absent)."""
    return client.get(path, {"prove": True})["value"]


def _pages(client: AppClient, path: str) -> Iterator[Any]:
    """Every item of a provable list route, page by page (unproven: --verify proves)."""
    start = 1
    while True:
        answer = client.get(path, {"start": start, "limit": PAGE})
        yield from (item["value"] for item in answer["items"])
        start += len(answer["items"])
        if not answer["items"] or start > answer["count"]:
            return


@dataclass(frozen=True, slots=True)
class Node:
    """The node a command talks to (``--home``/``--api``), through ``host``."""

    host: CommandHost
    home: Path | None
    api: str | None

    # reads ------------------------------------------------------------------------------------
    def patient(self, client: AppClient, pseudonym: str) -> dict[str, Any]:
        """The patient's identity entry (``key``, ``enc_key``, ``enc_suite``)."""
        entry = _value(client, f"/v1/identity/patients/{pseudonym}")
        if entry is None:
            self.host.fail(f"no patient {pseudonym} is registered (`medledger identity "
                           "patient register`)")
        return entry  # type: ignore[no-any-return]

    def key_entry(self, client: AppClient, key: str) -> dict[str, Any] | None:
        """A registered key's identity entry, or None."""
        return _value(client, f"/v1/identity/keys/{key}")  # type: ignore[no-any-return]

    def patient_keystore(self, client: AppClient, keys: Keystore, pseudonym: str | None,
                         what: str) -> str:
        """The pseudonym of the patient whose current key ``keys`` holds (checked against
        ``pseudonym`` when given): a rotated patient's key no longer derives it."""
        entry = self.key_entry(client, keys.signing.public_key.hex())
        if entry is not None and entry["status"] == "rotated":
            self.host.fail("--key was rotated: sign with the patient's new keystore")
        if (entry is None or entry["kind"] != "patient"
                or pseudonym not in (None, entry["pseudonym"])):
            whose = f"patient {pseudonym}'s" if pseudonym else "a registered patient's"
            self.host.fail(f"--key is not {whose} keystore: only the patient {what}")
        return str(entry["pseudonym"])

    def rewrapped(self, keys: Keystore, metas: list[dict[str, Any]], public: bytes,
                  suite: str) -> list[dict[str, str]]:
        """``{"record", "wrapped"}`` for each record in ``metas`` whose content key ``keys``
        can unwrap, wrapped again for ``public`` (a record without a key for ``keys`` is
        left out)."""
        signer = keys.signing.public_key.hex()
        with self.host.client(self.home, self.api) as client:
            wrapped = {m["id"]: self.wrapped_key(client, m["id"], signer) for m in metas}
        out = []
        for meta in metas:
            if wrapped[meta["id"]] is None:
                continue
            try:
                content_key = self.host.sealing.unwrap(wrapped[meta["id"]], meta["digest"],
                                                       keys.encryption)
                out.append({"record": meta["id"], "wrapped": self.host.sealing.wrap_for(
                    content_key, meta["digest"], public, suite)})
            except ValueError as e:
                self.host.fail(str(e))
        return out

    def record(self, client: AppClient, record_id: str) -> dict[str, Any]:
        """A record's metadata (no content)."""
        meta = _value(client, f"{ROUTES}/records/{record_id}")
        if meta is None:
            self.host.fail(f"no record {record_id}")
        return meta  # type: ignore[no-any-return]

    def record_ids(self, client: AppClient, pseudonym: str) -> list[str]:
        """The patient's record ids, in the order they were added."""
        return list(_pages(client, f"{ROUTES}/patients/{pseudonym}/records"))

    def current_records(self, client: AppClient, pseudonym: str) -> list[dict[str, Any]]:
        """The patient's records neither erased nor amended, in the order added."""
        metas = [self.record(client, rid) for rid in self.record_ids(client, pseudonym)]
        return [m for m in metas if m["erased"] is None and m["amended_by"] is None]

    def wrapped_key(self, client: AppClient, record_id: str, reader: str) -> str | None:
        """The record's content key wrapped for ``reader``, or None."""
        entry = _value(client, f"{ROUTES}/records/{record_id}/keys/{reader}")
        return None if entry is None else str(entry["wrapped"])

    def now(self, client: AppClient) -> int:
        """The tip's BFT time in ms (the genesis time before block 1): what grants expire
        against and what the next block's time will not be before."""
        latest = client.status().get("latest_block_time")
        if latest is not None:
            return int(latest)
        return int(client.get("/v1/genesis")["genesis_time"])

    def active_grants(self, client: AppClient, pseudonym: str, now: int
                      ) -> list[dict[str, Any]]:
        """The patient's grants neither revoked nor expired at ``now``."""
        grants = [_value(client, f"{ROUTES}/grants/{gid}")
                  for gid in _pages(client, f"{ROUTES}/patients/{pseudonym}/grants")]
        return [g for g in grants if g and g["revoked"] is None and g["expires"] > now]

    def delegates(self, client: AppClient, pseudonym: str) -> list[str]:
        """The patient's delegates: those the ``records.delegated`` events name, each
        checked against the state (an undelegated key is gone from it)."""
        named: list[str] = []
        after = 0
        while True:
            page = client.get("/v1/events", {"type": "records.delegated", "patient": pseudonym,
                                             "after": after, "limit": PAGE})
            named += [e["attrs"]["delegate"] for e in page["events"]]
            if not page.get("next"):
                break
            after = page["next"]
        return [k for k in dict.fromkeys(named)
                if client.state(f"records/delegate/{pseudonym}/{k}")["value"] is not None]

    def escrow(self, client: AppClient, pseudonym: str) -> dict[str, Any] | None:
        """The patient's emergency key (``reader``, ``enc_key``, ``threshold``, ``shares``),
        or None when they have set none."""
        entry = _value(client, f"{ROUTES}/patients/{pseudonym}/emergency-key")
        return None if entry is None else dict(entry)

    def orgs(self, client: AppClient) -> Iterator[dict[str, Any]]:
        """Every organisation, in id order."""
        after: str | None = None
        while True:
            page = client.get("/v1/identity/orgs", {"limit": PAGE,
                                                    **({"after": after} if after else {})})
            yield from page["orgs"]
            after = page.get("next")
            if not after or not page["orgs"]:
                return

    def share_holders(self, client: AppClient) -> dict[str, Holder]:
        """Each active hospital's share holder: its first active admin, in the order the
        organisation registered its keys, with an encryption key on the ledger (a genesis
        admin key has none, so it is the first admin the organisation registered as a
        member). A hospital without one holds no share."""
        holders: dict[str, Holder] = {}
        for org in self.orgs(client):
            if org["role"] != SHARE_ORG_ROLE or org["status"] != "active":
                continue
            for key in _pages(client, f"/v1/identity/orgs/{org['id']}/members"):
                entry = self.key_entry(client, key)
                if (entry and entry["role"] == "admin" and entry["status"] == "active"
                        and entry.get("enc_key")):
                    holders[org["id"]] = (key, bytes.fromhex(entry["enc_key"]),
                                          entry["enc_suite"])
                    break
        return holders

    def emergency_material(self, client: AppClient, meta: dict[str, Any], reader: str,
                           emergency_id: str) -> tuple[dict[str, Any], str, list[str]]:
        """What opening ``meta`` on an emergency takes: the patient's emergency key, the
        record's content key wrapped for it, and the shares released to ``reader`` for
        this emergency (at least the threshold of them; refused in one line otherwise)."""
        escrow = self.escrow(client, meta["patient"])
        if escrow is None:
            self.host.fail(f"record {meta['id']} has no content key for key {reader}, and "
                           f"patient {meta['patient']} has no emergency key to recover one")
        wrapped = self.wrapped_key(client, meta["id"], escrow["reader"])
        if wrapped is None:
            self.host.fail(f"record {meta['id']} has no content key for the patient's "
                           "current emergency key (it was added before the key was set)")
        released = [r for org in sorted(escrow["shares"]) if (r := _value(
            client, f"{ROUTES}/emergencies/{emergency_id}/releases/{org}")) is not None
            and r["to"] == reader and r["reader"] == escrow["reader"]]
        if len(released) < escrow["threshold"]:
            have = ", ".join(r["org"] for r in released) or "none"
            self.host.fail(f"{escrow['threshold']} of the {len(escrow['shares'])} hospitals "
                           f"holding the emergency key must release their shares "
                           f"(`medledger records release {emergency_id} --org ORG`); "
                           f"released so far: {have}")
        return escrow, wrapped, [r["share"] for r in released]

    # readers ----------------------------------------------------------------------------------
    def encryption_of(self, client: AppClient, key: str, what: str) -> Reader:
        """``{key: (encryption key, suite)}`` for an active registered key with one."""
        entry = self.key_entry(client, key)
        if entry is None or entry["status"] != "active":
            self.host.fail(f"{what} {key} is not an active registered key")
        if not entry.get("enc_key"):
            self.host.fail(f"{what} {key} has no encryption key on the ledger (an "
                           "organisation's genesis admin key has none)")
        return {key: (bytes.fromhex(entry["enc_key"]), entry["enc_suite"])}

    def grantee_readers(self, client: AppClient, grantee: str) -> Reader:
        """The keys a grant to ``grantee`` reaches: the key, or every active member (with an
        encryption key) of the organisation ``org:<id>``."""
        if not grantee.startswith("org:"):
            return self.encryption_of(client, grantee, "grantee")
        org = grantee.removeprefix("org:")
        found: Reader = {}
        for key in _pages(client, f"/v1/identity/orgs/{org}/members"):
            entry = self.key_entry(client, key)
            if (entry and entry["kind"] == "member" and entry["status"] == "active"
                    and entry.get("enc_key")):
                found[key] = (bytes.fromhex(entry["enc_key"]), entry["enc_suite"])
        return found

    def readers_for(self, client: AppClient, patient: dict[str, Any], pseudonym: str,
                    category: str, author: str, now: int) -> Reader:
        """Who a new ``category`` record of the patient is sealed for: the patient, the
        author, the grantees of the patient's active grants of the category, the
        patient's delegates, and the patient's emergency key when they have one."""
        readers: Reader = {patient["key"]: (bytes.fromhex(patient["enc_key"]),
                                            patient["enc_suite"])}
        readers.update(self.encryption_of(client, author, "author"))
        for grant in self.active_grants(client, pseudonym, now):
            if category in grant["categories"]:
                readers.update(self.grantee_readers(client, grant["grantee"]))
        for delegate in self.delegates(client, pseudonym):
            readers.update(self.encryption_of(client, delegate, "delegate"))
        escrow = self.escrow(client, pseudonym)
        if escrow is not None:  # the ledger wants it: break-glass opens what it wraps
            readers[escrow["reader"]] = (bytes.fromhex(escrow["enc_key"]), escrow["enc_suite"])
        if len(readers) > MAX_READERS:
            self.host.fail(f"a {category} record of {pseudonym} would have {len(readers)} "
                           f"readers; a record takes at most {MAX_READERS} (grant fewer "
                           "organisations, or grant keys rather than organisations)")
        return readers

    # writes -----------------------------------------------------------------------------------
    def add(self, keys: Keystore, pseudonym: str, parts: list[Part],
            previous: str | None) -> list[tuple[Part, dict[str, Any]]]:
        """Seal each part for its readers, upload it and commit its ``records.add``; the
        parts with the committed answers (``tx_id`` is the record id)."""
        author = keys.signing.public_key.hex()
        with self.host.client(self.home, self.api) as client:
            patient = self.patient(client, pseudonym)
            now = self.now(client)
            readers = {p.category: self.readers_for(client, patient, pseudonym, p.category,
                                                    author, now) for p in parts}
        done = []
        for i, part in enumerate(parts, 1):
            if len(parts) > 1:
                self.host.progress(f"[{i}/{len(parts)}] sealing and uploading the "
                                   f"{part.category} record ({part.resources} resources)")
            sealed = self._seal(part, pseudonym, readers[part.category])
            self.host.put_blob(self.home, self.api, keys.signing, sealed.ciphertext)
            body = self.checked(AddBody, {
                "patient": pseudonym, "category": part.category, "digest": sealed.digest,
                "size": sealed.size, "previous": previous, "keys": sealed.key_list()})
            done.append((part, self.host.submit(self.home, self.api, keys.signing,
                                                "records.add", body)))
        return done

    def checked(self, cls: type, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` checked as the app will check it (refused here in one line, before
        anything is signed)."""
        try:
            decode_body(cls, body)
        except Rejected as e:
            self.host.fail(e.message)
        return body

    def _seal(self, part: Part, pseudonym: str, readers: Reader) -> SealedContent:
        try:
            return self.host.sealing.seal_record(part.content, patient_pseudonym=pseudonym,
                                                 category=part.category, readers=readers)
        except ValueError as e:
            self.host.fail(f"cannot seal the {part.category} record: {e}")

    # reading content --------------------------------------------------------------------------
    def open(self, keys: Keystore, meta: dict[str, Any]) -> bytes:
        """Fetch a record's ciphertext (signed with ``keys``), unwrap its content key with
        ``keys`` and decrypt it; the plaintext, which the caller shows only where asked."""
        reader = keys.signing.public_key.hex()
        if meta["erased"] is not None:
            self.host.fail(f"record {meta['id']} was erased: its content is gone")
        with self.host.client(self.home, self.api) as client:
            wrapped = self.wrapped_key(client, meta["id"], reader)
        if wrapped is None:
            self.host.fail(f"record {meta['id']} has no content key for key {reader}: the "
                           "patient has not given it to you (a grant made after the record "
                           "was added carries the key)")
        ciphertext = self.host.get_blob(self.home, self.api, keys.signing, meta["digest"])
        try:
            return self.host.sealing.open_record(
                ciphertext, wrapped, keys.encryption, patient_pseudonym=meta["patient"],
                category=meta["category"], digest=meta["digest"])
        except ValueError as e:
            self.host.fail(str(e))

    def open_emergency(self, keys: Keystore, meta: dict[str, Any], emergency_id: str,
                       material: tuple[dict[str, Any], str, list[str]]) -> bytes:
        """Fetch a record's ciphertext (its read window open on the emergency), recover the
        patient's emergency key from the released shares with ``keys`` and decrypt."""
        escrow, wrapped, released = material
        ciphertext = self.host.get_blob(self.home, self.api, keys.signing, meta["digest"])
        try:
            return self.host.emergency.emergency_open(
                ciphertext, wrapped, released, keys.encryption, emergency_id=emergency_id,
                enc_key=bytes.fromhex(escrow["enc_key"]), enc_suite=escrow["enc_suite"],
                threshold=escrow["threshold"], patient_pseudonym=meta["patient"],
                category=meta["category"], digest=meta["digest"])
        except ValueError as e:
            self.host.fail(str(e))
