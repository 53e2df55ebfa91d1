"""What an app's routes and commands are handed: the node's reads and proofs (for its
FastAPI router) and the command line's keys, client and verification (for its Typer group).

Apps sit below the node, the API and the command line, so they never import them; the
edges pass these small interfaces in instead (:meth:`App.routes`, :meth:`App.commands`).

Errors::

    QueryError     an app's route refuses a request: HTTP ``status``, stable ``code``
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from medledger.crypto import Keystore, SigningKey
from medledger.state import StateView

if TYPE_CHECKING:
    from medledger.apps.lists import ProvableList

__all__ = ["AppClient", "CommandHost", "QueryError", "QueryHost"]


class QueryError(Exception):
    """A route's refusal: HTTP ``status`` with a stable ``code`` and a sentence."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class QueryHost(Protocol):
    """The node as an app's routes see it: committed state at the tip, with proofs."""

    @property
    def height(self) -> int:
        """The tip's height (0 before the first block)."""

    def view(self) -> StateView:
        """Committed state at the tip, read-only."""

    def answer(self, key: str, *, prove: bool) -> dict[str, Any]:
        """``{"key", "value", "height"}`` for ``key`` at the tip; with ``prove``, also the
        sparse Merkle proof and the certified header (as ``GET /v1/state/{key}``)."""

    def list_answer(self, lst: ProvableList, owner: str, start: int, limit: int, *,
                    prove: bool) -> dict[str, Any]:
        """A page of a provable list (items ``start``.. with the count), proven on request."""

    def scan(self, prefix: str, *, after: str | None, limit: int) -> list[tuple[str, Any]]:
        """Up to ``limit`` committed entries whose key starts with ``prefix``, in key order,
        after the key ``after`` (for paging)."""


class AppClient(Protocol):
    """The SDK client as an app's commands use it."""

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path`` (``/v1/...``) and return the decoded JSON; refusals raise."""

    def status(self) -> dict[str, Any]: ...

    def state(self, key: str) -> dict[str, Any]: ...


class CommandHost(Protocol):
    """The command line as an app's commands use it."""

    def client(self, home: Path | None, api: str | None) -> AbstractContextManager[AppClient]:
        """A client of the node at ``api``, or of the one ``home``'s config names."""

    def keys(self, home: Path, key: str | None, default: str = "admin") -> Keystore:
        """The keystore named ``key`` in ``home``'s keys folder (or a path), else
        ``default``, else the home's only key."""

    def validator_key(self, home: Path) -> SigningKey:
        """The home's validator key."""

    def submit(self, home: Path | None, api: str | None, signer: SigningKey, type_: str,
               body: dict[str, Any]) -> dict[str, Any]:
        """Sign and submit a transaction, wait for its block and return the committed
        answer (``tx_id``, ``height``, ``code``...); print a refusal and exit 1 on one."""

    def show(self, data: Any, *, as_json: bool, title: str = "") -> None:
        """Print ``data``: JSON with ``as_json``, else a readable table."""

    def verify(self, answer: dict[str, Any], home: Path | None, genesis: Path | None,
               client: AppClient) -> Any:
        """Check a proven state answer against the trusted validators; exit 2 if it fails.
        Returns the verified value."""

    def fail(self, message: str) -> NoReturn:
        """Print ``message`` as an error and exit 1."""
