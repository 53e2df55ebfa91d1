"""The ABCI 2.0 boundary to CometBFT: socket framing, the server, the application."""

from medledger.node.abci.app import LedgerApplication, node_id, validator_address
from medledger.node.abci.server import AbciServer
from medledger.node.abci.wire import FrameError, frame, read_frame

__all__ = ["AbciServer", "FrameError", "LedgerApplication", "frame", "node_id", "read_frame",
           "validator_address"]
