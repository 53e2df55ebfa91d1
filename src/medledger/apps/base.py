"""What an app is, and the registry the node drives them through.

An :class:`App` owns a slice of state (its key prefixes) and a set of transaction types.
Its boundary keeps the shape of CometBFT's ABCI, so the node maps it straight onto CheckTx,
FinalizeBlock and Query:

- ``genesis`` -- the state entries the genesis document creates (InitChain);
- per transaction type (:class:`TxType`): a typed body decoded from the canonical body (the
  stateless check, CheckTx), who may send it (``auth``), a stateful check against committed
  state (mempool admission) and an ``apply`` inside a block that writes through the view
  and returns :class:`~medledger.ledger.Event` s (FinalizeBlock);
- ``begin_block`` and ``end_block`` hooks for what happens with time (FinalizeBlock);
- its refusal codes with HTTP statuses, a FastAPI router and a Typer command group.

The view an app's ``apply`` and block hooks receive refuses writes outside the app's
prefixes (:class:`AppView`); such a write is a programming error and raises
:class:`PrefixViolation`, never a refusal. An app reads another app's state, and changes
it, only through that app's public functions, which re-scope the view to their owner
(:func:`owned`).

Apps are deterministic: a result depends on (state, transaction, block context) alone.
A bad transaction raises :class:`Rejected` with a stable machine-readable ``code`` and a
sentence a person understands; the node records it as the transaction's result and keeps
none of its writes.

Errors::

    Rejected            a transaction is refused (an ordinary result, recorded in the block)
    PrefixViolation     an app wrote outside its prefixes (a bug: the node stops loudly)
"""

from __future__ import annotations

import importlib

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from medledger.codec import encode
from medledger.ledger import Event, Transaction, ValidatorSet
from medledger.state import Overlay, PrefixViolation, StateView

if TYPE_CHECKING:
    from medledger.apps.host import CommandHost, QueryHost

__all__ = [
    "APP_FAULTS", "App", "AppView", "Authorize", "BlockContext", "DemoTx", "Event", "GenesisDoc",
    "Misbehavior", "PrefixViolation", "Rejected", "TxType", "ValidatorAuthority", "owned", "scoped",
]

B = TypeVar("B")

APP_FAULTS = (KeyError, TypeError, ValueError, IndexError, AttributeError)
"""What a flaw in an app's code raises (as opposed to :class:`Rejected`, a refusal): at
admission it refuses the transaction with ``internal``, in a block it fails it with
``internal``, keeping nothing of it but its nonce; it never stops the node."""


