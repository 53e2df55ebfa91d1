"""CometBFT, the consensus engine under a node: where its binary is, how its home is laid
out next to the node's, and how it runs as a child process.

::

    HOME/cometbft/config/config.toml             written from CometBFT's defaults, with the
                                                 node's ports, peers and timeouts
    HOME/cometbft/config/genesis.json            CometBFT's genesis: chain id, time, the
                                                 validators, and the medledger genesis as
                                                 its app_state
    HOME/cometbft/config/node_key.json           the node's p2p identity (node ID)
    HOME/cometbft/config/priv_validator_key.json the validator key, in CometBFT's format
    HOME/cometbft/data/                          CometBFT's block store, state and WAL
    HOME/abci.sock                               the ABCI socket the app serves

The binary is built from source by ``scripts/build-engine.sh`` (``make setup``) into the
checkout's ``.tools/bin``; ``MEDLEDGER_COMETBFT`` names another.

A node that joins a running chain (:func:`medledger.node.home.write_joining_home`, ``medledger join``) is no
validator and starts from a state snapshot: its ``config.toml`` enables ``[statesync]`` with
the RPC servers its light client asks, and the height and block hash it trusts
(:class:`TrustPoint`, read from an RPC server's ``/commit`` when the home is written).
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx

from medledger.crypto import SigningKey
from medledger.node.config import ConfigError
from medledger.node.genesis import Genesis

__all__ = ["COMETBFT_VERSION", "EngineHome", "EngineMember", "EnginePorts", "StateSyncSettings",
           "TrustPoint", "cometbft_binary", "fetch_trust_point", "node_id_of", "start_engine",
           "write_engine_homes"]

COMETBFT_VERSION = "0.38.26"
RPC_BATCH_CALLS = 1000  # most calls in one JSON-RPC batch to the engine
RPC_BODY_BYTES = 16 * 1024 * 1024  # largest JSON-RPC body the engine accepts
P2P_RATE = 64 * 1024 * 1024  # bytes a second to and from each peer
BINARY_ENV = "MEDLEDGER_COMETBFT"
_ED25519_PUB = "tendermint/PubKeyEd25519"
_ED25519_PRIV = "tendermint/PrivKeyEd25519"


def cometbft_binary() -> Path:
    """The ``cometbft`` to run: ``$MEDLEDGER_COMETBFT``, the checkout's ``.tools/bin``, or
    one on the PATH. Raises ConfigError naming how to build it."""
    named = os.environ.get(BINARY_ENV)
    if named:
        return Path(named)
    built = Path(__file__).resolve().parents[3] / ".tools" / "bin" / "cometbft"
    if built.exists():
        return built
    found = shutil.which("cometbft")
    if found:
        return Path(found)
    raise ConfigError("CometBFT is not built: run `make setup` (it builds CometBFT "
                      f"v{COMETBFT_VERSION} from source), or set {BINARY_ENV}")


def node_id_of(public_key: bytes) -> str:
    """CometBFT's node ID of an Ed25519 node key (first 20 bytes of its SHA-256, hex)."""
    import hashlib

    return hashlib.sha256(public_key).digest()[:20].hex()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class EnginePorts:
    """Where a node's CometBFT listens: peers (p2p) and its RPC (kept on loopback)."""

    p2p: str  # HOST:PORT
    rpc: str  # 127.0.0.1:PORT


@dataclass(frozen=True, slots=True)
class TrustPoint:
    """A height and its block hash, which a state-syncing node's light client trusts and
    verifies the snapshot's height from."""

    height: int
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class StateSyncSettings:
    """CometBFT's ``[statesync]`` for a node that starts from a snapshot."""

    rpc_servers: tuple[str, ...]  # at least two: the light client's primary and witnesses
    trust: TrustPoint
    trust_period_hours: int = 168  # how long a validator set is trusted after its header
    discovery_time_s: int = 15  # how long to gather peers' snapshots before choosing one

    def validate(self) -> None:
        """Raise ConfigError for settings CometBFT would refuse or misread."""
        _check_rpc_servers(self.rpc_servers)
        if self.trust_period_hours < 1:
            raise ConfigError("the trust period must be at least one hour")
        if self.discovery_time_s < 5:
            raise ConfigError("the discovery time must be at least 5 seconds (CometBFT's "
                              "minimum)")


