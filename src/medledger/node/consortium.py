"""A local consortium: N validator homes under one directory, sharing one genesis.

::

    ROOT/consortium.json     {"chain_id", "nodes": [{"name", "home", "api", "p2p", "key"}]}
    ROOT/node0 ... nodeN-1   one home each (see :mod:`medledger.node.config`), with its
                             CometBFT home in ``cometbft/`` (:mod:`medledger.node.engine`)

Each node has its own validator key, CometBFT node key, store, API port, CometBFT p2p and
RPC ports, and lists every other node as a persistent peer (and its API as a blob peer,
``blob_peers``); genesis lists each node's ID
under the organisation that runs it, so that the peer filter admits it. With ``demo``, the demo organisations (two hospitals, a drug maker, an
insurer) are founding members, and organisation ``i`` keeps its admin key in the home of
node ``i mod N``: each organisation runs a node. A node of a real consortium is the same
home with the shared genesis and its peers' addresses.
"""

from __future__ import annotations

import os
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medledger.codec import decode, encode
from medledger.crypto import KdfParams, Keystore, SigningKey
from medledger.ledger import CHAIN_ID, Validator, ValidatorSet
from medledger.node.config import ConfigError, NodeConfig
from medledger.node.genesis import Genesis
from medledger.node.home import CONSORTIUM_MANIFEST, PASSPHRASE_ENV, Home, found_organisations

__all__ = ["Consortium", "ConsortiumNode", "MAX_VALIDATORS", "free_port"]

