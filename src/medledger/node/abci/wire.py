"""CometBFT's ABCI socket framing: each protobuf message prefixed by its length, an unsigned
varint (``spec/abci/abci++_client_server.md``; ``libs/protoio`` in CometBFT v0.38).

The protobuf classes are generated at build time from CometBFT's own .proto files (see
``scripts/build-engine.sh``); :func:`abci_types` imports them with a clear error when the
build has not run.
"""

from __future__ import annotations

import asyncio
from types import ModuleType

from medledger.ledger.engine import uvarint as varint

__all__ = ["MAX_MESSAGE_BYTES", "FrameError", "FrameReader", "abci_types", "frame",
           "read_frame", "varint"]

#: the largest message accepted (CometBFT's own reader limit is 100 MiB)
MAX_MESSAGE_BYTES = 104_857_600
_MAX_VARINT_BYTES = 10
_READ_BYTES = 256 * 1024


class FrameError(ValueError):
    """A frame on the socket is malformed: a varint too long or a length over the limit."""


def abci_types() -> ModuleType:
    """The generated ``tendermint.abci.types_pb2`` module."""
    try:
        from tendermint.abci import types_pb2
    except ImportError as e:  # pragma: no cover - depends on the build having run
        raise ImportError(
            "the ABCI protobuf classes are not generated: run `make setup` (it builds "
            "CometBFT and generates them)") from e
    return types_pb2


def frame(payload: bytes) -> bytes:
    """``payload`` with its unsigned varint length prefix."""
    return varint(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next message's bytes, or None at a clean end of stream (before a frame).

    Raises :class:`FrameError` for a malformed prefix and ``asyncio.IncompleteReadError``
    when the stream ends inside a frame.
    """
    size = shift = 0
    for index in range(_MAX_VARINT_BYTES):
        byte = await reader.read(1)
        if not byte:
            if index == 0:
                return None
            raise asyncio.IncompleteReadError(b"", None)
        value = byte[0]
        size |= (value & 0x7F) << shift
        if value < 0x80:
            break
        shift += 7
    else:
        raise FrameError("length prefix longer than 10 bytes")
    if size > MAX_MESSAGE_BYTES:
        raise FrameError(f"message of {size} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
    return await reader.readexactly(size)


class FrameReader:
    """Reads a stream's frames in bulk: every frame complete so far, at once.

    CometBFT writes requests back to back (a mempool's worth of CheckTx after each block, a
    burst of them for a batch of submitted transactions); reading them together lets the
    server answer them in one hand-over to its worker thread, and read the stream in large
    pieces rather than a byte at a time for each length prefix.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._buffer = bytearray()
        self._wanted = 0  # bytes the incomplete frame at the start needs in all, if known

    async def read(self) -> list[bytes]:
        """The frames complete so far, waiting until there is at least one; an empty list
        at a clean end of stream (between frames).

        Raises :class:`FrameError` for a malformed prefix and ``asyncio.IncompleteReadError``
        when the stream ends inside a frame.
        """
        while True:
            frames = self._split()
            if frames:
                return frames
            chunk = await self._reader.read(max(_READ_BYTES, self._wanted - len(self._buffer)))
            if not chunk:
                if self._buffer:
                    raise asyncio.IncompleteReadError(bytes(self._buffer), None)
                return []
            self._buffer += chunk

    def _split(self) -> list[bytes]:
        """Take the complete frames off the front of the buffer."""
        buffer = self._buffer
        end = len(buffer)
        frames: list[bytes] = []
        start = 0
        self._wanted = 0
        while start < end:
            found = _prefix(buffer, start, end)
            if found is None:
                break
            size, body = found
            if body + size > end:
                self._wanted = body + size - start
                break
            frames.append(bytes(buffer[body:body + size]))
            start = body + size
        if start:
            del buffer[:start]
        return frames


def _prefix(buffer: bytearray, start: int, end: int) -> tuple[int, int] | None:
    """The length prefix at ``start``: (message size, where the message starts), or None
    when the buffer ends inside it. Raises :class:`FrameError`."""
    size = shift = 0
    index = start
    while index < end:
        value = buffer[index]
        index += 1
        size |= (value & 0x7F) << shift
        if value < 0x80:
            if size > MAX_MESSAGE_BYTES:
                raise FrameError(f"message of {size} bytes exceeds the limit of "
                                 f"{MAX_MESSAGE_BYTES}")
            return size, index
        shift += 7
        if index - start >= _MAX_VARINT_BYTES:
            raise FrameError("length prefix longer than 10 bytes")
    return None
