"""``medledger bench --app trace``: pack verification with its proofs on one node whose
state holds a million commissioned packs, and EPCIS capture in events per second on a
local consortium, beside the ``ledger.anchor`` rate of the same run.

**1. Verification, one node.** A one-validator home on CometBFT is laid out as the anchor
bench lays out its consortium (:mod:`medledger.cli.bench_consortium`), its genesis adding
a drug maker whose admin key is made here. Its state is then generated in this process,
through the chain code a node commits blocks with (``Chain.build_decided`` and
``Chain.commit_decided``, what ``FinalizeBlock`` and ``Commit`` run): a block registering
the maker's GS1 company prefix, one registering its product, then blocks of
``trace.capture`` transactions, each one EPCIS 2.0 commissioning ``ObjectEvent`` of
``packs_per_event`` packs (1,000 by default: about 45 KB, under the 64 KB a transaction
may have), signed by the maker's admin. Every transaction is executed by the app's rules
and must commit ``ok``. What this skips is CheckTx and consensus: a node on CometBFT
would check each transaction once more on admission (about 3/4 of the block's own cost,
in process) and spend the engine's time on blocks; generating the packs that way would
take about twice as long and measure nothing the verification depends on. Progress goes
to the console every ``PROGRESS_EVERY_S``.

CometBFT's block store knows none of these blocks, so the home's CometBFT genesis is set
to start the chain where the app's store ends, as a chain restarted from exported state
is: ``initial_height`` the next height and ``app_hash`` the state root. The node is then
started as any node is (``medledger up`` and its ``cometbft`` child; see
:func:`_start_where_the_store_ends` for CometBFT's part), but without checking its whole
store first (``verify_on_start``: minutes on a million packs). CometBFT commits the first
block of its own at once (a new chain's first block proves the app hash), and from then on
the node's proven answers carry CometBFT's signed header, as on any node.

``GET /v1/trace/verify?code=...`` is then asked one request at a time (one HTTP
connection, kept alive) for random packs: genuine ones (the label's lot and expiry as
commissioned) and never-issued ones (a serial of the same GTIN that was never
commissioned, on a label naming a real lot), in random order, after a few unmeasured
requests. Each answer must carry the sparse Merkle proof of the pack's entry (or of its
absence) and of its lot's, with the signed headers; the time of each request is wall time
from sending to the decoded JSON. The client's own check is timed apart: both proofs
checked against the validator set of the genesis (``verify_state_answer``, the keys
checked to be the ones asked for) and the verdict computed again from the proven entries
(the app's own ``verdict``, reached through the registry), which must match the node's.

**2. Capture rate, the consortium.** ``--validators`` nodes (4 for the stated target) as
in the records bench (:mod:`medledger.cli.bench_records`): the maker registers its prefix
and product (committed on every node before any clock), then back to back at full load
``--txs`` anchors, the ``trace.capture`` transactions (one commissioning event of
``capture_packs`` packs each, pre-signed by senders that are admins of the maker, one per
client and node, posted ``CAPTURE_BATCH`` a request), and ``--txs`` anchors again, all
through the anchor bench's client processes. The ratio is capture events committed per
second over the mean of the two anchor rates.

Progress goes to the console (stderr); every loop is bounded in count or time; node
processes are stopped by pid on every way out; the temporary folder with both chains is
removed at the end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import importlib
import json
import os
import random
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from medledger.apps import BlockContext, default_registry
from medledger.cli.bench_consortium import (
    _engine_rounds,
    _Nodes,
    _prepare_consortium,
    _results,
    _run_phase,
    _running,
    _sign_client_batches,
    _Watcher,
    end_process,
)
from medledger.cli.bench_records import _phase_report
from medledger.client import Client, VerificationFailed, verify_state_answer
from medledger.crypto import SigningKey
from medledger.ledger import Transaction, ValidatorSet
from medledger.node import Home, NodeConfig
from medledger.node.abci import AbciServer, LedgerApplication
from medledger.node.chain import Chain
from medledger.node.engine import EngineHome, cometbft_binary
from medledger.standards.gs1 import (
    LGTIN,
    SGTIN,
    Scan,
    check_digit,
    element_string,
    sgtin_urn,
)
from medledger.store import SQLiteStore

__all__ = ["run_trace_bench"]

CHAIN_ID = "bench"  # the anchor bench's consortium name
ANCHOR_PASSES = ("anchor_before", "anchor_after")  # around the capture pass
MAKER = "bench-maker"
COMPANY_PREFIX = "0614141"  # GS1's example company prefix
PRODUCT = "0" + COMPANY_PREFIX + "12345"
GTIN = PRODUCT + str(check_digit(PRODUCT))
LOT_PACKS = 10_000  # packs of one lot in the verification node's state
CAPTURE_LOT_EVENTS = 1_000  # capture events of one lot
CAPTURE_BATCH = 50  # captures a request, at most
VERIFY_P99_TARGET_MS = 5.0
WARMUP_REQUESTS = 50
PROVEN_WAIT_S = 60.0  # until the started node answers with a proof
HEIGHT_WAIT_S = 30.0
PHASE_TIMEOUT_S = 900.0
PROGRESS_EVERY_S = 10.0
GENERATED_ENGINE_HASH = b"medledger bench trace: generated block %d"
"""Hashed, what a generated block records as CometBFT's block hash (CometBFT never had it)."""


