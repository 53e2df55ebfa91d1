"""What an app is: per transaction type, a stateless check, a stateful check and an apply.

This keeps the shape of CometBFT's ABCI (CheckTx, FinalizeBlock, Commit): the node calls
``stateless`` once when a transaction arrives, ``stateful`` against committed state for
mempool admission, and ``apply`` inside a block against the block's view. Apps are
deterministic: a result depends on (state, transaction, block context) alone.

A bad transaction raises :class:`Rejected` with a stable machine-readable ``code`` and a
sentence a person understands; the node records it as the transaction's result and keeps
none of its writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medledger.ledger import Transaction
from medledger.state import StateView

__all__ = ["AppRegistry", "BlockContext", "Handler", "Rejected"]


class Rejected(Exception):
    """A transaction is refused: ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What an app may know of the block it runs in (never the wall clock)."""

    chain_id: str
    height: int
    time: int  # BFT time of the block, ms since the epoch


Stateless = Callable[[Transaction], None]
Stateful = Callable[[StateView, Transaction, BlockContext], None]
Authorize = Callable[[StateView, Transaction], None]
Reads = Callable[[Transaction], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Handler:
    """The three steps for one transaction type."""

    stateless: Stateless
    stateful: Stateful
    apply: Stateful
    reads: Reads | None = None
    """Optional: state keys ``stateful`` will read for this (stateless-checked) transaction,
    so the node can fetch a whole batch's in one query. A hint: leaving a key out costs a
    read later, never a wrong answer."""


class AppRegistry:
    """Transaction type -> handler, plus one authorisation hook run before every stateful step."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._authorize: Authorize | None = None

    def register(self, type_: str, handler: Handler) -> None:
        if type_ in self._handlers:
            raise ValueError(f"transaction type {type_!r} registered twice")
        self._handlers[type_] = handler

    def set_authorizer(self, authorize: Authorize) -> None:
        self._authorize = authorize

    @property
    def types(self) -> list[str]:
        return sorted(self._handlers)

    def handler(self, type_: str) -> Handler:
        try:
            return self._handlers[type_]
        except KeyError:
            raise Rejected("unknown_type", f"no app handles transaction type {type_!r}") from None

    def check_stateless(self, tx: Transaction) -> None:
        self.handler(tx.type).stateless(tx)

    def reads(self, tx: Transaction) -> tuple[str, ...]:
        """The keys ``tx``'s handler declares its stateful check reads (may be none)."""
        handler = self._handlers.get(tx.type)
        if handler is None or handler.reads is None:
            return ()
        return handler.reads(tx)

    def check_stateful(self, view: StateView, tx: Transaction, ctx: BlockContext) -> None:
        if self._authorize is not None:
            self._authorize(view, tx)
        self.handler(tx.type).stateful(view, tx, ctx)

    def apply(self, view: StateView, tx: Transaction, ctx: BlockContext) -> None:
        """Check against ``view`` then apply; raises Rejected with nothing applied."""
        self.check_stateful(view, tx, ctx)
        self.handler(tx.type).apply(view, tx, ctx)
