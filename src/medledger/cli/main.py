"""The ``medledger`` command line."""

from __future__ import annotations

import gc
import json
import os
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from medledger.apps import default_registry
from medledger.apps.options import LimitOpt, hex_text, show_page
from medledger.cli.errors import err, friendly, iso_time
from medledger.cli.events import events_app
from medledger.cli.host import (
    CliHost,
    add_app_commands,
    api_url,
    passphrase,
    trusted_for,
    trusted_validators,
)
from medledger.cli.net import net_app
from medledger.client import (
    Client,
    VerificationFailed,
    verify_block_answer,
    verify_state_answer,
    verify_tx_answer,
)
from medledger.crypto import DEFAULT_SUITE, SUITES, Keystore
from medledger.node import ConfigError, Home, verify_store
from medledger.node.engine_node import open_node

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="medledger: a permissioned BFT ledger for a healthcare consortium.")
keys_app = typer.Typer(no_args_is_help=True, help="Make and inspect key files.")
tx_app = typer.Typer(no_args_is_help=True, help="Look up committed transactions.")
state_app = typer.Typer(no_args_is_help=True, help="Read state entries with proofs.")
app.add_typer(keys_app, name="keys")
app.add_typer(tx_app, name="tx")
app.add_typer(state_app, name="state")
app.add_typer(net_app, name="net")
app.add_typer(events_app, name="events")
add_app_commands(app, default_registry().apps, CliHost())
out = Console(soft_wrap=True)

HomeOpt = Annotated[Path, typer.Option("--home", help="The node's home directory.")]


ApiOpt = Annotated[str | None, typer.Option(
    "--api", help="The node's API as HOST:PORT or URL (default: from the home's config).")]
ListHomeOpt = Annotated[Path | None, typer.Option(
    "--home", help="The node's home directory (its config names the API).")]
BlocksJsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print the node's answer as JSON (times as milliseconds since the epoch).")]
TxsJsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print the node's answer as JSON instead of a table.")]


# keys ---------------------------------------------------------------------------------------
@keys_app.command("new")
@friendly
def keys_new(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the keystore.")],
    suite: Annotated[str, typer.Option(help=f"HPKE suite: {', '.join(SUITES)}.")] = DEFAULT_SUITE,
) -> None:
    """Make a signing key and an encryption key in a passphrase-protected keystore."""
    if out_file.exists():
        raise ConfigError(f"{out_file} exists; choose another --out")
    keys = Keystore.generate(suite)
    keys.save(out_file, passphrase(confirm=True))
    out.print(f"wrote {out_file}")
    out.print(f"signing key    {keys.signing.public_key.hex()}")
    out.print(f"encryption key {keys.encryption.suite} ({len(keys.encryption.public_bytes())} B)")


@keys_app.command("show")
@friendly
def keys_show(path: Annotated[Path, typer.Argument(help="The keystore file to read.")]) -> None:
    """Print the public keys held in a keystore."""
    keys = Keystore.load(path, passphrase(confirm=False))
    out.print(f"signing key    {keys.signing.public_key.hex()}")
    out.print(f"encryption key {keys.encryption.suite} {keys.encryption.public_bytes().hex()}")


# init / up / verify ----------------------------------------------------------------------------
@app.command()
@friendly
def init(
    home: HomeOpt,
    chain_id: Annotated[str, typer.Option("--chain-id", help="The chain's id.")] = "medledger-local",
    api: Annotated[str, typer.Option(help="API address HOST:PORT.")] = "127.0.0.1:26657",
    demo: Annotated[bool, typer.Option(help="Add the demo organisations.")] = False,
    validators: Annotated[int | None, typer.Option(
        help="Write a local consortium of N validator homes under --home instead (each "
             "with its own keys, store and ports; the demo organisations are members).")] = None,
    base_port: Annotated[int, typer.Option(
        help="With --validators: node i takes CometBFT's p2p port BASE+10i, the API port "
             "BASE+10i+1 and CometBFT's RPC BASE+10i+2.")
    ] = 26656,
) -> None:
    """Write a new node home: config, genesis, validator key, an admin key, and the home of
    the CometBFT process the node runs beside it (built by `make setup`)."""
    if validators is not None:
        from medledger.node.consortium import Consortium

        consortium = Consortium.init(home, chain_id, validators, base_port=base_port,
                                     engine=True)
        out.print(f"initialised a {validators}-validator consortium [bold]{chain_id}[/] in {home}")
        for node in consortium.nodes:
            out.print(f"  {node.name}: {node.home}  API http://{node.api}  p2p {node.p2p}")
        out.print(f"  start it: medledger net up --home {home}")
        return
    from medledger.node.config import parse_hostport

    _, api_port = parse_hostport(api)
    rpc = f"127.0.0.1:{api_port + 1}"
    Home.init(home, chain_id, api=api, demo=demo, engine_rpc=rpc)
    out.print(f"initialised chain [bold]{chain_id}[/] in {home}")
    out.print(f"  admin key: {home / 'keys' / 'admin.key'}   start it: medledger up --home {home}")


