"""What an app's routes and commands are handed: the node's reads and proofs (for its
FastAPI router) and the command line's keys, client and verification (for its Typer group).

Apps sit below the node, the API and the command line, so they never import them; the
edges pass these small interfaces in instead (:meth:`App.routes`, :meth:`App.commands`).

Errors::

    QueryError     an app's route refuses a request: HTTP ``status``, stable ``code``
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from medledger.crypto import EncryptionKey, Keystore, SigningKey
from medledger.state import StateView

if TYPE_CHECKING:
    from medledger.apps.lists import ProvableList

__all__ = ["AppClient", "CommandHost", "EmergencyKeys", "QueryError", "QueryHost",
           "RecordSealing", "SealedContent"]


class QueryError(Exception):
    """A route's refusal: HTTP ``status`` with a stable ``code`` and a sentence."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class QueryHost(Protocol):
    """The node as an app's routes see it: committed state at the tip, with proofs."""

    @property
    def height(self) -> int:
        """The tip's height (0 before the first block)."""

    def view(self) -> StateView:
        """Committed state at the tip, read-only."""

    def answer(self, key: str, *, prove: bool) -> dict[str, Any]:
        """``{"key", "value", "height"}`` for ``key`` at the tip; with ``prove``, also the
        sparse Merkle proof and the certified header (as ``GET /v1/state/{key}``)."""

    def list_answer(self, lst: ProvableList, owner: str, start: int, limit: int, *,
                    prove: bool) -> dict[str, Any]:
        """A page of a provable list (items ``start``.. with the count), proven on request."""

    def scan(self, prefix: str, *, after: str | None, limit: int) -> list[tuple[str, Any]]:
        """Up to ``limit`` committed entries whose key starts with ``prefix``, in key order,
        after the key ``after`` (for paging)."""


class AppClient(Protocol):
    """The SDK client as an app's commands use it."""

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path`` (``/v1/...``) and return the decoded JSON; refusals raise (the
        command line prints them as one line and exits 1)."""

    def status(self) -> dict[str, Any]:
        """``GET /v1/status``: ``chain_id``, ``height``, ..."""

    def state(self, key: str) -> dict[str, Any]:
        """``GET /v1/state/{key}``: the entry (``value`` None when absent) with its proof."""


class SealedContent(Protocol):
    """Content sealed on the client (:class:`medledger.client.records.SealedRecord`):
    ``ciphertext`` for the blob store, ``digest`` and ``size`` for the ledger, and the
    ``content_key`` that stays with the caller."""

    @property
    def ciphertext(self) -> bytes: ...

    @property
    def digest(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def content_key(self) -> bytes: ...

    def key_list(self) -> list[dict[str, str]]:
        """The wrapped keys as ``[{"reader", "wrapped"}]``, as the ledger stores them."""


class RecordSealing(Protocol):
    """The client side of encrypted records (:mod:`medledger.client.records`, ADR 0011):
    what an app's commands seal, wrap, open and split with. Every function raises a
    ``ValueError`` (``RecordError``) whose message names no content, key or share."""

    def seal_record(self, resource_bytes: bytes, *, patient_pseudonym: str, category: str,
                    readers: Mapping[str, tuple[bytes, str]]) -> SealedContent:
        """Encrypt under a fresh content key, wrapped for each reader (key hex -> (public
        encryption key, suite))."""

    def open_record(self, ciphertext: bytes, wrapped: str, encryption_key: EncryptionKey,
                    *, patient_pseudonym: str, category: str,
                    digest: str | None = None) -> bytes:
        """Check, unwrap and decrypt a record; its plaintext."""

    def wrap_for(self, content_key: bytes, digest: str, enc_public_key: bytes,
                 suite: str) -> str:
        """A content key wrapped for one more reader (unpadded base64url)."""

    def unwrap(self, wrapped: str, digest: str, encryption_key: EncryptionKey) -> bytes:
        """A wrapped content key opened with ``encryption_key``."""

    def split_keys(self, secret: bytes, guardians: Mapping[str, tuple[bytes, str]],
                   threshold: int) -> list[dict[str, str]]:
        """``secret`` split ``threshold``-of-n, one wrapped share per guardian:
        ``[{"guardian", "wrapped_share"}]``."""

    def unwrap_share(self, wrapped_share: str, encryption_key: EncryptionKey) -> bytes:
        """A guardian's share opened with the guardian's encryption key."""

    def recover_keys(self, shares: Sequence[bytes]) -> bytes:
        """The secret from at least ``threshold`` opened shares."""


class EmergencyKeys(Protocol):
    """The client side of break-glass (:mod:`medledger.client.emergency`): a patient's
    emergency key split among hospitals, a share released to a clinician, and a record
    opened with released shares. Errors are ``ValueError`` s naming no key or share."""

    def create_emergency_key(self, holders: Mapping[str, tuple[str, bytes, str]],
                             threshold: int | None = None, *, suite: str = ...) -> Any:
        """A new key pair, its private key split among ``holders`` (org -> (admin key hex,
        encryption public key, suite)); ``.body(patient, keys)`` is the transaction body."""

    def default_threshold(self, n: int) -> int:
        """k for n share-holding organisations."""

    def release_share(self, wrapped_share: str, holder_key: EncryptionKey, *,
                      emergency_id: str, clinician_key: bytes, clinician_suite: str) -> str:
        """An organisation's share opened by its holder and re-wrapped for the clinician."""

    def emergency_open(self, ciphertext: bytes, wrapped: str, released: Sequence[str],
                       clinician_key: EncryptionKey, *, emergency_id: str, enc_key: bytes,
                       enc_suite: str, threshold: int, patient_pseudonym: str, category: str,
                       digest: str | None = None) -> bytes:
        """A record opened with the emergency key recovered from released shares."""


