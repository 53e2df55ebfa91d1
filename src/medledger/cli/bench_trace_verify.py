"""The trace bench's verification part (see :mod:`medledger.cli.bench_trace`, part 1): one
node whose state holds many commissioned packs, generated in process with the chain code a
node commits blocks with, then started on CometBFT where its store ends, and asked to
verify random genuine and never-issued packs one at a time, each answer's proofs and
verdict checked by the client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import importlib
import json
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
from medledger.cli.bench_consortium import _prepare_consortium, _running
from medledger.cli.bench_nodes import _Nodes, end_process
from medledger.cli.bench_trace_epcis import (
    CHAIN_ID,
    GTIN,
    HEIGHT_WAIT_S,
    _expiry,
    _iso,
    _maker,
    _master_data,
    commissioning,
)
from medledger.client import Client, VerificationFailed, verify_state_answer
from medledger.crypto import SigningKey
from medledger.ledger import Transaction, ValidatorSet
from medledger.node import Home, NodeConfig
from medledger.node.abci import AbciServer, LedgerApplication
from medledger.node.chain import Chain
from medledger.node.engine import EngineHome, cometbft_binary
from medledger.standards.gs1 import LGTIN, SGTIN, Scan, element_string
from medledger.store import SQLiteStore

LOT_PACKS = 10_000  # packs of one lot in the verification node's state
WARMUP_REQUESTS = 50
PROVEN_WAIT_S = 60.0  # until the started node answers with a proof
PROGRESS_EVERY_S = 10.0
GENERATED_ENGINE_HASH = b"medledger bench trace: generated block %d"
"""Hashed, what a generated block records as CometBFT's block hash (CometBFT never had it)."""


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
