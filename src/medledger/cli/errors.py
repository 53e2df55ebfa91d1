"""Turn the errors a person can act on into one plain line and an exit code; print times
the way a person reads them."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from medledger.client import ApiRefused, Unreachable, VerificationFailed
from medledger.crypto import CryptoError
from medledger.ledger import LedgerError
from medledger.node import ConfigError, GenesisError
from medledger.store import StoreError

__all__ = ["err", "friendly", "iso_time"]

err = Console(stderr=True, soft_wrap=True)
P = ParamSpec("P")
R = TypeVar("R")

_KNOWN: tuple[type[BaseException], ...] = (
    ApiRefused, ConfigError, CryptoError, GenesisError, LedgerError, StoreError, Unreachable,
    VerificationFailed,
)


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Print known errors as ``error: ...`` and exit 1, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except _KNOWN as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def iso_time(ms: Any) -> str:
    """A time in milliseconds since the epoch (as blocks and the API carry it) in ISO 8601
    UTC, such as ``2026-11-30T12:00:00.123Z``; ``-`` for none, and anything that is not an
    integer as it is."""
    if ms is None:
        return "-"
    if type(ms) is not int:
        return str(ms)
    try:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))
    except (OverflowError, OSError, ValueError):
        return str(ms)
    return f"{seconds}.{ms % 1000:03d}Z"