class CommandHost(Protocol):
    """The command line as an app's commands use it.

    What fails for a reason a person can act on (no such home or key, a wrong passphrase,
    a node that does not answer or refuses) is printed as one ``error:`` line with exit
    code 1; a proof that does not check out, as ``NOT VERIFIED: reason`` with exit code 2.
    """

    def client(self, home: Path | None, api: str | None) -> AbstractContextManager[AppClient]:
        """A client of the node at ``api``, or of the one ``home``'s config names."""

    def keys(self, home: Path, key: str | None, default: str = "admin") -> Keystore:
        """The keystore named ``key`` in ``home``'s keys folder (or a path), else
        ``default``, else the home's only key."""

    def keystore(self, path: Path) -> Keystore:
        """A keystore file of its own (a patient's, a new member's), opened with the
        passphrase of ``MEDLEDGER_PASSPHRASE`` or, in a terminal, one asked for."""

    def validator_key(self, home: Path) -> SigningKey:
        """The home's validator key."""

    def node_identity(self, home: Path) -> dict[str, str]:
        """The home's validator key (hex) and its CometBFT node ID: ``{"node_key",
        "node_id"}`` (what a ``validator_add`` carries as ``public_key``, and what
        ``identity.node.add`` lists so that the other members' nodes admit it)."""

    def submit(self, home: Path | None, api: str | None, signer: SigningKey, type_: str,
               body: dict[str, Any]) -> dict[str, Any]:
        """Sign and submit a transaction, wait for its block and return the committed
        answer (``tx_id``, ``height``, ``code``...), printing nothing; print a refusal and
        exit 1 on one (and exit 0 after saying so when it is not committed in time)."""

    def show(self, data: Any, *, as_json: bool, title: str = "") -> None:
        """Print ``data``: JSON with ``as_json``, else a readable table (a dict as rows, a
        list of dicts as one row each; fields named ``time`` or ``*_time`` in ISO 8601)."""

    def verify(self, answer: dict[str, Any], home: Path | None, genesis: Path | None,
               client: AppClient, key: str | None = None) -> Any:
        """Check a proven state answer (``?prove=true``) against the trusted validators
        (``genesis``'s, else ``home``'s, else the node's own with a warning) and, when
        given, that it answers for state key ``key``. Says ``verified: ...`` on stderr and
        returns the verified value (None: proven absent); exit 2 if it fails."""

    def verify_list(self, answer: dict[str, Any], home: Path | None, genesis: Path | None,
                    client: AppClient, lst: ProvableList, owner: str, start: int = 1,
                    limit: int | None = None) -> list[Any]:
        """Check a proven page of ``owner``'s list ``lst`` (items ``start``.. up to
        ``limit``) as :meth:`verify` does; return its items, in order."""

    def fail(self, message: str) -> NoReturn:
        """Print ``message`` as an error and exit 1."""

    @property
    def sealing(self) -> RecordSealing:
        """The client's record sealing (ADR 0011): encrypt, wrap, open, split keys."""

    @property
    def emergency(self) -> EmergencyKeys:
        """The client's break-glass keys: split, release, recover and open."""

    def put_blob(self, home: Path | None, api: str | None, signer: SigningKey,
                 ciphertext: bytes) -> str:
        """Upload ``ciphertext`` to the node's blob store on a request signed with
        ``signer`` (RFC 9421); return its digest (hex). A refusal is one ``error:`` line."""

    def get_blob(self, home: Path | None, api: str | None, signer: SigningKey,
                 digest: str) -> bytes:
        """The ciphertext named ``digest``, on a request signed with ``signer``: served only
        when the ledger lets ``signer`` read it (else one ``error:`` line, exit 1)."""

    def save_keystore(self, keys: Keystore, path: Path) -> None:
        """Write ``keys`` to a new keystore file ``path`` (refused if it exists), under the
        passphrase of ``MEDLEDGER_PASSPHRASE`` or, in a terminal, one asked for twice."""

    def progress(self, message: str) -> None:
        """Say how a long command is getting on, on stderr (never record content)."""
