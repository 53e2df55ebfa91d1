"""A node's home directory and its ``config.json``.

::

    HOME/config.json       {"api": "127.0.0.1:26657", "p2p": "127.0.0.1:26656",
                            "peers": ["<node key hex>@HOST:PORT", ...], ...}
    HOME/genesis.json      the chain's genesis (the same on every node)
    HOME/validator.key     the validator's signing key, in a passphrase-protected keystore
    HOME/passphrase        the keystore passphrase (local chains only; in production set
                           MEDLEDGER_PASSPHRASE and delete this file)
    HOME/keys/*.key        member keys made by ``init`` (the local admin, demo organisations)
    HOME/data/chain.db     the SQLite store
    HOME/data/snapshots/   state snapshots served to joining nodes (on CometBFT, with
                           ``snapshot_interval`` set), one folder per height
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from medledger.codec import CodecError, decode, encode

__all__ = ["ConfigError", "NodeConfig", "parse_hostport"]


_PEER = re.compile(r"[0-9a-f]{64}@.+")


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
    block_interval_ms: int = 500
    max_block_txs: int = 10_000
    max_block_bytes: int = 8 * 1024 * 1024
    mempool_max_txs: int = 100_000
    verify_on_start: bool = True
    p2p: str = "127.0.0.1:26656"
    peers: tuple[str, ...] = ()  # "<validator key hex>@HOST:PORT" of the nodes to dial
    # consensus timeouts (a multi-validator chain): base + delta * round, in ms; the propose
    # timeout must cover building, sending and checking a full block
    timeout_propose_ms: int = 3000
    timeout_vote_ms: int = 1000
    timeout_delta_ms: int = 500
    # state sync (a chain on CometBFT): a snapshot of the state every this many heights
    # (0: never), the most recent ``snapshot_keep`` of them kept
    snapshot_interval: int = 0
    snapshot_keep: int = 2

    def peer_list(self) -> list[tuple[bytes, str]]:
        """The peers as (node key, ``HOST:PORT``)."""
        out = []
        for peer in self.peers:
            key, _, address = peer.partition("@")
            out.append((bytes.fromhex(key), address))
        return out

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
        if type(data) is not dict or not set(data) <= known:
            raise ConfigError(f"{path}: unknown settings {sorted(set(data) - known)}")
        if "peers" in data:
            peers = data["peers"]
            if type(peers) is not list or not all(
                    type(p) is str and _PEER.fullmatch(p) for p in peers):
                raise ConfigError(f"{path}: peers must be a list of \"<key hex>@HOST:PORT\"")
            for peer in peers:
                parse_hostport(peer.partition("@")[2])
            data = {**data, "peers": tuple(peers)}
        config = cls(**data)
        parse_hostport(config.api)
        parse_hostport(config.p2p)
        for name in ("block_interval_ms", "max_block_txs", "max_block_bytes", "mempool_max_txs",
                     "timeout_propose_ms", "timeout_vote_ms", "timeout_delta_ms",
                     "snapshot_keep"):
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