@app.command()
@friendly
def up(home: HomeOpt, api: Annotated[str | None, typer.Option(
        help="Serve the API on HOST:PORT instead of the config's.")] = None) -> None:
    """Run the node and its API until interrupted."""
    import uvicorn

    from medledger.api import create_app

    import logging

    logging.basicConfig(level=os.environ.get("MEDLEDGER_LOG", "WARNING").upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    err.print(f"verifying the store in {home} before start...", highlight=False)
    node = open_node(Home(home), api=api)
    node.verifier.start()
    # Fewer, cheaper cyclic-GC passes: what is loaded by now lives as long as the node, and
    # the hot path allocates many small acyclic objects (transactions, tree nodes).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # The block producer thread and intake share the GIL; a short switch interval keeps
    # intake from queueing behind a whole block's Python work after each SQLite read.
    sys.setswitchinterval(0.0005)
    config = node.config
    out.print(f"medledger node: chain [bold]{node.chain.chain_id}[/] at height "
              f"{node.chain.height}, API http://{config.api}", highlight=False)
    server = uvicorn.Server(uvicorn.Config(
        create_app(node, close_node=True), host=config.api_host, port=config.api_port, log_level="warning",
        access_log=False, timeout_graceful_shutdown=5))
    try:
        server.run()
    finally:
        node.close()


@app.command()
@friendly
def join(
    home: HomeOpt,
    genesis_file: Annotated[Path, typer.Option(
        "--genesis", help="The chain's genesis.json (any member's HOME/genesis.json).")],
    peer: Annotated[list[str], typer.Option(
        "--peer", help="A member's CometBFT node as <node id>@HOST:PORT (its p2p address); "
                       "repeat for each.")],
    rpc_server: Annotated[list[str], typer.Option(
        "--rpc-server", help="A member's CometBFT RPC as http://HOST:PORT; give at least two "
                             "(the light client's primary and witness).")],
    api: Annotated[str, typer.Option(help="This node's API as HOST:PORT.")] = "127.0.0.1:26657",
    p2p: Annotated[str, typer.Option(
        help="Where this node's CometBFT listens for peers, HOST:PORT.")] = "127.0.0.1:26656",
    rpc: Annotated[str | None, typer.Option(
        help="This node's CometBFT RPC, HOST:PORT on loopback (default: the API port + 1).")
    ] = None,
    trust_period_hours: Annotated[int, typer.Option(
        help="How long, in hours, a validator set is trusted after the header that names "
             "it.")] = 168,
    discovery_time: Annotated[int, typer.Option(
        help="Seconds to gather the peers' snapshots before choosing one (5 or more).")] = 15,
) -> None:
    """Write the home of a new node, no validator, that joins a running chain on CometBFT:
    it starts from a state snapshot of a member (state sync), then follows the blocks.

    The light client that checks the snapshot starts from a height and
    block hash it trusts: join reads them now from the first --rpc-server's
    /commit, and checks that the second serves the same block. Compare
    them with a member you trust, then start the node: medledger up --home DIR"""
    from medledger.node import Genesis
    from medledger.node.config import parse_hostport
    from medledger.node.engine import (
        EngineHome,
        EnginePorts,
        StateSyncSettings,
        fetch_trust_point,
    )
    from medledger.node.home import write_joining_home

    genesis = Genesis.load(genesis_file)
    rpc = rpc or f"127.0.0.1:{parse_hostport(api)[1] + 1}"
    servers = tuple(rpc_server)
    trust = fetch_trust_point(servers, genesis.chain_id)
    settings = StateSyncSettings(servers, trust, trust_period_hours, discovery_time)
    write_joining_home(home, genesis, api=api, ports=EnginePorts(p2p, rpc), peers=peer,
                       state_sync=settings)
    out.print(f"wrote a joining node of chain [bold]{genesis.chain_id}[/] in {home}")
    node_id = EngineHome(home).node_id()
    out.print(f"  its node id: {node_id}; before starting it, an admin of the organisation "
              f"that runs it lists it: medledger identity node add {node_id} --org ORG",
              highlight=False)
    out.print(f"  trusted: height {trust.height}, block {trust.block_hash.hex().upper()} "
              f"(from {servers[0]}/commit, confirmed by {servers[1]})", highlight=False)
    out.print(f"  start it: medledger up --home {home}")


@app.command()
@friendly
def verify(home: HomeOpt, signatures: Annotated[bool, typer.Option(
        help="Also re-verify every transaction signature.")] = True) -> None:
    """Re-verify every block, transaction, link and root on disk (exit 2 on tampering, 1 on other errors)."""
    from rich.progress import Progress

    from medledger.ledger import IntegrityError
    from medledger.store import SQLiteStore

    h = Home(home)
    genesis = h.genesis()
    if not h.store_path.exists():
        raise ConfigError(f"no store at {h.store_path}")
    store = SQLiteStore(h.store_path)
    try:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("verifying blocks", total=None)
            report = verify_store(store, genesis, signatures=signatures,
                                  progress=lambda done, total: progress.update(
                                      task, completed=done, total=total))
    except IntegrityError as e:
        err.print(f"[bold red]TAMPERED[/] at height {e.height}: {e}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        store.close()
    out.print(f"[bold green]intact[/]: {report.height} blocks, {report.transactions} "
              f"transactions, {report.state_entries} state entries")


@app.command()
@friendly
def status(
    home: Annotated[Path | None, typer.Option(
        "--home", help="The node's home directory (its config names the API).")] = None,
    api: ApiOpt = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the node's answer as JSON (times as milliseconds since the "
                       "epoch).")] = False,
) -> None:
    """Show a node's chain id, height, latest block and state root."""
    with Client(api_url(api, home)) as client:
        answer = client.status()
    if as_json:
        out.print_json(json.dumps(answer))
        return
    table = Table(show_header=False)
    for key, value in answer.items():
        shown = iso_time(value) if key.endswith("_time") else str(value)
        table.add_row(key + (" (UTC)" if key.endswith("_time") else ""), shown)
    out.print(table)


