"""A light client for CometBFT v0.38 signed headers: believe a block because validators signed it.

CometBFT's RPC answers ``/commit?height=H`` with a *signed header* (the header of block H and
its commit, the precommits of H's validators) and ``/validators?height=H`` with H's
*validator set*. :class:`SignedHeader` and :class:`ValidatorSet` parse those JSON objects and
refuse malformed ones (:class:`MalformedData`). Every byte hashed or signed is computed here
as CometBFT computes it (read in ``types/block.go``, ``types/canonical.go``,
``types/validator.go`` and ``crypto/merkle/``):

- :func:`header_hash`: the Merkle root over 14 leaves, the protobuf encoding of each header
  field in order -- ``Consensus`` version, chain id (``StringValue``), height
  (``Int64Value``), time (``Timestamp``), last ``BlockID``, then the nine hashes and the
  proposer address (``BytesValue`` each; an empty field is an empty leaf).
- :func:`validators_hash`: the same tree over each validator's ``SimpleValidator`` (public
  key and voting power), in the set's order.
- The tree is RFC 6962's (SHA-256, leaf prefix 0x00, inner prefix 0x01, split at the largest
  power of two below the size), which RFC 9162 kept unchanged: :func:`medledger.merkle.log.root`
  computes it.
- :func:`vote_sign_bytes`: what a validator signs for a precommit -- a protobuf
  ``CanonicalVote`` (type 2, height and round as ``sfixed64``, the canonical block id, the
  time of that validator's vote, the chain id) prefixed with its length as a uvarint.

Block id flags (:class:`BlockIdFlag`): ABSENT (no vote; no address, time or signature),
COMMIT (a precommit for the commit's block id, which it signs) and NIL (a precommit for no
block; it signs an empty block id and adds no power to the block).

Signatures are Ed25519, checked with libsodium (:func:`medledger.crypto.verify`), the verifier
used everywhere in the project. CometBFT checks votes with the ZIP-215 rules, which also
accept a few crafted signatures libsodium refuses (non-canonical point encodings, public keys
or R of small order, and the few that only the cofactored equation accepts). Honest signers
never produce those signatures, so an honest chain verifies the same under both rules; and
as ZIP-215 accepts every signature libsodium accepts, the difference can only make this
client refuse a commit CometBFT accepted, never the reverse.

Verification follows ``light/verifier.go``:

- :func:`verify_commit`: every non-absent signature checked, more than 2/3 of the set's power
  on COMMIT (CometBFT's ``VerifyCommit``).
- :func:`verify_signed_header`: a header believed against a set already trusted (a genesis
  set): its hash is the commit's block id, its ``validators_hash`` names the set, and the
  commit verifies.
- :func:`verify_adjacent`: header H+1 after a trusted H; its ``validators_hash`` must be H's
  ``next_validators_hash`` and more than 2/3 of its set must have signed.
- :func:`verify_skipping`: header H+n (n > 1) after a trusted H; more than ``trust_level``
  (default 1/3, at least one honest validator) of the trusted set's power and more than 2/3
  of its own set's power must have signed.
- Both refuse a trusted header older than the trusting period, a header of another chain, a
  height or time that does not increase, a time further ahead of ``now`` than the allowed
  clock drift, and a validator set other than the one the header names.
- :func:`verify_to_height` fetches from a CometBFT RPC URL what it needs to reach a height
  and verifies it: adjacent when the next height, skipping otherwise, bisecting when a skip
  lacks trust.

Errors::

    LightClientError                   root of everything raised here (.reason)
    ├── MalformedData (ValueError)     JSON that is not a well-formed header, commit or set
    │                                  (.where, e.g. "commit.signatures[2].signature")
    ├── FetchFailed                    the RPC could not be reached or answered an error (.url)
    ├── TrustExpired                   the trusted header is older than the trusting period
    │                                  (.height, .expired_at, .now)
    ├── InvalidHeader                  the new header contradicts itself or the trusted one
    │   │                              (.height, .field, .expected, .got)
    │   ├── WrongChain                 another chain id (.field "chain_id")
    │   ├── HashMismatch               the header's hash is not the block the commit signs
    │   └── ValidatorsMismatch         validators_hash / next_validators_hash is not the set's
    ├── InvalidCommit                  the commit does not fit the block or the set (.height)
    │   ├── BadSignature               a signature that counts does not verify (.index, .address)
    │   └── NotEnoughPower             2/3 or less of the set's power committed (.got, .needed,
    │                                  .total)
    └── NotEnoughTrust                 trust level or less of the trusted set's power signed
                                       (.height, .got, .needed, .total, .trust_level)
"""

from medledger.client.comet.types import (
    BLOCK_PROTOCOL,
    DEFAULT_MAX_CLOCK_DRIFT,
    DEFAULT_TRUST_LEVEL,
    ZERO_TIME,
    BadSignature,
    BlockId,
    BlockIdFlag,
    Commit,
    CommitSig,
    FetchFailed,
    HashMismatch,
    Header,
    InvalidCommit,
    InvalidHeader,
    LightBlock,
    LightClientError,
    MalformedData,
    NotEnoughPower,
    NotEnoughTrust,
    SignedHeader,
    Timestamp,
    TrustExpired,
    Validator,
    ValidatorSet,
    ValidatorsMismatch,
    WrongChain,
    address_of,
)
from medledger.client.comet.verify import (
    canonical_vote_bytes,
    fetch_light_block,
    header_hash,
    header_leaves,
    validators_hash,
    verify_adjacent,
    verify_commit,
    verify_signed_header,
    verify_skipping,
    verify_to_height,
    vote_sign_bytes,
)

__all__ = [
    "BLOCK_PROTOCOL",
    "DEFAULT_MAX_CLOCK_DRIFT",
    "DEFAULT_TRUST_LEVEL",
    "ZERO_TIME",
    "BadSignature",
    "BlockId",
    "BlockIdFlag",
    "Commit",
    "CommitSig",
    "FetchFailed",
    "HashMismatch",
    "Header",
    "InvalidCommit",
    "InvalidHeader",
    "LightBlock",
    "LightClientError",
    "MalformedData",
    "NotEnoughPower",
    "NotEnoughTrust",
    "SignedHeader",
    "Timestamp",
    "TrustExpired",
    "Validator",
    "ValidatorSet",
    "ValidatorsMismatch",
    "WrongChain",
    "address_of",
    "canonical_vote_bytes",
    "fetch_light_block",
    "header_hash",
    "header_leaves",
    "validators_hash",
    "verify_adjacent",
    "verify_commit",
    "verify_signed_header",
    "verify_skipping",
    "verify_to_height",
    "vote_sign_bytes",
]
