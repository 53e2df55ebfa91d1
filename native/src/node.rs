//! Nodes of the sparse Merkle tree: their hashes, their stored bytes, and the check of
//! stored bytes against the hash a parent commits to. The same rules as
//! `medledger.merkle.sparse` (`_decode`, `leaf_hash`, `node_hash`, `_NODE_PACK`).

use sha2::{Digest, Sha256};

/// A 32-byte hash, key or value hash.
pub type Hash = [u8; 32];

/// The hash of an empty subtree.
pub const ZERO: Hash = [0; 32];

const LEAF_KIND: u8 = 1;
const NODE_KIND: u8 = 2;
const LEAF_SIZE: usize = 65;
const NODE_SIZE: usize = 81;
const LEAF_PREFIX: &[u8] = b"medledger:smt-leaf\x00";
const NODE_PREFIX: &[u8] = b"medledger:smt-node\x00";

/// A decoded node: a leaf, or an internal node with its children's hashes and ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Leaf {
        key: Hash,
        value: Hash,
    },
    Inner {
        left: Hash,
        right: Hash,
        left_id: u64,
        right_id: u64,
    },
}

/// Why stored bytes are not the node a parent commits to (fields of `TamperedNode`).
#[derive(Debug)]
pub struct Tampered {
    pub got: Option<Hash>,
    pub reason: &'static str,
}

fn tagged(prefix: &[u8], a: &[u8], b: &[u8]) -> Hash {
    Sha256::new()
        .chain_update(prefix)
        .chain_update(a)
        .chain_update(b)
        .finalize()
        .into()
}

/// `tagged_hash(SMT_LEAF, key || value)`.
pub fn leaf_hash(key: &Hash, value: &Hash) -> Hash {
    tagged(LEAF_PREFIX, key, value)
}

/// `tagged_hash(SMT_NODE, left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    tagged(NODE_PREFIX, left, right)
}

/// The stored bytes of a leaf: kind, key, value hash.
pub fn encode_leaf(key: &Hash, value: &Hash) -> [u8; LEAF_SIZE] {
    let mut out = [0; LEAF_SIZE];
    out[0] = LEAF_KIND;
    out[1..33].copy_from_slice(key);
    out[33..].copy_from_slice(value);
    out
}

/// The stored bytes of an internal node: kind, hashes, ids big-endian (0 for empty).
pub fn encode_inner(left: &Hash, right: &Hash, left_id: u64, right_id: u64) -> [u8; NODE_SIZE] {
    let mut out = [0; NODE_SIZE];
    out[0] = NODE_KIND;
    out[1..33].copy_from_slice(left);
    out[33..65].copy_from_slice(right);
    out[65..73].copy_from_slice(&left_id.to_be_bytes());
    out[73..].copy_from_slice(&right_id.to_be_bytes());
    out
}

fn hash_at(raw: &[u8], at: usize) -> Hash {
    raw[at..at + 32].try_into().expect("32 bytes")
}

fn id_at(raw: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(raw[at..at + 8].try_into().expect("8 bytes"))
}

/// Decode stored bytes and check them against `expected`, as `_decode` does: the shape
/// first, then for an internal node the emptiness of each child, then the hash.
pub fn decode(raw: &[u8], expected: &Hash) -> Result<Node, Tampered> {
    let (node, got) = if raw.len() == LEAF_SIZE && raw[0] == LEAF_KIND {
        let (key, value) = (hash_at(raw, 1), hash_at(raw, 33));
        (Node::Leaf { key, value }, leaf_hash(&key, &value))
    } else if raw.len() == NODE_SIZE && raw[0] == NODE_KIND {
        let (left, right) = (hash_at(raw, 1), hash_at(raw, 33));
        let (left_id, right_id) = (id_at(raw, 65), id_at(raw, 73));
        let got = node_hash(&left, &right);
        if (left_id == 0) != (left == ZERO) || (right_id == 0) != (right == ZERO) {
            let reason = "child id and hash disagree on emptiness";
            return Err(Tampered {
                got: Some(got),
                reason,
            });
        }
        (
            Node::Inner {
                left,
                right,
                left_id,
                right_id,
            },
            got,
        )
    } else {
        return Err(Tampered {
            got: None,
            reason: "not a node encoding",
        });
    };
    if got != *expected {
        return Err(Tampered {
            got: Some(got),
            reason: "hash mismatch",
        });
    }
    Ok(node)
}
