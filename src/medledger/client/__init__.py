"""The SDK: an HTTP client for the API and a light client that checks its answers."""

from medledger.client.history import VerifiedBlock, verify_block_answer
from medledger.client.http import ApiRefused, Client, Unreachable
from medledger.client.light import (
    Trusted,
    VerificationFailed,
    VerifiedState,
    VerifiedTx,
    sets_through,
    verify_header,
    verify_set_change,
    verify_state_answer,
    verify_tx_answer,
)
from medledger.client.lists import VerifiedList, verify_list_answer

__all__ = [
    "ApiRefused", "Client", "Unreachable", "VerificationFailed", "VerifiedState", "VerifiedTx",
    "Trusted", "sets_through", "verify_header", "verify_set_change", "verify_state_answer", "verify_tx_answer",
    "VerifiedList", "verify_list_answer", "VerifiedBlock", "verify_block_answer",
]
