"""``medledger bench --app records``: records committed per second on a local consortium,
beside the ``ledger.anchor`` rate of the same run, and the time from a grant to the
grantee's first decrypted read at half that load.

The consortium is the anchor bench's (:mod:`medledger.cli.bench_consortium`): N validator
processes on CometBFT on 127.0.0.1, whose genesis adds two hospitals, each with an admin
key made here. One run, in order:

1. **Before the nodes start**, every key is made and every full-load record is made as a
   clinician's client makes it: a FHIR Observation (a laboratory result of one of the
   patients) validated and split as ``records add`` does, sealed under a fresh AES-256-GCM
   content key, the key wrapped (HPKE) for the patient and the author, and the
   ``records.add`` signed by the author. The thread CPU time of validating, of sealing and
   wrapping, and of signing is kept apart: ``client_side`` reports records sealed per
   second of one core. The anchors are pre-signed as the anchor bench does.
2. **Identities**, committed on every node before any clock: hospital A's admin registers
   the authors (clinicians), hospital B's the grantees (clinicians), and each patient
   registers.
3. **Uploads**: each ciphertext goes to one node's blob store (signed ``PUT``), round
   robin; the nodes push it to their peers. Timed, and how many reached every node (the
   next step waits for that, so that no push runs under a measured load).
4. **Anchors, records, anchors, at full load**, back to back: the anchor bench's
   full-load pass (``--txs`` anchors, fresh senders each time) before and after the
   records pass, whose ``records.add`` transactions go through the same client processes,
   one author per (client, node) as the anchor senders are. The ratio is records
   committed per second over the mean of the two anchor rates, so that a change in what
   else the machine runs during the run shows as a gap between the two.
5. **Grant to read, half load**: a background of fresh ``records.add`` transactions (their
   ciphertexts are not uploaded: nobody reads them, and ``records.add`` does not look at
   the blob store) paced at half the records rate, while one sample at a time: a patient
   commits ``records.grant`` of one of their lab records to a clinician of hospital B
   (the content key unwrapped with the patient's key and wrapped for the grantee before
   the clock starts), through one node; once a second node has the grant, the grantee
   commits ``records.access`` through it; once a third node has that, the grantee reads
   the wrapped key from it, fetches the ciphertext from it (signed ``GET``; it is never
   the node the blob was uploaded to), unwraps and decrypts. A read answered 503
   ``busy`` (a proven read while blocks commit), or proven only at a height before the
   grant's, is asked again within the sample's time (counted in ``busy_retries``). A sample's time runs from submitting
   the grant to the plaintext, which is checked against the original. A few
   samples without load come first: their mean sizes the background, and they are
   reported apart. Samples are taken while the background runs, at most ``samples``.

Every transaction is submitted with the API a client uses (``POST /v1/txs``, with
``wait=true&proven=false`` for the samples: an answer once committed, without waiting for
the next block's signed header, which no step of a sample needs but the proven read, and
that read waits for its own). Every loop is
bounded in count and time; node processes are stopped by pid on every way out.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from medledger.cli.bench_consortium import (
    _cpu_split,
    _engine_rounds,
    _latencies,
    _Nodes,
    _percentiles,
    _prepare_consortium,
    _results,
    _run_phase,
    _running,
    _sign_client_batches,
    _Watcher,
)
from medledger.client import ApiRefused, Client, Unreachable
from medledger.client.record_blobs import get_blob, put_blob
from medledger.client.records import open_record, records_add_body, seal_record, unwrap, wrap_for
from medledger.codec import pseudonym
from medledger.crypto import Keystore, SigningKey
from medledger.ledger import Transaction
from medledger.node import Home
from medledger.standards.fhir import canonical_bytes, category, validate

__all__ = ["run_records_bench"]

T = TypeVar("T")

CHAIN_ID = "bench"  # the anchor bench's consortium name
ANCHOR_PASSES = ("anchor_before", "anchor_after")  # around the records pass
AUTHORS_ORG, GRANTEES_ORG = "hospital-a", "hospital-b"
GRANTEES = 4
RATIO_TARGET = 0.5  # records committed / anchors committed, same run
P99_TARGET_MS = 2000  # grant to first decrypted read, at half load
WARMUP_SAMPLES = 3
GRANT_MS = 3_600_000  # a sample's grant lasts an hour of block time
WAIT_S = 30.0  # one sample's transaction, committed
HEIGHT_WAIT_S = 10.0  # a node catching up with a height another node answered
BUSY_PAUSE_S = 0.02  # before a read answered 503 busy is asked again
UPLOADS_PER_NODE = 2  # upload threads per node
REPLICATION_WAIT_S = 120.0
BACKGROUND_MIN_S, BACKGROUND_MAX_S = 20.0, 300.0
LOADED_SLOWER = 3  # a sample at half load over one without (2 to 2.5 seen), with margin
PHASE_TIMEOUT_S = 900.0


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


def _registrations(admins: dict[str, Keystore], authors: list[Keystore],
                   grantees: list[Keystore], patients: list[Keystore]
                   ) -> list[list[list[Transaction]]]:
    """The identities' transactions, one batch per admin (its nonces in order, to one
    node) with half of the patients' own registrations each."""
    def members(org: str, keys: list[Keystore]) -> list[Transaction]:
        admin = admins[org].signing
        return [Transaction.create(admin, CHAIN_ID, "identity.member.register", n, {
            "org": org, "key": k.signing.public_key.hex(), "role": "clinician",
            "name": f"{org} clinician {n}", "enc_key": k.encryption.public_bytes().hex(),
            "enc_suite": k.encryption.suite}) for n, k in enumerate(keys, 1)]

    selves = [Transaction.create(p.signing, CHAIN_ID, "identity.patient.register", 1, {
        "enc_key": p.encryption.public_bytes().hex(), "enc_suite": p.encryption.suite})
        for p in patients]
    return [[members(AUTHORS_ORG, authors) + selves[0::2]],
            [members(GRANTEES_ORG, grantees) + selves[1::2]]]


