"""A node's home directory and its ``config.json``.

::

    HOME/config.json       {"api": "127.0.0.1:26657", "p2p": "127.0.0.1:26656", ...}
    HOME/cometbft/         the home of the node's CometBFT (its config.toml, genesis.json,
                           keys and data; see :mod:`medledger.node.engine`)
    HOME/genesis.json      the chain's genesis (the same on every node)
    HOME/validator.key     the validator's signing key, in a passphrase-protected keystore
    HOME/passphrase        the keystore passphrase (local chains only; in production set
                           MEDLEDGER_PASSPHRASE and delete this file)
    HOME/keys/*.key        member keys made by ``init`` (the local admin, demo organisations)
    HOME/data/chain.db     the SQLite store
    HOME/data/blobs/       encrypted content by SHA-256 (:mod:`medledger.node.blobs`)
    HOME/data/snapshots/   state snapshots served to joining nodes (on CometBFT, with
                           ``snapshot_interval`` set), one folder per height
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from medledger.codec import CodecError, decode, encode

__all__ = ["ConfigError", "NodeConfig", "parse_hostport"]


#: settings of medledger's retired consensus engine: a config.json written before keeps
#: them, and they are ignored (CometBFT's own config.toml holds what replaced them)
RETIRED = frozenset({"max_block_bytes", "mempool_max_txs", "peers", "timeout_propose_ms",
                     "timeout_vote_ms", "timeout_delta_ms"})


class ConfigError(ValueError):
    """The node's home or config is missing or wrong; the message says what to do."""


def parse_hostport(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT``; raise ConfigError with the reason otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:26657)")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Settings from ``HOME/config.json``."""

    api: str = "127.0.0.1:26657"
    #: CometBFT's ``timeout_commit``, written into its config.toml by ``init`` and ``join``
    block_interval_ms: int = 500
    max_block_txs: int = 10_000  # most transactions a proposal of this node carries
    verify_on_start: bool = True
    #: CometBFT's p2p address, written into its config.toml by ``init`` and ``join``
    p2p: str = "127.0.0.1:26656"
    # state sync (a chain on CometBFT): a snapshot of the state every this many heights
    # (0: never), the most recent ``snapshot_keep`` of them kept
    snapshot_interval: int = 0
    snapshot_keep: int = 2
    #: the other member nodes' API addresses (HOST:PORT each): where this node pushes the
    #: blobs clients give it, and asks for one it lacks (``medledger init`` of a local
    #: consortium lists every other node; a real consortium's operator lists its peers)
    blob_peers: tuple[str, ...] = ()

    @property
    def api_host(self) -> str:
        return parse_hostport(self.api)[0]

    @property
    def api_port(self) -> int:
        return parse_hostport(self.api)[1]

    def with_api(self, api: str | None) -> NodeConfig:
        if api is None:
            return self
        parse_hostport(api)
        return replace(self, api=api)

    @classmethod
    def load(cls, home: Path) -> NodeConfig:
        path = home / "config.json"
        try:
            data = decode(path.read_bytes())
        except FileNotFoundError as e:
            raise ConfigError(f"{path} not found: run `medledger init --home {home}` first") from e
        except CodecError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}") from e
        known = {f.name for f in fields(cls)}
        if type(data) is not dict or not set(data) <= known | RETIRED:
            raise ConfigError(f"{path}: unknown settings {sorted(set(data) - known - RETIRED)}")
        config = cls(**{k: v for k, v in data.items() if k not in RETIRED})
        peers = config.blob_peers
        if type(peers) not in (list, tuple) or not all(type(p) is str for p in peers):
            raise ConfigError(f"{path}: blob_peers must be a list of HOST:PORT")
        for peer in peers:
            parse_hostport(peer)
        config = replace(config, blob_peers=tuple(peers))
        parse_hostport(config.api)
        parse_hostport(config.p2p)
        for name in ("block_interval_ms", "max_block_txs", "snapshot_keep"):
            value = getattr(config, name)
            if type(value) is not int or value <= 0:
                raise ConfigError(f"{path}: {name} must be a positive integer")
        if type(config.snapshot_interval) is not int or config.snapshot_interval < 0:
            raise ConfigError(f"{path}: snapshot_interval must be an integer, 0 or more "
                              "(0: no snapshots)")
        return config

    def save(self, home: Path) -> None:
        path = home / "config.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(encode(asdict(self)) + b"\n")
        os.replace(tmp, path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
