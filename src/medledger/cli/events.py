"""``medledger events ...``: list the events of committed transactions, or follow them live.

An event is something a committed transaction (or a block hook) did: a type such as
``anchor.anchored`` and string attributes. ``list`` pages through a node's index;
``watch`` follows the node's event stream until Ctrl-C, one line per event, and picks up
where it left off when the connection drops (the node restarts, the network blinks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from medledger.cli.errors import err, friendly
from medledger.cli.host import api_url
from medledger.client import Client
from medledger.node import ConfigError

__all__ = ["events_app"]

events_app = typer.Typer(no_args_is_help=True, help="List and follow the events of committed "
                                                    "transactions.")

TypeOpt = Annotated[str | None, typer.Option(
    "--type", metavar="TYPE", help="Only events of this type, such as anchor.anchored.")]
AttrOpt = Annotated[list[str] | None, typer.Option(
    "--attr", metavar="NAME=VALUE",
    help="Only events whose attribute NAME equals VALUE (repeat for several; all must "
         "match).")]
HomeOpt = Annotated[Path | None, typer.Option(
    "--home", metavar="DIR", help="The node's home directory (its config names the API).")]
ApiOpt = Annotated[str | None, typer.Option(
    "--api", metavar="HOST:PORT", help="The node's API as HOST:PORT or URL (instead of "
                                        "--home).")]
_RESERVED = frozenset({"type", "from_height", "after", "limit", "last_event_id"})
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print JSON instead of lines (watch: one JSON object per line).")]


def _attrs(pairs: list[str] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--attr {pair!r}: give NAME=VALUE")
        if name in _RESERVED:
            raise ConfigError(f"--attr {name}: {', '.join(sorted(_RESERVED))} name query "
                              "parameters, not attributes that can be filtered on")
        if name in found:
            raise ConfigError(f"--attr {name} is given twice")
        found[name] = value
    return found


def _line(event: dict[str, Any]) -> str:
    """``<id>  h=<height>  <type>  name=value ...`` for a person to read."""
    attrs = " ".join(f"{k}={v}" for k, v in sorted(event.get("attrs", {}).items()))
    return f"{event['id']:>6}  h={event['height']:<6} {event['type']}  {attrs}".rstrip()


@events_app.command("list")
@friendly
def list_events(
    type_: TypeOpt = None,
    attr: AttrOpt = None,
    from_height: Annotated[int, typer.Option(
        "--from-height", min=0, help="Only events of this block height and later.")] = 0,
    after: Annotated[int, typer.Option(
        "--after", min=0, help="Only events with a larger id (the id the previous page "
                               "said to continue after).")] = 0,
    limit: Annotated[int, typer.Option(
        "--limit", min=1, max=1000, help="At most this many events (1-1000).")] = 100,
    home: HomeOpt = None,
    api: ApiOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List events, oldest first: id, height, type and attributes."""
    with Client(api_url(api, home)) as client:
        answer = client.events(type_, _attrs(attr), from_height=from_height, after=after,
                               limit=limit)
    if as_json:
        typer.echo(json.dumps(answer))
        return
    for event in answer["events"]:
        typer.echo(_line(event))
    if answer["next"] is not None:
        err.print(f"more: add --after {answer['next']}", highlight=False)


@events_app.command("watch")
@friendly
def watch(
    type_: TypeOpt = None,
    attr: AttrOpt = None,
    since: Annotated[int | None, typer.Option(
        "--since", min=0, metavar="ID", help="Start after this event id (0: from the first event). "
                               "Default: only events from now on.")] = None,
    from_height: Annotated[int | None, typer.Option(
        "--from-height", min=0, help="Without --since: start with the events of this block "
                                     "height.")] = None,
    retries: Annotated[int, typer.Option(
        "--retries", min=0, help="Give up after this many failed reconnections in a row.")
    ] = 30,
    home: HomeOpt = None,
    api: ApiOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Follow events as they are committed, one line each, until Ctrl-C; reconnect and
    resume after the last event shown when the connection drops."""
    url = api_url(api, home)

    def retrying(error: Exception, delay: float) -> None:
        err.print(f"connection to {url} lost ({error}); reconnecting in {delay:.1f} s",
                  highlight=False)

    err.print(f"following events of {url} (Ctrl-C to stop)", highlight=False)
    with Client(url) as client:
        stream = client.stream_events(type_, _attrs(attr), since, from_height=from_height,
                                      retries=retries, on_retry=retrying)
        try:
            for event in stream:
                typer.echo(json.dumps(event) if as_json else _line(event))
        except KeyboardInterrupt:
            pass
        finally:
            stream.close()