def _wait_height(client: Client, height: int, timeout: float = HEIGHT_WAIT_S) -> None:
    """Until the node behind ``client`` has committed ``height`` (bounded)."""
    deadline = time.monotonic() + timeout
    while int(client.status()["height"]) < height:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{client.base_url} did not reach height {height} in "
                               f"{timeout:.0f} s")
        time.sleep(0.005)


def _upload(urls: list[str], records: list[_Record]) -> dict[str, Any]:
    """Upload each record's ciphertext, signed by its author, to node ``index mod N``."""
    clients = [Client(url, timeout=60) for url in urls]
    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(UPLOADS_PER_NODE * len(urls)) as pool:
            list(pool.map(lambda i: put_blob(clients[i % len(urls)], records[i].author,
                                             records[i].ciphertext), range(len(records))))
    finally:
        for client in clients:
            client.close()
    seconds = time.perf_counter() - start
    return {"blobs": len(records), "seconds": round(seconds, 3),
            "per_s": round(len(records) / seconds, 1),
            "ciphertext_bytes_mean": round(sum(len(r.ciphertext) for r in records)
                                           / max(1, len(records)))}


def _replicated(homes: list[Home], records: list[_Record], nodes: _Nodes) -> int:
    """How many of ``records`` every node's blob store holds, once that count stops
    growing for 5 s (the nodes push uploads to their peers in the background); bounded."""
    def everywhere() -> int:
        return sum(all((h.path / "data" / "blobs" / r.digest[:2] / r.digest).exists()
                       for h in homes) for r in records)

    deadline = time.monotonic() + REPLICATION_WAIT_S
    count, since = everywhere(), time.monotonic()
    while count < len(records) and time.monotonic() < deadline and time.monotonic() - since < 5:
        nodes.check_alive()
        time.sleep(0.5)
        now = everywhere()
        if now > count:
            count, since = now, time.monotonic()
    return count


