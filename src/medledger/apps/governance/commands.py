"""``medledger governance ...``: a node's identity; proposals, approvals and evidence.

A validator signs governance transactions with its validator key (the home's
``validator.key``, the same key its node signs votes with). ``identity`` prints what a new
member hands to the others: its validator key and its CometBFT node ID. Built on the command
line's :class:`~medledger.apps.host.CommandHost`.
"""

# No `from __future__ import annotations`: the commands are closures over ``host`` and
# Typer reads their annotations as objects.

import json
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
from medledger.apps.options import (
    NODE_HOME,
    GenesisOpt,
    LimitOpt,
    ReadHomeOpt,
    VerifyOpt,
    api_option,
    entry,
    hex_text,
    json_option,
    show_page,
)
from medledger.codec import CodecError, encode

__all__ = ["AHEAD", "commands"]

#: default effective height: this many above the tip. On CometBFT each transaction takes
#: about two heights (its block, then the one that signs its state), so a proposal and the
#: approvals of a few validators need room
AHEAD = 20

HomeOpt = Annotated[Path, typer.Option("--home", help="The validator's home directory.")]
ApiOpt = api_option("A node's API as HOST:PORT or URL (default: from the home's config).")
ProposalArg = Annotated[str, typer.Argument(help="The proposal id (64 hex).")]
JsonOpt = json_option("Print the node's answer as JSON instead of a table.")


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


def _evidence_row(e: dict[str, Any]) -> dict[str, Any]:
    """A piece of evidence as the list's table shows it."""
    return {"seq": e["seq"], "hash": e["hash"], "validator": e["validator"],
            "offence_height": e["offence_height"], "committed_at": e["height"]}


def _print_json(out: Console, data: Any) -> None:
    out.print_json(json.dumps(data))


def commands(host: CommandHost) -> typer.Typer:
    """The ``governance`` command group over ``host``."""
    group = typer.Typer(no_args_is_help=True, help=GovernanceApp.summary)
    out = Console(soft_wrap=True)

    @group.command("identity")
    def identity(home: HomeOpt = NODE_HOME) -> None:
        """Print this node's validator key and CometBFT node ID as JSON: what a
        validator_add change carries as "public_key", and what `medledger identity node add`
        lists so that the other members' nodes let this one connect."""
        _print_json(out, host.node_identity(home))

    @group.command("propose")
    def propose(
        kind: Annotated[str, typer.Argument(help=f"One of {', '.join(KINDS)}.")],
        change: Annotated[str, typer.Argument(
            help='The change as JSON, e.g. \'{"public_key": "<hex>", "power": 10, '
                 '"name": "node4"}\'.')],
        effective_height: Annotated[int | None, typer.Option(
            help=f"The height the change applies from (default: the tip + {AHEAD}).")] = None,
        home: HomeOpt = NODE_HOME,
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
    def approve(proposal: ProposalArg, home: HomeOpt = NODE_HOME,
                api: ApiOpt = None) -> None:
        """Approve a proposal, signed by this validator; print its status afterwards."""
        proposal = hex_text(host, proposal, "PROPOSAL")
        done = host.submit(home, api, host.validator_key(home), APPROVE, {"proposal": proposal})
        with host.client(home, api) as client:
            stored = client.state(proposal_key(proposal))["value"]
        _print_json(out, {"approved_in": done["height"],
                          "status": stored["status"] if stored else None})

    @group.command("show")
    def show(proposal: ProposalArg, home: HomeOpt = NODE_HOME,
             api: ApiOpt = None, verify: VerifyOpt = False, genesis: GenesisOpt = None) -> None:
        """Print a proposal as stored, as JSON: kind, change, approvals, status; with
        --verify, proven without trusting the node (trusting --genesis, else --home's)."""
        proposal = hex_text(host, proposal, "PROPOSAL")
        _print_json(out, entry(host, f"/v1/governance/proposals/{proposal}",
                               proposal_key(proposal), verify, home, genesis, api,
                               f"no proposal {proposal}"))

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
            params["after"] = hex_text(host, after, "--after")
        with host.client(home, api) as client:
            page = client.get("/v1/governance/proposals", params)
            tip = int(client.status()["height"])

        def row(p: dict[str, Any]) -> dict[str, Any]:
            expired = p["status"] == "open" and proposal_expired(p, tip + 1)
            return {"id": p["id"], "kind": p["kind"],
                    "status": "expired" if expired else p["status"],
                    "effective_height": p["effective_height"],
                    "approvals": len(p["approvals"]), "proposed_at": p["height"],
                    "approved_at": p["approved_height"]}

        show_page(host, page, "proposals", as_json=as_json, title="proposals", row=row)

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
        if hash_ is not None:
            digest = hex_text(host, hash_, "HASH")
            host.show(entry(host, f"/v1/governance/evidence/{digest}", evidence_key(digest),
                            verify, home, genesis, api, f"no evidence {digest}"),
                      as_json=as_json, title="evidence")
            return
        if verify:
            host.fail("--verify checks one piece of evidence: give its HASH")
        with host.client(home, api) as client:
            page = client.get("/v1/governance/evidence", {"start": start, "limit": limit})
        show_page(host, page, "evidence", as_json=as_json, title="evidence", row=_evidence_row,
                  cursor="--start")

    return group
