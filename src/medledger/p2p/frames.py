"""Length-prefixed frames, and the JSON messages the node puts in them.

A frame on the wire is a 4-byte big-endian length ``n`` followed by ``n`` bytes of payload.
``n`` is checked against a limit (:data:`DEFAULT_MAX_FRAME`, 4 MiB) as soon as the four
length bytes are in, before any buffer for the payload exists: an oversized frame is a
:class:`~medledger.p2p.errors.FrameTooLarge` and its body is never read.

The transport gives a zero-length frame one meaning, a heartbeat, and never delivers it;
payloads of its users are therefore never empty. What goes inside a payload is the
user's business; :func:`encode_message` and :func:`decode_message` are the convention the
node uses: one canonical JSON object ``{"kind": ..., <body fields>}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from medledger.codec import CodecError, decode, encode
from medledger.p2p.errors import FrameTooLarge, ProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HEADER_SIZE",
    "FrameDecoder",
    "decode_message",
    "encode_frame",
    "encode_message",
    "frame_header",
    "read_frame",
]

HEADER_SIZE = 4
DEFAULT_MAX_FRAME = 4 * 1024 * 1024
_MAX_LENGTH = 2**32 - 1


def _check_limit(max_frame: int) -> None:
    if not 0 < max_frame <= _MAX_LENGTH:
        raise ValueError(f"max_frame must be in 1..{_MAX_LENGTH}, got {max_frame}")


def encode_frame(payload: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Return ``payload`` as one frame: its length (4 bytes, big-endian), then itself.

    Raises :class:`FrameTooLarge` if ``payload`` is longer than ``max_frame``.
    """
    _check_limit(max_frame)
    if len(payload) > max_frame:
        raise FrameTooLarge(len(payload), max_frame)
    return len(payload).to_bytes(HEADER_SIZE, "big") + bytes(payload)


def frame_header(size: int, max_frame: int) -> bytes:
    """The 4-byte header of a payload of ``size`` bytes (checked against ``max_frame``)."""
    if size > max_frame:
        raise FrameTooLarge(size, max_frame)
    return size.to_bytes(HEADER_SIZE, "big")


async def read_frame(reader: asyncio.StreamReader, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Read one frame's payload from ``reader``.

    Raises :class:`FrameTooLarge` right after the header if the length is over
    ``max_frame``, and :class:`asyncio.IncompleteReadError` if the stream ends mid-frame.
    """
    size = int.from_bytes(await reader.readexactly(HEADER_SIZE), "big")
    if size > max_frame:
        raise FrameTooLarge(size, max_frame)
    return await reader.readexactly(size) if size else b""


class FrameDecoder:
    """Incremental decoder: feed it bytes as they come, get whole payloads back.

    Memory is bounded by ``max_frame`` plus one ``feed``: a header announcing a longer
    frame raises :class:`FrameTooLarge` at once, and the decoder is then unusable.
    """

    __slots__ = ("_buffer", "_failed", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        """A decoder that refuses frames longer than ``max_frame`` bytes."""
        _check_limit(max_frame)
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._failed = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the payloads it completes, in order."""
        if self._failed:
            raise ProtocolError("decoder already failed on an oversized frame")
        self._buffer += data
        out: list[bytes] = []
        while len(self._buffer) >= HEADER_SIZE:
            size = int.from_bytes(self._buffer[:HEADER_SIZE], "big")
            if size > self.max_frame:
                self._failed = True
                raise FrameTooLarge(size, self.max_frame)
            end = HEADER_SIZE + size
            if len(self._buffer) < end:
                break
            out.append(bytes(self._buffer[HEADER_SIZE:end]))
            del self._buffer[:end]
        return out

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buffer)


def encode_message(kind: str, body: dict[str, Any]) -> bytes:
    """Canonical JSON of ``{"kind": kind, **body}``: what the node gossips in a payload.

    ``kind`` is a non-empty string (``"tx"``, ``"proposal"``, ``"vote"``); ``body`` must
    not have a ``"kind"`` field itself and must be canonical-JSON-able
    (:class:`~medledger.codec.CodecError` otherwise).
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"message kind must be a non-empty string, got {kind!r}")
    if "kind" in body:
        raise ValueError("message body must not have a 'kind' field of its own")
    return encode({"kind": kind, **body})


def decode_message(payload: bytes) -> tuple[str, dict[str, Any]]:
    """Return ``(kind, body)`` from a payload made by :func:`encode_message`.

    Strict (:func:`medledger.codec.decode`: UTF-8, no floats, no duplicate keys, integers
    within 2^53): the payload must be a JSON object with a non-empty string ``kind``;
    anything else is a :class:`ProtocolError` (a codec error is its cause).
    """
    try:
        value = decode(payload)
    except CodecError as e:
        raise ProtocolError(f"message is not canonical JSON: {e}") from e
    if not isinstance(value, dict):
        raise ProtocolError(f"message is a JSON {type(value).__name__}, not an object")
    kind = value.pop("kind", None)
    if not isinstance(kind, str) or not kind:
        raise ProtocolError(f"message has no kind (a non-empty string), got {kind!r}")
    return kind, value
