"""The bytes CometBFT hashes and signs, and the light client's checks (see
:mod:`medledger.client.comet`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import httpx
from google.protobuf import timestamp_pb2, wrappers_pb2
from tendermint.crypto import keys_pb2
from tendermint.types import canonical_pb2, types_pb2, validator_pb2
from tendermint.version import types_pb2 as version_pb2

from medledger.client.comet.types import (
    _HEADER_HASHES,
    BLOCK_PROTOCOL,
    DEFAULT_MAX_CLOCK_DRIFT,
    DEFAULT_TRUST_LEVEL,
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
    NotEnoughPower,
    NotEnoughTrust,
    SignedHeader,
    Timestamp,
    TrustExpired,
    Validator,
    ValidatorSet,
    ValidatorsMismatch,
    WrongChain,
    _as_timestamp,
    _get,
    _int,
    _require,
)
from medledger.crypto import verify as ed25519_verify
from medledger.ledger.engine import uvarint
from medledger.merkle import log


# --- bytes, exactly as CometBFT computes them ------------------------------------------------
def _merkle_root(items: Sequence[bytes]) -> bytes:
    return log.root([log.leaf_hash(item) for item in items])


def _timestamp_pb(moment: Timestamp) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=moment.seconds, nanos=moment.nanos)


def _block_id_pb(block_id: BlockId) -> types_pb2.BlockID:
    message = types_pb2.BlockID(hash=block_id.hash)
    message.part_set_header.SetInParent()  # not nullable in Go: always encoded
    message.part_set_header.total = block_id.parts_total
    message.part_set_header.hash = block_id.parts_hash
    return message


def header_leaves(header: Header) -> list[bytes]:
    """The 14 leaves of the header's Merkle tree, in field order."""
    def wrap(value: bytes) -> bytes:
        return wrappers_pb2.BytesValue(value=value).SerializeToString()

    version = version_pb2.Consensus(block=header.version_block, app=header.version_app)
    return [
        version.SerializeToString(),
        wrappers_pb2.StringValue(value=header.chain_id).SerializeToString(),
        wrappers_pb2.Int64Value(value=header.height).SerializeToString(),
        _timestamp_pb(header.time).SerializeToString(),
        _block_id_pb(header.last_block_id).SerializeToString(),
        *(wrap(getattr(header, name)) for name in _HEADER_HASHES),
        wrap(header.proposer_address),
    ]


def header_hash(header: Header) -> bytes:
    """The block's hash: the Merkle root over :func:`header_leaves`."""
    return _merkle_root(header_leaves(header))


def validators_hash(validators: ValidatorSet) -> bytes:
    """The set's hash: the Merkle root over each validator's ``SimpleValidator`` encoding."""
    return _merkle_root([
        validator_pb2.SimpleValidator(
            pub_key=keys_pb2.PublicKey(ed25519=v.public_key), voting_power=v.voting_power,
        ).SerializeToString()
        for v in validators.validators
    ])


def canonical_vote_bytes(chain_id: str, height: int, round: int, block_id: BlockId | None,
                         timestamp: Timestamp) -> bytes:
    """The sign bytes of a precommit: a length-delimited ``CanonicalVote``. A zero or absent
    ``block_id`` (a vote for nil) leaves the block id out, as CometBFT does."""
    vote = canonical_pb2.CanonicalVote(type=types_pb2.SIGNED_MSG_TYPE_PRECOMMIT, height=height,
                                       round=round, chain_id=chain_id)
    vote.timestamp.CopyFrom(_timestamp_pb(timestamp))  # not nullable: always encoded
    if block_id is not None and not block_id.is_zero():
        vote.block_id.hash = block_id.hash
        vote.block_id.part_set_header.SetInParent()
        vote.block_id.part_set_header.total = block_id.parts_total
        vote.block_id.part_set_header.hash = block_id.parts_hash
    body = vote.SerializeToString()
    return uvarint(len(body)) + body


def vote_sign_bytes(chain_id: str, commit: Commit, index: int) -> bytes:
    """What validator ``index`` of ``commit`` signed: its flag decides the block id."""
    sig = commit.signatures[index]
    block_id = commit.block_id if sig.flag is BlockIdFlag.COMMIT else None
    return canonical_vote_bytes(chain_id, commit.height, commit.round, block_id, sig.timestamp)


