"""The records bench's cast and what their clients make before the chain: the keys of
everyone in the run, and the full-load and background ``records.add`` transactions, each a
FHIR Observation validated, sealed, wrapped for the patient and the author, and signed,
with the thread CPU time of each step (see :mod:`medledger.cli.bench_records`, step 1).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from medledger.cli.bench_consortium import _sign_client_batches
from medledger.client.records import records_add_body, seal_record
from medledger.codec import pseudonym
from medledger.crypto import Keystore, SigningKey
from medledger.ledger import Transaction
from medledger.standards.fhir import canonical_bytes, category, validate

CHAIN_ID = "bench"  # the anchor bench's consortium name
AUTHORS_ORG, GRANTEES_ORG = "hospital-a", "hospital-b"
GRANTEES = 4


@dataclass(frozen=True, slots=True)
class _Record:
    """A sealed record as its author's client keeps it; ``plain`` is the SHA-256 of its
    plaintext, to check a read against. Record ``i`` is uploaded to node ``i mod N``."""

    id: str
    patient: int
    digest: str
    ciphertext: bytes
    plain: bytes
    author: SigningKey


@dataclass(slots=True)
class _Costs:
    """Thread CPU seconds of the client-side steps, over ``count`` records."""

    count: int = 0
    validate: float = 0.0
    seal: float = 0.0
    sign: float = 0.0
    wall: float = 0.0
    tx_bytes: int = 0

    def report(self, committed_per_s: float) -> dict[str, Any]:
        """Per record and per core; ``cores_to_keep_up``: the client cores that seal and
        sign as fast as the chain commits ``committed_per_s``."""
        per = 1e6 / self.count if self.count else 0.0
        client = self.validate + self.seal
        return {
            "records": self.count,
            "seconds": round(self.wall, 3),
            "us_per_record": {"fhir_validate": round(self.validate * per, 1),
                              "encrypt_and_wrap": round(self.seal * per, 1),
                              "sign": round(self.sign * per, 1)},
            "sealed_per_s_per_core": round(self.count / client, 1) if client else None,
            "sealed_and_signed_per_s_per_core": round(
                self.count / (client + self.sign), 1) if client + self.sign else None,
            "cores_to_keep_up": round(committed_per_s * (client + self.sign) / self.count, 3)
            if self.count else None,
        }


def _observation(index: int, pseudonym: str) -> bytes:
    """A laboratory result of the patient, as a lab's system would send it (FHIR R4 JSON);
    distinct for each index."""
    return json.dumps({
        "resourceType": "Observation", "id": f"bench-{index}", "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0",
                             "display": "Glucose [Mass/volume] in Blood"}]},
        "subject": {"reference": f"Patient/{pseudonym}"},
        "effectiveDateTime": f"2026-{1 + index % 12:02d}-{1 + index % 28:02d}T08:00:00Z",
        "valueQuantity": {"value": 70 + index % 90, "unit": "mg/dL",
                          "system": "http://unitsofmeasure.org", "code": "mg/dL"},
    }).encode()


def _readers(*keys: Keystore) -> dict[str, tuple[bytes, str]]:
    return {k.signing.public_key.hex(): (k.encryption.public_bytes(), k.encryption.suite)
            for k in keys}


class _Sealer:
    """The ``make`` of :func:`_sign_client_batches` for records: each call is one record of
    the next patient in turn, validated, sealed for the patient and the author (whose key
    signs), and signed; the thread CPU of each step goes to ``costs``."""

    def __init__(self, patients: list[Keystore], authors: dict[bytes, Keystore]) -> None:
        self.patients = patients
        self.pseudonyms = [pseudonym(p.signing.public_key) for p in patients]
        self.authors = authors
        self.records: list[_Record] = []
        self.costs = _Costs()
        self.first = 0  # the index of the next record, across sealers

    def __call__(self, key: SigningKey, nonce: int, _index: int) -> Transaction:
        i = self.first + len(self.records)
        who = i % len(self.patients)
        pseudonym = self.pseudonyms[who]
        t0 = time.thread_time()
        model = validate(_observation(i, pseudonym))
        content, kind = canonical_bytes(model), category(model)
        t1 = time.thread_time()
        sealed = seal_record(content, patient_pseudonym=pseudonym, category=kind,
                             readers=_readers(self.patients[who], self.authors[key.public_key]))
        body = records_add_body(sealed, patient=pseudonym, category=kind)
        t2 = time.thread_time()
        tx = Transaction.create(key, CHAIN_ID, "records.add", nonce, body)
        t3 = time.thread_time()
        self.costs.validate += t1 - t0
        self.costs.seal += t2 - t1
        self.costs.sign += t3 - t2
        self.costs.count += 1
        self.costs.tx_bytes += len(tx.raw)
        self.records.append(_Record(tx.tx_id.hex(), who, sealed.digest, sealed.ciphertext,
                                    hashlib.sha256(content).digest(), key))
        return tx


def _seal_work(sealer: _Sealer, authors: list[list[Keystore]], per_client: int, batch: int,
               validators: int) -> list[list[list[Transaction]]]:
    """Per client, its batches of ``records.add``, as the anchor bench lays out anchors."""
    start = time.perf_counter()
    work = [_sign_client_batches([k.signing for k in authors[c]], per_client, batch,
                                 c % validators, c, make=sealer) for c in range(len(authors))]
    sealer.costs.wall += time.perf_counter() - start
    return work


@dataclass
class _Cast:
    """Everyone in the run, made before the chain: the hospitals' admins, the authors of
    the full-load and of the background records (one per client and node each), the
    grantees and the patients."""

    admins: dict[str, Keystore]
    authors: list[list[Keystore]]
    background: list[list[Keystore]]
    grantees: list[Keystore]
    patients: list[Keystore]

    @classmethod
    def make(cls, clients: int, validators: int, patients: int) -> _Cast:
        def group() -> list[list[Keystore]]:
            return [[Keystore.generate() for _ in range(validators)] for _ in range(clients)]

        return cls({org: Keystore.generate() for org in (AUTHORS_ORG, GRANTEES_ORG)},
                   group(), group(), [Keystore.generate() for _ in range(GRANTEES)],
                   [Keystore.generate() for _ in range(patients)])

    def orgs(self) -> list[dict[str, Any]]:
        return [{"id": org, "name": f"Bench hospital {org[-1].upper()}", "role": "hospital",
                 "admins": [admin.signing.public_key.hex()]}
                for org, admin in self.admins.items()]

    def sealer(self) -> _Sealer:
        everyone = [k for group in (*self.authors, *self.background) for k in group]
        return _Sealer(self.patients, {k.signing.public_key: k for k in everyone})
