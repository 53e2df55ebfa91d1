"""State views: what apps read and write.

Apps see a :class:`StateView`: ``get`` returns a decoded value (a fresh copy each time;
state values are bytes the node encoded itself, so they are parsed without re-checking),
``put``/``delete`` stage writes. Views stack: a block's view sits on the committed state,
and each transaction gets its own view on the block's, merged only when it succeeds, so
that a rejected transaction leaves no trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from medledger.codec import decode_trusted, encode

__all__ = ["Overlay", "PrefixViolation", "ReadOnly", "StateView", "ValueReader"]

ValueReader = Callable[[str], "bytes | None"]

_DELETED = None


class StateView(Protocol):
    """The state as an app sees it."""

    def get(self, key: str) -> Any | None: ...

    def get_raw(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class PrefixViolation(RuntimeError):
    """An app wrote a key outside its prefixes: a bug in the app, never a refusal."""

    def __init__(self, app: str, key: str) -> None:
        super().__init__(f"app {app!r} wrote {key!r}, outside its state prefixes")
        self.app, self.key = app, key


class ReadOnlyError(RuntimeError):
    """A write was attempted through a read-only view (a bug in the caller)."""


class ReadOnly:
    """A view over committed values that refuses writes (for stateful checks and queries)."""

    __slots__ = ("_read",)

    def __init__(self, read: ValueReader) -> None:
        self._read = read

    def get_raw(self, key: str) -> bytes | None:
        return self._read(key)

    def get(self, key: str) -> Any | None:
        raw = self._read(key)
        return None if raw is None else decode_trusted(raw)

    def put(self, key: str, value: Any) -> None:
        raise ReadOnlyError(f"write of {key!r} through a read-only view")

    def delete(self, key: str) -> None:
        raise ReadOnlyError(f"delete of {key!r} through a read-only view")


class Overlay:
    """Staged writes over a parent view; :meth:`merge_into_parent` publishes them.

    :meth:`limit_to` makes it refuse writes outside some key prefixes (the view one app's
    transaction runs in), raising :class:`PrefixViolation`.
    """

    __slots__ = ("_owner", "_parent", "_prefixes", "writes")

    def __init__(self, parent: ReadOnly | Overlay) -> None:
        self._parent = parent
        self.writes: dict[str, bytes | None] = {}
        self._prefixes: tuple[str, ...] | None = None
        self._owner = ""

    def limit_to(self, owner: str, prefixes: tuple[str, ...]) -> Overlay:
        """From now on, refuse writes outside ``prefixes`` (in ``owner``'s name)."""
        self._owner, self._prefixes = owner, prefixes
        return self

    def get_raw(self, key: str) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self._parent.get_raw(key)

    def get(self, key: str) -> Any | None:
        raw = self.get_raw(key)
        return None if raw is None else decode_trusted(raw)

    def put(self, key: str, value: Any) -> None:
        if self._prefixes is not None and not key.startswith(self._prefixes):
            raise PrefixViolation(self._owner, key)
        self.writes[key] = encode(value)

    def delete(self, key: str) -> None:
        if self._prefixes is not None and not key.startswith(self._prefixes):
            raise PrefixViolation(self._owner, key)
        self.writes[key] = _DELETED

    def child(self) -> Overlay:
        return Overlay(self)

    def merge_into_parent(self) -> None:
        parent = self._parent
        if not isinstance(parent, Overlay):
            raise ReadOnlyError("cannot merge into a read-only view")
        parent.writes.update(self.writes)