# blocks / tx list ------------------------------------------------------------------------------
_host = CliHost()
_TX_CURSOR = re.compile(r"[0-9]{1,18}:[0-9]{1,9}")  # <height>:<index>, as the node takes it
SHORT_HEX = 16  # hex characters shown of a block hash or a proposer key


def _block_row(block: dict[str, Any]) -> dict[str, Any]:
    return {"height": block["height"], "time": iso_time(block["time"]),
            "txs": block["tx_count"], "hash": block["hash"][:SHORT_HEX],
            "proposer": block["proposer"][:SHORT_HEX]}


def _tx_row(tx: dict[str, Any]) -> dict[str, Any]:
    return {"height": tx["height"], "index": tx["index"], "type": tx["type"],
            "code": tx["code"], "tx_id": tx["tx_id"]}


@app.command()
@friendly
def blocks(
    before: Annotated[int | None, typer.Option(
        "--before", min=1, help="List only the blocks below this height (the `next` of the "
                                "previous page).")] = None,
    limit: LimitOpt = 20,
    home: ListHomeOpt = None,
    api: ApiOpt = None,
    as_json: BlocksJsonOpt = False,
) -> None:
    """List recent blocks, newest first: height, BFT time, transaction count, and the
    start of the block's hash and of its proposer's key."""
    with Client(api_url(api, home)) as client:
        page = client.blocks(before, limit)
    show_page(_host, page, "blocks", as_json=as_json, title="blocks", row=_block_row,
              cursor="--before")


@app.command()
@friendly
def block(
    height: Annotated[int, typer.Argument(min=1, help="The block's height.")],
    verify_: Annotated[bool, typer.Option(
        "--verify", help="Check the block against the log of blocks under the latest "
                         "signed header, locally.")] = False,
    home: Annotated[Path | None, typer.Option("--home", help="Trust this home's genesis.")] = None,
    genesis_file: Annotated[Path | None, typer.Option(
        "--genesis", help="Trust this genesis file's validators (instead of --home's).")] = None,
    api: ApiOpt = None,
) -> None:
    """Show a block's entry in the log of blocks (its CometBFT block hash and results hash);
    with --verify, prove it from one recent header without trusting the node, however old
    the block is."""
    with Client(api_url(api, home)) as client:
        answer = client.block_proof(height)
        out.print_json(json.dumps({"height": answer["height"],
                                   "block_hash": answer["entry"]["block_hash"],
                                   "results_hash": answer["entry"]["results_hash"],
                                   "proven_at": answer["log"]["height"]}))
        if not verify_:
            return
        try:
            trusted = trusted_for(answer["log"], trusted_validators(home, genesis_file, client),
                                  client)
            checked = verify_block_answer(answer, *trusted)
            if checked.height != height:
                raise VerificationFailed("the node answered for another block than the one "
                                         "asked for")
        except VerificationFailed as e:
            err.print(f"[bold red]NOT VERIFIED[/]: {e.reason}", highlight=False)
            raise typer.Exit(2) from None
    out.print(f"[bold green]verified[/]: block {height} (CometBFT hash "
              f"{answer['entry']['block_hash'][:16]}...) is in the log of blocks that the "
              f"signed header of height {checked.proven_at.height} proves", highlight=False)