def _phase_report(phase: tuple[Any, ...], where: dict[bytes, tuple[int, str]],
                  seen: dict[int, float], rounds: dict[int, int | None]) -> dict[str, Any]:
    """What :func:`_run_phase` returned, with the results in node 0's store and the
    round each of its heights was decided in (a later round than 0 means a timeout)."""
    elapsed, sends, accepted, refused, cpu = phase
    latencies, codes, heights = _latencies(sends, where, seen)
    ok = codes.pop("ok", 0)
    decided = Counter(rounds[h] for h in heights if rounds.get(h) is not None)
    return {
        "transactions": sum(len(ids) for _, ids in sends), "accepted": accepted,
        "committed_ok": ok, "refused": dict(refused), "failed_in_block": dict(codes),
        "blocks": len(heights), "seconds": round(elapsed, 3),
        "committed_tx_per_s": round(ok / elapsed, 1), "latency_ms": _percentiles(latencies),
        "decided_in_round": {str(r): decided[r] for r in sorted(decided)},
        "cpu": _cpu_split(*cpu, elapsed, ok),
    }


@dataclass(frozen=True, slots=True)
class _Sample:
    """One grant to read: seconds to the grant committed, to the access committed, and in
    all to the plaintext; whether it decrypted to the original; whether the background
    still ran at its end; how many reads were asked again after a 503 ``busy``."""

    grant: float
    access: float
    total: float
    decrypted: bool
    under_load: bool
    busy_retries: int