# --- commits ---------------------------------------------------------------------------------
def _check_commit_shape(validators: ValidatorSet, block_id: BlockId, height: int,
                        commit: Commit) -> None:
    if len(commit.signatures) != len(validators):
        raise InvalidCommit(commit.height, f"{len(commit.signatures)} signatures for a set of "
                                           f"{len(validators)} validators")
    if commit.height != height:
        raise InvalidCommit(commit.height, f"a commit for height {commit.height}, not {height}")
    if commit.block_id != block_id:
        raise InvalidCommit(height, f"signs block {commit.block_id.hash.hex().upper()}, "
                                    f"not {block_id.hash.hex().upper()}")


def _signer(validators: ValidatorSet, commit: Commit, index: int, by_index: bool,
            seen: set[bytes]) -> Validator | None:
    """The validator of entry ``index``: by position in the set's own commit (the address
    must agree), or by address in another set's view (strangers: None; twice: refused)."""
    address = commit.signatures[index].validator_address
    if by_index:
        validator = validators.validators[index]
        if validator.address != address:
            raise InvalidCommit(commit.height, f"signature {index} is from {address.hex().upper()}"
                                f", but validator {index} is {validator.address.hex().upper()}")
        return validator
    found = validators.by_address(address)
    if found is not None and address in seen:
        raise InvalidCommit(commit.height, f"validator {address.hex().upper()} signed twice")
    seen.add(address)
    return found


def _tally(chain_id: str, validators: ValidatorSet, commit: Commit, *, by_index: bool,
           checked: Callable[[CommitSig], bool]) -> int:
    """Verify every signature ``checked`` selects; return the power of those on COMMIT."""
    power, seen = 0, set[bytes]()
    for index, sig in enumerate(commit.signatures):
        validator = _signer(validators, commit, index, by_index, seen) if checked(sig) else None
        if validator is None:
            continue
        if not ed25519_verify(validator.public_key, vote_sign_bytes(chain_id, commit, index),
                              sig.signature):
            raise BadSignature(commit.height, index, sig.validator_address)
        if sig.flag is BlockIdFlag.COMMIT:
            power += validator.voting_power
    return power


def verify_commit(chain_id: str, validators: ValidatorSet, block_id: BlockId, height: int,
                  commit: Commit) -> None:
    """Check that more than 2/3 of ``validators``' power committed ``block_id`` at ``height``.

    Every signature that is not ABSENT is verified (NIL ones too), as CometBFT's
    ``VerifyCommit`` does; raises :class:`InvalidCommit` or a subclass.
    """
    _check_commit_shape(validators, block_id, height, commit)
    got = _tally(chain_id, validators, commit, by_index=True,
                 checked=lambda s: s.flag is not BlockIdFlag.ABSENT)
    _enough(height, got, validators.total_power)


