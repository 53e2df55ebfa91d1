"""The registry of apps: what the node, the API and the command line iterate over.

It routes each transaction type to the app that owns it, runs ``auth``, ``check`` and
``apply`` in that order, hands ``apply`` and the block hooks a view scoped to the app's
prefixes, checks that events are named after their app, and answers the node's questions
about genesis and the validator set without the node naming any app.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from medledger.apps.base import (
    APP_FAULTS,
    App,
    AppView,
    BlockContext,
    DemoTx,
    GenesisDoc,
    PrefixViolation,
    Rejected,
    TxType,
    ValidatorAuthority,
    scoped,
)
from medledger.apps.body import decode_body
from medledger.codec import encode
from medledger.ledger import Event, Transaction
from medledger.state import Overlay, StateView

log = logging.getLogger(__name__)

__all__ = ["AppRegistry", "BASE_CODES"]

_MAX_BODIES = 200_000

BASE_CODES = {
    "malformed": 400, "chain_id": 400, "signature": 400, "unknown_type": 400,
    "too_large": 413, "nonce": 409, "duplicate": 409, "exists": 409,
    "unknown_sender": 403, "unauthorized": 403, "not_found": 404, "mempool_full": 429,
    "unavailable": 503, "internal": 500,
}
"""Refusal codes of the node itself, and those every app may use, with HTTP statuses."""


class AppRegistry:
    """Apps by name, transaction types by name, merged refusal codes."""

    def __init__(self, apps: Sequence[App]) -> None:
        self.apps: tuple[App, ...] = tuple(apps)
        self._types: dict[str, tuple[App, TxType[Any]]] = {}
        self._bodies: dict[bytes, Any] = {}  # decoded at admission, by tx id
        self.codes: dict[str, int] = dict(BASE_CODES)
        names: set[str] = set()
        for app in self.apps:
            if app.name in names:
                raise ValueError(f"app {app.name!r} registered twice")
            names.add(app.name)
            self._add(app)
        self._check_prefixes()
        authorities = [a for a in self.apps if a.validator_authority() is not None]
        if len(authorities) > 1:
            raise ValueError("more than one app keeps the validator set")
        self._authority = authorities[0].validator_authority() if authorities else None

    def _add(self, app: App) -> None:
        for t in app.transactions():
            if t.name in self._types:
                raise ValueError(f"transaction type {t.name!r} registered twice")
            self._types[t.name] = (app, t)
        for code, status in app.codes.items():
            if self.codes.get(code, status) != status:
                raise ValueError(f"refusal code {code!r} has two HTTP statuses")
            self.codes[code] = status

    def _check_prefixes(self) -> None:
        owned = [(p, a.name) for a in self.apps for p in a.prefixes]
        for p, name in owned:
            if not p.endswith("/"):
                raise ValueError(f"app {name}: prefix {p!r} must end with '/'")
            clash = [o for q, o in owned if q != p and q.startswith(p)]
            if clash:
                raise ValueError(f"prefix {p!r} of {name} overlaps one of {clash[0]}")

    # lookups ------------------------------------------------------------------------------
    @property
    def types(self) -> list[str]:
        return sorted(self._types)

    def app(self, name: str) -> App:
        for app in self.apps:
            if app.name == name:
                return app
        raise KeyError(f"no app named {name!r}")

    def owner(self, type_: str) -> App:
        """The app that owns transaction type ``type_`` (Rejected unknown_type)."""
        return self._entry(type_)[0]

    def _entry(self, type_: str) -> tuple[App, TxType[Any]]:
        try:
            return self._types[type_]
        except KeyError:
            raise Rejected("unknown_type", f"no app handles transaction type {type_!r}") from None

    @property
    def validators(self) -> ValidatorAuthority:
        """The app that keeps the validator set."""
        if self._authority is None:
            raise LookupError("no registered app keeps the validator set")
        return self._authority

    def admits_peer(self, view: StateView, node_id: str) -> bool:
        """True when some app records ``node_id`` as a consortium member's node."""
        return any(app.admits_peer(view, node_id) for app in self.apps)

    # transactions -------------------------------------------------------------------------
    def may_read_blob(self, view: StateView, digest: bytes, reader: bytes, time_ms: int
                      ) -> bool:
        """True when some app lets ``reader`` fetch the blob ``digest`` (see
        :meth:`App.may_read_blob`)."""
        return any(app.may_read_blob(view, digest, reader, time_ms) for app in self.apps)

    def may_upload_blob(self, view: StateView, uploader: bytes) -> bool:
        """True when some app lets ``uploader`` store a blob (:meth:`App.may_upload_blob`)."""
        return any(app.may_upload_blob(view, uploader) for app in self.apps)

    def may_store_blob(self, view: StateView, digest: bytes) -> bool:
        """True unless some app forbids storing ``digest`` (:meth:`App.may_store_blob`)."""
        return all(app.may_store_blob(view, digest) for app in self.apps)

    def erased_blobs(self, events: Sequence[Event]) -> list[bytes]:
        """The blobs some app says ``events`` erase (see :meth:`App.erased_blobs`)."""
        return [digest for app in self.apps for digest in app.erased_blobs(events)]

    def check_stateless(self, tx: Transaction) -> Any:
        """Decode ``tx``'s body (Rejected when malformed); return the typed body, kept for
        the checks and the block that follow (see :meth:`_kept_body`)."""
        return self._kept_body(tx, self._entry(tx.type)[1])

    def reads(self, tx: Transaction) -> tuple[str, ...]:
        """The keys ``tx``'s type declares its check reads (may be none)."""
        entry = self._types.get(tx.type)
        if entry is None or entry[1].reads is None:
            return ()
        try:
            return entry[1].reads(tx, self._kept_body(tx, entry[1]))
        except Rejected:
            return ()

    def _kept_body(self, tx: Transaction, t: TxType[Any]) -> Any:
        """``tx``'s decoded body, decoded once and kept until :meth:`apply` takes it."""
        body = self._bodies.get(tx.tx_id)
        if body is None:
            body = decode_body(t.body, tx.body)
            if len(self._bodies) >= _MAX_BODIES:
                self._bodies.clear()
            self._bodies[tx.tx_id] = body
        return body

    def check_stateful(self, view: StateView, tx: Transaction, ctx: BlockContext,
                       body: Any = None) -> Any:
        """Authorise and check ``tx`` against ``view``; return its body (decoded bodies
        are kept by transaction id until :meth:`apply` takes them: admission decodes a
        body, and its block does not decode it again)."""
        _, t = self._entry(tx.type)
        if body is None:
            body = self._kept_body(tx, t)
        self._check(view, tx, ctx, t, body)
        return body

    @staticmethod
    def _check(view: StateView, tx: Transaction, ctx: BlockContext, t: TxType[Any],
               body: Any) -> None:
        t.auth(view, tx, ctx)
        t.check(view, tx, body, ctx)

    def apply(self, view: StateView, tx: Transaction, ctx: BlockContext,
              body: Any = None) -> tuple[Event, ...]:
        """Check against ``view`` then apply; raises Rejected with nothing applied (the
        caller gives each transaction its own overlay). Returns the events."""
        app, t = self._entry(tx.type)
        if body is None:
            body = self._bodies.pop(tx.tx_id, None)
            if body is None:
                body = decode_body(t.body, tx.body)
        self._check(view, tx, ctx, t, body)
        events = t.apply(scoped(view, app), tx, body, ctx)
        return _checked_events(app, events)

    # blocks -------------------------------------------------------------------------------
    def begin_block(self, view: StateView, ctx: BlockContext) -> tuple[Event, ...]:
        return self._hook("begin_block", view, ctx)

    def end_block(self, view: StateView, ctx: BlockContext) -> tuple[Event, ...]:
        return self._hook("end_block", view, ctx)

    def _hook(self, hook: str, view: StateView, ctx: BlockContext) -> tuple[Event, ...]:
        """Each app's ``hook``, in order. On a block's overlay each runs on its own child:
        a flaw in one app's hook (:data:`APP_FAULTS`) drops that hook's writes for this
        block, is logged, and leaves a ``ledger.hook_failed`` event (app, hook, error type)
        in the block's events, instead of stopping every node; the other apps' hooks run."""
        events: list[Event] = []
        for app in self.apps:
            run = getattr(app, hook)
            target = view.child() if isinstance(view, Overlay) else view
            try:
                made = _checked_events(app, run(AppView(target, app.name, app.prefixes), ctx))
            except APP_FAULTS as e:
                if target is view:
                    raise
                log.exception("the %s hook of app %s failed at height %d", hook, app.name,
                              ctx.height)
                events.append(Event.of("ledger.hook_failed", app=app.name, hook=hook,
                                       error=type(e).__name__))
                continue
            if target is not view:
                target.merge_into_parent()  # type: ignore[attr-defined]
            events.extend(made)
        return tuple(events)

    # genesis ------------------------------------------------------------------------------
    def check_genesis(self, genesis: GenesisDoc) -> None:
        """Raise ValueError when an app cannot start from ``genesis``."""
        for app in self.apps:
            app.check_genesis(genesis)

    def genesis_writes(self, genesis: GenesisDoc) -> dict[str, bytes]:
        """Every app's genesis entries, as canonical bytes by key, each inside its app's
        prefixes."""
        writes: dict[str, bytes] = {}
        for app in self.apps:
            for key, value in app.genesis(genesis).items():
                if not key.startswith(app.prefixes):
                    raise PrefixViolation(app.name, key)
                writes[key] = encode(value)
        return writes

    def sample_tx(self, index: int) -> tuple[str, dict[str, Any]]:
        """The first app's sample transaction (what ``medledger bench`` commits)."""
        for app in self.apps:
            sample = app.sample_tx(index)
            if sample is not None:
                return sample
        raise LookupError("no registered app offers a sample transaction")

    def demo(self, orgs: Sequence[str]) -> tuple[DemoTx, ...]:
        """Every app's demo transactions for ``orgs``, in registry order."""
        return tuple(tx for app in self.apps for tx in app.demo(orgs))


_NAMED: set[tuple[str, str]] = set()  # (app, event type) already found well named


def _checked_events(app: App, events: Iterable[Event] | None) -> tuple[Event, ...]:
    if not events:
        return ()
    out = tuple(events)
    for event in out:
        if (app.name, event.type) in _NAMED:
            continue
        if not event.type.startswith(app.name + "."):
            raise ValueError(f"app {app.name!r} emitted event {event.type!r}: events are "
                             f"named <app>.<what>")
        _NAMED.add((app.name, event.type))
    return out
