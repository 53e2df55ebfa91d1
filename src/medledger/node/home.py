"""A node's home directory: config, genesis, keys and store, and how ``init`` lays it out.

See :mod:`medledger.node.config` for the files. Secrets: the validator key and member keys
are passphrase-protected keystores. The passphrase comes from ``MEDLEDGER_PASSPHRASE``, or
from ``HOME/passphrase``, which ``init`` writes (mode 0600) for local chains.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from medledger.crypto import KdfParams, Keystore, SigningKey
from medledger.ledger import CHAIN_ID, Validator, ValidatorSet
from medledger.node.config import ConfigError, NodeConfig, parse_hostport
from medledger.node.engine import (
    EngineHome,
    EngineMember,
    EnginePorts,
    StateSyncSettings,
    with_nodes,
    write_engine_homes,
)
from medledger.node.genesis import Genesis

__all__ = ["CONSORTIUM_MANIFEST", "DEMO_ORGANISATIONS", "Home", "PASSPHRASE_ENV",
           "found_organisations"]

PASSPHRASE_ENV = "MEDLEDGER_PASSPHRASE"
CONSORTIUM_MANIFEST = "consortium.json"  # what marks a local consortium's folder

DEMO_ORGANISATIONS = (
    ("st-mary", "St Mary's Hospital", "hospital"),
    ("northgate", "Northgate General Hospital", "hospital"),
    ("acme-pharma", "Acme Pharma", "manufacturer"),
    ("carewell", "Carewell Insurance", "insurer"),
)
LOCAL_ORGANISATION = ("local", "Local operator", "regulator")


def found_organisations(demo: bool, passphrase: str, kdf_params: KdfParams | None,
                        keeper: Callable[[int, str], Home]) -> tuple[dict[str, Any], ...]:
    """The founding organisations of a new chain, for its genesis: the local operator and,
    with ``demo``, the demo organisations. Each gets an admin key, saved in the home that
    ``keeper(index, org_id)`` names (as ``keys/admin.key`` for the local operator,
    ``keys/<org id>.key`` for the others)."""
    orgs = [LOCAL_ORGANISATION, *(DEMO_ORGANISATIONS if demo else ())]
    out = []
    for index, (org_id, name, role) in enumerate(orgs):
        admin = Keystore.generate()
        admin.save(keeper(index, org_id).key_path(org_id if org_id != "local" else "admin"),
                   passphrase, kdf_params=kdf_params)
        out.append({"admins": [admin.signing.public_key.hex()], "id": org_id, "name": name,
                    "role": role})
    return tuple(out)


class Home:
    """Paths and loaders for one node's home directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def genesis_path(self) -> Path:
        return self.path / "genesis.json"

    @property
    def validator_key_path(self) -> Path:
        return self.path / "validator.key"

    @property
    def store_path(self) -> Path:
        return self.path / "data" / "chain.db"

    def key_path(self, name: str) -> Path:
        return self.path / "keys" / f"{name}.key"

    def exists(self) -> bool:
        return self.config_path.exists()

    def config(self) -> NodeConfig:
        if not self.config_path.exists():
            raise self._not_a_home(self.config_path)
        return NodeConfig.load(self.path)

    def genesis(self) -> Genesis:
        if not self.genesis_path.exists():
            raise self._not_a_home(self.genesis_path)
        return Genesis.load(self.genesis_path)

    def _not_a_home(self, missing: Path) -> ConfigError:
        """The error for a home that lacks ``missing``, saying what the folder is instead:
        a consortium's folder, a folder that does not exist, or a folder never set up."""
        where = self.path
        if (where / CONSORTIUM_MANIFEST).exists():
            return ConfigError(
                f"{where} is a local consortium's folder (it holds {CONSORTIUM_MANIFEST}), not "
                f"a node's home: use `medledger net status --home {where}`, or give one "
                f"node's folder, e.g. --home {where / 'node0'}")
        if not where.exists():
            return ConfigError(f"{where} not found: there is no node home there. "
                               f"{self._hint()}")
        if self.exists():
            return ConfigError(f"{missing} not found: the node home {where} is incomplete")
        return ConfigError(f"{missing} not found: {where} is not a node's home. {self._hint()}")

    def _hint(self) -> str:
        """Where a node home may be instead: a node of a local consortium in or next to
        this folder's parent, or else the command that makes a home here."""
        parent = self.path.parent
        roots = [parent] if (parent / CONSORTIUM_MANIFEST).exists() else sorted(
            m.parent for m in parent.glob(f"*/{CONSORTIUM_MANIFEST}"))
        if roots:
            nodes = sorted(p.name for p in roots[0].glob("node*") if p.is_dir())
            return (f"The local consortium in {roots[0]} has the nodes {', '.join(nodes)}: "
                    f"give one, e.g. --home {roots[0] / (nodes[0] if nodes else 'node0')}")
        return f"Give --home a node's folder, or make one with `medledger init --home {self.path}`"

    def passphrase(self) -> str:
        env = os.environ.get(PASSPHRASE_ENV)
        if env:
            return env
        path = self.path / "passphrase"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(
                f"no passphrase: set {PASSPHRASE_ENV} or write it to {path}") from None

    def load_keys(self, path: Path) -> Keystore:
        return Keystore.load(path, self.passphrase())

    def validator_key(self) -> SigningKey:
        if not self.validator_key_path.exists():
            raise self._not_a_home(self.validator_key_path)
        return self.load_keys(self.validator_key_path).signing

    def known_keys(self) -> list[str]:
        """The names of the key files in ``HOME/keys`` (``northgate`` for northgate.key)."""
        return sorted(p.stem for p in (self.path / "keys").glob("*.key"))

    def member_keys(self, name: str) -> Keystore:
        path = self.key_path(name)
        if not path.exists():
            raise ConfigError(f"no key {name!r} in {self.path / 'keys'} "
                              f"(known: {self.known_keys()})")
        return self.load_keys(path)

    def resolve_keys(self, key: str | None, default: str = "admin") -> Keystore:
        """The keystore a command signs with, from its ``--key``.

        None: the key named ``default`` if the home has it, else the home's only key, else
        an error naming the keys there. A name of a key file in ``HOME/keys`` (with or
        without ``.key``): that file. Anything else: a keystore's path.
        """
        if key is None:
            return self.load_keys(self._default_key_path(default))
        name = key.removesuffix(".key")
        if name and "/" not in key and os.sep not in key and self.key_path(name).exists():
            return self.load_keys(self.key_path(name))
        if Path(key).is_file():
            return self.load_keys(Path(key))
        if not self.exists():
            raise self._not_a_home(self.path / "keys")
        raise ConfigError(f"no key {key!r}: not a key of {self.path / 'keys'} (known: "
                          f"{self.known_keys()}), nor a keystore file")

    def _default_key_path(self, default: str) -> Path:
        if self.key_path(default).exists():
            return self.key_path(default)
        known = self.known_keys()
        if len(known) == 1:
            return self.key_path(known[0])
        if not self.exists():
            raise self._not_a_home(self.path / "keys")
        if not known:
            raise ConfigError(f"no key in {self.path / 'keys'}: give --key with a keystore "
                              f"path")
        raise ConfigError(f"no key {default!r} in {self.path / 'keys'} and more than one "
                          f"other (known: {known}): choose one with --key NAME")

    @classmethod
    def init(
        cls,
        path: str | Path,
        chain_id: str,
        *,
        api: str | None = None,
        demo: bool = False,
        kdf_params: KdfParams | None = None,
        genesis_time: int | None = None,
        engine_rpc: str | None = None,
        p2p: str | None = None,
    ) -> Home:
        """Lay out a new single-validator home; refuse to overwrite an existing one.

        ``engine_rpc``: run the chain on CometBFT, its RPC on this loopback HOST:PORT (its
        home is written in ``HOME/cometbft``, see :mod:`medledger.node.engine`); ``p2p``:
        where it listens for peers, instead of the default."""
        home = cls(path)
        if any(p.exists() for p in (home.config_path, home.genesis_path,
                                    home.validator_key_path, home.store_path)):
            raise ConfigError(f"{home.path} already holds a node; choose another --home")
        if not CHAIN_ID.fullmatch(chain_id):
            raise ConfigError(f"chain id {chain_id!r}: use 1-64 of A-Z a-z 0-9 . _ -")
        config = NodeConfig().with_api(api)  # checked before anything is written
        if p2p is not None:
            config = replace(config, p2p=p2p)
        (home.path / "keys").mkdir(parents=True, exist_ok=True)
        (home.path / "data").mkdir(exist_ok=True)
        passphrase = os.environ.get(PASSPHRASE_ENV) or home._write_passphrase()
        validator = Keystore.generate()
        validator.save(home.validator_key_path, passphrase, kdf_params=kdf_params)
        organisations = found_organisations(demo, passphrase, kdf_params, lambda _i, _o: home)
        node_keys = [SigningKey.generate()] if engine_rpc is not None else []
        if node_keys:
            organisations = with_nodes(organisations, [organisations[0]["id"]], node_keys)
        genesis = Genesis(
            chain_id=chain_id,
            genesis_time=genesis_time if genesis_time is not None else time.time_ns() // 10**6,
            validators=ValidatorSet.of([Validator(validator.signing.public_key, 10, "node0")]),
            organisations=organisations,
        )
        genesis.save(home.genesis_path)
        config.save(home.path)
        if engine_rpc is not None:
            write_engine_homes([EngineMember(home.path, "node0", validator.signing,
                                             EnginePorts(config.p2p, engine_rpc))],
                               genesis, node_keys, block_interval_ms=config.block_interval_ms)
        return home

    def _write_passphrase(self) -> str:
        value = secrets.token_urlsafe(24)
        path = self.path / "passphrase"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        return value


