"""The state tree's batch update, compiled: see ``medledger.merkle.sparse`` and ADR 0008."""

from collections.abc import Callable, Mapping

class NativeTree:
    """The batch update over one node store, with its own bounded cache of verified nodes."""

    def __init__(
        self,
        get_node: Callable[[int], bytes],
        cache_size: int,
        missing: Callable[[int], Exception],
        tampered: Callable[[int, bytes, bytes | None, str], Exception],
    ) -> None: ...
    @property
    def cache_len(self) -> int:
        """How many decoded nodes the cache holds now."""
    def cache_entries(self) -> list[tuple[int, bytes]]:
        """The cache's ``(id, hash)`` pairs, least recently used first (for tests)."""
    def update(
        self, root_id: int, root_hash: bytes, changes: Mapping[bytes, bytes | None], next_id: int
    ) -> tuple[int, bytes, tuple[tuple[int, bytes], ...]]:
        """The new root id and hash, and the new rows, children before parents."""
