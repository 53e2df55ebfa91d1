"""The CometBFT light client (:mod:`medledger.client.comet`).

- Golden vectors from CometBFT's own tests (``types/block_test.go`` TestHeaderHash,
  ``types/vote_test.go`` TestVoteSignBytesTestVectors).
- Fixed data captured from a real 4-validator ``cometbft`` testnet
  (``tests/data/comet/testnet.json``; regenerate with
  ``.venv/bin/python -m tests.test_comet_light capture``): hashes, commits, adjacent and
  skipping verification across two validator-set changes, bisection, and named scenario
  tables of tampered copies, each refused with the error that names what failed.
- Block id flag rules on commits signed here with fixed keys.
- Properties: times round-trip, the project's RFC 9162 tree is CometBFT's RFC 6962 tree,
  sign bytes decode back to the vote.
- Real processes (``processes``): a single ``cometbft`` node and a 4-validator testnet on
  127.0.0.1 whose answers the verifier accepts, and whose tampered copies it refuses.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medledger.crypto import SigningKey
from medledger.merkle import log
from medledger.node.consortium import free_port

from medledger.client import comet  # needs the protobuf classes that `make setup` generates

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "comet" / "testnet.json"
COMETBFT = REPO / ".tools" / "bin" / "cometbft"
HOUR = timedelta(hours=1)


# --- the captured chain ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def chain() -> dict[str, Any]:
    """``{"chain_id", "trusted", "change_a", "last_a", "change_b", "target", "blocks": {h:
    {"signed_header", "validators"}}}``: from ``change_a`` validator 0 has power 3 (the set is
    (3, 1, 1, 1) up to ``last_a``); from ``change_b`` the three others are gone."""
    return json.loads(DATA.read_text())


def raw(chain: dict[str, Any], height: int) -> dict[str, Any]:
    """A deep copy of the RPC JSON of ``height``, to tamper with."""
    return copy.deepcopy(chain["blocks"][str(height)])


def block(data: dict[str, Any]) -> comet.LightBlock:
    return comet.LightBlock(comet.SignedHeader.from_json(data["signed_header"]),
                            comet.ValidatorSet.from_json(data["validators"]))


def at(chain: dict[str, Any], height: int) -> comet.LightBlock:
    return block(raw(chain, height))


def now_after(chain: dict[str, Any]) -> comet.Timestamp:
    return at(chain, chain["target"]).signed_header.header.time.plus(timedelta(seconds=1))


# --- golden vectors from CometBFT's own tests --------------------------------------------------
def sha(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def test_header_hash_matches_cometbft_vector() -> None:
    header = comet.Header(
        version_block=1, version_app=2, chain_id="chainId", height=3,
        time=comet.Timestamp.parse("2019-10-13T16:14:44Z"),
        last_block_id=comet.BlockId(bytes(32), 6, bytes(32)),
        last_commit_hash=sha("last_commit_hash"), data_hash=sha("data_hash"),
        validators_hash=sha("validators_hash"), next_validators_hash=sha("next_validators_hash"),
        consensus_hash=sha("consensus_hash"), app_hash=sha("app_hash"),
        last_results_hash=sha("last_results_hash"), evidence_hash=sha("evidence_hash"),
        proposer_address=sha("proposer_address")[:20])
    assert comet.header_hash(header).hex().upper() == \
        "F740121F553B5418C3EFBD343C2DBFE9E007BB67B0D020A0741374BAB65242A4"


def test_vote_sign_bytes_match_cometbft_vector() -> None:
    # vector 1: a precommit for height 1, round 1, no block, Go's zero time, chain id ""
    want = bytes([0x21, 0x08, 0x02, 0x11, 1, 0, 0, 0, 0, 0, 0, 0, 0x19, 1, 0, 0, 0, 0, 0, 0, 0,
                  0x2A, 0x0B, 0x08, 0x80, 0x92, 0xB8, 0xC3, 0x98, 0xFE, 0xFF, 0xFF, 0xFF, 0x01])
    assert comet.canonical_vote_bytes("", 1, 1, None, comet.ZERO_TIME) == want


# --- real data: what CometBFT produced verifies ------------------------------------------------
def test_every_captured_header_hashes_to_its_block_id(chain: dict[str, Any]) -> None:
    heights = sorted(int(h) for h in chain["blocks"])
    for h in heights:
        signed = at(chain, h).signed_header
        assert comet.header_hash(signed.header) == signed.commit.block_id.hash, h
        if h + 1 in heights:
            assert at(chain, h + 1).signed_header.header.last_block_id == signed.commit.block_id


def test_every_captured_commit_verifies(chain: dict[str, Any]) -> None:
    for h in sorted(int(h) for h in chain["blocks"]):
        light = at(chain, h)
        assert comet.validators_hash(light.validators) == \
            light.signed_header.header.validators_hash
        comet.verify_signed_header(chain["chain_id"], light.signed_header, light.validators)


def test_the_capture_holds_both_set_changes(chain: dict[str, Any]) -> None:
    powers = [[v.voting_power for v in at(chain, chain[k]).validators.validators]
              for k in ("trusted", "change_a", "change_b")]
    assert powers == [[1, 1, 1, 1], [3, 1, 1, 1], [3]]
    before_a = at(chain, chain["change_a"] - 1).signed_header.header
    assert before_a.next_validators_hash != before_a.validators_hash


def test_adjacent_verification_walks_the_whole_capture(chain: dict[str, Any]) -> None:
    heights = sorted(int(h) for h in chain["blocks"])
    for lower, upper in itertools.pairwise(heights):
        a, b = at(chain, lower), at(chain, upper)
        comet.verify_adjacent(a.signed_header, b.signed_header, b.validators,
                              trusting_period=HOUR, now=now_after(chain))


def test_skipping_across_a_set_change_with_trust_level_one_third(chain: dict[str, Any]) -> None:
    trusted, target = at(chain, chain["trusted"]), at(chain, chain["last_a"])
    comet.verify_skipping(trusted.signed_header, trusted.validators, target.signed_header,
                          target.validators, trusting_period=HOUR, now=now_after(chain))


def test_skipping_refused_when_a_third_or_less_of_the_trusted_power_signed(
        chain: dict[str, Any]) -> None:
    trusted, target = at(chain, chain["trusted"]), at(chain, chain["target"])
    with pytest.raises(comet.NotEnoughTrust) as e:
        comet.verify_skipping(trusted.signed_header, trusted.validators, target.signed_header,
                              target.validators, trusting_period=HOUR, now=now_after(chain))
    assert (e.value.got, e.value.needed, e.value.total) == (1, 1, 4)
    # from a header of the second set (validator 0 holds 3 of 6), the same target is trusted
    middle = at(chain, chain["change_a"])
    comet.verify_skipping(middle.signed_header, middle.validators, target.signed_header,
                          target.validators, trusting_period=HOUR, now=now_after(chain))


# --- the RPC, faked: bisection --------------------------------------------------------------
def fake_rpc(chain: dict[str, Any], asked: list[tuple[str, int]],
             per_page: int = 100) -> httpx.Client:
    """An ``httpx.Client`` answering ``/commit`` and ``/validators`` from the capture."""
    def handle(request: httpx.Request) -> httpx.Response:
        height = int(request.url.params["height"])
        asked.append((request.url.path, height))
        data = chain["blocks"].get(str(height))
        if data is None:
            return httpx.Response(500, json={"jsonrpc": "2.0", "id": -1, "error": {
                "code": -32603, "message": "Internal error", "data": f"no height {height}"}})
        if request.url.path == "/commit":
            result = {"signed_header": data["signed_header"], "canonical": True}
        else:
            page = int(request.url.params.get("page", 1))
            size = min(int(request.url.params.get("per_page", 30)), per_page)
            vals = data["validators"]
            result = {"block_height": str(height), "count": "0", "total": str(len(vals)),
                      "validators": vals[(page - 1) * size: page * size]}
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": -1, "result": result})

    return httpx.Client(transport=httpx.MockTransport(handle), base_url="http://comet.test")


def test_verify_to_height_bisects_when_a_skip_lacks_trust(chain: dict[str, Any]) -> None:
    asked: list[tuple[str, int]] = []
    trusted, target = at(chain, chain["trusted"]), chain["target"]
    with fake_rpc(chain, asked) as client:
        got = comet.verify_to_height(client, trusted, target, trusting_period=HOUR,
                                     now=now_after(chain))
    assert got.signed_header == at(chain, target).signed_header
    commits = [h for path, h in asked if path == "/commit"]
    assert commits[0] == target and len(commits) > 1, "a skip straight there lacks trust"
    assert all(chain["trusted"] < h <= target for h in commits)


def test_verify_to_height_takes_one_step_when_trust_suffices(chain: dict[str, Any]) -> None:
    asked: list[tuple[str, int]] = []
    trusted, target = at(chain, chain["trusted"]), chain["last_a"]
    with fake_rpc(chain, asked) as client:
        comet.verify_to_height(client, trusted, target, trusting_period=HOUR,
                               now=now_after(chain))
        comet.verify_to_height(client, trusted, chain["trusted"] + 1, trusting_period=HOUR,
                               now=now_after(chain))
    assert [h for path, h in asked if path == "/commit"] == [target, chain["trusted"] + 1]


def test_validators_are_read_page_by_page(chain: dict[str, Any]) -> None:
    asked: list[tuple[str, int]] = []
    with fake_rpc(chain, asked, per_page=3) as client:
        light = comet.fetch_light_block(client, chain["trusted"], per_page=3)
    assert len(light.validators) == 4
    assert [path for path, _ in asked].count("/validators") == 2


def test_rpc_errors_are_fetch_failures(chain: dict[str, Any]) -> None:
    with fake_rpc(chain, []) as client, pytest.raises(comet.FetchFailed, match="no height"):
        comet.fetch_light_block(client, 10**6)
    refused = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, text="<")),
                           base_url="http://comet.test")
    with refused, pytest.raises(comet.FetchFailed):
        comet.fetch_light_block(refused, 3)


# --- tampered copies: each refused with the error that names it -------------------------------
def flip_hex(text: str) -> str:
    return f"{int(text[0], 16) ^ 1:X}{text[1:]}" if text else "00" * 32


def flip_b64(text: str) -> str:
    data = bytearray(base64.b64decode(text))
    data[0] ^= 1
    return base64.b64encode(bytes(data)).decode()


def bump(text: str) -> str:
    return str(int(text) + 1)


def later_ns(text: str) -> str:
    return str(comet.Timestamp.from_nanos(comet.Timestamp.parse(text).total_nanos + 1))


def edit(path: str, change: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    """Apply ``change`` to the value at dotted ``path`` (list indices as numbers)."""
    def apply(data: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = data
        for p in parents:
            node = node[p]
        node[last] = change(node[last])
    return apply


H = "signed_header.header."
HEADER_FIELDS: dict[str, tuple[Callable[[dict[str, Any]], None], type[Exception], str]] = {
    "version.block": (edit(H + "version.block", bump), comet.HashMismatch, "hash"),
    "version.app": (edit(H + "version.app", bump), comet.HashMismatch, "hash"),
    "chain_id": (edit(H + "chain_id", lambda s: s + "x"), comet.WrongChain, "chain_id"),
    "height": (edit(H + "height", bump), comet.InvalidHeader, "commit.height"),
    "time": (edit(H + "time", later_ns), comet.HashMismatch, "hash"),
    "last_block_id.hash": (edit(H + "last_block_id.hash", flip_hex), comet.HashMismatch, "hash"),
    "last_block_id.parts.total": (edit(H + "last_block_id.parts.total", lambda n: n + 1),
                                  comet.HashMismatch, "hash"),
    "last_block_id.parts.hash": (edit(H + "last_block_id.parts.hash", flip_hex),
                                 comet.HashMismatch, "hash"),
    **{name: (edit(H + name, flip_hex), comet.HashMismatch, "hash") for name in (
        "last_commit_hash", "data_hash", "validators_hash", "next_validators_hash",
        "consensus_hash", "app_hash", "last_results_hash", "evidence_hash", "proposer_address")},
}


@pytest.mark.parametrize("name", sorted(HEADER_FIELDS))
def test_a_flipped_header_field_is_refused(chain: dict[str, Any], name: str) -> None:
    tamper, error, field = HEADER_FIELDS[name]
    data = raw(chain, chain["change_a"])
    tamper(data)
    light = block(data)
    with pytest.raises(error) as e:
        comet.verify_signed_header(chain["chain_id"], light.signed_header, light.validators)
    assert e.value.field == field


ABSENT_JSON = {"block_id_flag": 1, "validator_address": "",
               "timestamp": "0001-01-01T00:00:00Z", "signature": None}  # as CometBFT writes it


def absent_all_but(keep: int) -> Callable[[dict[str, Any]], None]:
    def apply(data: dict[str, Any]) -> None:
        sigs = data["signed_header"]["commit"]["signatures"]
        sigs[:] = [s if i < keep else dict(ABSENT_JSON) for i, s in enumerate(sigs)]
    return apply


def swap_key(validator: dict[str, Any]) -> None:
    public = SigningKey.from_seed(bytes(32)).public_key
    validator["pub_key"]["value"] = base64.b64encode(public).decode()
    validator["address"] = comet.address_of(public).hex().upper()


C = "signed_header.commit."
COMMIT_TAMPERING: dict[str, tuple[Callable[[dict[str, Any]], None], type[Exception]]] = {
    "a signature byte": (edit(C + "signatures.1.signature", flip_b64), comet.BadSignature),
    "a vote's time": (edit(C + "signatures.2.timestamp", later_ns), comet.BadSignature),
    "the round": (edit(C + "round", lambda n: n + 1), comet.BadSignature),
    "the part set size": (edit(C + "block_id.parts.total", lambda n: n + 1), comet.BadSignature),
    "a commit vote turned nil": (edit(C + "signatures.0.block_id_flag", lambda n: 3),
                                 comet.BadSignature),
    "a validator address": (edit(C + "signatures.3.validator_address", flip_hex),
                            comet.InvalidCommit),
    "signatures dropped to 2/3": (absent_all_but(2), comet.NotEnoughPower),
    "a signature dropped": (edit(C + "signatures", lambda s: s[:-1]), comet.InvalidCommit),
    "a power": (edit("validators.2.voting_power", bump), comet.ValidatorsMismatch),
    "a key, its address left": (edit("validators.1.pub_key.value", flip_b64),
                                comet.MalformedData),
    "a key and its address": (lambda d: swap_key(d["validators"][1]), comet.ValidatorsMismatch),
    "the set's order": (edit("validators", lambda v: v[::-1]), comet.ValidatorsMismatch),
}


@pytest.mark.parametrize("name", sorted(COMMIT_TAMPERING))
def test_a_tampered_commit_or_set_is_refused(chain: dict[str, Any], name: str) -> None:
    tamper, error = COMMIT_TAMPERING[name]
    data = raw(chain, chain["trusted"])  # four validators of power 1, all signed
    assert all(s["block_id_flag"] == 2 for s in data["signed_header"]["commit"]["signatures"])
    tamper(data)
    with pytest.raises(error):
        light = block(data)
        comet.verify_signed_header(chain["chain_id"], light.signed_header, light.validators)


def test_another_chain_id_breaks_every_signature(chain: dict[str, Any]) -> None:
    light = at(chain, chain["trusted"])
    commit = light.signed_header.commit
    with pytest.raises(comet.BadSignature) as e:
        comet.verify_commit(chain["chain_id"] + "x", light.validators, commit.block_id,
                            commit.height, commit)
    assert e.value.index == 0


def test_three_of_four_signatures_are_enough_two_are_not(chain: dict[str, Any]) -> None:
    for keep, ok in ((3, True), (2, False)):
        data = raw(chain, chain["trusted"])
        absent_all_but(keep)(data)
        light = block(data)
        if ok:
            comet.verify_signed_header(chain["chain_id"], light.signed_header, light.validators)
        else:
            with pytest.raises(comet.NotEnoughPower) as e:
                comet.verify_signed_header(chain["chain_id"], light.signed_header,
                                           light.validators)
            assert (e.value.got, e.value.needed, e.value.total) == (2, 2, 4)


def test_trust_is_checked_before_the_new_sets_two_thirds(chain: dict[str, Any]) -> None:
    """As CometBFT does (a new set can be made huge to waste a client's time): with only
    validator 0 left signing, the trusted set (1, 1, 1, 1) lacks trust before the new set
    (3, 1, 1, 1) lacks 2/3; with three signing, both hold."""
    trusted = at(chain, chain["trusted"])
    for keep, error in ((3, None), (1, comet.NotEnoughTrust), (2, comet.NotEnoughPower)):
        data = raw(chain, chain["last_a"])
        absent_all_but(keep)(data)
        target = block(data)
        args = {"trusting_period": HOUR, "now": now_after(chain)}
        if error is None:
            comet.verify_skipping(trusted.signed_header, trusted.validators,
                                  target.signed_header, target.validators, **args)
            continue
        with pytest.raises(error):
            comet.verify_skipping(trusted.signed_header, trusted.validators,
                                  target.signed_header, target.validators, **args)


def skip_args(chain: dict[str, Any]) -> dict[str, Any]:
    trusted, target = at(chain, chain["trusted"]), at(chain, chain["last_a"])
    return {"trusted": trusted.signed_header, "trusted_next_validators": trusted.validators,
            "untrusted": target.signed_header, "untrusted_validators": target.validators,
            "trusting_period": HOUR, "now": now_after(chain)}


SKIPPING: dict[str, tuple[Callable[[dict[str, Any], dict[str, Any]], None], type[Exception]]] = {
    "trusting period over": (lambda a, c: a.update(trusting_period=timedelta(seconds=1)),
                             comet.TrustExpired),
    "header from the future": (lambda a, c: a.update(now=datetime(2000, 1, 1, tzinfo=UTC),
                                                     trusting_period=timedelta(days=10**5)),
                               comet.InvalidHeader),
    "heights reversed": (lambda a, c: a.update(trusted=a["untrusted"], untrusted=a["trusted"],
                                               untrusted_validators=a["trusted_next_validators"]),
                         comet.InvalidHeader),
    "adjacent given to skipping": (
        lambda a, c: a.update(untrusted=at(c, c["trusted"] + 1).signed_header,
                              untrusted_validators=at(c, c["trusted"] + 1).validators),
        comet.InvalidHeader),
    "untrusted set not the header's": (
        lambda a, c: a.update(untrusted_validators=a["trusted_next_validators"]),
        comet.ValidatorsMismatch),
    "trusted set not the trusted header's": (
        lambda a, c: a.update(trusted_next_validators=at(c, c["target"]).validators),
        comet.ValidatorsMismatch),
    "trust level above one": (lambda a, c: a.update(trust_level=Fraction(4, 3)), ValueError),
    "trust level below a third": (lambda a, c: a.update(trust_level=Fraction(1, 4)),
                                  ValueError),
}


@pytest.mark.parametrize("name", sorted(SKIPPING))
def test_skipping_refusals(chain: dict[str, Any], name: str) -> None:
    change, error = SKIPPING[name]
    args = skip_args(chain)
    change(args, chain)
    with pytest.raises(error):
        comet.verify_skipping(**args)


def test_adjacent_refusals(chain: dict[str, Any]) -> None:
    before = at(chain, chain["change_a"] - 1)
    after = at(chain, chain["change_a"])
    later = at(chain, chain["change_a"] + 1)
    now = now_after(chain)
    comet.verify_adjacent(before.signed_header, after.signed_header, after.validators,
                          trusting_period=HOUR, now=now)
    with pytest.raises(comet.InvalidHeader, match="not adjacent"):
        comet.verify_adjacent(before.signed_header, later.signed_header, later.validators,
                              trusting_period=HOUR, now=now)
    # the old set, which the header before the change did not announce as next
    with pytest.raises(comet.ValidatorsMismatch) as e:
        comet.verify_adjacent(before.signed_header, after.signed_header, before.validators,
                              trusting_period=HOUR, now=now)
    assert e.value.field == "validators_hash"
    with pytest.raises(comet.TrustExpired):
        comet.verify_adjacent(before.signed_header, after.signed_header, after.validators,
                              trusting_period=timedelta(microseconds=1), now=now)


# --- malformed JSON: MalformedData, which says where -------------------------------------------
MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "height not a number": (edit(H + "height", lambda _: "ten"), "header.height"),
    "height zero": (edit(H + "height", lambda _: "0"), "header.height"),
    "time not RFC 3339": (edit(H + "time", lambda _: "yesterday"), "header.time"),
    "hash not hex": (edit(H + "data_hash", lambda _: "zz"), "header.data_hash"),
    "hash too short": (edit(H + "data_hash", lambda s: s[:-2]), "header.data_hash"),
    "proposer missing": (lambda d: d["signed_header"]["header"].pop("proposer_address"),
                         "header.proposer_address"),
    "signature not base64": (edit(C + "signatures.0.signature", lambda _: "!!"),
                             "commit.signatures[0].signature"),
    "unknown flag": (edit(C + "signatures.0.block_id_flag", lambda _: 7),
                     "commit.signatures[0].block_id_flag"),
    "absent with a signature": (edit(C + "signatures.0.block_id_flag", lambda _: 1),
                                "commit.signatures[0].block_id_flag"),
    "hex with a space": (edit(H + "app_hash", lambda s: s[:2] + " " + s[2:]), "header.app_hash"),
    "round negative": (edit(C + "round", lambda _: -1), "commit.round"),
    "commit for no block": (edit(C + "block_id", lambda _: {"hash": "", "parts": {
        "total": 0, "hash": ""}}), "commit.block_id"),
    "header not an object": (edit("signed_header.header", lambda _: []), "header"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_json_is_refused_with_where(chain: dict[str, Any], name: str) -> None:
    tamper, where = MALFORMED[name]
    data = raw(chain, chain["trusted"])
    tamper(data)
    with pytest.raises(comet.MalformedData) as e:
        comet.SignedHeader.from_json(data["signed_header"])
    assert e.value.where == "signed_header." + where
    assert isinstance(e.value, ValueError)


VALIDATORS_MALFORMED: dict[str, tuple[Callable[[list[Any]], None], str]] = {
    "secp256k1 key": (lambda v: v[0]["pub_key"].update(type="tendermint/PubKeySecp256k1"),
                      "validators[0].pub_key.type"),
    "short key": (lambda v: v[0]["pub_key"].update(value=base64.b64encode(b"k").decode()),
                  "validators[0].pub_key.value"),
    "address of another key": (lambda v: v[0].update(address=v[1]["address"]),
                               "validators[0].address"),
    "zero power": (lambda v: v[0].update(voting_power="0"), "validators[0].voting_power"),
    "twice the same": (lambda v: v.append(v[0]), "validators"),
    "empty": (lambda v: v.clear(), "validators"),
}


@pytest.mark.parametrize("name", sorted(VALIDATORS_MALFORMED))
def test_malformed_validator_sets_are_refused(chain: dict[str, Any], name: str) -> None:
    tamper, where = VALIDATORS_MALFORMED[name]
    validators = raw(chain, chain["trusted"])["validators"]
    tamper(validators)
    with pytest.raises(comet.MalformedData) as e:
        comet.ValidatorSet.from_json(validators)
    assert e.value.where == where


# --- block id flags and the next-validators rule, on headers signed here ----------------------
KEYS = [SigningKey.from_seed(bytes([i + 1]) * 32) for i in range(4)]
SET = comet.ValidatorSet(tuple(comet.Validator(k.public_key, 10) for k in KEYS))
T0 = comet.Timestamp.parse("2026-01-01T00:00:00.5Z")
A, C_, N = comet.BlockIdFlag.ABSENT, comet.BlockIdFlag.COMMIT, comet.BlockIdFlag.NIL


def make_header(height: int, validators: comet.ValidatorSet = SET,
                next_validators: comet.ValidatorSet = SET) -> comet.Header:
    return comet.Header(
        version_block=11, version_app=1, chain_id="flags", height=height,
        time=T0.plus(timedelta(seconds=height)),
        last_block_id=comet.BlockId(sha(f"block {height - 1}"), 1, sha("parts")),
        last_commit_hash=b"", data_hash=b"", validators_hash=comet.validators_hash(validators),
        next_validators_hash=comet.validators_hash(next_validators), consensus_hash=b"",
        app_hash=b"", last_results_hash=b"", evidence_hash=b"",
        proposer_address=comet.address_of(KEYS[0].public_key))


def make_signed(header: comet.Header, flags: list[comet.BlockIdFlag] | None = None, *,
                bad: int | None = None, keys: list[SigningKey] = KEYS) -> comet.SignedHeader:
    """``header`` with a commit signed by ``keys`` (one entry each, flags as given)."""
    block_id = comet.BlockId(comet.header_hash(header), 1, sha("parts"))
    entries = []
    for i, (key, flag) in enumerate(zip(keys, flags or [C_] * len(keys), strict=True)):
        if flag is A:
            entries.append(comet.CommitSig(flag, b"", comet.ZERO_TIME, b""))
            continue
        stamp = header.time.plus(timedelta(milliseconds=i + 1))
        signed_id = block_id if flag is C_ else None
        signature = key.sign(comet.canonical_vote_bytes("flags", header.height, 0, signed_id,
                                                        stamp))
        if i == bad:
            signature = bytes([signature[0] ^ 1]) + signature[1:]
        entries.append(comet.CommitSig(flag, comet.address_of(key.public_key), stamp, signature))
    return comet.SignedHeader(header, comet.Commit(header.height, 0, block_id, tuple(entries)))


FLAGS: dict[str, tuple[list[comet.BlockIdFlag], int | None, type[Exception] | None]] = {
    "all commit": ([C_, C_, C_, C_], None, None),
    "one absent": ([C_, C_, C_, A], None, None),
    "one nil, signed over no block": ([C_, C_, N, C_], None, None),
    "two nil: not counted": ([C_, N, N, C_], None, comet.NotEnoughPower),
    "two absent": ([A, C_, A, C_], None, comet.NotEnoughPower),
    "a nil vote's bad signature": ([C_, C_, C_, N], 3, comet.BadSignature),
    "a commit vote's bad signature": ([C_, C_, C_, A], 0, comet.BadSignature),
}


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_block_id_flag_rules(name: str) -> None:
    flags, bad, error = FLAGS[name]
    signed = make_signed(make_header(7), flags, bad=bad)
    if error is None:
        comet.verify_signed_header("flags", signed, SET)
    else:
        with pytest.raises(error):
            comet.verify_signed_header("flags", signed, SET)


def test_light_verification_ignores_nil_votes_it_does_not_count() -> None:
    """CometBFT's VerifyCommitLight skips all but COMMIT entries, so a bad nil signature does
    not matter to adjacent verification, while VerifyCommit (every non-absent entry) refuses
    it."""
    trusted, signed = make_signed(make_header(6)), make_signed(make_header(7), [C_, C_, C_, N],
                                                               bad=3)
    comet.verify_adjacent(trusted, signed, SET, trusting_period=HOUR, now=T0.plus(HOUR))
    with pytest.raises(comet.BadSignature):
        comet.verify_signed_header("flags", signed, SET)


def test_next_validators_rule_for_adjacent_headers() -> None:
    """Header 6 announces a new set; a header 7 signed by the old set, naming the old set, is
    refused for that alone."""
    new_set = comet.ValidatorSet(tuple(comet.Validator(k.public_key, 5) for k in KEYS))
    trusted = make_signed(make_header(6, next_validators=new_set))
    forged = make_signed(make_header(7))
    comet.verify_signed_header("flags", forged, SET)  # in itself, it holds
    with pytest.raises(comet.ValidatorsMismatch) as e:
        comet.verify_adjacent(trusted, forged, SET, trusting_period=HOUR, now=T0.plus(HOUR))
    assert e.value.field == "validators_hash" and "announced" in e.value.reason
    honest = make_signed(make_header(7, new_set))
    comet.verify_adjacent(trusted, honest, new_set, trusting_period=HOUR, now=T0.plus(HOUR))


def test_commit_shape_is_checked() -> None:
    commit = make_signed(make_header(7)).commit
    with pytest.raises(comet.InvalidCommit, match="height 7, not 8"):
        comet.verify_commit("flags", SET, commit.block_id, 8, commit)
    with pytest.raises(comet.InvalidCommit, match="signs block"):
        comet.verify_commit("flags", SET, comet.BlockId(sha("x"), 1, sha("parts")), 7, commit)
    small = comet.ValidatorSet(SET.validators[:3])
    with pytest.raises(comet.InvalidCommit, match="4 signatures for a set of 3"):
        comet.verify_commit("flags", small, commit.block_id, 7, commit)


def test_a_trusted_validator_signing_twice_is_refused() -> None:
    """Skipping matches a trusted set's validators by address: one of them appearing twice
    in the new commit must not count twice."""
    keys = [*KEYS, KEYS[0]]
    bigger = comet.ValidatorSet((*SET.validators, comet.Validator(
        SigningKey.from_seed(bytes(32)).public_key, 10)))
    trusted = make_signed(make_header(3))
    twice = make_signed(make_header(7, bigger, bigger), keys=keys)
    with pytest.raises(comet.InvalidCommit, match="signed twice"):
        comet.verify_skipping(trusted, SET, twice, bigger, trusting_period=HOUR,
                              now=T0.plus(HOUR))


# --- properties --------------------------------------------------------------------------------
timestamps = st.builds(comet.Timestamp, st.integers(-62135596800, 253402300799),
                       st.integers(0, 10**9 - 1))


@given(timestamps)
def test_times_round_trip_through_rfc3339(moment: comet.Timestamp) -> None:
    assert comet.Timestamp.parse(str(moment)) == moment


def test_times_parse_offsets_and_refuse_nonsense() -> None:
    assert comet.Timestamp.parse("2026-01-01T02:00:00.000000001+02:00") == \
        comet.Timestamp.parse("2026-01-01T00:00:00.000000001Z")
    assert str(comet.ZERO_TIME) == "0001-01-01T00:00:00Z"
    for text in ("2026-02-30T00:00:00Z", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00",
                 "2026-01-01T00:00:00.1234567890Z"):
        with pytest.raises(ValueError):
            comet.Timestamp.parse(text)


def rfc6962_root(items: list[bytes]) -> bytes:
    """CometBFT's HashFromByteSlices, written from its definition (recursive split)."""
    if not items:
        return hashlib.sha256(b"").digest()
    if len(items) == 1:
        return hashlib.sha256(b"\x00" + items[0]).digest()
    k = 1 << ((len(items) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + rfc6962_root(items[:k]) + rfc6962_root(items[k:])).digest()


@given(st.lists(st.binary(max_size=40), max_size=40))
def test_the_project_tree_is_cometbfts_tree(items: list[bytes]) -> None:
    assert log.root([log.leaf_hash(i) for i in items]) == rfc6962_root(items)


@given(st.text(max_size=50).filter(lambda s: len(s.encode()) <= 50), st.integers(1, 2**63 - 1),
       st.integers(0, 2**31 - 1), timestamps, st.booleans())
def test_sign_bytes_decode_back_to_the_vote(chain_id: str, height: int, round: int,
                                            moment: comet.Timestamp, for_block: bool) -> None:
    from tendermint.types import canonical_pb2

    block_id = comet.BlockId(sha(chain_id), 3, sha("p")) if for_block else None
    data = comet.canonical_vote_bytes(chain_id, height, round, block_id, moment)
    length, shift, i = 0, 0, 0
    while True:
        length |= (data[i] & 0x7F) << shift
        shift, i = shift + 7, i + 1
        if data[i - 1] < 0x80:
            break
    assert length == len(data) - i
    vote = canonical_pb2.CanonicalVote.FromString(data[i:])
    assert (vote.type, vote.height, vote.round, vote.chain_id) == (2, height, round, chain_id)
    assert (vote.timestamp.seconds, vote.timestamp.nanos) == (moment.seconds, moment.nanos)
    assert vote.HasField("timestamp") and vote.HasField("block_id") == for_block


def test_every_header_field_is_a_leaf() -> None:
    header = make_header(7)
    leaves = comet.header_leaves(header)
    assert len(leaves) == 14
    assert leaves[5] == b"" and leaves[13] == b"\x0a\x14" + header.proposer_address


# --- real processes ----------------------------------------------------------------------------
needs_cometbft = pytest.mark.skipif(not COMETBFT.exists(),
                                    reason="build CometBFT first: scripts/build-engine.sh .venv")


def configure(home: Path, peers: str = "") -> None:
    """Fast blocks, loopback peers."""
    config = home / "config" / "config.toml"
    text = config.read_text()
    for key, value in {"timeout_commit": '"100ms"', "timeout_propose": '"1s"',
                       "create_empty_blocks_interval": '"0s"', "persistent_peers": f'"{peers}"',
                       "allow_duplicate_ip": "true", "addr_book_strict": "false",
                       "pex": "false"}.items():
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert count == 1, key
    config.write_text(text)


class CometNode:
    """One ``cometbft node --proxy_app=kvstore`` on 127.0.0.1 (stopped by its own pid)."""

    def __init__(self, home: Path) -> None:
        self.home, self.rpc, self.p2p = home, free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.rpc}"
        self.proc: subprocess.Popen[bytes] | None = None

    def node_id(self) -> str:
        key = json.loads((self.home / "config" / "node_key.json").read_text())
        public = base64.b64decode(key["priv_key"]["value"])[32:]
        return hashlib.sha256(public).digest()[:20].hex()

    def public_key(self) -> str:
        key = json.loads((self.home / "config" / "priv_validator_key.json").read_text())
        return str(key["pub_key"]["value"])

    def start(self) -> None:
        with open(self.home / "node.log", "ab") as out:
            self.proc = subprocess.Popen(
                [str(COMETBFT), "node", "--home", str(self.home), "--proxy_app=kvstore",
                 "--rpc.laddr", f"tcp://127.0.0.1:{self.rpc}",
                 "--p2p.laddr", f"tcp://127.0.0.1:{self.p2p}", "--log_level", "error"],
                stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def get(self, path: str, **params: Any) -> Any:
        body = httpx.get(f"{self.url}{path}", params=params, timeout=20).json()
        assert "result" in body, body
        return body["result"]

    def height(self) -> int:
        try:
            return int(self.get("/status")["sync_info"]["latest_block_height"])
        except (httpx.HTTPError, ValueError):
            return 0

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                log_tail = (self.home / "node.log").read_text()[-2000:]
                raise RuntimeError(f"cometbft exited: {log_tail}")
            if check():
                return
            time.sleep(0.1)
        raise TimeoutError(f"waited {timeout}s for {what}")

    def wait_for_height(self, height: int, timeout: float = 30) -> int:
        self.wait_for(lambda: self.height() >= height, f"height {height}", timeout)
        return self.height()

    def powers(self, height: int) -> list[int]:
        result = self.get("/validators", height=height, per_page=100)
        return [int(v["voting_power"]) for v in result["validators"]]

    def light_json(self, height: int) -> dict[str, Any]:
        return {"signed_header": self.get("/commit", height=height)["signed_header"],
                "validators": self.get("/validators", height=height, per_page=100)["validators"]}

    def broadcast(self, tx: str, commit: bool = True) -> int:
        """``broadcast_tx_commit`` (the height the transaction was committed at) or, with
        ``commit=False``, ``broadcast_tx_sync`` (0)."""
        if not commit:
            assert self.get("/broadcast_tx_sync", tx="0x" + tx.encode().hex())["code"] == 0
            return 0
        result = self.get("/broadcast_tx_commit", tx="0x" + tx.encode().hex())
        assert result["check_tx"]["code"] == 0 and result["tx_result"]["code"] == 0, result
        return int(result["height"])


def doc_example() -> dict[str, Any]:
    """The Python example of docs/light-client.md, executed: its names."""
    text = (REPO / "docs" / "light-client.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert code is not None, "docs/light-client.md lost its example"
    names: dict[str, Any] = {}
    exec(compile(code[1], "docs/light-client.md", "exec"), names)  # noqa: S102 (our own doc)
    return names


def test_the_doc_example_defines_what_the_doc_says() -> None:
    example = doc_example()
    assert callable(example["light_block"]) and callable(example["follow"])


@pytest.fixture
def single_node(tmp_path: Path) -> Iterator[CometNode]:
    home = tmp_path / "comet"
    subprocess.run([str(COMETBFT), "init", "--home", str(home)], check=True,
                   capture_output=True, timeout=30)
    configure(home)
    node = CometNode(home)
    try:
        node.start()
        yield node
    finally:
        node.stop()


@needs_cometbft
@pytest.mark.processes
@pytest.mark.timeout(60)
def test_a_real_node_is_verified_and_tampered_copies_refused(single_node: CometNode) -> None:
    node = single_node
    top = node.wait_for_height(8)
    chain_id = node.get("/status")["node_info"]["network"]
    blocks = {h: block(node.light_json(h)) for h in range(2, top)}
    for h, light in blocks.items():
        reported = node.get("/block", height=h)["block_id"]["hash"]
        assert comet.header_hash(light.signed_header.header).hex().upper() == reported
        comet.verify_signed_header(chain_id, light.signed_header, light.validators)
    now = datetime.now(UTC)
    for h in range(2, top - 1):
        comet.verify_adjacent(blocks[h].signed_header, blocks[h + 1].signed_header,
                              blocks[h + 1].validators, trusting_period=HOUR, now=now)
    comet.verify_skipping(blocks[2].signed_header, blocks[2].validators,
                          blocks[top - 1].signed_header, blocks[top - 1].validators,
                          trusting_period=HOUR, now=now)
    example = doc_example()  # docs/light-client.md, run as written
    trusted = example["light_block"](node.url, 2)
    assert trusted == blocks[2]
    assert example["follow"](node.url, trusted, top - 1).signed_header == \
        blocks[top - 1].signed_header

    data = node.light_json(top - 1)
    edit(H + "app_hash", flip_hex)(data)
    with pytest.raises(comet.HashMismatch):
        comet.verify_signed_header(chain_id, block(data).signed_header, block(data).validators)
    data = node.light_json(top - 1)
    edit(C + "signatures.0.signature", flip_b64)(data)
    with pytest.raises(comet.BadSignature):
        comet.verify_adjacent(blocks[top - 2].signed_header, block(data).signed_header,
                              block(data).validators, trusting_period=HOUR, now=now)


def run_set_change(root: Path) -> dict[str, Any]:
    """Four validators of power 1 on 127.0.0.1; validator 0 raised to 3 (change A), then the
    other three removed (change B). Checks the verifier along the way; returns the capture
    (every height from the trusted one to the target, as the RPC answered)."""
    subprocess.run([str(COMETBFT), "testnet", "--v", "4", "--o", str(root),
                    "--populate-persistent-peers=false"], check=True, capture_output=True,
                   timeout=30)
    nodes = [CometNode(root / f"node{i}") for i in range(4)]
    for i, node in enumerate(nodes):
        configure(node.home, ",".join(f"{p.node_id()}@127.0.0.1:{p.p2p}"
                                      for j, p in enumerate(nodes) if j != i))
    try:
        for node in nodes:
            node.start()
        first = nodes[0]
        trusted = first.wait_for_height(3, timeout=40) - 1
        chain_id = first.get("/status")["node_info"]["network"]
        key = first.public_key()

        committed = first.broadcast(f"val=ed25519!{key}!3")
        first.wait_for_height(committed + 3)  # updates returned at H take effect at H + 2
        for other in nodes[1:]:
            first.broadcast(f"val=ed25519!{other.public_key()}!0", commit=False)
        first.wait_for(lambda: first.powers(first.height()) == [3], "the set of one", 20)
        target = first.wait_for_height(first.height() + 2) - 1
        powers = {h: first.powers(h) for h in range(trusted, target + 1)}
        assert powers[committed + 1] == [1, 1, 1, 1] and powers[committed + 2] == [3, 1, 1, 1]
        capture = {
            "chain_id": chain_id, "trusted": trusted, "target": target,
            "change_a": min(h for h, p in powers.items() if p[0] == 3),
            "last_a": max(h for h, p in powers.items() if p == [3, 1, 1, 1]),
            "change_b": min(h for h, p in powers.items() if p == [3]),
            "blocks": {str(h): first.light_json(h) for h in range(trusted, target + 1)}}
        check_set_change(capture, first.url)
    finally:
        for node in nodes:
            node.stop()
    return capture


def check_set_change(capture: dict[str, Any], url: str) -> None:
    """Skipping across change A holds at trust level 1/3; across change B it lacks trust,
    and ``verify_to_height`` against the live RPC bisects its way there."""
    old, new = block(capture["blocks"][str(capture["trusted"])]), \
        block(capture["blocks"][str(capture["target"])])
    middle = block(capture["blocks"][str(capture["last_a"])])
    now = datetime.now(UTC)
    comet.verify_skipping(old.signed_header, old.validators, middle.signed_header,
                          middle.validators, trusting_period=HOUR, now=now)
    with pytest.raises(comet.NotEnoughTrust):
        comet.verify_skipping(old.signed_header, old.validators, new.signed_header,
                              new.validators, trusting_period=HOUR, now=now)
    asked: list[str] = []
    hooks = {"request": [lambda request: asked.append(request.url.path)]}
    with httpx.Client(base_url=url, timeout=10, event_hooks=hooks) as client:
        got = comet.verify_to_height(client, old, capture["target"], trusting_period=HOUR)
    assert got.signed_header == new.signed_header and got.validators.total_power == 3
    assert asked.count("/commit") > 1, "a skip straight to the target lacks trust: bisect"


@needs_cometbft
@pytest.mark.processes
@pytest.mark.timeout(60)
def test_a_real_testnet_changes_its_set_and_skipping_follows(tmp_path: Path) -> None:
    capture = run_set_change(tmp_path / "testnet")
    assert capture["trusted"] < capture["change_a"] <= capture["last_a"] < capture["change_b"]


if __name__ == "__main__":  # .venv/bin/python -m tests.test_comet_light capture
    import tempfile

    if sys.argv[1:] != ["capture"]:
        sys.exit("usage: python -m tests.test_comet_light capture")
    with tempfile.TemporaryDirectory() as tmp:
        captured = run_set_change(Path(tmp) / "testnet")
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(captured, indent=1, sort_keys=True) + "\n")
    print(f"wrote {DATA}: heights {captured['trusted']}..{captured['target']}")