_HANDED_OUT: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, outside the kernel's ephemeral range (so
    that no outgoing connection is given it before a node binds it), and not handed out
    before by this process."""
    low, high = _ephemeral_range()
    first, last = (20000, low - 1) if low > 21000 else (high + 1, 65535)
    for _ in range(1000):
        port = random.randint(first, last)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise OSError(f"no free TCP port on 127.0.0.1 between {first} and {last}")


MAX_VALIDATORS = 64
VALIDATOR_POWER = 10
MANIFEST = CONSORTIUM_MANIFEST


@dataclass(frozen=True, slots=True)
class ConsortiumNode:
    """One node of a local consortium, as the manifest lists it."""

    name: str
    home: Path
    api: str
    p2p: str
    key: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"api": self.api, "home": str(self.home), "key": self.key.hex(),
                "name": self.name, "p2p": self.p2p}


@dataclass(frozen=True, slots=True)
class Consortium:
    """The manifest of a local consortium directory."""

    root: Path
    chain_id: str
    nodes: tuple[ConsortiumNode, ...]

    @classmethod
    def load(cls, root: str | Path) -> Consortium:
        root = Path(root)
        path = root / MANIFEST
        if not path.exists():
            raise _not_a_consortium(root)
        data = decode(path.read_bytes())
        nodes = tuple(ConsortiumNode(n["name"], Path(n["home"]), n["api"], n["p2p"],
                                     bytes.fromhex(n["key"])) for n in data["nodes"])
        return cls(root, data["chain_id"], nodes)

    @classmethod
    def init(cls, root: str | Path, chain_id: str, validators: int, *, demo: bool = True,
             base_port: int = 26656, kdf_params: KdfParams | None = None,
             ports: list[tuple[int, int]] | None = None,
             genesis_time: int | None = None, engine: bool = False,
             block_interval_ms: int | None = None) -> Consortium:
        """Write the homes of a ``validators``-node consortium under ``root``.

        Node ``i`` listens for peers on ``base_port + 10*i`` and serves its API one port
        above, unless ``ports`` gives each node's (p2p, api) ports. With ``engine``, the
        chain runs on CometBFT: each home gets its CometBFT home, the engine's RPC two ports
        above the p2p port (a free port when ``ports`` are given).
        """
        root = Path(root)
        if not 1 <= validators <= MAX_VALIDATORS:
            raise ConfigError(f"--validators must be between 1 and {MAX_VALIDATORS}")
        if not CHAIN_ID.fullmatch(chain_id):
            raise ConfigError(f"chain id {chain_id!r}: use 1-64 of A-Z a-z 0-9 . _ -")
        if (root / MANIFEST).exists() or any((root / f"node{i}").exists()
                                             for i in range(validators)):
            raise ConfigError(f"{root} already holds a consortium; choose another --home")
        given_ports = ports is not None
        if ports is None:
            ports = [(base_port + 10 * i, base_port + 10 * i + 1) for i in range(validators)]
        if len(ports) != validators:
            raise ConfigError("one (p2p, api) port pair per validator is needed")
        homes = [Home(root / f"node{i}") for i in range(validators)]
        for home in homes:
            (home.path / "keys").mkdir(parents=True)
            (home.path / "data").mkdir()
        passphrase = os.environ.get(PASSPHRASE_ENV) or homes[0]._write_passphrase()
        for home in homes[1:]:
            if not os.environ.get(PASSPHRASE_ENV):
                _write_secret(home.path / "passphrase", passphrase)
        keys = [Keystore.generate() for _ in homes]
        for home, keystore in zip(homes, keys, strict=True):
            keystore.save(home.validator_key_path, passphrase, kdf_params=kdf_params)
        organisations = found_organisations(  # organisation i keeps its key on node i-1
            demo, passphrase, kdf_params,
            lambda index, org_id: homes[0] if org_id == "local" else homes[(index - 1) % validators])
        node_keys = [SigningKey.generate() for _ in homes] if engine else []
        if engine:  # node i is run by the first organisation keeping its key there
            from medledger.node.engine import with_nodes

            owners = [next((org["id"] for index, org in enumerate(organisations)
                            if index >= 1 and (index - 1) % validators == i), "local")
                      for i in range(validators)]
            organisations = with_nodes(organisations, owners, node_keys)
        genesis = Genesis(
            chain_id=chain_id,
            genesis_time=genesis_time if genesis_time is not None else time.time_ns() // 10**6,
            validators=ValidatorSet.of([Validator(k.signing.public_key, VALIDATOR_POWER,
                                                  f"node{i}") for i, k in enumerate(keys)]),
            organisations=organisations)
        nodes = tuple(ConsortiumNode(f"node{i}", home.path.resolve(), f"127.0.0.1:{api}",
                                     f"127.0.0.1:{p2p}", keys[i].signing.public_key)
                      for i, (home, (p2p, api)) in enumerate(zip(homes, ports, strict=True)))
        interval = block_interval_ms or NodeConfig().block_interval_ms
        for node, home in zip(nodes, homes, strict=True):
            genesis.save(home.genesis_path)
            NodeConfig(api=node.api, p2p=node.p2p, block_interval_ms=interval,
                       blob_peers=tuple(n.api for n in nodes if n is not node)).save(home.path)
        if engine:
            from medledger.node.engine import EngineMember, EnginePorts, write_engine_homes

            rpc = [free_port() for _ in nodes] if given_ports else [
                base_port + 10 * i + 2 for i in range(validators)]
            write_engine_homes(
                [EngineMember(home.path, node.name, key.signing,
                              EnginePorts(node.p2p, f"127.0.0.1:{rpc[i]}"))
                 for i, (node, home, key) in enumerate(zip(nodes, homes, keys, strict=True))],
                genesis, node_keys, block_interval_ms=interval)
        consortium = cls(root.resolve(), chain_id, nodes)
        (root / MANIFEST).write_bytes(encode(
            {"chain_id": chain_id, "nodes": [n.to_dict() for n in nodes]}) + b"\n")
        return consortium


def _not_a_consortium(root: Path) -> ConfigError:
    """The error for a folder without a manifest: a node's home (pointing to its
    consortium's folder when the parent is one), or a folder to make a consortium in."""
    if Home(root).exists():
        parent = root.parent
        where = (f"its consortium's folder is {parent}: use --home {parent}"
                 if (parent / MANIFEST).exists() else
                 f"use `medledger status --home {root}` for this node")
        return ConfigError(f"{root} is a node's home, not a local consortium's folder: {where}")
    return ConfigError(f"{root / MANIFEST} not found: {root} holds no local consortium; make "
                       f"one with `medledger init --home {root} --validators N`")


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