# EPCIS events and labels, as plain data -------------------------------------------------------
def _iso(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _urn(serial: str) -> str:
    return sgtin_urn(SGTIN(GTIN, serial), len(COMPANY_PREFIX))


def commissioning(serials: list[str], lot: str, expiry: str, when_ms: int) -> dict[str, Any]:
    """An EPCIS 2.0 ObjectEvent ADD, business step commissioning, of ``serials`` of the
    bench's product in ``lot`` expiring on ``expiry`` (YYYY-MM-DD)."""
    return {"type": "ObjectEvent", "eventTime": _iso(when_ms), "eventTimeZoneOffset": "+00:00",
            "action": "ADD", "bizStep": "commissioning",
            "epcList": [_urn(s) for s in serials],
            "ilmd": {"cbvmda:lotNumber": lot, "cbvmda:itemExpirationDate": expiry}}


def _expiry(genesis_ms: int) -> str:
    """Two years after the chain's start: no pack is expired when verified."""
    start = datetime.datetime.fromtimestamp(genesis_ms / 1000, tz=datetime.UTC).date()
    return start.replace(year=start.year + 2, day=min(start.day, 28)).isoformat()


def _pack_key(serial: str) -> str:
    return f"trace/pack/{SGTIN(GTIN, serial).key}"


def _lot_key(lot: str) -> str:
    return f"trace/lot/{LGTIN(GTIN, lot).key}"


def _verify_serial(index: int) -> str:
    """Pack ``index`` of the verification node (indices at and past the packs commissioned
    are the never-issued serials)."""
    return f"V{index:09d}"


def _verify_lot(index: int) -> str:
    return f"B{index // LOT_PACKS:05d}"


def _master_data(admin: SigningKey, first_nonce: int) -> list[Transaction]:
    """The maker's company prefix, then its product (two blocks: the product's check reads
    the prefix)."""
    return [Transaction.create(admin, CHAIN_ID, "trace.prefix", first_nonce,
                               {"prefix": COMPANY_PREFIX}),
            Transaction.create(admin, CHAIN_ID, "trace.product", first_nonce + 1,
                               {"gtin": GTIN, "name": "Benchmarin 10 mg tablets",
                                "ndc": "0777-3105-02"})]


def _maker(admins: list[SigningKey]) -> dict[str, Any]:
    return {"id": MAKER, "name": "Bench drug maker", "role": "manufacturer",
            "admins": [k.public_key.hex() for k in admins]}


def _verdict_function() -> Any:
    """The trace app's ``verdict`` (what ``medledger drugs verify`` recomputes), found
    through the registry as the API finds an app's routes: the module ``verify`` beside
    the app's (the command line never imports an app by name)."""
    package = type(default_registry().app("trace")).__module__
    return importlib.import_module(f"{package}.verify").verdict


# 1. the verification node: its state generated in process --------------------------------------
@dataclass(slots=True)
class _Generated:
    packs: int = 0
    txs: int = 0
    blocks: int = 0
    tx_bytes: int = 0
    sign_s: float = 0.0
    execute_s: float = 0.0  # Chain.build_decided: the app's rules and the state tree
    commit_s: float = 0.0  # Chain.commit_decided: the store's transaction
    seconds: float = 0.0
    height: int = 0
    root: bytes = b""
    last_time: int = 0
    failed: Counter[str] = field(default_factory=Counter)

    def report(self, disk: dict[str, int]) -> dict[str, Any]:
        store = disk["store_bytes"]
        return {
            "packs": self.packs, "transactions": self.txs, "blocks": self.blocks,
            "tx_bytes_mean": self.tx_bytes // max(1, self.txs),
            "seconds": round(self.seconds, 1),
            "packs_per_s": round(self.packs / self.seconds) if self.seconds else None,
            "seconds_split": {"sign": round(self.sign_s, 1),
                              "execute_and_state_tree": round(self.execute_s, 1),
                              "store_commit": round(self.commit_s, 1)},
            "us_per_pack": round(self.seconds / max(1, self.packs) * 1e6, 1),
            "failed_in_block": dict(self.failed),
            "height": self.height,
            "disk_bytes": disk, "store_bytes_per_pack": round(store / max(1, self.packs)),
        }


def _generate(home: Home, admin: SigningKey, packs: int, per_event: int, txs_per_block: int,
              expiry: str, console: Console) -> _Generated:
    """Commit the master data and ``packs`` commissioned packs into ``home``'s store, in
    this process, with the chain code a node commits blocks with."""
    genesis = home.genesis()
    proposer = genesis.validators.validators[0].public_key
    out = _Generated()
    store = SQLiteStore(home.store_path)
    try:
        chain = Chain(store, genesis, default_registry())
        start = time.perf_counter()

        def commit(txs: list[Transaction]) -> None:
            height = chain.height + 1
            ctx = BlockContext(chain.chain_id, height, genesis.genesis_time + height - 1)
            t0 = time.perf_counter()
            block, record = chain.build_decided(
                txs, ctx, proposer, hashlib.sha256(GENERATED_ENGINE_HASH % height).digest())
            t1 = time.perf_counter()
            chain.commit_decided(block, record)
            out.commit_s += time.perf_counter() - t1
            out.execute_s += t1 - t0
            out.failed.update(r.code for r in block.results if r.code != "ok")
            out.blocks += 1
            out.last_time = ctx.time

        for tx in _master_data(admin, 1):
            commit([tx])
        if out.failed:
            raise SystemExit(f"the master data failed: {dict(out.failed)}")
        nonce, made, last_said = 2, 0, time.monotonic()
        events = -(-packs // per_event)
        for first_event in range(0, events, txs_per_block):  # one block a round
            t0 = time.perf_counter()
            txs = []
            for event in range(first_event, min(events, first_event + txs_per_block)):
                low, high = event * per_event, min(packs, (event + 1) * per_event)
                nonce += 1
                body = {"events": [commissioning(
                    [_verify_serial(i) for i in range(low, high)], _verify_lot(low), expiry,
                    genesis.genesis_time + event)]}
                txs.append(Transaction.create(admin, CHAIN_ID, "trace.capture", nonce, body))
                out.tx_bytes += len(txs[-1].raw)
                made += high - low
            out.sign_s += time.perf_counter() - t0
            commit(txs)
            out.txs += len(txs)
            out.packs = made
            if out.failed:
                raise SystemExit(f"generating the packs failed at height {chain.height}: "
                                 f"{dict(out.failed)}")
            if time.monotonic() - last_said > PROGRESS_EVERY_S or made == packs:
                last_said = time.monotonic()
                spent = time.perf_counter() - start
                left = spent / made * (packs - made)
                console.print(f"  {made:,} of {packs:,} packs committed in {spent:.0f} s "
                              f"({made / spent:,.0f} packs/s; height {chain.height}; about "
                              f"{left:.0f} s to go)")
        out.seconds = time.perf_counter() - start
        out.height = chain.height
        out.root = chain.state_root.hash
    finally:
        store.close()
    return out


def _start_where_the_store_ends(home: Home, height: int, root: bytes, last_time: int,
                               started: list[int] | None) -> None:
    """Have CometBFT start the chain at ``height + 1`` on the app's state root, after the
    last generated block's time, as a chain restarted from exported state starts.

    CometBFT 0.38 keeps the state it makes from its genesis (the validators, the app
    version) only when it runs ``InitChain``, which it does only for an app at height 0;
    started at once on the generated store, it would find no validators and stop. So
    CometBFT is first run with the node's own ABCI application over an empty store,
    served from this process, and a stand-in validator key (so that it could make no
    block): it runs ``InitChain``, keeps its genesis state (the app hash of the genesis
    included), then stops by itself, since the empty app's hash is not that one (it is
    stopped if its RPC answers instead). The node then starts on the generated store as
    usual: CometBFT checks that the app's hash is the one of its genesis state and goes
    on from there."""
    engine = EngineHome(home.path)
    path = engine.config_dir / "genesis.json"
    doc = json.loads(path.read_text())
    doc.update({"initial_height": str(height + 1), "app_hash": root.hex().upper(),
                "genesis_time": _iso(last_time + 1000)})
    path.write_text(json.dumps(doc, indent=2) + "\n")
    key_path = engine.config_dir / "priv_validator_key.json"
    real = key_path.read_bytes()
    stand_in = SigningKey.generate()
    key_path.write_text(json.dumps({
        "address": hashlib.sha256(stand_in.public_key).hexdigest()[:40].upper(),
        "pub_key": {"type": "tendermint/PubKeyEd25519",
                    "value": base64.b64encode(stand_in.public_key).decode()},
        "priv_key": {"type": "tendermint/PrivKeyEd25519", "value": base64.b64encode(
            stand_in.seed + stand_in.public_key).decode()}}))
    try:
        with tempfile.TemporaryDirectory(prefix="medledger-empty-") as empty:
            asyncio.run(_keep_genesis_state(home, engine, Path(empty), started))
    finally:
        key_path.write_bytes(real)


async def _keep_genesis_state(home: Home, engine: EngineHome, empty: Path,
                              started: list[int] | None) -> None:
    """CometBFT's handshake with the node's application over an empty store (see
    :func:`_start_where_the_store_ends`)."""
    store = SQLiteStore(empty / "store.db")
    server = AbciServer(LedgerApplication(Chain(store, home.genesis(), default_registry())),
                        engine.abci_address)
    proc: subprocess.Popen[bytes] | None = None
    try:
        await server.start()
        with open(home.path / "cometbft-genesis-state.log", "ab") as log:
            proc = subprocess.Popen([str(cometbft_binary()), "start", "--home", str(engine.path)],
                                    stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        if started is not None:
            started.append(proc.pid)
        deadline = time.monotonic() + HEIGHT_WAIT_S
        async with httpx.AsyncClient(base_url=f"http://{engine.rpc()}", timeout=2) as rpc:
            while proc.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    if (await rpc.get("/status")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("CometBFT did not keep its genesis state in time")
                await asyncio.sleep(0.1)
    finally:
        if proc is not None:
            end_process(proc)
        await server.close()
        store.close()


def _disk(home: Home) -> dict[str, int]:
    """Bytes on disk: the app's store (SQLite with its WAL) and CometBFT's data."""
    def size(folder: Path, prefix: str = "") -> int:
        if not folder.exists():
            return 0
        return sum(p.stat().st_size for p in folder.rglob("*")
                   if p.is_file() and p.name.startswith(prefix))

    store = home.store_path
    return {"store_bytes": size(store.parent, store.name),
            "cometbft_bytes": size(EngineHome(home.path).path / "data")}


def _wait_proven(url: str, key: str, nodes: _Nodes) -> int:
    """Until the node answers ``key`` with a proof (its first signed header in); the
    proven height."""
    deadline = time.monotonic() + PROVEN_WAIT_S
    with httpx.Client(base_url=url, timeout=10) as http:
        while time.monotonic() < deadline:
            nodes.check_alive()
            answer = http.get(f"/v1/state/{key}")
            if answer.status_code == 200 and "light" in answer.json():
                return int(answer.json()["height"])
            time.sleep(0.1)
    raise SystemExit(f"the verification node gave no proven answer within {PROVEN_WAIT_S:.0f} s")


@dataclass(frozen=True, slots=True)
class _Scan:
    code: str
    serial: str
    lot: str
    expiry: str
    genuine: bool


def _labels(packs: int, samples: int, expiry: str, rng: random.Random) -> list[_Scan]:
    """``samples`` genuine labels of random commissioned packs and as many of never-issued
    serials (naming a real lot), in random order. The code is a GS1 element string, as
    printed under the DataMatrix."""
    genuine = rng.sample(range(packs), min(samples, packs))
    fake = rng.sample(range(packs, 2 * packs + samples), samples)
    out = []
    for index in genuine + fake:
        serial = _verify_serial(index)
        lot = _verify_lot(index if index < packs else rng.randrange(packs))
        code = element_string(Scan(gtin=GTIN, serial=serial, lot=lot, expiry=expiry))
        out.append(_Scan(code, serial, lot, expiry, index < packs))
    rng.shuffle(out)
    return out


@dataclass(slots=True)
class _Verified:
    """Per kind (genuine, never issued): request times, client check times, answer sizes,
    and the failures by kind of fault."""

    request_s: dict[bool, list[float]] = field(default_factory=lambda: {True: [], False: []})
    check_s: dict[bool, list[float]] = field(default_factory=lambda: {True: [], False: []})
    answer_bytes: dict[bool, list[int]] = field(default_factory=lambda: {True: [], False: []})
    failures: Counter[str] = field(default_factory=Counter)
    heights: set[int] = field(default_factory=set)


def _check(answer: dict[str, Any], label: _Scan, validators: ValidatorSet, verdict: Any
           ) -> str | None:
    """The client's check of one answer: both proofs against ``validators``, each for the
    key asked for, and the verdict recomputed from the proven entries; None when all
    holds, else what failed."""
    try:
        pack = verify_state_answer(answer["pack"], validators, CHAIN_ID)
        lot = None
        if answer["lot"] is not None:
            lot = verify_state_answer(answer["lot"], validators, CHAIN_ID)
    except (VerificationFailed, KeyError, TypeError) as e:
        return f"proof: {e}"
    if pack.key != _pack_key(label.serial):
        return "the pack's proof is for another key"
    lot_no = (pack.value or {}).get("lot") or label.lot
    if lot is None or lot.key != _lot_key(lot_no):
        return "the lot's proof is missing or for another key"
    mine = verdict(label.lot, label.expiry, pack.value, lot.value, None, pack.header.time)
    if (mine.verdict, list(mine.reasons)) != (answer["verdict"], answer["reasons"]):
        return "the node's verdict differs from the proven entries'"
    expected = ("GENUINE", []) if label.genuine else ("SUSPECT", ["never_issued"])
    if (mine.verdict, list(mine.reasons)) != expected:
        return f"{'genuine' if label.genuine else 'never-issued'} pack found " \
               f"{mine.verdict} {list(mine.reasons)}"
    return None


def _verify_all(url: str, warmup: list[_Scan], labels: list[_Scan], validators: ValidatorSet,
                nodes: _Nodes, console: Console) -> _Verified:
    """Ask ``/v1/trace/verify`` for each label in turn, ``warmup`` first and not counted,
    timing the request and the client's check apart."""
    verdict = _verdict_function()
    out = _Verified()
    with httpx.Client(base_url=url, timeout=30) as http:
        for i, label in enumerate(warmup + labels):
            if i % 500 == 0:
                nodes.check_alive()
            t0 = time.perf_counter()
            response = http.get("/v1/trace/verify", params={"code": label.code})
            answer = response.json()
            t1 = time.perf_counter()
            fault = _check(answer, label, validators, verdict) \
                if response.status_code == 200 else f"HTTP {response.status_code}"
            t2 = time.perf_counter()
            if i < len(warmup):
                continue
            if fault is not None:
                out.failures[fault] += 1
                continue
            out.request_s[label.genuine].append(t1 - t0)
            out.check_s[label.genuine].append(t2 - t1)
            out.answer_bytes[label.genuine].append(len(response.content))
            out.heights.add(int(answer["pack"]["height"]))
            done = i + 1 - len(warmup)
            if done % 1000 == 0:
                console.print(f"  {done} of {len(labels)} verifications...")
    return out


def _ms(values: list[float]) -> dict[str, Any]:
    """p50, p99 and the largest, in ms (to 0.01 ms)."""
    if not values:
        return {"p50": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered) * 1000, 2),
            "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2),
            "max": round(ordered[-1] * 1000, 2),
            "mean": round(statistics.fmean(ordered) * 1000, 2)}


def _verification(root: Path, packs: int, per_event: int, txs_per_block: int, samples: int,
                  started: list[int] | None, console: Console, rng: random.Random
                  ) -> dict[str, Any]:
    """Step 1 of the module docstring; its report."""
    admin = SigningKey.generate()
    home = _prepare_consortium(root, 1, [], 100, 2000, [_maker([admin])])[0]
    # a node checks its whole store before it starts, by default: on a million packs that
    # takes minutes, and is no part of what is measured here
    NodeConfig(**{**home.config().to_dict(), "verify_on_start": False}).save(home.path)
    expiry = _expiry(home.genesis().genesis_time)
    console.print(f"verification node: generating {packs:,} commissioned packs in process "
                  f"({per_event} a commissioning event and a trace.capture, "
                  f"{txs_per_block} transactions a block)...")
    generated = _generate(home, admin, packs, per_event, txs_per_block, expiry, console)
    _start_where_the_store_ends(home, generated.height, generated.root, generated.last_time,
                                started)
    labels = _labels(packs, samples, expiry, rng)
    warmup = _labels(packs, WARMUP_REQUESTS // 2, expiry, rng)
    validators = home.genesis().validators
    with _running([home], started, console) as (nodes, _watcher):
        proven = _wait_proven(nodes.urls[0], _pack_key(_verify_serial(0)), nodes)
        console.print(f"verification node up at height {proven} (generated up to "
                      f"{generated.height}); {2 * samples} verifications, one at a time...")
        found = _verify_all(nodes.urls[0], warmup, labels, validators, nodes, console)
        with Client(nodes.urls[0]) as client:
            tip = int(client.status()["height"])
    disk = _disk(home)
    every = found.request_s[True] + found.request_s[False]
    p99 = _ms(every)["p99"]
    return {
        "packs": packs,
        "generation": generated.report(disk),
        "node_height": tip,
        "proven_heights": sorted(found.heights),
        "requests": {"genuine": len(found.request_s[True]),
                     "never_issued": len(found.request_s[False]),
                     "warmup_not_counted": len(warmup)},
        "failed": dict(found.failures),
        "request_ms": {"all": _ms(every), "genuine": _ms(found.request_s[True]),
                       "never_issued": _ms(found.request_s[False])},
        "client_check_ms": {"genuine": _ms(found.check_s[True]),
                            "never_issued": _ms(found.check_s[False])},
        "answer_bytes_mean": {
            kind: round(statistics.fmean(sizes)) if sizes else None
            for kind, sizes in (("genuine", found.answer_bytes[True]),
                                ("never_issued", found.answer_bytes[False]))},
        "p99_ms": p99,
    }


# 2. capture rate on the consortium -------------------------------------------------------------
class _Captures:
    """The ``make`` of :func:`_sign_client_batches` for captures: each call is one
    commissioning event of ``packs`` new packs (serials numbered across calls), in lots of
    ``CAPTURE_LOT_EVENTS`` events."""

    def __init__(self, packs: int, start_ms: int, expiry: str) -> None:
        self.packs, self.start_ms, self.expiry = packs, start_ms, expiry
        self.count = 0
        self.tx_bytes = 0

    def __call__(self, key: SigningKey, nonce: int, _index: int) -> Transaction:
        n = self.count
        self.count += 1
        serials = [f"C{n * self.packs + j:010d}" for j in range(self.packs)]
        body = {"events": [commissioning(serials, f"C{n // CAPTURE_LOT_EVENTS:05d}",
                                         self.expiry, self.start_ms + n)]}
        tx = Transaction.create(key, CHAIN_ID, "trace.capture", nonce, body)
        self.tx_bytes += len(tx.raw)
        return tx


def _wait_height(url: str, height: int, nodes: _Nodes) -> None:
    deadline = time.monotonic() + HEIGHT_WAIT_S
    with Client(url) as client:
        while int(client.status()["height"]) < height:
            nodes.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not reach height {height} in {HEIGHT_WAIT_S:.0f} s")
            time.sleep(0.02)


def _setup_master_data(nodes: _Nodes, admin: SigningKey, console: Console) -> None:
    """The prefix, then the product, each committed (through node 0), then on every node."""
    console.print("registering the maker's company prefix and product...")
    height = 0
    with Client(nodes.urls[0]) as client:
        for tx in _master_data(admin, 1):
            answer = client.submit(tx, wait=True, timeout=HEIGHT_WAIT_S)
            if answer.get("code") != "ok":
                raise SystemExit(f"{tx.type} was not committed ok: {answer}")
            height = max(height, int(answer["height"]))
    for url in nodes.urls:
        _wait_height(url, height, nodes)


def _full_load(nodes: _Nodes, watcher: _Watcher, work: list[list[list[Transaction]]],
               what: str, console: Console) -> tuple[Any, ...]:
    console.print(f"{what}: {sum(len(b) for c in work for b in c)} at full load...")
    phase = _run_phase(nodes, watcher, work, 0.0, watcher.total_txs, PHASE_TIMEOUT_S)
    console.print(f"{what}: {phase[2] / phase[0]:.0f} tx/s")
    return phase


def _capture_rate(root: Path, validators: int, anchor_txs: int, events: int,
                  capture_packs: int, clients: int, batch: int, block_interval_ms: int,
                  max_block_txs: int, started: list[int] | None, console: Console
                  ) -> dict[str, Any]:
    """Step 2 of the module docstring; its report."""
    admin = SigningKey.generate()
    capture_keys = [[SigningKey.generate() for _ in range(validators)] for _ in range(clients)]
    anchor_keys = [[[SigningKey.generate() for _ in range(validators)] for _ in range(clients)]
                   for _ in ANCHOR_PASSES]
    console.print(f"pre-signing 2 x {anchor_txs // clients * clients} anchors and "
                  f"{events // clients * clients} trace.capture transactions (one "
                  f"commissioning event of {capture_packs} packs each)...")
    anchors = [[_sign_client_batches(keys[c], anchor_txs // clients, batch, c % validators,
                                     clients * i + c) for c in range(clients)]
               for i, keys in enumerate(anchor_keys)]
    homes = _prepare_consortium(
        root, validators, [k for keys in anchor_keys for g in keys for k in g],
        block_interval_ms, max_block_txs,
        [_maker([admin, *(k for g in capture_keys for k in g)])])
    genesis = homes[0].genesis()
    captures = _Captures(capture_packs, genesis.genesis_time, _expiry(genesis.genesis_time))
    # captures go in smaller requests than anchors: a node answers a request once CometBFT
    # has checked each of its transactions, and CheckTx waits behind the block being
    # executed, so that 500 captures were not all checked within the node's 30 s and
    # were answered `unavailable` (committed all the same)
    small = max(1, min(batch, CAPTURE_BATCH))
    work = [_sign_client_batches(capture_keys[c], events // clients, small, c % validators,
                                 2 * clients + c, make=captures) for c in range(clients)]
    with _running(homes, started, console) as (nodes, watcher):
        _setup_master_data(nodes, admin, console)
        before = _full_load(nodes, watcher, anchors[0], "anchors", console)
        capture = _full_load(nodes, watcher, work, "trace.capture", console)
        after = _full_load(nodes, watcher, anchors[1], "anchors", console)
        seen, rounds = dict(watcher.seen), _engine_rounds(homes[0], watcher.height)
    console.print("reading the results from node 0's store...")
    height, where = _results(homes[0])
    phases = {name: _phase_report(phase, where, seen, rounds)
              for name, phase in ((ANCHOR_PASSES[0], before), ("capture", capture),
                                  (ANCHOR_PASSES[1], after))}
    for name, phase in phases.items():
        if phase["committed_ok"] > phase["accepted"]:
            console.print(f"[yellow]warning[/]: {name}: {phase['committed_ok']} committed but "
                          f"{phase['accepted']} accepted (refused: {phase['refused']}); the "
                          "clock stopped at the accepted ones, so the rate is too high")
    anchor_rate = sum(phases[name]["committed_tx_per_s"] for name in ANCHOR_PASSES) / 2
    events_per_s = phases["capture"]["committed_tx_per_s"]  # one event a transaction
    return {
        "validators": validators, "clients": clients, "batch": batch,
        "anchor_tx_per_s": round(anchor_rate, 1),
        "anchor_tx_per_s_before_after": [phases[n]["committed_tx_per_s"]
                                         for n in ANCHOR_PASSES],
        "capture_events_per_s": events_per_s,
        "capture_packs_per_s": round(events_per_s * capture_packs, 1),
        "ratio": round(events_per_s / anchor_rate, 3) if anchor_rate else None,
        "packs_per_event": capture_packs,
        "capture_batch": small,
        "tx_bytes_mean": captures.tx_bytes // max(1, captures.count),
        "anchor": {"before": phases[ANCHOR_PASSES[0]], "after": phases[ANCHOR_PASSES[1]]},
        "capture": phases["capture"],
        "height": height,
    }


def run_trace_bench(*, validators: int, anchor_txs: int, packs: int, events: int,
                    samples: int, clients: int, batch: int, console: Console,
                    packs_per_event: int = 1000, txs_per_block: int = 20,
                    capture_packs: int = 10, block_interval_ms: int = 100,
                    max_block_txs: int = 2000, seed: int | None = None,
                    started: list[int] | None = None) -> dict[str, Any]:
    """The ``--app trace`` run; see the module docstring. The pid of each node process is
    appended to ``started`` (when given) as it starts."""
    if min(validators, clients, batch, samples, packs_per_event, txs_per_block,
           capture_packs) < 1 or anchor_txs < clients or events < clients:
        raise SystemExit("--validators, --clients, --batch and --samples must be at least 1, "
                         "and --txs and --events at least --clients")
    if packs < samples:
        raise SystemExit("--packs must be at least --samples")
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="medledger-bench-trace-") as tmp:
        verify = _verification(Path(tmp) / "verify", packs, packs_per_event, txs_per_block,
                               samples, started, console, rng)
        capture = _capture_rate(Path(tmp) / "consortium", validators, anchor_txs, events,
                                capture_packs, clients, batch, block_interval_ms,
                                max_block_txs, started, console)
    p99 = verify["p99_ms"]
    return {
        "app": "trace",
        "engine": "cometbft",
        "cores": os.cpu_count() or 1,
        "verify_p99_ms": p99,
        "verify_p99_target_ms": VERIFY_P99_TARGET_MS,
        "verify_packs_in_state": packs,
        "capture_events_per_s": capture["capture_events_per_s"],
        "anchor_tx_per_s": capture["anchor_tx_per_s"],
        "capture_to_anchor_ratio": capture["ratio"],
        "targets_met": {"verify_p99": p99 is not None and p99 < VERIFY_P99_TARGET_MS
                        and not verify["failed"]},
        "verification": verify,
        "capture_rate": capture,
    }

