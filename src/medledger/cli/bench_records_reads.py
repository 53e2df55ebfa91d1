"""The records bench's grant-to-read samples at half load (see
:mod:`medledger.cli.bench_records`, step 5): one sample at a time, a patient's grant, the
grantee's access and first decrypted read, each through another node, while a paced
background of ``records.add`` runs at half the records rate.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from rich.console import Console

from medledger.cli.bench_consortium import _percentiles, _run_phase
from medledger.cli.bench_nodes import _Nodes, _Watcher
from medledger.cli.bench_records_cast import CHAIN_ID, _Cast, _Record, _seal_work, _Sealer
from medledger.client import ApiRefused, Client, Unreachable
from medledger.client.record_blobs import get_blob
from medledger.client.records import open_record, unwrap, wrap_for
from medledger.codec import pseudonym
from medledger.crypto import Keystore
from medledger.ledger import Transaction

T = TypeVar("T")

GRANT_MS = 3_600_000  # a sample's grant lasts an hour of block time
WAIT_S = 30.0  # one sample's transaction, committed
HEIGHT_WAIT_S = 10.0  # a node catching up with a height another node answered
BUSY_PAUSE_S = 0.02  # before a read answered 503 busy is asked again
BACKGROUND_MIN_S, BACKGROUND_MAX_S = 20.0, 300.0
LOADED_SLOWER = 3  # a sample at half load over one without (2 to 2.5 seen), with margin
PHASE_TIMEOUT_S = 900.0


def _wait_height(client: Client, height: int, timeout: float = HEIGHT_WAIT_S) -> None:
    """Until the node behind ``client`` has committed ``height`` (bounded)."""
    deadline = time.monotonic() + timeout
    while int(client.status()["height"]) < height:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{client.base_url} did not reach height {height} in "
                               f"{timeout:.0f} s")
        time.sleep(0.005)


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