class _GrantToRead:
    """Grant-to-read samples, one at a time, each on a record of its own (see the module
    docstring, step 5)."""

    def __init__(self, urls: list[str], records: list[_Record], patients: list[Keystore],
                 grantees: list[Keystore]) -> None:
        self.clients = [Client(url, timeout=WAIT_S + 15) for url in urls]
        self.records = records
        self.patients = patients
        self.grantees = grantees
        self.next = 0  # the next record to use
        self.failures: Counter[str] = Counter()  # of the last run, by reason
        self.committed = 0  # transactions committed (whatever their result)
        self.retries = 0  # reads asked again after a 503 busy, in all

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def commit(self, client: Client, tx: Transaction) -> int:
        """Submit ``tx`` and wait until it is committed (not for the next signed header:
        the step after a grant or an access is another transaction, or a proven read that
        waits for its header itself); its height."""
        answer = client.submit(tx, wait=True, timeout=WAIT_S, proven=False)
        if answer.get("status") != "committed":
            raise TimeoutError(f"{tx.type} not committed in {WAIT_S:.0f} s")
        self.committed += 1
        if answer.get("code") != "ok":
            raise ApiRefused(422, str(answer.get("code")), str(answer.get("message")))
        return int(answer["height"])

    def prepare(self, k: int, record: _Record, nodes: tuple[int, int, int]
                ) -> tuple[Transaction, Keystore, int]:
        """Before the clock: the patient's client re-wraps the record's key for the grantee
        and signs the grant; the grantee's next nonce."""
        patient, grantee = self.patients[record.patient], self.grantees[k % len(self.grantees)]
        client = self.clients[nodes[0]]
        mine = client.get(f"/v1/records/records/{record.id}/keys/"
                          f"{patient.signing.public_key.hex()}")["value"]
        content_key = unwrap(mine["wrapped"], record.digest, patient.encryption)
        grantee_hex = grantee.signing.public_key.hex()
        now = max(time.time_ns() // 10**6, int(client.status()["latest_block_time"] or 0))
        grant = Transaction.create(
            patient.signing, CHAIN_ID, "records.grant",
            client.next_nonce(patient.signing.public_key), {
                "patient": pseudonym(patient.signing.public_key), "grantee": grantee_hex,
                "categories": ["lab"], "purpose": "TREAT", "expires": now + GRANT_MS,
                "keys": [{"record": record.id, "reader": grantee_hex, "wrapped": wrap_for(
                    content_key, record.digest, grantee.encryption.public_bytes(),
                    grantee.encryption.suite)}]})
        return grant, grantee, self.clients[nodes[1]].next_nonce(grantee.signing.public_key)

    def sample(self, k: int, busy: threading.Thread | None) -> _Sample | None:
        """The next record's grant to read; None (counted by reason) when it failed."""
        n = len(self.clients)
        record = self.records[self.next]
        upload = self.next % n  # as _upload chose
        self.next += 1
        grant_at, access_at, read_at = ((upload + 3) % n, (upload + 2) % n, (upload + 1) % n)
        try:
            grant, grantee, nonce = self.again_if_busy(
                lambda: self.prepare(k, record, (grant_at, access_at, read_at)))
            start = time.perf_counter()
            granted_at = self.commit(self.clients[grant_at], grant)
            granted = time.perf_counter()
            _wait_height(self.clients[access_at], granted_at)
            access = Transaction.create(grantee.signing, CHAIN_ID, "records.access", nonce, {
                "records": [record.id], "basis": f"grant:{grant.tx_id.hex()}"})
            height = self.commit(self.clients[access_at], access)
            accessed = time.perf_counter()
            retries = self.retries  # those of the read, within the clock
            plain = self.read(self.clients[read_at], record, grantee, granted_at, height)
            end = time.perf_counter()
        except (ApiRefused, Unreachable, TimeoutError, ValueError) as e:
            self.failures[getattr(e, "code", type(e).__name__)] += 1
            return None
        return _Sample(granted - start, accessed - start, end - start,
                       hashlib.sha256(plain).digest() == record.plain,
                       busy is not None and busy.is_alive(), self.retries - retries)

    def read(self, client: Client, record: _Record, grantee: Keystore, granted_at: int,
             height: int) -> bytes:
        """The grantee's first read, through ``client``'s node once it has ``height`` (the
        access) and proves the state after ``granted_at`` (the grant's wrapped key)."""
        _wait_height(client, height)
        path = f"/v1/records/records/{record.id}/keys/{grantee.signing.public_key.hex()}"
        deadline = time.monotonic() + HEIGHT_WAIT_S
        while True:
            answer = self.again_if_busy(lambda: client.get(path, {"prove": True}))
            if answer["height"] >= granted_at or time.monotonic() > deadline:
                break
            self.retries += 1  # proven only up to a height before the grant: ask again
            time.sleep(BUSY_PAUSE_S)
        mine = answer["value"]
        if mine is None:
            raise ValueError(f"no wrapped key for the grantee at height {answer['height']}")
        ciphertext = self.again_if_busy(lambda: get_blob(client, grantee.signing,
                                                         record.digest))
        owner = pseudonym(self.patients[record.patient].signing.public_key)
        return open_record(ciphertext, mine["wrapped"], grantee.encryption,
                           patient_pseudonym=owner, category="lab", digest=record.digest)

    def again_if_busy(self, call: Callable[[], T]) -> T:
        """``call()``, asked again after a pause while the node answers 503 ``busy``
        (bounded)."""
        deadline = time.monotonic() + HEIGHT_WAIT_S
        while True:
            try:
                return call()
            except ApiRefused as e:
                if e.code != "busy" or time.monotonic() > deadline:
                    raise
            self.retries += 1
            time.sleep(BUSY_PAUSE_S)

    def run(self, count: int, busy: threading.Thread | None, until: float,
            console: Console) -> list[_Sample]:
        """Up to ``count`` samples, while ``busy`` (when given) runs and before ``until``
        (monotonic), with no more failures than samples; the failures in ``failures``."""
        out: list[_Sample] = []
        self.failures = Counter()
        for k in range(count + count):
            if (len(out) >= count or self.next >= len(self.records) or time.monotonic() > until
                    or (busy is not None and not busy.is_alive())):
                break
            sample = self.sample(k, busy)
            if sample is not None:
                out.append(sample)
                if len(out) % 10 == 0:
                    console.print(f"  {len(out)} grant-to-read samples...")
        return out


def _sample_report(samples: list[_Sample], failures: Counter[str]) -> dict[str, Any]:
    return {
        "samples": len(samples),
        "decrypted_ok": sum(s.decrypted for s in samples),
        "failed": dict(failures),
        "ms": _percentiles([s.total for s in samples]),
        "grant_committed_ms": _percentiles([s.grant for s in samples]),
        "access_committed_ms": _percentiles([s.access for s in samples]),
        "busy_retries": sum(s.busy_retries for s in samples),
    }


class _Background(threading.Thread):
    """A paced pass of :func:`_run_phase` beside the samples; its result or its error."""

    def __init__(self, nodes: _Nodes, watcher: _Watcher, work: list[list[list[Transaction]]],
                 interval: float) -> None:
        super().__init__(daemon=True)
        self.args = (nodes, watcher, work, interval)
        self.base = watcher.total_txs  # committed before it
        self.clock_started = threading.Event()
        self.result: tuple[Any, ...] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        nodes, watcher, work, interval = self.args
        try:
            self.result = _run_phase(nodes, watcher, work, interval, self.base,
                                     PHASE_TIMEOUT_S, self.clock_started)
        except BaseException as e:  # noqa: BLE001 -- handed to the main thread
            self.error = e


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


def run_records_bench(*, validators: int, anchor_txs: int, records: int, samples: int,
                      clients: int, batch: int, console: Console, patients: int = 100,
                      block_interval_ms: int = 100, max_block_txs: int = 2000,
                      started: list[int] | None = None) -> dict[str, Any]:
    """The ``--app records`` run; see the module docstring. The pid of each node process
    is appended to ``started`` (when given) as it starts."""
    if min(validators, clients, batch, samples, patients) < 1 or anchor_txs < clients:
        raise SystemExit("--validators, --clients, --batch, --samples and --patients must be "
                         "at least 1, and --txs at least --clients")
    if records < clients or records // clients * clients < samples + WARMUP_SAMPLES:
        raise SystemExit(f"--records must be at least --clients and --samples + "
                         f"{WARMUP_SAMPLES}")
    cast = _Cast.make(clients, validators, patients)
    # fresh senders for each anchor pass: see _sign_client_batches
    anchor_keys = [[[SigningKey.generate() for _ in range(validators)] for _ in range(clients)]
                   for _ in ANCHOR_PASSES]
    console.print(f"pre-signing 2 x {anchor_txs // clients * clients} anchor transactions...")
    anchors = [[_sign_client_batches(keys[c], anchor_txs // clients, batch, c % validators,
                                     clients * i + c) for c in range(clients)]
               for i, keys in enumerate(anchor_keys)]
    console.print(f"sealing {records // clients * clients} records (FHIR validation, "
                  f"AES-256-GCM, HPKE {cast.patients[0].encryption.suite} for patient and "
                  "author) and signing their records.add...")
    sealer = cast.sealer()
    work = _seal_work(sealer, cast.authors, records // clients, batch, validators)
    with tempfile.TemporaryDirectory(prefix="medledger-bench-") as tmp:
        homes = _prepare_consortium(Path(tmp) / "consortium", validators,
                                    [k for keys in anchor_keys for g in keys for k in g],
                                    block_interval_ms, max_block_txs, cast.orgs())
        with _running(homes, started, console) as (nodes, watcher):
            result = _measure(nodes, watcher, homes, cast, anchors, work, sealer,
                              samples, batch, console)
        console.print("reading the results from node 0's store...")
        height, where = _results(homes[0])
    seen, rounds = result.pop("seen"), result.pop("rounds")
    phases = {name: _phase_report(result.pop(name), where, seen, rounds)
              for name in (*ANCHOR_PASSES, "records", "background")}
    return _report(validators, clients, batch, phases, result, sealer, height)


def _full_load(nodes: _Nodes, watcher: _Watcher, work: list[list[list[Transaction]]],
               what: str, console: Console) -> tuple[Any, ...]:
    """One pass of ``work`` as fast as the chain takes it (see :func:`_run_phase`)."""
    console.print(f"{what}: {sum(len(b) for c in work for b in c)} at full load...")
    phase = _run_phase(nodes, watcher, work, 0.0, watcher.total_txs, PHASE_TIMEOUT_S)
    console.print(f"{what}: {phase[2] / phase[0]:.0f} tx/s")
    return phase


def _measure(nodes: _Nodes, watcher: _Watcher, homes: list[Home], cast: _Cast,
             anchors: list[list[list[list[Transaction]]]],
             work: list[list[list[Transaction]]], sealer: _Sealer, samples: int, batch: int,
             console: Console) -> dict[str, Any]:
    """Steps 2 to 5 of the module docstring, on the running consortium."""
    upload = _setup(nodes, watcher, homes, cast, sealer, console)
    before = _full_load(nodes, watcher, anchors[0], "anchors", console)
    records = _full_load(nodes, watcher, work, "records.add", console)
    after = _full_load(nodes, watcher, anchors[1], "anchors", console)
    sampler = _GrantToRead(nodes.urls, sealer.records, cast.patients, cast.grantees)
    try:
        warmup = sampler.run(WARMUP_SAMPLES, None, time.monotonic() + 120, console)
        unloaded = _sample_report(warmup, sampler.failures)
        half = _half_load(nodes, watcher, cast, sealer, sampler, records[2] / records[0],
                          batch, samples, warmup, console)
    finally:
        sampler.close()
    return {ANCHOR_PASSES[0]: before, "records": records, ANCHOR_PASSES[1]: after,
            "upload": upload, "warmup": unloaded,
            **half, "seen": dict(watcher.seen),
            "rounds": _engine_rounds(homes[0], watcher.height)}


def _setup(nodes: _Nodes, watcher: _Watcher, homes: list[Home], cast: _Cast,
           sealer: _Sealer, console: Console) -> dict[str, Any]:
    """Steps 2 and 3: the identities committed on every node, then the uploads (their
    report)."""
    authors = [k for group in (*cast.authors, *cast.background) for k in group]
    console.print(f"registering {len(authors)} authors, {len(cast.grantees)} grantees and "
                  f"{len(cast.patients)} patients...")
    _run_phase(nodes, watcher, _registrations(cast.admins, authors, cast.grantees,
                                              cast.patients), 0.0, watcher.total_txs, 120)
    for url in nodes.urls:
        with Client(url) as client:
            _wait_height(client, watcher.height, 30)
    console.print(f"uploading {len(sealer.records)} ciphertexts...")
    upload = _upload(nodes.urls, sealer.records)
    upload["replicated_to_every_node"] = _replicated(homes, sealer.records, nodes)
    console.print(f"uploaded {upload['per_s']:.0f} blobs/s")
    return upload


def _half_load(nodes: _Nodes, watcher: _Watcher, cast: _Cast, sealer: _Sealer,
               sampler: _GrantToRead, rate: float, batch: int, samples: int,
               warmup: list[_Sample], console: Console) -> dict[str, Any]:
    """Step 5: the samples while the background runs; once it is done, until node 0 has
    committed all of it and of the samples."""
    background, offered, seconds = _background(nodes, watcher, cast, sealer, rate, batch,
                                               samples, warmup, console)
    committed = sampler.committed
    background.start()
    if not background.clock_started.wait(180):
        raise SystemExit("the background load did not start within 180 s")
    time.sleep(1.0)  # the paced load reaches its rate
    loaded = sampler.run(samples, background, time.monotonic() + seconds + 60, console)
    console.print(f"{len(loaded)} samples taken; waiting for the background load...")
    background.join(PHASE_TIMEOUT_S + 60)
    if background.error is not None:
        raise background.error
    if background.result is None:
        raise SystemExit("the background load did not finish")
    watcher.wait_total(background.base + background.result[2] + sampler.committed
                       - committed, 60)
    return {"background": background.result, "offered": offered,
            "loaded": _sample_report(loaded, sampler.failures),
            "loaded_all_under_load": all(s.under_load for s in loaded)}


def _background(nodes: _Nodes, watcher: _Watcher, cast: _Cast, sealer: _Sealer, rate: float,
                batch: int, samples: int, warmup: list[_Sample], console: Console
                ) -> tuple[_Background, float, float]:
    """The background pass at half of ``rate``, long enough for ``samples`` samples at
    ``LOADED_SLOWER`` times the mean time of the unloaded ones (bounded): (the thread, the
    offered rate, its planned seconds)."""
    each = sum(s.total for s in warmup) / len(warmup) if warmup else 1.0
    seconds = min(BACKGROUND_MAX_S, max(BACKGROUND_MIN_S,
                                        samples * LOADED_SLOWER * each + 10))
    offered = rate / 2
    clients = len(cast.background)
    small = max(1, min(batch, round(offered / clients / 5)))  # about 5 batches a second
    count = max(clients, round(offered * seconds))
    console.print(f"sealing {count} background records for {seconds:.0f} s at "
                  f"{offered:.0f} records/s (half load)...")
    background = _Sealer(sealer.patients, sealer.authors)
    background.first = len(sealer.records)
    work = _seal_work(background, cast.background, count // clients, small,
                      len(nodes.urls))
    interval = small / (offered / clients) if offered > 0 else 0.0
    return _Background(nodes, watcher, work, interval), offered, seconds


def _report(validators: int, clients: int, batch: int, phases: dict[str, dict[str, Any]],
            result: dict[str, Any], sealer: _Sealer, height: int) -> dict[str, Any]:
    records = phases["records"]
    anchors = sum(phases[name]["committed_tx_per_s"] for name in ANCHOR_PASSES) / 2
    ratio = records["committed_tx_per_s"] / anchors if anchors else 0.0
    client = sealer.costs.report(records["committed_tx_per_s"])
    p99 = result["loaded"]["ms"]["p99"]
    return {
        "app": "records",
        "engine": "cometbft",
        "validators": validators,
        "cores": os.cpu_count() or 1,
        "clients": clients,
        "batch": batch,
        "anchor_tx_per_s": round(anchors, 1),
        "anchor_tx_per_s_before_after": [phases[name]["committed_tx_per_s"]
                                         for name in ANCHOR_PASSES],
        "records_tx_per_s": records["committed_tx_per_s"],
        "ratio": round(ratio, 3),
        "target_ratio": RATIO_TARGET,
        "sealed_per_s_per_core": client["sealed_per_s_per_core"],
        "grant_to_read_ms": result["loaded"]["ms"],
        "p99_target_ms": P99_TARGET_MS,
        "targets_met": {"ratio": ratio >= RATIO_TARGET,
                        "grant_to_read_p99": p99 is not None and p99 < P99_TARGET_MS},
        "anchor": {"before": phases[ANCHOR_PASSES[0]], "after": phases[ANCHOR_PASSES[1]]},
        "records": {**records, "tx_bytes_mean": sealer.costs.tx_bytes // max(1, len(
            sealer.records))},
        "client_side": {**client, "upload": result["upload"]},
        "grant_to_read": {
            **result["loaded"], "all_under_load": result["loaded_all_under_load"],
            "without_load": result["warmup"],
            "background": {**phases["background"],
                           "offered_tx_per_s": round(result["offered"], 1)}},
        "height": height,
    }
