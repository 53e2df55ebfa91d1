"""CometBFT's ABCI socket framing: each protobuf message prefixed by its length, an unsigned
varint (``spec/abci/abci++_client_server.md``; ``libs/protoio`` in CometBFT v0.38).

The protobuf classes are generated at build time from CometBFT's own .proto files (see
``scripts/build-engine.sh``); :func:`abci_types` imports them with a clear error when the
build has not run.
"""

from __future__ import annotations

import asyncio
from types import ModuleType

__all__ = ["MAX_MESSAGE_BYTES", "FrameError", "abci_types", "frame", "read_frame"]

#: the largest message accepted (CometBFT's own reader limit is 100 MiB)
MAX_MESSAGE_BYTES = 104_857_600
_MAX_VARINT_BYTES = 10


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
    size = len(payload)
    head = bytearray()
    while size >= 0x80:
        head.append((size & 0x7F) | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head) + payload


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