def _check_rpc_servers(servers: Sequence[str]) -> None:
    if len(servers) < 2:
        raise ConfigError("state sync needs at least two RPC servers (--rpc-server twice): "
                          "its light client checks one against the other")
    for server in servers:
        if not re.fullmatch(r"https?://[^\s,/]+/?", server):
            raise ConfigError(f"RPC server {server!r}: give http://HOST:PORT")


@dataclass(frozen=True, slots=True)
class EngineHome:
    """A node's CometBFT home, ``HOME/cometbft``."""

    node_home: Path

    @property
    def path(self) -> Path:
        return self.node_home / "cometbft"

    @property
    def config_dir(self) -> Path:
        return self.path / "config"

    @property
    def abci_address(self) -> str:
        return f"unix://{self.node_home.resolve() / 'abci.sock'}"

    def exists(self) -> bool:
        return (self.config_dir / "config.toml").exists()

    def node_key(self) -> SigningKey:
        data = json.loads((self.config_dir / "node_key.json").read_text())
        return SigningKey.from_seed(base64.b64decode(data["priv_key"]["value"])[:32])

    def node_id(self) -> str:
        return node_id_of(self.node_key().public_key)

    def rpc(self) -> str:
        """The RPC address (HOST:PORT) in config.toml."""
        text = (self.config_dir / "config.toml").read_text()
        section = _section(text, "rpc")
        match = re.search(r'^laddr = "tcp://([^"]+)"', section, re.M)
        if match is None:
            raise ConfigError(f"{self.config_dir / 'config.toml'}: no [rpc] laddr")
        return match.group(1)

    def mempool_size(self) -> int:
        """How many transactions CometBFT's mempool holds (``[mempool] size``)."""
        text = (self.config_dir / "config.toml").read_text()
        match = re.search(r"^size = (\d+)", _section(text, "mempool"), re.M)
        if match is None:
            raise ConfigError(f"{self.config_dir / 'config.toml'}: no [mempool] size")
        return int(match.group(1))

    def write(self, genesis: Genesis, validator_key: SigningKey, node_key: SigningKey,
              ports: EnginePorts, peers: list[str], *, moniker: str,
              block_interval_ms: int = 500, timeout_propose_ms: int = 3000) -> None:
        """Lay out the CometBFT home: CometBFT's own defaults (``cometbft init``), then
        this node's keys, genesis, ports, peers (``<node id>@HOST:PORT``) and timeouts."""
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(cometbft_binary()), "init", "--home", str(self.path)],
                       check=True, capture_output=True, timeout=60)
        self._write_keys(validator_key, node_key)
        self._write_genesis(genesis)
        settings = {
            ("", "proxy_app"): self.abci_address,
            ("", "moniker"): moniker,
            ("", "filter_peers"): True,
            ("", "log_level"): "main:info,state:info,*:error",
            ("rpc", "laddr"): f"tcp://{ports.rpc}",
            ("p2p", "laddr"): f"tcp://{ports.p2p}",
            ("p2p", "persistent_peers"): ",".join(peers),
            ("p2p", "addr_book_strict"): False,
            ("p2p", "allow_duplicate_ip"): True,
            ("p2p", "pex"): False,
            # a message waits at most this long in a connection's buffer (CometBFT's default
            # of 100 ms is paid by each consensus step of each height), and a block of
            # thousands of transactions is not held back by a 5 MB/s rate limit per peer
            ("p2p", "flush_throttle_timeout"): "10ms",
            ("p2p", "send_rate"): P2P_RATE,
            ("p2p", "recv_rate"): P2P_RATE,
            ("mempool", "size"): 100_000,
            ("mempool", "max_txs_bytes"): 512 * 1024 * 1024,
            ("mempool", "cache_size"): 200_000,
            # no recheck of the whole mempool after each block: the app's nonce and
            # state checks at admission stay right without it (LedgerApplication), and
            # a recheck holds the next height back while it runs
            ("mempool", "recheck"): False,
            ("consensus", "timeout_propose"): f"{timeout_propose_ms}ms",
            ("consensus", "timeout_commit"): f"{block_interval_ms}ms",
            ("consensus", "create_empty_blocks"): False,
            # how long a gossip routine with nothing to send sleeps before it looks again
            # (CometBFT's default is 100 ms; 10 ms cost more CPU than it saved latency)
            ("consensus", "peer_gossip_sleep_duration"): "50ms",
            ("tx_index", "indexer"): "null",
            # the app keeps every result in its own store and answers for them: CometBFT
            # need not write each block's FinalizeBlock response to its state database
            ("storage", "discard_abci_responses"): True,
            # the node hands a batch of transactions to the mempool in one JSON-RPC call
            # (CometBFT's default is 10 calls a batch and 1 MB a body)
            ("rpc", "max_request_batch_size"): RPC_BATCH_CALLS,
            ("rpc", "max_body_bytes"): RPC_BODY_BYTES,
        }
        path = self.config_dir / "config.toml"
        path.write_text(_patch_toml(path.read_text(), settings))

    def enable_state_sync(self, settings: StateSyncSettings) -> None:
        """Have CometBFT start from a snapshot (only while its own state is empty), its
        chunks spooled under its data folder."""
        settings.validate()
        path = self.config_dir / "config.toml"
        path.write_text(_patch_toml(path.read_text(), {
            ("statesync", "enable"): True,
            ("statesync", "rpc_servers"): ",".join(settings.rpc_servers),
            ("statesync", "trust_height"): settings.trust.height,
            ("statesync", "trust_hash"): settings.trust.block_hash.hex().upper(),
            ("statesync", "trust_period"): f"{settings.trust_period_hours}h0m0s",
            ("statesync", "discovery_time"): f"{settings.discovery_time_s}s",
            ("statesync", "temp_dir"): str((self.path / "data").resolve()),
        }))

    def _write_keys(self, validator_key: SigningKey, node_key: SigningKey) -> None:
        public = validator_key.public_key
        _write_json(self.config_dir / "priv_validator_key.json", {
            "address": node_id_of(public).upper(),
            "pub_key": {"type": _ED25519_PUB, "value": _b64(public)},
            "priv_key": {"type": _ED25519_PRIV, "value": _b64(validator_key.seed + public)},
        })
        _write_json(self.config_dir / "node_key.json", {
            "priv_key": {"type": _ED25519_PRIV,
                         "value": _b64(node_key.seed + node_key.public_key)}})

    def _write_genesis(self, genesis: Genesis) -> None:
        path = self.config_dir / "genesis.json"
        doc = json.loads(path.read_text())
        doc.update({
            "genesis_time": _rfc3339(genesis.genesis_time),
            "chain_id": genesis.chain_id,
            "initial_height": "1",
            "app_hash": "",
            "app_state": genesis.to_dict(),
            "validators": [{
                "address": node_id_of(v.public_key).upper(),
                "pub_key": {"type": _ED25519_PUB, "value": _b64(v.public_key)},
                "power": str(v.power), "name": v.name}
                for v in genesis.validators.validators],
        })
        _write_json(path, doc, secret=False)