class Rejected(Exception):
    """A transaction is refused: ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Misbehavior:
    """A validator's offence that the consensus engine proved and reports with a block
    (CometBFT's ``Misbehavior``): ``kind`` is ``duplicate_vote`` or
    ``light_client_attack``; ``validator`` the offender's public key."""

    kind: str
    validator: bytes
    height: int
    time: int  # ms since the epoch
    total_power: int


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What an app may know of the block it runs in (never the wall clock)."""

    chain_id: str
    height: int
    time: int  # BFT time of the block, ms since the epoch
    misbehavior: tuple[Misbehavior, ...] = ()  # offences the engine reports with the block


class GenesisDoc(Protocol):
    """What an app reads of the genesis document."""

    @property
    def chain_id(self) -> str: ...

    @property
    def genesis_time(self) -> int: ...

    @property
    def validators(self) -> ValidatorSet: ...

    @property
    def organisations(self) -> tuple[dict[str, Any], ...]: ...


class AppView:
    """A state view scoped to one app: reads anything, writes only under its prefixes."""

    __slots__ = ("_app", "_prefixes", "base")

    def __init__(self, base: StateView, app: str, prefixes: tuple[str, ...]) -> None:
        self.base = base
        self._app = app
        self._prefixes = prefixes

    def get(self, key: str) -> Any | None:
        return self.base.get(key)

    def get_raw(self, key: str) -> bytes | None:
        return self.base.get_raw(key)

    def put(self, key: str, value: Any) -> None:
        if not key.startswith(self._prefixes):
            raise PrefixViolation(self._app, key)
        if type(self.base) is Overlay:  # past the limit another app's apply set on it
            self.base.writes[key] = encode(value)
        else:
            self.base.put(key, value)

    def delete(self, key: str) -> None:
        if not key.startswith(self._prefixes):
            raise PrefixViolation(self._app, key)
        if type(self.base) is Overlay:
            self.base.writes[key] = None
        else:
            self.base.delete(key)


def scoped(view: StateView, app: App) -> StateView:
    """``view`` limited to writes under ``app``'s prefixes: a transaction's own overlay is
    limited in place (it is made for that one transaction), anything else wrapped."""
    if type(view) is Overlay and not view.writes:
        return view.limit_to(app.name, app.prefixes)
    return owned(view, app)


def owned(view: StateView, app: App) -> AppView:
    """``view`` re-scoped to ``app``: what ``app``'s public functions write through when
    another app calls them (as a Cosmos SDK keeper writes its own module's store)."""
    base = view.base if isinstance(view, AppView) else view
    return AppView(base, app.name, app.prefixes)


Authorize = Callable[[StateView, Transaction, BlockContext], None]
"""Who may send a transaction type: raises Rejected for a sender that may not."""


@dataclass(frozen=True, slots=True)
class TxType(Generic[B]):
    """One transaction type of an app.

    ``body`` is a frozen dataclass decoded by :func:`medledger.apps.body.decode_body`;
    ``check`` refuses (Rejected) what the state does not allow; ``apply`` writes through
    its (scoped) view and returns the events; it runs after ``auth`` and ``check`` on the
    same view. ``reads`` optionally names the state keys ``check`` will read, so the node
    can fetch a whole batch's in one query (a hint: a key left out costs a read later,
    never a wrong answer).
    """

    name: str
    body: type[B]
    auth: Authorize
    check: Callable[[StateView, Transaction, B, BlockContext], None]
    apply: Callable[[StateView, Transaction, B, BlockContext], Iterable[Event] | None]
    reads: Callable[[Transaction, B], tuple[str, ...]] | None = None
    summary: str = ""


@dataclass(frozen=True, slots=True)
class DemoTx:
    """One transaction of an app's demo data (what ``medledger net run`` seeds a fresh
    local consortium with): ``signer`` is an organisation id, whose genesis admin key signs
    it; ``type`` and ``body`` are the transaction's."""

    signer: str
    type: str
    body: dict[str, Any]


class ValidatorAuthority(Protocol):
    """What the app that keeps the validator set in state answers the node."""

    def validators_at(self, view: StateView, height: int) -> ValidatorSet: ...

    def pending_key(self, height: int) -> str: ...

    def set_key(self, height: int) -> str: ...



class App:
    """An app: subclass it, set the class attributes, override what it needs.

    ``name`` is its route prefix (``/v1/<name>/``) and command group; ``prefixes`` are the
    state key prefixes it owns (each ending in ``/``); ``codes`` maps each refusal code of
    its own to an HTTP status.
    """

    name: ClassVar[str]
    prefixes: ClassVar[tuple[str, ...]]
    codes: ClassVar[Mapping[str, int]] = {}
    summary: ClassVar[str] = ""
    shortcuts: ClassVar[Mapping[str, str]] = {}
    """Top-level command names for subgroups of :meth:`commands` that users reach for
    directly (``{"patient": "patient"}`` adds ``medledger patient`` beside
    ``medledger identity patient``; ``""`` names the whole group)."""

    def transactions(self) -> Sequence[TxType[Any]]:
        return ()

    def check_genesis(self, genesis: GenesisDoc) -> None:
        """Raise ValueError for a genesis this app can never start from."""

    def genesis(self, genesis: GenesisDoc) -> Mapping[str, Any]:
        """The state entries the genesis document creates for this app (key -> value)."""
        return {}

    def begin_block(self, view: StateView, ctx: BlockContext) -> Iterable[Event]:
        """Run at the start of each block, before its first transaction."""
        return ()

    def end_block(self, view: StateView, ctx: BlockContext) -> Iterable[Event]:
        """Run at the end of each block, after its last transaction."""
        return ()

    def validator_authority(self) -> ValidatorAuthority | None:
        """The app that keeps the validator set returns itself (exactly one app may)."""
        return None

    def admits_peer(self, view: StateView, node_id: str) -> bool:
        """True when ``node_id`` (a CometBFT node ID, 40 hex) is a member's node that this
        app records; a node's peer filter admits a peer that some app admits."""
        return False

    def may_read_blob(self, view: StateView, digest: bytes, reader: bytes, time_ms: int
                      ) -> bool:
        """True when this app lets the key ``reader`` fetch the encrypted content whose
        SHA-256 is ``digest`` from a node's blob store, in committed state ``view`` at block
        time ``time_ms`` (the tip's). A node serves a blob that some app lets the reader
        read, and no other."""
        return False

    def may_upload_blob(self, view: StateView, uploader: bytes) -> bool:
        """True when this app lets the key ``uploader`` store ciphertext in the nodes' blob
        stores (a registered, active key: the app that registers keys says)."""
        return False

    def may_store_blob(self, view: StateView, digest: bytes) -> bool:
        """False when nodes must not store the blob ``digest`` at all (content this app
        erased: an upload of it again, or a late push from a peer, is refused)."""
        return True

    def erased_blobs(self, events: Sequence[Event]) -> Sequence[bytes]:
        """The digests of the blobs that a committed block's ``events`` (its transactions'
        and hooks') erase: every node deletes them from its blob store."""
        return ()

    def routes(self, host: QueryHost) -> Any:
        """A FastAPI ``APIRouter`` served under ``/v1/<name>``, or None. By default the
        ``router(host)`` of the module ``routes`` beside the app's, if it has one (imported
        only when the API asks, so the app's rules never import FastAPI)."""
        module = _edge_module(self, "routes")
        return None if module is None else module.router(host)

    def commands(self, host: CommandHost) -> Any:
        """A Typer app added as ``medledger <name> ...``, or None. By default the
        ``commands(host)`` of the module ``commands`` beside the app's, if it has one."""
        module = _edge_module(self, "commands")
        return None if module is None else module.commands(host)

    def sample_tx(self, index: int) -> tuple[str, dict[str, Any]] | None:
        """A (type, body) any registered key may send, distinct for each ``index``: what
        ``medledger bench`` commits. None if the app has none."""
        return None

    def demo(self, orgs: Sequence[str]) -> Sequence[DemoTx]:
        """Demo transactions that show the app at work on a fresh chain, signed by the
        admins of ``orgs`` (organisation ids, in genesis order; the local consortium's
        first is a hospital). Deterministic: keys come from fixed seeds, never randomness.
        None by default."""
        return ()


def _edge_module(app: App, name: str) -> Any:
    """The module ``name`` in ``app``'s package, or None when it has none."""
    package = type(app).__module__
    try:
        return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{package}.{name}":
            raise  # the module exists but imports something missing: a real error
        return None