@tx_app.command("list")
@friendly
def tx_list(
    sender: Annotated[str, typer.Option(
        "--sender", metavar="KEY_HEX", help="The sender's signing key, as 64 hex characters.")],
    before: Annotated[str | None, typer.Option(
        "--before", metavar="HEIGHT:INDEX", help="List only the transactions before this "
                                                 "position (the `next` of the previous "
                                                 "page).")] = None,
    limit: LimitOpt = 20,
    home: ListHomeOpt = None,
    api: ApiOpt = None,
    as_json: TxsJsonOpt = False,
) -> None:
    """List a sender's committed transactions, newest first: height, index, type, result
    code and id (`medledger tx show ID` shows one with its proof)."""
    key = hex_text(_host, sender, "--sender")
    if before is not None and not _TX_CURSOR.fullmatch(before):
        _host.fail(f"--before must be HEIGHT:INDEX (the `next` of the previous page), not "
                   f"{before!r}")
    with Client(api_url(api, home)) as client:
        page = client.txs_by_sender(key, before, limit)
    show_page(_host, page, "txs", as_json=as_json, title="transactions", row=_tx_row,
              cursor="--before")


# tx / state -----------------------------------------------------------------------------------
@tx_app.command("show")
@friendly
def tx_show(
    tx_id: Annotated[str, typer.Argument(help="The transaction id, as 64 hex characters.")],
    verify_: Annotated[bool, typer.Option("--verify", help="Check the proof, header and "
                                                           "certificate locally.")] = False,
    home: Annotated[Path | None, typer.Option("--home", help="Trust this home's genesis.")] = None,
    genesis_file: Annotated[Path | None, typer.Option(
        "--genesis", help="Trust this genesis file's validators (instead of --home's).")] = None,
    api: ApiOpt = None,
) -> None:
    """Fetch a committed transaction; with --verify, check it without trusting the node."""
    with Client(api_url(api, home)) as client:
        answer = client.tx(tx_id)
        out.print_json(json.dumps({k: answer[k] for k in ("tx_id", "height", "index", "code",
                                                          "message", "tx")}))
        if not verify_:
            return
        try:
            trusted = trusted_for(answer, trusted_validators(home, genesis_file, client), client)
            checked = verify_tx_answer(answer, *trusted)
            if checked.tx.tx_id.hex() != tx_id.lower():
                raise VerificationFailed("the node answered with another transaction than the "
                                         "one asked for")
        except VerificationFailed as e:
            err.print(f"[bold red]NOT VERIFIED[/]: {e.reason}", highlight=False)
            raise typer.Exit(2) from None
    out.print(f"[bold green]verified[/]: transaction {tx_id[:16]}... is in block "
              f"{checked.header.height} (BFT time {iso_time(checked.header.time)}), whose "
              f"header is signed by more than 2/3 of the trusted validators", highlight=False)


@state_app.command("show")
@friendly
def state_show(
    key: Annotated[str, typer.Argument(
        help="The state key, such as anchor/<DIGEST> or nonce/<KEY HEX>.")],
    verify_: Annotated[bool, typer.Option(
        "--verify", help="Check the proof, header and certificate locally.")] = False,
    home: Annotated[Path | None, typer.Option("--home", help="Trust this home's genesis.")] = None,
    genesis_file: Annotated[Path | None, typer.Option(
        "--genesis", help="Trust this genesis file's validators (instead of --home's).")] = None,
    api: ApiOpt = None,
) -> None:
    """Fetch a state entry (or proof of its absence); with --verify, check it locally."""
    with Client(api_url(api, home)) as client:
        answer = client.state(key)
        out.print_json(json.dumps({"key": answer["key"], "value": answer["value"],
                                   "height": answer["height"]}))
        if not verify_:
            return
        try:
            trusted = trusted_for(answer, trusted_validators(home, genesis_file, client), client)
            checked = verify_state_answer(answer, *trusted)
            if checked.key != key:
                raise VerificationFailed("the node answered for another key than the one "
                                         "asked for")
        except VerificationFailed as e:
            err.print(f"[bold red]NOT VERIFIED[/]: {e.reason}", highlight=False)
            raise typer.Exit(2) from None
    what = "absent" if checked.value is None else "present"
    out.print(f"[bold green]verified[/]: {key} is {what} at height {checked.header.height} "
              f"(BFT time {iso_time(checked.header.time)})", highlight=False)