@dataclass(frozen=True, slots=True)
class EngineMember:
    """One node of a new chain, for :func:`write_engine_homes`."""

    home: Path
    name: str
    validator_key: SigningKey
    ports: EnginePorts


def with_nodes(organisations: tuple[dict[str, Any], ...], owners: list[str],
               node_keys: list[SigningKey]) -> tuple[dict[str, Any], ...]:
    """``organisations`` with each node's ID listed under the organisation that runs it
    (``owners[i]`` runs node ``i``): the peer filter admits the nodes genesis lists."""
    ids: dict[str, list[str]] = {}
    for owner, key in zip(owners, node_keys, strict=True):
        ids.setdefault(owner, []).append(node_id_of(key.public_key))
    return tuple({**org, "nodes": ids[org["id"]]} if org["id"] in ids else org
                 for org in organisations)


def write_engine_homes(members: list[EngineMember], genesis: Genesis,
                       node_keys: list[SigningKey], *, block_interval_ms: int = 500,
                       timeout_propose_ms: int = 3000) -> list[str]:
    """Write the CometBFT home of every member, with its node key (``node_keys``, in
    order) and every other member as a persistent peer; return their node IDs."""
    ids = [node_id_of(k.public_key) for k in node_keys]
    for index, member in enumerate(members):
        peers = [f"{ids[i]}@{other.ports.p2p}" for i, other in enumerate(members) if i != index]
        EngineHome(member.home).write(
            genesis, member.validator_key, node_keys[index], member.ports, peers,
            moniker=member.name, block_interval_ms=block_interval_ms,
            timeout_propose_ms=timeout_propose_ms)
    return ids


