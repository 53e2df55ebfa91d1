"""The RFC 9162 log tree: published vectors, pymerkle as an independent peer, properties."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.merkle import log
from medledger.merkle.log import (
    EMPTY_ROOT,
    Frontier,
    LogTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# The certificate-transparency test inputs and the roots of every prefix (RFC 6962 tests,
# as published in transparency-dev/merkle proof/verify_test.go).
CT_INPUTS = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_LEAVES = [leaf_hash(d) for d in CT_INPUTS]
CT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
# (0-based leaf index, tree size) -> audit path, leaf level first.
CT_INCLUSION = {
    (0, 1): [],
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    (1, 5): [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}
# (old size, new size) -> consistency proof.
CT_CONSISTENCY = {
    (1, 1): [],
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
    (6, 7): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}


def _hexes(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(b"leaf %d" % i) for i in range(n)]


def test_hash_prefixes_are_the_rfc_ones() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        log.node_hash(b"a" * 32, b"b" * 32)
        == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT


@pytest.mark.parametrize("size", sorted(CT_ROOTS))
def test_ct_roots_of_every_prefix(size: int) -> None:
    assert root(CT_LEAVES[:size]).hex() == CT_ROOTS[size]
    assert LogTree(CT_LEAVES[:size]).root().hex() == CT_ROOTS[size]
    assert LogTree(CT_LEAVES).root(size).hex() == CT_ROOTS[size]
    frontier = Frontier()
    for h in CT_LEAVES[:size]:
        frontier.append(h)
    assert frontier.root().hex() == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_ct_inclusion_proofs(index: int, size: int) -> None:
    want = CT_INCLUSION[(index, size)]
    assert _hexes(inclusion_proof(CT_LEAVES[:size], index)) == want
    assert _hexes(LogTree(CT_LEAVES).inclusion_proof(index, size)) == want
    proof = [bytes.fromhex(h) for h in want]
    assert verify_inclusion(CT_LEAVES[index], index, size, proof, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("old", "new"), sorted(CT_CONSISTENCY))
def test_ct_consistency_proofs(old: int, new: int) -> None:
    want = CT_CONSISTENCY[(old, new)]
    assert _hexes(consistency_proof(CT_LEAVES[:new], old)) == want
    assert _hexes(LogTree(CT_LEAVES).consistency_proof(old, new)) == want
    proof = [bytes.fromhex(h) for h in want]
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, proof)
    if proof:
        assert not verify_consistency(old, new, new_root, old_root, proof)


def test_roots_and_inclusion_agree_with_pymerkle() -> None:
    """pymerkle 7 hashes per RFC 6962; its indexes are 1-based, path[0] is the leaf itself."""
    from pymerkle import InmemoryTree

    peer = InmemoryTree(algorithm="sha256")
    data = [b"entry %d" % i for i in range(41)]
    hashes = [leaf_hash(d) for d in data]
    tree = LogTree()
    for n, d in enumerate(data, start=1):
        peer.append_entry(d)
        tree.append(hashes[n - 1])
        assert tree.root() == peer.get_root() == root(hashes[:n])
    for index in range(len(data)):
        peer_path = peer.prove_inclusion(index + 1).path
        assert peer_path[0] == hashes[index]
        assert inclusion_proof(hashes, index) == list(peer_path[1:])


def test_root_is_fast_for_ten_thousand_leaves() -> None:
    hashes = _leaves(10_000)
    assert root(hashes) == LogTree(hashes).root()


@pytest.mark.parametrize("size", range(1, 71))
def test_every_inclusion_proof_verifies(size: int) -> None:
    hashes = _leaves(size)
    tree = LogTree(hashes)
    top = root(hashes)
    for index in range(size):
        proof = inclusion_proof(hashes, index)
        assert proof == tree.inclusion_proof(index)
        assert verify_inclusion(hashes[index], index, size, proof, top)
        if size > 1:
            assert not verify_inclusion(hashes[index - 1], index, size, proof, top)
            assert not verify_inclusion(hashes[index], index - 1, size, proof, top)


@pytest.mark.parametrize("size", range(1, 71))
def test_every_consistency_proof_verifies(size: int) -> None:
    hashes = _leaves(size)
    tree = LogTree(hashes)
    new_root = root(hashes)
    for old in range(0, size + 1):
        proof = consistency_proof(hashes, old)
        assert proof == tree.consistency_proof(old)
        assert verify_consistency(old, size, root(hashes[:old]), new_root, proof)


def test_frontier_equals_root_for_every_prefix_and_round_trips() -> None:
    hashes = _leaves(300)
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT
    for n, h in enumerate(hashes, start=1):
        frontier.append(h)
        assert frontier.size == n
        assert len(frontier.to_list()) == bin(n).count("1")
        assert frontier.root() == root(hashes[:n])
        assert Frontier.from_list(n, frontier.to_list()) == frontier
    restored = Frontier.from_list(frontier.size, frontier.to_list())
    copy = frontier.copy()
    extra = leaf_hash(b"one more")
    restored.append(extra)
    assert restored.root() == root([*hashes, extra])
    assert copy.root() == frontier.root() == root(hashes)


@pytest.mark.parametrize(
    ("size", "hashes"),
    [(3, [b"\x00" * 32]), (2, [b"\x00" * 32, b"\x00" * 32]), (1, [b"short"]), (-1, [])],
)
def test_frontier_from_list_refuses_what_cannot_be(size: int, hashes: list[bytes]) -> None:
    with pytest.raises(ValueError):
        Frontier.from_list(size, hashes)


def test_bad_arguments_to_provers_raise() -> None:
    hashes = _leaves(4)
    with pytest.raises(IndexError):
        inclusion_proof(hashes, 4)
    with pytest.raises(IndexError):
        LogTree(hashes).inclusion_proof(-1)
    with pytest.raises(ValueError):
        consistency_proof(hashes, 5)
    with pytest.raises(ValueError):
        LogTree(hashes).root(5)
    with pytest.raises(ValueError):
        LogTree().append(b"not 32 bytes")


@pytest.mark.parametrize(
    "args",
    [
        ("leaf", 0, 1, [], "root"),  # not hashes
        (b"\x00" * 32, 0, 0, [], b"\x00" * 32),  # empty tree has no leaves
        (b"\x00" * 32, 1, 1, [], b"\x00" * 32),  # index == size
        (b"\x00" * 32, -1, 1, [], b"\x00" * 32),
        (b"\x00" * 32, True, 2, [b"\x00" * 32], b"\x00" * 32),  # bool is not an index
        (b"\x00" * 32, 0, 2, None, b"\x00" * 32),
        (b"\x00" * 32, 0, 2, [b"\x00" * 31], b"\x00" * 32),
        (b"\x00" * 32, 0, 2, [42], b"\x00" * 32),
    ],
)
def test_verify_inclusion_says_no_to_garbage(args: tuple) -> None:  # type: ignore[type-arg]
    assert verify_inclusion(*args) is False


def test_verify_consistency_edge_cases() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, a, [])
    assert not verify_consistency(0, 5, a, a, [])  # size 0 must carry the empty root
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    assert verify_consistency(1, 1, a, a, [])
    assert not verify_consistency(1, 1, a, b, [])
    assert not verify_consistency(1, 1, a, a, [a])
    assert not verify_consistency(2, 1, a, b, [])  # time travel
    assert not verify_consistency(1, 2, a, b, [])  # empty proof
    assert not verify_consistency(1, 2, a, log.node_hash(a, b), "not a list")  # type: ignore[arg-type]
    assert verify_consistency(1, 2, a, log.node_hash(a, b), [b])


_ALTERATIONS = st.sampled_from(["element", "index", "size", "root", "leaf", "drop", "extra"])


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 70), data=st.data(), how=_ALTERATIONS)
def test_any_altered_inclusion_proof_fails(size: int, data: st.DataObject, how: str) -> None:
    hashes = _leaves(size)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(hashes, index)
    args: list[Any] = [hashes[index], index, size, proof, root(hashes)]
    assert verify_inclusion(*args)
    if how == "element" and proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        proof[at] = _flip(proof[at], bit)
    elif how == "index":
        args[1] = data.draw(st.integers(0, size + 3).filter(lambda i: i != index))
    elif how == "size":
        args[2] = data.draw(st.integers(0, 2 * size + 3).filter(lambda s: s != size))
        # RFC 9162 proofs do not bind the size (the signed tree head does): a size whose
        # path takes the same turns recomputes the same root, and must verify.
        if index < args[2] and _turns(index, args[2]) == _turns(index, size):
            assert verify_inclusion(*args)
            return
    elif how == "root":
        args[4] = _flip(args[4], data.draw(st.integers(0, 255)))
    elif how == "leaf":
        args[0] = _flip(args[0], data.draw(st.integers(0, 255)))
    elif how == "drop" and proof:
        del proof[data.draw(st.integers(0, len(proof) - 1))]
    elif how == "extra":
        proof.insert(data.draw(st.integers(0, len(proof))), leaf_hash(b"extra"))
    else:
        return
    assert not verify_inclusion(*args)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(2, 70), data=st.data(), how=_ALTERATIONS)
def test_any_altered_consistency_proof_fails(size: int, data: st.DataObject, how: str) -> None:
    hashes = _leaves(size)
    old = data.draw(st.integers(1, size - 1))
    proof = consistency_proof(hashes, old)
    args: list[Any] = [old, size, root(hashes[:old]), root(hashes), proof]
    assert verify_consistency(*args)
    if how == "element":
        at = data.draw(st.integers(0, len(proof) - 1))
        proof[at] = _flip(proof[at], data.draw(st.integers(0, 255)))
    elif how == "index":  # the old size
        args[0] = data.draw(st.integers(0, size).filter(lambda s: s != old))
    elif how == "size":
        args[1] = data.draw(st.integers(old, 2 * size + 3).filter(lambda s: s != size))
        if _subproof_turns(old, args[1]) == _subproof_turns(old, size):
            assert verify_consistency(*args)  # same turns, same root: see the inclusion case
            return
    elif how == "root":
        args[3] = _flip(args[3], data.draw(st.integers(0, 255)))
    elif how == "leaf":  # the old root
        args[2] = _flip(args[2], data.draw(st.integers(0, 255)))
    elif how == "drop":
        del proof[data.draw(st.integers(0, len(proof) - 1))]
    else:
        proof.insert(data.draw(st.integers(0, len(proof))), leaf_hash(b"extra"))
    assert not verify_consistency(*args)


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def _turns(index: int, size: int) -> list[str]:
    """The turns of RFC 9162 PATH(index, D[size]) from the root, by its recursive definition."""
    turns = []
    while size > 1:
        k = _split(size)
        if index < k:
            turns.append("left")
            size = k
        else:
            turns.append("right")
            index, size = index - k, size - k
    return turns


def _subproof_turns(old: int, size: int) -> list[object]:
    """The branches SUBPROOF(old, D[size], true) takes, by its recursive definition."""
    turns: list[object] = []
    complete = True
    while old != size:
        k = _split(size)
        if old <= k:
            turns.append("left")
            size = k
        else:
            turns.append("right")
            old, size, complete = old - k, size - k, False
    turns.append(complete)
    return turns


def test_size_is_bound_only_through_the_turns_of_the_path() -> None:
    """Documents the RFC behaviour the alteration tests rely on, exhaustively to 70 leaves."""
    hashes = _leaves(140)
    for size in range(1, 71):
        top = root(hashes[:size])
        for index in range(size):
            proof = inclusion_proof(hashes[:size], index)
            for other in range(size + 1, 2 * size + 1):
                same = _turns(index, other) == _turns(index, size)
                assert verify_inclusion(hashes[index], index, other, proof, top) is same