def write_joining_home(path: Path, genesis: Genesis, *, api: str, ports: EnginePorts,
                       peers: Sequence[str], state_sync: StateSyncSettings,
                       kdf_params: KdfParams | None = None) -> Home:
    """Write the home of a node that joins a running chain on CometBFT: no validator (a new
    key of no power), ``peers`` (``<node id>@HOST:PORT``) to dial, and state sync enabled
    with ``state_sync``. Refuses a folder that already holds a node."""
    home = Home(path)
    if any(p.exists() for p in (home.config_path, home.genesis_path, home.validator_key_path,
                                home.store_path, home.path / "cometbft")):
        raise ConfigError(f"{path} already holds a node; choose another --home")
    for peer in peers:
        if not re.fullmatch(r"[0-9a-f]{40}@.+", peer):
            raise ConfigError(f"peer {peer!r}: give <node id>@HOST:PORT, the node id 40 hex "
                              "characters (`cometbft show-node-id --home HOME/cometbft`)")
        parse_hostport(peer.partition("@")[2])
    config = NodeConfig(api=api, p2p=ports.p2p)
    parse_hostport(config.api)
    state_sync.validate()
    (home.path / "keys").mkdir(parents=True, exist_ok=True)
    (home.path / "data").mkdir(exist_ok=True)
    passphrase = os.environ.get(PASSPHRASE_ENV) or home._write_passphrase()
    key = Keystore.generate()
    key.save(home.validator_key_path, passphrase, kdf_params=kdf_params)
    genesis.save(home.genesis_path)
    config.save(home.path)
    engine = EngineHome(home.path)
    engine.write(genesis, key.signing, SigningKey.generate(), ports, list(peers),
                 moniker=home.path.name, block_interval_ms=config.block_interval_ms)
    engine.enable_state_sync(state_sync)
    return home
