"""``medledger governance ...``: a node's identity; proposals, approvals and evidence.

A validator signs governance transactions with its validator key (the home's
``validator.key``, the same key its node signs votes with). ``identity`` prints what a new
member hands to the others: its node key and its TLS certificate. Built on the command
line's :class:`~medledger.apps.host.CommandHost`.
"""

# No `from __future__ import annotations`: the commands are closures over ``host`` and
# Typer reads their annotations as objects.

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from medledger.apps.governance import (
    APPROVE,
    KINDS,
    PROPOSE,
    GovernanceApp,
    evidence_key,
    proposal_expired,
    proposal_key,
)
from medledger.apps.host import CommandHost
from medledger.codec import CodecError, encode

__all__ = ["AHEAD", "commands"]

AHEAD = 5  # default effective height: this many above the tip
MAX_PAGE = 100  # what the routes serve at most in one page
_HEX32 = re.compile(r"[0-9a-fA-F]{64}")

HomeOpt = Annotated[Path, typer.Option("--home", help="The validator's home directory.")]
ReadHomeOpt = Annotated[Path | None, typer.Option(
    "--home", help="Trust this home's genesis (its config names the API unless --api).")]
GenesisOpt = Annotated[Path | None, typer.Option(
    "--genesis", help="With --verify: trust this genesis file's validators (instead of "
                      "--home's).")]
ApiOpt = Annotated[str | None, typer.Option(
    "--api", help="A node's API as HOST:PORT or URL (default: from the home's config).")]
