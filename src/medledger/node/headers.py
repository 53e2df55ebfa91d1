"""CometBFT's signed headers, as a node on the engine keeps them to prove its answers.

CometBFT's header of height ``h + 1`` carries the app hash after block ``h`` (the state
root), so the state after ``h`` is proven by header ``h + 1``; when block ``h`` changed
nothing (the empty block CometBFT adds after one that changed the app hash), header ``h``
carries that root too. A node answers at the highest height it can prove this way, reading
older values from the chain's undo records (:meth:`Chain.value_at`).

:class:`SignedHeaders` fetches the signed header of each committed height from the engine's
RPC (``/commit?height=h``), from the ABCI thread right after the app commits, and keeps the
last few. Answers carry them under ``"light"``, as CometBFT's RPC gives them; the client
checks them (:mod:`medledger.client.light`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import httpx

from medledger.codec import decode
from medledger.ledger import Header
from medledger.node.chain import Chain

__all__ = ["SignedHeaders", "app_hash"]

log = logging.getLogger("medledger.node")

KEEP = 16  # heights of signed headers kept


def app_hash(signed_header: dict[str, Any]) -> bytes:
    """The app hash a signed header (CometBFT's JSON) carries."""
    return bytes.fromhex(signed_header["header"]["app_hash"])


class SignedHeaders:
    """The last :data:`KEEP` signed headers of ``chain``'s engine, and what they prove."""

    def __init__(self, chain: Chain, rpc: str) -> None:
        self.chain = chain
        self._client = httpx.Client(base_url=f"http://{rpc}", timeout=5.0)
        self._lock = threading.Lock()
        self._headers: dict[int, dict[str, Any]] = {}

    def close(self) -> None:
        self._client.close()

    # fetching -----------------------------------------------------------------------------
    def fetch(self, height: int) -> dict[str, Any] | None:
        """The signed header of ``height``: kept, or from the engine (blocking; kept when
        near the tip). None when the engine has none (yet) or does not answer."""
        if height < 1:
            return None
        kept = self._headers.get(height)
        if kept is not None:
            return kept
        try:
            answer = self._client.get("/commit", params={"height": height})
            signed = answer.json()["result"]["signed_header"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        if height > self.chain.height - KEEP:
            with self._lock:
                self._headers[height] = signed
                for old in [h for h in self._headers if h <= self.chain.height - KEEP]:
                    del self._headers[old]
        return signed

    def get(self, height: int) -> dict[str, Any] | None:
        """The signed header of ``height`` if kept (never fetches)."""
        return self._headers.get(height)

    def pair(self, height: int) -> list[dict[str, Any]] | None:
        """Headers ``height`` and ``height + 1`` (fetching what is missing; blocking), or
        None while ``height + 1`` does not exist."""
        first, second = self.fetch(height), self.fetch(height + 1)
        return None if first is None or second is None else [first, second]

    # proving ------------------------------------------------------------------------------
    def _root(self, height: int) -> bytes | None:
        stored = self.chain.store.get_block(height)
        return None if stored is None else Header.from_dict(decode(stored.header)).state_root

    def height(self) -> int | None:
        """The highest height whose state a kept header proves and whose values the chain
        can still read, or None (none yet: right after a start, before the next block)."""
        chain = self.chain
        tip = chain.height
        for height in range(tip, max(tip - chain.undo_depth - 1, 0), -1):
            if not chain.keeps_values_of(height):
                break
            if self.light(height) is not None:
                return height
        return None

    def light(self, height: int, *, fetch: bool = False) -> list[dict[str, Any]] | None:
        """The signed headers proving the state after ``height``: header ``height`` (its
        time) and the one whose app hash is that state root (``height + 1``, or ``height``
        itself when that block changed nothing). None when not (yet) kept; ``fetch``: ask
        the engine for those not kept first (blocking)."""
        look = self.fetch if fetch else self.get
        own = look(height)
        root = self._root(height)
        if own is None or root is None:
            return None
        following = look(height + 1)
        if following is not None and app_hash(following) == root:
            return [own, following]
        if app_hash(own) == root:
            return [own]
        return None
