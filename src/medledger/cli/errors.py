"""Turn the errors a person can act on into one plain line and an exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from medledger.client import ApiRefused, Unreachable, VerificationFailed
from medledger.crypto import CryptoError
from medledger.ledger import LedgerError
from medledger.node import ConfigError, GenesisError
from medledger.store import StoreError

__all__ = ["err", "friendly"]

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
