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
   grant's, is asked again within the sample's time (counted in ``busy_retries``). A
   sample's time runs from submitting the grant to the plaintext, which is checked against
   the original. A few samples without load come first: their mean sizes the background,
   and they are reported apart. Samples are taken while the background runs, at most ``samples``.

Every transaction is submitted with the API a client uses (``POST /v1/txs``, with
``wait=true&proven=false`` for the samples: an answer once committed, without waiting for
the next block's signed header, which no step of a sample needs but the proven read, and
that read waits for its own). Every loop is
bounded in count and time; node processes are stopped by pid on every way out.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console

from medledger.cli.bench_consortium import (
    _engine_rounds,
    _latencies,
    _percentiles,
    _prepare_consortium,
    _results,
    _run_phase,
    _running,
    _sign_client_batches,
)
from medledger.cli.bench_nodes import _cpu_split, _Nodes, _Watcher
from medledger.cli.bench_records_cast import (
    AUTHORS_ORG,
    CHAIN_ID,
    GRANTEES_ORG,
    _Cast,
    _Record,
    _seal_work,
    _Sealer,
)
from medledger.cli.bench_records_reads import (
    PHASE_TIMEOUT_S,
    _GrantToRead,
    _half_load,
    _sample_report,
    _wait_height,
)
from medledger.client import Client
from medledger.client.record_blobs import put_blob
from medledger.crypto import Keystore, SigningKey
from medledger.ledger import Transaction
from medledger.node import Home

__all__ = ["run_records_bench"]

ANCHOR_PASSES = ("anchor_before", "anchor_after")  # around the records pass
RATIO_TARGET = 0.5  # records committed / anchors committed, same run
P99_TARGET_MS = 2000  # grant to first decrypted read, at half load
WARMUP_SAMPLES = 3
UPLOADS_PER_NODE = 2  # upload threads per node
REPLICATION_WAIT_S = 120.0


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