ProposalArg = Annotated[str, typer.Argument(help="The proposal id (64 hex).")]
VerifyOpt = Annotated[bool, typer.Option(
    "--verify", help="Check the proof, header and certificate locally.")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print the node's answer as JSON instead of a table.")]
LimitOpt = Annotated[int, typer.Option(
    "--limit", min=1, max=MAX_PAGE, help=f"How many to list (1 to {MAX_PAGE}).")]


def _hex32(host: CommandHost, text: str, what: str) -> str:
    if not _HEX32.fullmatch(text):
        host.fail(f"{what} must be 64 hex characters, not {text!r}")
    return text.lower()


def _change(host: CommandHost, kind: str, change: str) -> dict[str, Any]:
    """CHANGE parsed: a JSON object the ledger can carry (strings, integers, ...)."""
    if kind not in KINDS:
        host.fail(f"kind must be one of {', '.join(KINDS)}")
    try:
        parsed = json.loads(change)
        encode(parsed)  # what the transaction will carry: integers and strings only
    except (ValueError, CodecError) as e:
        host.fail(f"CHANGE is not a JSON object the ledger can carry: {e}")
    if not isinstance(parsed, dict):
        host.fail("CHANGE must be a JSON object")
    return parsed


def _print_json(out: Console, data: Any) -> None:
    out.print_json(json.dumps(data))


def commands(host: CommandHost) -> typer.Typer:
    """The ``governance`` command group over ``host``."""
    group = typer.Typer(no_args_is_help=True, help=GovernanceApp.summary)
    out = Console(soft_wrap=True)

    @group.command("identity")
    def identity(home: HomeOpt = Path(".medledger/node")) -> None:
        """Print this node's key and TLS certificate (DER hex) as JSON: what the other
        members put in members.json, or what a validator_add change carries as
        "certificate"."""
        _print_json(out, host.node_identity(home))

    @group.command("propose")
    def propose(
        kind: Annotated[str, typer.Argument(help=f"One of {', '.join(KINDS)}.")],
        change: Annotated[str, typer.Argument(
            help='The change as JSON, e.g. \'{"public_key": "<hex>", "power": 10, '
                 '"name": "node4"}\'.')],
        effective_height: Annotated[int | None, typer.Option(
            help=f"The height the change applies from (default: the tip + {AHEAD}).")] = None,
        home: HomeOpt = Path(".medledger/node"),
        api: ApiOpt = None,
    ) -> None:
        """Propose a change, signed by this validator (its first approval); print the
        proposal id that the other validators approve."""
        parsed = _change(host, kind, change)
        if effective_height is None:
            with host.client(home, api) as client:
                effective_height = int(client.status()["height"]) + AHEAD
        key = host.validator_key(home)
        done = host.submit(home, api, key, PROPOSE, {
            "kind": kind, "change": parsed, "effective_height": effective_height})
        _print_json(out, {"proposal": done["tx_id"], "height": done["height"],
                          "effective_height": effective_height})

    @group.command("approve")
    def approve(proposal: ProposalArg, home: HomeOpt = Path(".medledger/node"),
                api: ApiOpt = None) -> None:
        """Approve a proposal, signed by this validator; print its status afterwards."""
        proposal = _hex32(host, proposal, "PROPOSAL")
        done = host.submit(home, api, host.validator_key(home), APPROVE, {"proposal": proposal})
        with host.client(home, api) as client:
            entry = client.state(proposal_key(proposal))["value"]
        _print_json(out, {"approved_in": done["height"],
                          "status": entry["status"] if entry else None})

    @group.command("show")
    def show(proposal: ProposalArg, home: HomeOpt = Path(".medledger/node"),
             api: ApiOpt = None, verify: VerifyOpt = False, genesis: GenesisOpt = None) -> None:
        """Print a proposal as stored, as JSON: kind, change, approvals, status; with
        --verify, proven without trusting the node (trusting --genesis, else --home's)."""
        proposal = _hex32(host, proposal, "PROPOSAL")
        with host.client(home, api) as client:
            answer = client.get(f"/v1/governance/proposals/{proposal}", {"prove": True})
            entry = answer["value"]
            if verify:
                entry = host.verify(answer, home, genesis, client, key=proposal_key(proposal))
        if entry is None:
            host.fail(f"no proposal {proposal}")
        _print_json(out, entry)

    @group.command("proposals")
    def proposals(
        after: Annotated[str | None, typer.Option(
            "--after", help="List the proposals whose id comes after this one (the `next` "
                            "of the previous page).")] = None,
        limit: LimitOpt = 20,
        home: ReadHomeOpt = None,
        api: ApiOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List proposals in id order, open and approved, a page at a time. An open
        proposal whose effective height is reached can no longer be approved: the table
        says "expired"."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = _hex32(host, after, "--after")
        with host.client(home, api) as client:
            page = client.get("/v1/governance/proposals", params)
            tip = int(client.status()["height"])
        if as_json:
            host.show(page, as_json=True)
            return
        rows = [{
            "id": p["id"], "kind": p["kind"],
            "status": "expired" if p["status"] == "open" and proposal_expired(p, tip + 1)
            else p["status"],
            "effective_height": p["effective_height"], "approvals": len(p["approvals"]),
            "proposed_at": p["height"], "approved_at": p["approved_height"],
        } for p in page["proposals"]]
        host.show(rows, as_json=False, title="proposals")
        if page.get("next"):
            out.print(f"more: --after {page['next']}", highlight=False)

    @group.command("evidence")
    def evidence(
        hash_: Annotated[str | None, typer.Argument(
            metavar="[HASH]", help="Show this piece of evidence in full (64 hex); without it, "
                                   "list them.")] = None,
        start: Annotated[int, typer.Option(
            "--start", min=1, help="List from the START-th piece, in commit order.")] = 1,
        limit: LimitOpt = 20,
        verify: VerifyOpt = False,
        home: ReadHomeOpt = None,
        genesis: GenesisOpt = None,
        api: ApiOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List committed double-sign evidence in commit order (the validator each names,
        the offence's height, the height it was committed at), or show one piece."""
        with host.client(home, api) as client:
            if hash_ is not None:
                digest = _hex32(host, hash_, "HASH")
                answer = client.get(f"/v1/governance/evidence/{digest}", {"prove": True})
                entry = answer["value"]
                if verify:
                    entry = host.verify(answer, home, genesis, client, key=evidence_key(digest))
                if entry is None:
                    host.fail(f"no evidence {digest}")
                host.show(entry, as_json=as_json, title="evidence")
                return
            if verify:
                host.fail("--verify checks one piece of evidence: give its HASH")
            page = client.get("/v1/governance/evidence", {"start": start, "limit": limit})
        if as_json:
            host.show(page, as_json=True)
            return
        rows = [{"seq": e["seq"], "hash": e["hash"], "validator": e["validator"],
                 "offence_height": e["offence_height"], "committed_at": e["height"]}
                for e in page["evidence"]]
        host.show(rows, as_json=False, title="evidence")
        if page.get("next"):
            out.print(f"more: --start {page['next']}", highlight=False)

    return group