class BenchApp(str, Enum):
    """What ``medledger bench`` loads the chain with."""

    anchor = "anchor"
    records = "records"
    trace = "trace"


@app.command()
@friendly
def bench(
    validators: Annotated[int, typer.Option(help="Validators in the measured chain.")] = 1,
    app_: Annotated[BenchApp, typer.Option(
        "--app", help="anchor: ledger.anchor at full and half load. records: records.add "
                      "committed per second beside the anchor rate of the same run, client "
                      "sealing per core, and grant-to-first-decrypted-read p50/p99 at half "
                      "load. trace: pack verification p50/p99 with proofs on one node "
                      "holding --packs commissioned packs, and EPCIS capture events committed "
                      "per second beside the anchor rate of the same run.")] = BenchApp.anchor,
    txs: Annotated[int | None, typer.Option(
        help="Pre-signed anchor transactions to commit (default 50,000; with --app records "
             "or trace 20,000 a pass).")] = None,
    records: Annotated[int, typer.Option(
        help="--app records: records sealed, uploaded and committed at full load.")] = 3_000,
    samples: Annotated[int | None, typer.Option(
        help="--app records: grant-to-read samples at half load (at most; default 100). "
             "--app trace: verifications of genuine packs, and as many of never-issued "
             "ones (default 2,000).")] = None,
    packs: Annotated[int, typer.Option(
        help="--app trace: commissioned packs generated in the verification node's "
             "state.")] = 1_000_000,
    events: Annotated[int, typer.Option(
        help="--app trace: trace.capture transactions (one commissioning event of 10 "
             "packs each) committed at full load.")] = 3_000,
    patients: Annotated[int, typer.Option(
        help="--app records: patients the records belong to.")] = 100,
    clients: Annotated[int, typer.Option(help="Client processes submitting.")] = 2,
    batch: Annotated[int, typer.Option(help="Transactions per request.")] = 500,
    block_interval_ms: Annotated[int, typer.Option(
        help="Pause between heights, in ms.")] = 100,
    max_block_txs: Annotated[int, typer.Option(
        help="Most transactions in one block.")] = 2000,
    half_load_txs: Annotated[int, typer.Option(
        help="--app anchor: transactions of the half-load latency pass (0: 20% of --txs, "
             "at least 5,000).")] = 0,
) -> None:
    """Measure verify rate and committed tx/s in one run; print JSON.

    A local chain of N validator processes on CometBFT, on 127.0.0.1: committed tx/s at
    full load, commit latency p50/p99 there and at half that load, the CPU time of the
    cometbft and app processes, and the ratio to the verification limit (verify rate x
    cores / validators). With --app records or trace, those apps instead (see --app)."""
    result: dict[str, Any]
    if app_ is BenchApp.records:
        from medledger.cli.bench_records import run_records_bench

        result = run_records_bench(
            validators=validators, anchor_txs=20_000 if txs is None else txs,
            records=records, samples=100 if samples is None else samples,
            patients=patients, clients=clients,
            batch=batch, console=err, block_interval_ms=block_interval_ms,
            max_block_txs=max_block_txs)
    elif app_ is BenchApp.trace:
        from medledger.cli.bench_trace import run_trace_bench

        result = run_trace_bench(
            validators=validators, anchor_txs=20_000 if txs is None else txs, packs=packs,
            events=events, samples=2_000 if samples is None else samples, clients=clients,
            batch=batch, console=err, block_interval_ms=block_interval_ms,
            max_block_txs=max_block_txs)
    else:
        from medledger.cli.bench_consortium import run_bench

        result = run_bench(validators=validators, n_txs=50_000 if txs is None else txs,
                           clients=clients, batch=batch, console=err,
                           block_interval_ms=block_interval_ms,
                           max_block_txs=max_block_txs, half_load_txs=half_load_txs)
    print(json.dumps(result, indent=2))


def main() -> None:
    app()
