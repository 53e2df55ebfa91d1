"""``medledger governance ...``: a node's identity, and governance proposals and approvals.

A validator signs governance transactions with its validator key (the home's
``validator.key``, the same key its node signs votes with). ``identity`` prints what a new
member hands to the others: its node key and its TLS certificate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from medledger.apps import governance
from medledger.cli.errors import err, friendly
from medledger.client import ApiRefused, Client
from medledger.codec import CodecError, encode
from medledger.ledger import Transaction
from medledger.node import ConfigError, Home
from medledger.p2p import node_certificate

__all__ = ["gov_app"]

gov_app = typer.Typer(no_args_is_help=True, help="Validator-set changes, organisation "
                                                 "admission, and a node's identity.")
out = Console(soft_wrap=True)

HomeOpt = Annotated[Path, typer.Option("--home", help="The validator's home directory.")]
ApiOpt = Annotated[str | None, typer.Option(
    "--api", help="A node's API as HOST:PORT or URL (default: from the home's config).")]
AHEAD = 5  # default effective height: this many above the tip


def _client(api: str | None, home: Path) -> Client:
    url = api if api is not None else Home(home).config().api
    return Client(url if "://" in url else f"http://{url}")


@gov_app.command("identity")
@friendly
def identity(home: HomeOpt = Path(".medledger/node")) -> None:
    """Print this node's key and TLS certificate (DER hex) as JSON: what the other members
    put in members.json, or what a validator_add change carries as "certificate"."""
    key = Home(home).validator_key()
    out.print_json(json.dumps({"node_key": key.public_key.hex(),
                               "certificate": node_certificate(key).hex()}))


def _submit(home: Path, api: str | None, type_: str, body: dict[str, Any]) -> dict[str, Any]:
    """Sign ``body`` with the home's validator key, submit it, wait for its block."""
    key = Home(home).validator_key()
    with _client(api, home) as client:
        chain_id = client.status()["chain_id"]
        try:
            nonce = client.next_nonce(key.public_key)
        except ApiRefused as e:
            if e.code != "not_found":
                raise
            nonce = 1
        tx = Transaction.create(key, chain_id, type_, nonce, body)
        answer = client.submit(tx, wait=True)
    if answer.get("status") != "committed":
        out.print(f"submitted {tx.tx_id.hex()}; not committed yet")
        raise typer.Exit(0)
    if answer["code"] != "ok":
        err.print(f"[bold red]rejected[/] in block {answer['height']}: {answer['code']}: "
                  f"{answer['message']}", highlight=False)
        raise typer.Exit(1)
    return {"tx_id": tx.tx_id.hex(), "height": answer["height"]}


@gov_app.command("propose")
@friendly
def propose(
    kind: Annotated[str, typer.Argument(help=f"One of {', '.join(governance.KINDS)}.")],
    change: Annotated[str, typer.Argument(help='The change as JSON, e.g. \'{"public_key": '
                                               '"<hex>", "power": 10, "name": "node4"}\'.')],
    effective_height: Annotated[int | None, typer.Option(
        help=f"The height the change applies from (default: the tip + {AHEAD}).")] = None,
    home: HomeOpt = Path(".medledger/node"),
    api: ApiOpt = None,
) -> None:
    """Propose a change, signed by this validator (its first approval); print the proposal
    id that the other validators approve."""
    if kind not in governance.KINDS:
        raise ConfigError(f"kind must be one of {', '.join(governance.KINDS)}")
    try:
        parsed = json.loads(change)
        encode(parsed)  # what the transaction will carry: integers and strings only
    except (ValueError, CodecError) as e:
        raise ConfigError(f"CHANGE is not a JSON object the ledger can carry: {e}") from None
    if not isinstance(parsed, dict):
        raise ConfigError("CHANGE must be a JSON object")
    if effective_height is None:
        with _client(api, home) as client:
            effective_height = int(client.status()["height"]) + AHEAD
    done = _submit(home, api, governance.PROPOSE,
                   {"kind": kind, "change": parsed, "effective_height": effective_height})
    out.print_json(json.dumps({"proposal": done["tx_id"], "height": done["height"],
                               "effective_height": effective_height}))


ProposalArg = Annotated[str, typer.Argument(help="The proposal id (64 hex).")]


def _stored(api: str | None, home: Path, proposal: str) -> dict[str, Any] | None:
    with _client(api, home) as client:
        return client.state(f"governance/proposal/{proposal.lower()}")["value"]  # type: ignore[no-any-return]


@gov_app.command("approve")
@friendly
def approve(proposal: ProposalArg, home: HomeOpt = Path(".medledger/node"),
            api: ApiOpt = None) -> None:
    """Approve a proposal, signed by this validator; print its status afterwards."""
    done = _submit(home, api, governance.APPROVE, {"proposal": proposal.lower()})
    entry = _stored(api, home, proposal)
    out.print_json(json.dumps({"approved_in": done["height"],
                               "status": entry["status"] if entry else None}))


@gov_app.command("show")
@friendly
def show(proposal: ProposalArg, home: HomeOpt = Path(".medledger/node"),
         api: ApiOpt = None) -> None:
    """Print a proposal as stored: kind, change, approvals, status."""
    entry = _stored(api, home, proposal)
    if entry is None:
        err.print(f"[bold red]error:[/] no proposal {proposal}", highlight=False)
        raise typer.Exit(1)
    out.print_json(json.dumps(entry))
