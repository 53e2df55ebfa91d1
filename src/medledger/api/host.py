"""The node as an app's routes see it: :class:`NodeHost` implements
:class:`medledger.apps.QueryHost` over a :class:`~medledger.node.Node`.

Every answer is read at one height. A block may commit while an answer is being read; the
answer is then read again at the new tip, so that a value always matches the state root of
the header it comes with.
"""

from __future__ import annotations

from typing import Any

from medledger.apps import ProvableList, QueryError
from medledger.codec import decode
from medledger.ledger import Header
from medledger.merkle.sparse import NodeRef
from medledger.node import Node
from medledger.node.lists import MAX_LIMIT, list_answer
from medledger.node.sets import certified
from medledger.state import StateView

__all__ = ["NodeHost"]

_ATTEMPTS = 5


class NodeHost:
    """Committed state at the tip of ``node``'s chain, with proofs on request."""

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def height(self) -> int:
        return self.node.chain.height

    def view(self) -> StateView:
        return self.node.chain.view()

    def _tip(self) -> int:
        height = self.node.chain.height
        if height == 0:
            raise QueryError(404, "not_found", "no block committed yet")
        return height

    def _proven(self) -> int:
        """The height proven answers are read at (on CometBFT, the last one a signed header
        proves, one below the tip while blocks come)."""
        self._tip()
        height = self.node.chain.proven_height()
        if height is None:
            raise QueryError(503, "busy", "the header that signs the latest state is not "
                                          "final yet; ask again in a moment")
        return height

    def _settled(self, height: int) -> bool:
        """No block committed since ``height`` was read as the tip (heights only grow)."""
        return self.node.store.latest_height() == height

    def answer(self, key: str, *, prove: bool) -> dict[str, Any]:
        """``{"key", "value", "height"}`` at the tip (value None when absent); with
        ``prove``, the sparse Merkle proof and the tip's certified header as well, exactly
        as ``GET /v1/state/{key}`` answers. 404 before the first block."""
        chain, store = self.node.chain, self.node.store
        for _ in range(_ATTEMPTS):
            tip = self._tip()
            if prove:
                height = self._proven()
                try:
                    raw = chain.value_at(key, height)
                except LookupError:
                    continue  # blocks moved past the kept values: again
                head, stored = certified(chain, height), store.get_block(height)
                if head is None or stored is None:
                    continue  # the tip moved under us (or the store is damaged): again
                root = NodeRef(stored.state_root_id,
                               Header.from_dict(decode(stored.header)).state_root)
                answer = {**head, **chain.tree.prove(root, key, raw).to_dict()}
            else:
                raw = store.get_value(key)
                answer = {"key": key, "value": None if raw is None else decode(raw),
                          "height": tip}
            if self._settled(tip):
                return answer
        raise QueryError(503, "busy", "blocks kept committing while the answer was read; "
                                      "ask again")

    def list_answer(self, lst: ProvableList, owner: str, start: int, limit: int, *,
                    prove: bool) -> dict[str, Any]:
        """A page of ``owner``'s list ``lst`` (see :func:`medledger.node.lists.list_answer`).
        400 for a bad owner, start or limit; 404 before the first block."""
        if limit > MAX_LIMIT:
            raise QueryError(400, "malformed", f"limit is at most {MAX_LIMIT}")
        try:
            return list_answer(self.node.chain, lst, owner, start, limit, prove=prove)
        except ValueError as e:
            raise QueryError(400, "malformed", str(e)) from e
        except LookupError as e:
            if self.node.chain.height == 0:
                raise QueryError(404, "not_found", "no block committed yet") from e
            raise QueryError(500, "integrity", str(e)) from e
        except RuntimeError as e:
            raise QueryError(503, "busy", str(e)) from e

    def scan(self, prefix: str, *, after: str | None, limit: int) -> list[tuple[str, Any]]:
        """Up to ``limit`` committed entries under ``prefix``, in key order, after ``after``."""
        entries = self.node.store.iter_prefix(prefix, after, max(limit, 0))
        return [(key, decode(raw)) for key, raw in entries]