def _enough(height: int, got: int, total: int) -> None:
    if got <= total * 2 // 3:
        raise NotEnoughPower(height, got, total * 2 // 3, total)


def _verify_commit_light(chain_id: str, validators: ValidatorSet, signed: SignedHeader) -> None:
    """``VerifyCommitLight`` with every counted signature checked: only COMMIT entries."""
    commit = signed.commit
    _check_commit_shape(validators, commit.block_id, signed.height, commit)
    got = _tally(chain_id, validators, commit, by_index=True,
                 checked=lambda s: s.flag is BlockIdFlag.COMMIT)
    _enough(signed.height, got, validators.total_power)


def _verify_commit_trusting(chain_id: str, trusted: ValidatorSet, signed: SignedHeader,
                            trust_level: Fraction) -> None:
    got = _tally(chain_id, trusted, signed.commit, by_index=False,
                 checked=lambda s: s.flag is BlockIdFlag.COMMIT)
    total = trusted.total_power
    needed = total * trust_level.numerator // trust_level.denominator
    if got <= needed:
        raise NotEnoughTrust(signed.height, got, needed, total, trust_level)


# --- headers ---------------------------------------------------------------------------------
def _check_self_consistent(chain_id: str, signed: SignedHeader,
                           validators: ValidatorSet) -> None:
    """The signed header belongs to ``chain_id``, its commit signs it, ``validators`` is the
    set it names."""
    header, height = signed.header, signed.height
    if header.chain_id != chain_id:
        raise WrongChain(height, "chain_id", "another chain", chain_id, header.chain_id)
    if signed.commit.height != height:
        raise InvalidHeader(height, "commit.height", "the commit is for another height",
                            height, signed.commit.height)
    if header_hash(header) != signed.commit.block_id.hash:
        raise HashMismatch(height, "hash", "the commit signs another block",
                           signed.commit.block_id.hash, header_hash(header))
    if header.version_block != BLOCK_PROTOCOL:
        raise InvalidHeader(height, "version.block", "another block protocol", BLOCK_PROTOCOL,
                            header.version_block)
    if header.validators_hash != validators_hash(validators):
        raise ValidatorsMismatch(height, "validators_hash", "not the hash of the set given",
                                 header.validators_hash, validators_hash(validators))


def verify_signed_header(chain_id: str, signed: SignedHeader, validators: ValidatorSet) -> None:
    """Believe ``signed`` against ``validators``, a set trusted already (a genesis set):
    its hash is the block the commit signs, it names the set, and the commit verifies."""
    _check_self_consistent(chain_id, signed, validators)
    verify_commit(chain_id, validators, signed.commit.block_id, signed.height, signed.commit)


def _check_new_header(trusted: SignedHeader, untrusted: SignedHeader,
                      untrusted_validators: ValidatorSet, trusting_period: timedelta,
                      now: Timestamp, max_clock_drift: timedelta) -> None:
    expires = trusted.header.time.plus(trusting_period)
    if not expires > now:
        raise TrustExpired(trusted.height, expires, now)
    _check_self_consistent(trusted.chain_id, untrusted, untrusted_validators)
    height, time = untrusted.height, untrusted.header.time
    if height <= trusted.height:
        raise InvalidHeader(height, "height", "not above the trusted header's",
                            f"> {trusted.height}", height)
    if not time > trusted.header.time:
        raise InvalidHeader(height, "time", "not after the trusted header's",
                            f"> {trusted.header.time}", str(time))
    if not time < now.plus(max_clock_drift):
        raise InvalidHeader(height, "time", f"in the future (now {now}, drift "
                            f"{max_clock_drift})", f"< {now.plus(max_clock_drift)}", str(time))


def verify_adjacent(trusted: SignedHeader, untrusted: SignedHeader,
                    untrusted_validators: ValidatorSet, *, trusting_period: timedelta,
                    now: Timestamp | datetime,
                    max_clock_drift: timedelta = DEFAULT_MAX_CLOCK_DRIFT) -> None:
    """Believe header H+1 after a trusted H (``light.VerifyAdjacent``): its set is the one H
    announced as next, and more than 2/3 of it signed."""
    now = _as_timestamp(now)
    if untrusted.height != trusted.height + 1:
        raise InvalidHeader(untrusted.height, "height", "not adjacent to the trusted header",
                            trusted.height + 1, untrusted.height)
    _check_new_header(trusted, untrusted, untrusted_validators, trusting_period, now,
                      max_clock_drift)
    if untrusted.header.validators_hash != trusted.header.next_validators_hash:
        raise ValidatorsMismatch(untrusted.height, "validators_hash", "not the next "
                                 "validators the trusted header announced",
                                 trusted.header.next_validators_hash,
                                 untrusted.header.validators_hash)
    _verify_commit_light(trusted.chain_id, untrusted_validators, untrusted)


def verify_skipping(trusted: SignedHeader, trusted_next_validators: ValidatorSet,
                    untrusted: SignedHeader, untrusted_validators: ValidatorSet, *,
                    trusting_period: timedelta, now: Timestamp | datetime,
                    trust_level: Fraction = DEFAULT_TRUST_LEVEL,
                    max_clock_drift: timedelta = DEFAULT_MAX_CLOCK_DRIFT) -> None:
    """Believe header H+n (n > 1) after a trusted H (``light.VerifyNonAdjacent``).

    ``trusted_next_validators`` must be a set the trusted header names: its
    ``next_validators_hash`` (the spec's choice) or its ``validators_hash`` (what CometBFT's
    client passes). More than ``trust_level`` of it must have signed the new commit
    (:class:`NotEnoughTrust` otherwise: bisect), then more than 2/3 of the new set.
    """
    now = _as_timestamp(now)
    if not Fraction(1, 3) <= trust_level <= 1:
        raise ValueError(f"trust level {trust_level} is outside [1/3, 1]")
    if untrusted.height == trusted.height + 1:
        raise InvalidHeader(untrusted.height, "height", "adjacent to the trusted header: "
                            "use verify_adjacent", f"> {trusted.height + 1}", untrusted.height)
    _check_new_header(trusted, untrusted, untrusted_validators, trusting_period, now,
                      max_clock_drift)
    named = (trusted.header.next_validators_hash, trusted.header.validators_hash)
    if validators_hash(trusted_next_validators) not in named:
        raise ValidatorsMismatch(trusted.height, "next_validators_hash", "the trusted set "
                                 "given is not one the trusted header names",
                                 trusted.header.next_validators_hash,
                                 validators_hash(trusted_next_validators))
    _verify_commit_trusting(trusted.chain_id, trusted_next_validators, untrusted, trust_level)
    _verify_commit_light(trusted.chain_id, untrusted_validators, untrusted)


# --- the RPC ---------------------------------------------------------------------------------
_MAX_PAGES = 100


def _rpc(client: httpx.Client, path: str, params: dict[str, int]) -> Any:
    url = f"{client.base_url}{path}"
    try:
        body = client.get(path, params=params).json()
    except (httpx.HTTPError, ValueError) as e:
        raise FetchFailed(url, f"{type(e).__name__}: {e}") from e
    if not isinstance(body, dict) or "result" not in body:
        error = body.get("error") if isinstance(body, dict) else body
        raise FetchFailed(url, f"no result: {str(error)[:300]}")
    return body["result"]


def fetch_light_block(client: httpx.Client, height: int, per_page: int = 100) -> LightBlock:
    """The signed header and the whole validator set of ``height`` from the RPC behind
    ``client`` (an ``httpx.Client`` with the RPC as ``base_url``). Nothing is verified."""
    signed = SignedHeader.from_json(_get(_rpc(client, "/commit", {"height": height}),
                                         "signed_header", "result"))
    if signed.height != height:
        raise FetchFailed(f"{client.base_url}/commit", f"asked for {height}, got {signed.height}")
    validators: list[Any] = []
    for page in range(1, _MAX_PAGES + 1):
        result = _rpc(client, "/validators",
                      {"height": height, "page": page, "per_page": per_page})
        batch = _get(result, "validators", "result")
        total = _int(result, "total", "result", 1)
        _require(isinstance(batch, list) and bool(batch), "result.validators", "an empty page")
        validators += batch
        if len(validators) >= total:
            break
    return LightBlock(signed, ValidatorSet.from_json(validators))


def verify_to_height(rpc: str | httpx.Client, trusted: LightBlock, height: int, *,
                     trusting_period: timedelta, now: Timestamp | datetime | None = None,
                     trust_level: Fraction = DEFAULT_TRUST_LEVEL,
                     max_clock_drift: timedelta = DEFAULT_MAX_CLOCK_DRIFT,
                     max_fetches: int = 64) -> LightBlock:
    """Fetch header ``height`` (and whatever lies between) from a CometBFT RPC and verify it
    from ``trusted``: adjacent for the next height, skipping otherwise, and bisecting (as
    CometBFT's client does: halfway, then on) whenever a skip lacks trust. Returns the
    verified light block; raises a :class:`LightClientError` for the first check that fails.
    """
    if isinstance(rpc, str):
        with httpx.Client(base_url=rpc, timeout=10) as client:
            return verify_to_height(client, trusted, height, trusting_period=trusting_period,
                                    now=now, trust_level=trust_level,
                                    max_clock_drift=max_clock_drift, max_fetches=max_fetches)
    if height <= trusted.height:
        raise ValueError(f"height {height} is not above the trusted {trusted.height}")
    moment = _as_timestamp(now if now is not None else datetime.now(UTC))
    if trusted.signed_header.header.validators_hash != validators_hash(trusted.validators):
        raise ValidatorsMismatch(trusted.height, "validators_hash", "the trusted set is not "
                                 "the trusted header's")
    verified, pending, fetches = trusted, [fetch_light_block(rpc, height)], 1
    while pending:
        block = pending[-1]
        try:
            _verify_step(verified, block, trusting_period, moment, trust_level, max_clock_drift)
        except NotEnoughTrust:
            if fetches >= max_fetches:
                raise
            pivot = verified.height + (block.height - verified.height) // 2
            pending.append(fetch_light_block(rpc, pivot))
            fetches += 1
            continue
        verified = pending.pop()
    return verified


def _verify_step(trusted: LightBlock, block: LightBlock, trusting_period: timedelta,
                 now: Timestamp, trust_level: Fraction, max_clock_drift: timedelta) -> None:
    if block.height == trusted.height + 1:
        verify_adjacent(trusted.signed_header, block.signed_header, block.validators,
                        trusting_period=trusting_period, now=now,
                        max_clock_drift=max_clock_drift)
    else:
        verify_skipping(trusted.signed_header, trusted.validators, block.signed_header,
                        block.validators, trusting_period=trusting_period, now=now,
                        trust_level=trust_level, max_clock_drift=max_clock_drift)