def fetch_trust_point(rpc_servers: Sequence[str], chain_id: str, timeout: float = 10.0
                      ) -> TrustPoint:
    """The latest commit of chain ``chain_id`` from the first RPC server's ``/commit``,
    confirmed by the second server's commit of the same height. Raises ConfigError."""
    _check_rpc_servers(rpc_servers)
    latest = _commit(rpc_servers[0], None, chain_id, timeout)
    confirmed = _commit(rpc_servers[1], latest.height, chain_id, timeout)
    if confirmed != latest:
        raise ConfigError(f"{rpc_servers[0]} and {rpc_servers[1]} disagree on block "
                          f"{latest.height}: {latest.block_hash.hex()} against "
                          f"{confirmed.block_hash.hex()}; do not trust them")
    return latest


def _commit(server: str, height: int | None, chain_id: str, timeout: float) -> TrustPoint:
    params = {} if height is None else {"height": str(height)}
    url = f"{server.rstrip('/')}/commit"
    try:
        answer = httpx.get(url, params=params, timeout=timeout)
        answer.raise_for_status()
        signed = answer.json()["result"]["signed_header"]
        found = (signed["header"]["chain_id"], int(signed["header"]["height"]),
                 bytes.fromhex(signed["commit"]["block_id"]["hash"]))
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cannot read a commit from {url}: {e}") from e
    if found[0] != chain_id:
        raise ConfigError(f"{server} serves chain {found[0]!r}, the genesis is of {chain_id!r}")
    if found[1] < 1 or len(found[2]) != 32:
        raise ConfigError(f"{url} answered no committed block yet")
    return TrustPoint(found[1], found[2])


def _write_json(path: Path, data: Any, *, secret: bool = True) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    if secret:
        os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def _section(text: str, name: str) -> str:
    """The lines of TOML section ``name`` ("" for the top, before the first header)."""
    parts = re.split(r"^\[([a-z0-9_.]+)\][ \t]*$", text, flags=re.M)
    if name == "":
        return parts[0]
    for index in range(1, len(parts), 2):
        if parts[index] == name:
            return parts[index + 1]
    return ""


def _patch_toml(text: str, settings: dict[tuple[str, str], Any]) -> str:
    """``text`` with each ``(section, key)`` set; a key missing from CometBFT's template is
    an error (a setting that silently does nothing is worse)."""
    parts = re.split(r"^(\[[a-z0-9_.]+\])[ \t]*$", text, flags=re.M)
    names = [""] + [parts[i][1:-1] for i in range(1, len(parts), 2)]
    bodies = [parts[0]] + [parts[i + 1] for i in range(1, len(parts), 2)]
    for (section, key), value in settings.items():
        index = names.index(section)
        pattern = re.compile(rf"^{re.escape(key)} = .*$", re.M)
        if not pattern.search(bodies[index]):
            raise ConfigError(f"CometBFT's config.toml has no {key} in [{section or 'base'}]")
        line = f"{key} = {_toml_value(value)}"
        bodies[index] = pattern.sub(lambda _m, line=line: line, bodies[index], count=1)
    return bodies[0] + "".join(f"[{name}]" + body
                               for name, body in zip(names[1:], bodies[1:], strict=True))


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """In the child: get SIGKILL when the parent dies (Linux), so that a supervisor killed
    with SIGKILL leaves no engine holding the node's ports and data.

    SIGKILL, not SIGTERM: with its app gone, CometBFT's graceful stop can wait forever on
    an ABCI call the app will never answer (seen when the app died in the middle of a
    block, the peer filter's queries timing out meanwhile), holding the store's lock and
    the ports, so that the next ``medledger up`` could not start its engine ("failed to
    initialize database: resource temporarily unavailable"). A kill is a crash, which
    CometBFT's stores and WAL are made to survive (its own e2e tests kill with SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def start_engine(engine: EngineHome, log: IO[bytes] | int | None = None) -> subprocess.Popen[bytes]:
    """Start ``cometbft start`` on ``engine``'s home, as a child that ends with this
    process."""
    return subprocess.Popen(
        [str(cometbft_binary()), "start", "--home", str(engine.path)],
        stdout=log, stderr=subprocess.STDOUT if log is not None else None,
        stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
