"""The node: genesis, config and home, the chain executor, the node beside its consensus
engine, and store verification."""

from medledger.node.chain import Chain, nonce_key, result_of
from medledger.node.config import ConfigError, NodeConfig, parse_hostport
from medledger.node.genesis import Genesis, GenesisError
from medledger.node.home import DEMO_ORGANISATIONS, PASSPHRASE_ENV, Home
from medledger.node.node import BatchRefused, Node, Submitted
from medledger.node.verify import VerifyReport, verify_store

__all__ = [
    "DEMO_ORGANISATIONS", "PASSPHRASE_ENV", "BatchRefused", "Chain", "ConfigError", "Genesis",
    "GenesisError", "Home", "Node", "NodeConfig", "Submitted", "VerifyReport",
    "nonce_key", "parse_hostport", "result_of", "verify_store",
]
