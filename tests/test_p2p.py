"""The p2p layer: node certificates, frames, and transports over real sockets on loopback.

Every network test runs its own event loop (``asyncio.run``) under an overall timeout,
binds 127.0.0.1 port 0, and stops every transport it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import hashlib
import itertools
import logging
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Self

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.crypto import SigningKey
from medledger.p2p import (
    GREETING,
    Backoff,
    CertificateError,
    FrameDecoder,
    FrameTooLarge,
    Limits,
    PeerRejected,
    ProtocolError,
    TlsIdentity,
    Transport,
    certificate_key,
    check_certificate,
    decode_message,
    encode_frame,
    encode_message,
    exchange_greeting,
    keep_new_connection,
    node_certificate,
    peer_identity,
    read_frame,
    split_address,
)
from tests.netproxy import Proxy
from tests.test_public_surface import defined_in_medledger, has_docstring

KEYS = sorted((SigningKey.from_seed(bytes([i]) * 32) for i in range(1, 6)),
              key=lambda k: k.public_key)
A, B, C, D, OUTSIDER = KEYS  # A has the lowest public key
FAST = Limits(handshake_timeout=2.0, ping_interval=0.2, idle_timeout=1.5, write_timeout=5.0)


def fast_backoff() -> Backoff:
    return Backoff(initial=0.05, cap=0.4)


def members_of(*keys: SigningKey) -> dict[bytes, bytes]:
    return {k.public_key: node_certificate(k) for k in keys}


def run(coro: Coroutine[Any, Any, None], timeout: float = 15.0) -> None:
    """Run ``coro`` in a fresh event loop; fail if it takes longer than ``timeout``.

    Collecting garbage right after makes a socket or transport left open fail this test
    (as an unraisable ResourceWarning) rather than whichever test happens to run next.
    """
    asyncio.run(asyncio.wait_for(coro, timeout))
    gc.collect()


async def eventually(check: Callable[[], bool], what: str, timeout: float = 4.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.01)


class Inbox:
    """An ``on_message`` that records ``(peer key, payload)`` pairs."""

    def __init__(self) -> None:
        self.items: list[tuple[bytes, bytes]] = []

    def __call__(self, peer: bytes, payload: bytes) -> None:
        self.items.append((peer, payload))

    def payloads(self, peer: bytes | None = None) -> list[bytes]:
        return [p for k, p in self.items if peer is None or k == peer]


class Net:
    """Starts transports in ``tmp_path`` and stops every one of them on exit."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Transport] = []
        self.raws: list[asyncio.StreamWriter] = []

    async def node(self, key: SigningKey, members: Any,
                   peers: Sequence[tuple[SigningKey, str]] = (), *,
                   listen: str = "127.0.0.1:0", limits: Limits = FAST,
                   on_message: Callable[[bytes, bytes], Awaitable[None] | None] | None = None,
                   ) -> tuple[Transport, Inbox]:
        inbox = Inbox()
        transport = Transport(key, listen, [(k.public_key, a) for k, a in peers], members,
                              on_message or inbox, self.tmp_path / f"tls-{len(self.started)}",
                              limits=limits, backoff=fast_backoff)
        await transport.start()
        self.started.append(transport)
        return transport, inbox

    async def raw(self, key: SigningKey, members: dict[bytes, bytes], address: str, *,
                  receive_buffer: int | None = None,
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A hand-driven client: TLS as ``key`` and the greeting, then what the test does.
        Closed on exit."""
        identity = TlsIdentity(key, self.tmp_path / f"raw-{len(self.raws)}")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, split_address(address))
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=identity.context(members, server_side=False), server_hostname="")
        self.raws.append(writer)
        await asyncio.wait_for(exchange_greeting(reader, writer), 2.0)
        return reader, writer

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.raws:
            await close(writer)
        for transport in reversed(self.started):
            await transport.stop(timeout=2.0)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (OSError, TimeoutError):  # not closed in time, or the close failed: cut it
        writer.transport.abort()


# --- the public surface (what tests/test_public_surface.py checks for its packages) ----------
def test_p2p_exports_resolve_and_are_documented() -> None:
    from medledger import p2p

    exported = p2p.__all__
    assert len(set(exported)) == len(exported)
    assert [n for n in exported if not hasattr(p2p, n)] == []
    undocumented = [n for n in exported if defined_in_medledger(obj := getattr(p2p, n))
                    and not has_docstring(obj)]
    assert undocumented == []


# --- certificates ----------------------------------------------------------------------------
#: sha256 of node_certificate(SigningKey.from_seed(bytes(range(32)))). Genesis stores these
#: certificates: if this changes, every existing genesis stops matching its keys.
GOLDEN_CERTIFICATE_SHA256 = "28c4779fbc48ee8bba2a1bf2e0739fabfcf789208089e98aa01ab3b9919c9f33"


def test_certificate_is_a_function_of_the_key() -> None:
    key = SigningKey.from_seed(bytes(range(32)))
    der = node_certificate(key)
    assert hashlib.sha256(der).hexdigest() == GOLDEN_CERTIFICATE_SHA256
    assert node_certificate(SigningKey.from_seed(key.seed)) == der
    assert node_certificate(A) != node_certificate(B)


def test_certificate_fields() -> None:
    cert = x509.load_der_x509_certificate(node_certificate(A))
    cn = A.public_key.hex()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    assert cert.issuer == cert.subject
    assert cert.not_valid_after_utc.year == 9999
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign


def test_certificate_key_round_trip_and_check() -> None:
    for key in KEYS:
        der = node_certificate(key)
        assert certificate_key(der) == key.public_key
        check_certificate(der, key.public_key)
    with pytest.raises(CertificateError, match="not the member's key"):
        check_certificate(node_certificate(A), B.public_key)


def test_certificate_key_refuses_garbage_and_other_key_types() -> None:
    with pytest.raises(CertificateError, match=r"not a DER X\.509"):
        certificate_key(b"\x30\x03junk")
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    when = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    ec_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(private.public_key()).serial_number(1).not_valid_before(when)
               .not_valid_after(when + datetime.timedelta(days=1))
               .sign(private, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    with pytest.raises(CertificateError, match="not Ed25519"):
        certificate_key(ec_cert)


class _FakeTls:
    def __init__(self, der: bytes | None) -> None:
        self.der = der

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        assert binary_form
        return self.der


def _other_certificate_for(key: SigningKey) -> bytes:
    """A valid self-signed certificate of ``key`` that is not its node certificate."""
    private = Ed25519PrivateKey.from_private_bytes(key.seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, key.public_key.hex())])
    when = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(private.public_key()).serial_number(7).not_valid_before(when)
            .not_valid_after(when + datetime.timedelta(days=1)).sign(private, None))
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("scenario, der, accepted", [
    ("the registered certificate", node_certificate(A), True),
    ("no certificate", None, False),
    ("a member key but another certificate", _other_certificate_for(A), False),
    ("a key that is not a member", node_certificate(OUTSIDER), False),
])
def test_peer_identity(scenario: str, der: bytes | None, accepted: bool) -> None:
    members = members_of(A, B)
    if accepted:
        assert peer_identity(_FakeTls(der), members) == (A.public_key, der)  # type: ignore[arg-type]
    else:
        with pytest.raises(PeerRejected):
            peer_identity(_FakeTls(der), members)  # type: ignore[arg-type]


def test_identity_files_are_private_encrypted_and_removed(tmp_path: Path) -> None:
    identity = TlsIdentity(A, tmp_path / "tls")
    assert stat.S_IMODE(identity.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    assert identity.key_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")
    assert A.seed not in identity.key_path.read_bytes()
    identity.context(members_of(A, B), server_side=True)  # the key loads
    identity.remove()
    assert not identity.key_path.exists() and not identity.cert_path.exists()


# --- frames and messages ---------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(payloads=st.lists(st.binary(max_size=300), max_size=12),
       cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20))
def test_frames_round_trip_however_the_stream_is_cut(payloads: list[bytes],
                                                     cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p, max_frame=300) for p in payloads)
    assert len(stream) == sum(4 + len(p) for p in payloads)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    decoder = FrameDecoder(max_frame=300)
    out: list[bytes] = []
    for lo, hi in itertools.pairwise(bounds):
        out += decoder.feed(stream[lo:hi])
    assert out == payloads
    assert decoder.pending == 0


@given(payload=st.binary(min_size=1, max_size=64))
def test_frames_round_trip_through_a_stream_reader(payload: bytes) -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(encode_frame(payload) + encode_frame(b""))
        reader.feed_eof()
        assert await read_frame(reader) == payload
        assert await read_frame(reader) == b""
        with pytest.raises(asyncio.IncompleteReadError):
            await read_frame(reader)
    asyncio.run(main())


def test_oversized_frames_are_refused_from_the_header_alone() -> None:
    assert encode_frame(b"x" * 16, max_frame=16)[:4] == b"\x00\x00\x00\x10"
    with pytest.raises(FrameTooLarge) as caught:
        encode_frame(b"x" * 17, max_frame=16)
    assert (caught.value.size, caught.value.limit) == (17, 16)
    decoder = FrameDecoder(max_frame=16)
    with pytest.raises(FrameTooLarge, match="exceeds the limit"):
        decoder.feed((2**32 - 1).to_bytes(4, "big"))  # no body follows, none is awaited
    with pytest.raises(ProtocolError):
        decoder.feed(b"")  # a failed decoder stays failed

    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data((10**9).to_bytes(4, "big"))  # a 1 GB frame announced, never sent
        with pytest.raises(FrameTooLarge):
            await asyncio.wait_for(read_frame(reader, max_frame=1024), 1.0)
    asyncio.run(main())


def test_messages_round_trip() -> None:
    payload = encode_message("vote", {"height": 7, "round": 0, "block": "ab"})
    assert payload == b'{"block":"ab","height":7,"kind":"vote","round":0}'
    assert decode_message(payload) == ("vote", {"height": 7, "round": 0, "block": "ab"})


@pytest.mark.parametrize("scenario, payload", [
    ("not JSON", b"\xff\x00"),
    ("a float", b'{"kind":"tx","x":1.5}'),
    ("duplicate keys", b'{"kind":"tx","kind":"vote"}'),
    ("not an object", b'["tx"]'),
    ("no kind", b'{"height":1}'),
    ("empty kind", b'{"kind":""}'),
    ("kind not a string", b'{"kind":3}'),
])
def test_bad_messages_are_protocol_errors(scenario: str, payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_message(payload)


def test_encode_message_refuses_ambiguous_input() -> None:
    with pytest.raises(ValueError):
        encode_message("", {})
    with pytest.raises(ValueError):
        encode_message("tx", {"kind": "vote"})


# --- backoff and limits ----------------------------------------------------------------------
def test_backoff_doubles_to_the_cap_and_resets() -> None:
    backoff = Backoff(initial=0.1, cap=1.0, jitter=0.2, rng=lambda: 0.5)  # 0.5: no spread
    assert [round(backoff.delay(), 6) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.delay() == pytest.approx(0.1)


@pytest.mark.parametrize("draw, expected", [(0.0, 0.08), (0.999999, 0.12)])
def test_backoff_jitter_spreads_within_bounds(draw: float, expected: float) -> None:
    assert Backoff(initial=0.1, jitter=0.2, rng=lambda: draw).delay() == pytest.approx(
        expected, abs=1e-6)
    assert Backoff(initial=1.0, cap=1.0, jitter=0.2, rng=lambda: draw).delay() <= 1.0


@pytest.mark.parametrize("bad", [
    {"queue_size": 0}, {"max_frame": 2**32}, {"ping_interval": 2.0, "idle_timeout": 2.0},
])
def test_limits_refuse_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Limits(**bad)


#: (me, peer, who dialed the new connection, who dialed the old one or None, keep the new?)
PAIRING = {
    "first connection, dialed by the lower key": (A, B, A, None, True),
    "first connection, dialed by the higher key": (A, B, B, None, True),
    "both dialed: the lower key's wins, seen from the lower": (A, B, A, B, True),
    "both dialed: the higher key's loses, seen from the lower": (A, B, B, A, False),
    "both dialed: the lower key's wins, seen from the higher": (B, A, A, B, True),
    "both dialed: the higher key's loses, seen from the higher": (B, A, B, A, False),
    "the higher key redials (its peer restarted)": (A, B, B, B, True),
    "the lower key redials": (B, A, A, A, True),
}


@pytest.mark.parametrize("scenario", sorted(PAIRING))
def test_one_connection_per_pair(scenario: str) -> None:
    me, peer, new, old, keep = PAIRING[scenario]
    assert keep_new_connection(me.public_key, peer.public_key, new.public_key,
                               None if old is None else old.public_key) is keep


def test_split_address() -> None:
    assert split_address("127.0.0.1:26656") == ("127.0.0.1", 26656)
    assert split_address("[::1]:1") == ("::1", 1)
    for bad in ("127.0.0.1", ":80", "host:", "host:99999", "host:x"):
        with pytest.raises(ValueError):
            split_address(bad)


# --- transports on loopback ------------------------------------------------------------------
def test_members_connect_and_exchange_frames_both_ways(tmp_path: Path) -> None:
    async def main() -> None:
        members = members_of(A, B, C)
        async with Net(tmp_path) as net:
            c, c_in = await net.node(C, members)
            b, b_in = await net.node(B, members, [(C, c.listen_address)])
            a, a_in = await net.node(A, members, [(B, b.listen_address), (C, c.listen_address)])
            everyone = [a, b, c]
            await eventually(lambda: all(len(t.connected()) == 2 for t in everyone), "a mesh")
            assert a.connected() == sorted([B.public_key, C.public_key])
            for i in range(50):
                assert a.send(B.public_key, b"a->b %d" % i)
                assert b.send(A.public_key, b"b->a %d" % i)
            assert c.broadcast(b"from c") == 2
            await eventually(lambda: len(b_in.items) == 51 and len(a_in.items) == 51, "delivery")
            assert b_in.payloads(A.public_key) == [b"a->b %d" % i for i in range(50)]
            assert a_in.payloads(B.public_key) == [b"b->a %d" % i for i in range(50)]
            assert a_in.payloads(C.public_key) == b_in.payloads(C.public_key) == [b"from c"]
            assert c_in.items == []
            a_stats, b_stats = a.stats()[B.public_key], b.stats()[A.public_key]
            assert (a_stats.frames_out, a_stats.frames_in) == (50, 50)
            assert b_stats.bytes_in == sum(len(b"a->b %d" % i) for i in range(50))
            assert a.send(D.public_key, b"nobody") is False  # not connected
            with pytest.raises(ValueError):
                a.send(B.public_key, b"")  # empty frames are heartbeats, not payloads
    run(main())


def test_both_dialing_keeps_one_connection_dialed_by_the_lower_key(tmp_path: Path) -> None:
    async def main() -> None:
        members = members_of(A, B)
        async with Net(tmp_path) as net:
            b, _ = await net.node(B, members)
            a, _ = await net.node(A, members, [(B, b.listen_address)])
            b.set_peers([(A.public_key, a.listen_address)])
            await eventually(lambda: bool(a.connected() and b.connected()), "a connection")
            await asyncio.sleep(0.5)  # give a second connection every chance to win
            first = a.stats()[B.public_key], b.stats()[A.public_key]
            await asyncio.sleep(0.3)
            assert (a.stats()[B.public_key].connects, b.stats()[A.public_key].connects) == \
                (first[0].connects, first[1].connects), "connections keep flapping"
            assert first[0].outbound is True and first[1].outbound is False  # A < B dialed
            assert first[0].reconnects == first[1].reconnects == 0
    run(main())


def test_a_non_member_cannot_connect_either_way(tmp_path: Path) -> None:
    async def main() -> None:
        members = members_of(A, B)
        async with Net(tmp_path) as net:
            a, a_in = await net.node(A, members)
            # the outsider trusts A and dials it; A is told to dial the outsider too
            outsider, out_in = await net.node(OUTSIDER, members_of(A, B, OUTSIDER),
                                              [(A, a.listen_address)])
            a.set_peers([(OUTSIDER.public_key, outsider.listen_address)])
            await eventually(lambda: a.stats().get(OUTSIDER.public_key, None) is not None
                             and a.stats()[OUTSIDER.public_key].dial_failures >= 2
                             and outsider.stats()[A.public_key].dial_failures >= 2,
                             "several refused dials both ways")
            assert a.connected() == [] and outsider.connected() == []
            assert outsider.send(A.public_key, b"let me in") is False
            assert outsider.broadcast(b"anyone?") == 0
            # by hand: TLS 1.3 lets the client finish its handshake before the server has
            # refused its certificate; the refusal shows on the client's first read
            identity = TlsIdentity(OUTSIDER, tmp_path / "raw")
            host, port = split_address(a.listen_address)
            reader, writer = await asyncio.open_connection(
                host, port, ssl=identity.context(members_of(A, OUTSIDER), server_side=False))
            try:
                writer.write(encode_frame(GREETING) + encode_frame(b"smuggled"))
                with pytest.raises((asyncio.IncompleteReadError, ConnectionError, OSError)):
                    await asyncio.wait_for(read_frame(reader), 2.0)
            finally:
                await close(writer)
            assert a_in.items == [] and out_in.items == []
    run(main())


def test_removing_a_member_drops_its_connection(tmp_path: Path) -> None:
    async def main() -> None:
        registry = members_of(A, B, C)
        async with Net(tmp_path) as net:
            c, _ = await net.node(C, members_of(A, B, C))
            b, b_in = await net.node(B, members_of(A, B, C))
            a, _ = await net.node(A, lambda: registry,
                                  [(B, b.listen_address), (C, c.listen_address)])
            await eventually(lambda: len(a.connected()) == 2, "A connected to B and C")
            del registry[C.public_key]  # governance removes C ...
            assert C.public_key in a.connected()  # ... which takes effect on set_members
            a.set_members()
            await eventually(lambda: a.connected() == [B.public_key]
                             and c.connected() == [], "C dropped on both sides")
            failures = a.stats()[C.public_key].dial_failures
            await eventually(lambda: a.stats()[C.public_key].dial_failures > failures,
                             "A's redial of C refused")
            assert a.connected() == [B.public_key]
            assert a.send(B.public_key, b"still here")
            await eventually(lambda: b_in.payloads() == [b"still here"], "delivery to B")
            a.set_members(members_of(A, B, C))  # and back in again
            await eventually(lambda: len(a.connected()) == 2, "C reconnected")
    run(main())


def test_an_oversized_frame_closes_only_that_connection(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        members = members_of(A, B, C)
        limits = Limits(max_frame=1024, handshake_timeout=2.0, ping_interval=0.2,
                        idle_timeout=1.5)
        async with Net(tmp_path) as net:
            a, a_in = await net.node(A, members, limits=limits)
            b, _ = await net.node(B, members, [(A, a.listen_address)], limits=limits)
            await eventually(lambda: a.connected() == [B.public_key], "B connected")
            reader, writer = await net.raw(C, members, a.listen_address)
            writer.write(encode_frame(b"x" * 1024))  # exactly the limit: fine
            await eventually(lambda: a_in.payloads(C.public_key) == [b"x" * 1024], "delivery")
            writer.write((1025).to_bytes(4, "big") + b"y" * 1025)
            await writer.drain()
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                for _ in range(100):  # heartbeats until A hangs up
                    await asyncio.wait_for(read_frame(reader), 2.0)
            await eventually(lambda: C.public_key not in a.connected(), "C dropped")
            assert a.stats()[C.public_key].protocol_errors == 1
            assert a_in.payloads(C.public_key) == [b"x" * 1024]
            assert b.send(A.public_key, b"unaffected")
            await eventually(lambda: a_in.payloads(B.public_key) == [b"unaffected"], "B ok")
            assert a.connected() == [B.public_key]
            assert a.stats()[B.public_key].connects == 1
    with caplog.at_level(logging.WARNING, logger="medledger.p2p"):
        run(main())
    assert any("frame of 1025 bytes exceeds the limit of 1024" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("scenario, limits, most", [
    ("frame count bound", Limits(queue_size=8, ping_interval=0.2, idle_timeout=5.0), 8),
    ("byte bound", Limits(queue_bytes=5 * 65536, ping_interval=0.2, idle_timeout=5.0), 5),
])
def test_a_peer_that_never_reads_cannot_grow_the_send_queue(
        tmp_path: Path, scenario: str, limits: Limits, most: int) -> None:
    async def main() -> None:
        members = members_of(A, B)
        async with Net(tmp_path) as net:
            a, _ = await net.node(A, members, limits=limits)
            await net.raw(B, members, a.listen_address)
            await eventually(lambda: a.connected() == [B.public_key], "B connected")
            payload = b"z" * 65536
            accepted = refused = peak = 0
            for _ in range(3000):  # until the kernel buffers are full and the queue with them
                if a.send(B.public_key, payload):
                    accepted += 1
                else:
                    refused += 1
                peak = max(peak, a.stats()[B.public_key].queued)
                if refused >= 50:
                    break
                await asyncio.sleep(0)
            stats = a.stats()[B.public_key]
            assert refused >= 50 and stats.drops == refused
            assert peak <= most and stats.queued == most
            assert stats.frames_out + stats.queued <= accepted
    run(main())


def test_a_peer_that_stops_reading_is_disconnected_after_write_timeout(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        members = members_of(A, B)
        limits = Limits(queue_size=4, ping_interval=0.2, idle_timeout=5.0, write_timeout=0.5)
        async with Net(tmp_path) as net:
            a, _ = await net.node(A, members, limits=limits)
            await net.raw(B, members, a.listen_address, receive_buffer=4096)
            await eventually(lambda: a.connected() == [B.public_key], "B connected")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5.0
            while a.connected() and loop.time() < deadline:  # keep the queue full
                a.send(B.public_key, b"z" * 65536)
                await asyncio.sleep(0.002)
            assert a.connected() == [], "a peer that reads nothing is still connected"
            assert a.stats()[B.public_key].drops > 0
    with caplog.at_level(logging.WARNING, logger="medledger.p2p"):
        run(main())
    assert any("has not read for 0.5s" in r.getMessage() for r in caplog.records)


def test_handler_errors_are_logged_and_the_connection_stays(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[bytes] = []

    async def handler(peer: bytes, payload: bytes) -> None:
        seen.append(payload)
        if payload == b"boom":
            raise RuntimeError("handler bug")

    async def main() -> None:
        members = members_of(A, B)
        async with Net(tmp_path) as net:
            a, _ = await net.node(A, members, on_message=handler)
            b, _ = await net.node(B, members, [(A, a.listen_address)])
            await eventually(lambda: b.connected() == [A.public_key], "connected")
            assert b.send(A.public_key, b"boom") and b.send(A.public_key, b"after")
            await eventually(lambda: seen == [b"boom", b"after"], "both delivered")
            assert a.stats()[B.public_key].connects == 1
    with caplog.at_level(logging.ERROR, logger="medledger.p2p"):
        run(main())
    assert any("message handler failed" in r.getMessage() for r in caplog.records)


def test_unauthenticated_connections_are_few_and_short_lived(tmp_path: Path) -> None:
    async def main() -> None:
        members = members_of(A, B)
        limits = Limits(handshake_timeout=0.5, ping_interval=0.1, idle_timeout=0.4,
                        max_pending=2)
        async with Net(tmp_path) as net:
            a, _ = await net.node(A, members, limits=limits)
            host, port = split_address(a.listen_address)
            loop = asyncio.get_running_loop()
            opened = loop.time()
            idle = [await asyncio.open_connection(host, port) for _ in range(2)]
            net.raws += [w for _, w in idle]
            await eventually(lambda: len(a._handshakes) == 2, "two handshakes pending")
            extra_reader, extra_writer = await asyncio.open_connection(host, port)
            net.raws.append(extra_writer)
            started = loop.time()
            with contextlib.suppress(ConnectionError):  # reset or EOF: either is a refusal
                assert await asyncio.wait_for(extra_reader.read(1), 2.0) == b""
            assert loop.time() - started < 0.3, "a third pending connection was held"
            for reader, _ in idle:  # the idle two are dropped at the handshake timeout
                with contextlib.suppress(ConnectionError):
                    assert await asyncio.wait_for(reader.read(1), 2.0) == b""
            assert loop.time() - opened >= 0.45  # not before the 0.5 s handshake timeout
            await eventually(lambda: not a._handshakes, "handshake slots freed", 0.6)
            await net.node(B, members, [(A, a.listen_address)], limits=limits)
            await eventually(lambda: a.connected() == [B.public_key], "a member still gets in")
    run(main())


def test_heartbeats_keep_an_idle_link_and_silence_drops_one(tmp_path: Path) -> None:
    async def main() -> None:
        members = members_of(A, B, C)
        limits = Limits(handshake_timeout=2.0, ping_interval=0.1, idle_timeout=0.4)
        async with Net(tmp_path) as net:
            a, _ = await net.node(A, members, limits=limits)
            await net.node(B, members, [(A, a.listen_address)], limits=limits)
            reader, _ = await net.raw(C, members, a.listen_address)  # greets, then is silent
            await eventually(lambda: a.connected() == [B.public_key, C.public_key], "both")
            await asyncio.sleep(1.0)  # 2.5 idle timeouts without a payload
            assert a.connected() == [B.public_key]
            assert a.stats()[B.public_key].connects == 1, "an idle healthy link was dropped"
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                for _ in range(100):  # A's heartbeats, then its hang-up
                    await asyncio.wait_for(read_frame(reader), 2.0)
    run(main())


def test_only_tls_1_3_with_a_client_certificate_is_accepted(tmp_path: Path) -> None:
    identity = TlsIdentity(A, tmp_path / "tls")
    for server_side in (True, False):
        context = identity.context(members_of(A, B), server_side=server_side)
        assert context.minimum_version == ssl.TLSVersion.TLSv1_3
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is False

    async def main() -> None:
        members = members_of(A, B)
        async with Net(tmp_path) as net:
            a, a_in = await net.node(A, members)
            old = TlsIdentity(B, tmp_path / "old").context(members, server_side=False)
            old.minimum_version = ssl.TLSVersion.TLSv1_2
            old.maximum_version = ssl.TLSVersion.TLSv1_2
            with pytest.raises((ssl.SSLError, ConnectionError)):
                _, writer = await asyncio.open_connection(*split_address(a.listen_address),
                                                          ssl=old)
                await close(writer)  # not reached: the handshake fails
            assert a.connected() == [] and a_in.items == []
    run(main())


def test_a_restarted_peer_is_redialed_with_backoff(tmp_path: Path) -> None:
    async def main() -> None:
        members = members_of(A, B)
        async with Net(tmp_path) as net:
            b, b_in = await net.node(B, members)
            address = b.listen_address
            a, a_in = await net.node(A, members, [(B, address)])
            await eventually(lambda: a.connected() == [B.public_key], "connected")
            await b.stop()
            await eventually(lambda: a.connected() == [], "A notices B is gone")
            await asyncio.sleep(0.6)  # delays of 0.05, 0.1, 0.2, 0.4: a handful of dials
            failures = a.stats()[B.public_key].dial_failures
            assert 2 <= failures <= 8, f"{failures} dials in 0.6 s: is there a backoff?"
            b2, b2_in = await net.node(B, members, listen=address)
            await eventually(lambda: a.connected() == [B.public_key], "redialed", 3.0)
            stats = a.stats()[B.public_key]
            assert (stats.connects, stats.reconnects) == (2, 1)
            assert a.send(B.public_key, b"welcome back") and b2.send(A.public_key, b"thanks")
            await eventually(lambda: b2_in.payloads() == [b"welcome back"]
                             and a_in.payloads() == [b"thanks"], "frames flow again")
            assert b_in.items == []
    run(main())


def test_a_cut_link_stops_delivery_and_restore_brings_it_back(tmp_path: Path) -> None:
    async def main() -> None:
        members = members_of(A, B)
        async with Net(tmp_path) as net:
            b, b_in = await net.node(B, members)
            with Proxy(*split_address(b.listen_address)) as proxy:
                a, _ = await net.node(A, members, [(B, proxy.address)])
                await eventually(lambda: a.connected() == [B.public_key], "connected")
                assert a.send(B.public_key, b"before")
                await eventually(lambda: b_in.payloads() == [b"before"], "delivery")
                await asyncio.to_thread(proxy.cut)
                await eventually(lambda: a.connected() == [] and b.connected() == [], "cut")
                assert a.send(B.public_key, b"during") is False
                failures = a.stats()[B.public_key].dial_failures
                await eventually(lambda: a.stats()[B.public_key].dial_failures >= failures + 2,
                                 "refused redials while cut")
                assert b_in.payloads() == [b"before"]
                await asyncio.to_thread(proxy.restore)
                await eventually(lambda: a.connected() == [B.public_key], "restored", 3.0)
                assert a.send(B.public_key, b"after")
                await eventually(lambda: b_in.payloads() == [b"before", b"after"], "delivery")
                await a.stop()
    run(main())


def test_a_blackholed_link_is_given_up_and_redialed(tmp_path: Path) -> None:
    async def main() -> None:
        members = members_of(A, B)
        limits = Limits(handshake_timeout=0.5, ping_interval=0.1, idle_timeout=0.5)
        async with Net(tmp_path) as net:
            b, b_in = await net.node(B, members, limits=limits)
            with Proxy(*split_address(b.listen_address)) as proxy:
                a, _ = await net.node(A, members, [(B, proxy.address)], limits=limits)
                await eventually(lambda: a.connected() == [B.public_key], "connected")
                await asyncio.to_thread(proxy.cut, True)
                await eventually(lambda: a.connected() == [], "cut")
                await eventually(lambda: proxy.links >= 1, "a dial held by the blackhole")
                await eventually(lambda: a.stats()[B.public_key].dial_failures >= 1,
                                 "the held dial times out")
                await asyncio.to_thread(proxy.restore)
                await eventually(lambda: a.connected() == [B.public_key], "restored", 3.0)
                assert a.send(B.public_key, b"through")
                await eventually(lambda: b_in.payloads() == [b"through"], "delivery")
                await a.stop()
    run(main())


def test_stop_is_prompt_and_removes_the_key_files(tmp_path: Path) -> None:
    async def main() -> None:
        members = members_of(A, B)
        async with Net(tmp_path) as net:
            b, _ = await net.node(B, members)
            a, _ = await net.node(A, members, [(B, b.listen_address), (C, "127.0.0.1:9")])
            await eventually(lambda: a.connected() == [B.public_key], "connected")
            loop = asyncio.get_running_loop()
            started = loop.time()
            await a.stop()
            assert loop.time() - started < 1.5
            assert a.connected() == [] and a.send(B.public_key, b"x") is False
            assert list((tmp_path / "tls-1").iterdir()) == []
            await eventually(lambda: b.connected() == [], "B sees A leave")
    run(main())
