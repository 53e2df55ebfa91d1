//! One batch update of the tree, step for step the Python reference
//! (`medledger.merkle.sparse._Batch`): the same nodes read in the same order, the same
//! cache touches, the same new rows with ids allocated in the same order, children first.
//!
//! Keys compare as big-endian 256-bit integers, which for `[u8; 32]` is the plain array
//! order, so a bisect of the Python code is a `partition_point` here.

use crate::cache::Lru;
use crate::node::{encode_inner, encode_leaf, leaf_hash, node_hash, Hash, Node, ZERO};

/// A depth of 256 was reached below an internal node: a malformed tree whose hashes check
/// out. The reference fails there indexing its table of 256 masks (an `IndexError`).
pub struct TooDeep;

/// Where nodes come from: the store, each node checked against its parent's hash.
pub trait Reader {
    type Error: From<TooDeep>;

    /// The node `id`, read and checked against `expected`.
    fn read(&mut self, id: u64, expected: &Hash) -> Result<Node, Self::Error>;
}

/// The new bytes of one node.
pub enum Row {
    Leaf([u8; 65]),
    Inner([u8; 81]),
}

impl Row {
    /// The bytes to store.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Row::Leaf(raw) => raw,
            Row::Inner(raw) => raw,
        }
    }
}

/// A subtree in flight: id, hash, and whether it is a leaf when known without a read.
#[derive(Clone, Copy)]
struct Ref {
    id: u64,
    hash: Hash,
    leaf: Option<bool>,
}

const EMPTY: Ref = Ref {
    id: 0,
    hash: ZERO,
    leaf: Some(false),
};

/// A key a fresh subtree will hold; `reuse` is the stored leaf that already holds it.
struct Entry {
    key: Hash,
    value: Hash,
    reuse: Option<(u64, Hash)>,
}

type Inner = (Hash, Hash, u64, u64);

/// New rows `(id, bytes)`, children before parents.
pub type Rows = Vec<(u64, Row)>;

/// Where a walk down one key's path went: the internal nodes passed, then the id and hash
/// where it ended, and the leaf there if it ended at one.
type Walk = (Vec<Inner>, u64, Hash, Option<(Hash, Hash)>);

fn bit(key: &Hash, depth: usize) -> Result<bool, TooDeep> {
    if depth >= 256 {
        return Err(TooDeep);
    }
    Ok(key[depth >> 3] & (0x80 >> (depth & 7)) != 0)
}

fn with_bit(base: &Hash, depth: usize) -> Result<Hash, TooDeep> {
    if depth >= 256 {
        return Err(TooDeep);
    }
    let mut out = *base;
    out[depth >> 3] |= 0x80 >> (depth & 7);
    Ok(out)
}

/// `key` with every bit from `depth` (0..=256) on cleared.
fn prefix(key: &Hash, depth: usize) -> Hash {
    let mut out = [0; 32];
    out[..depth / 8].copy_from_slice(&key[..depth / 8]);
    if !depth.is_multiple_of(8) {
        out[depth / 8] = key[depth / 8] & !(0xffu8 >> (depth % 8));
    }
    out
}

/// The new root `(id, hash)` and rows after changes (`keys` sorted, a `None` value
/// deletes) to the tree at `root`, ids from `next_id` (at least 1) upwards.
pub fn update<R: Reader>(
    cache: &mut Lru,
    reader: R,
    root: (u64, Hash),
    keys: &[Hash],
    values: &[Option<Hash>],
    next_id: u64,
) -> Result<(u64, Hash, Rows), R::Error> {
    let mut batch = Batch {
        keys,
        values,
        cache,
        reader,
        next_id: next_id.max(1),
        rows: Vec::new(),
    };
    let top = batch.apply(root.0, root.1, 0, ZERO, 0, keys.len())?;
    Ok((top.id, top.hash, batch.rows))
}

struct Batch<'a, R: Reader> {
    keys: &'a [Hash],
    values: &'a [Option<Hash>],
    cache: &'a mut Lru,
    reader: R,
    next_id: u64,
    rows: Rows,
}

impl<R: Reader> Batch<'_, R> {
    /// The subtree at (`depth`, `base`) after changes `[lo, hi)`.
    fn apply(
        &mut self,
        id: u64,
        expected: Hash,
        depth: usize,
        base: Hash,
        lo: usize,
        hi: usize,
    ) -> Result<Ref, R::Error> {
        if id == 0 {
            let entries = self.inserts(lo, hi);
            return self.build(&entries, depth, base);
        }
        if hi - lo == 1 {
            return self.apply_one(id, expected, depth, lo);
        }
        let (lh, rh, left_id, right_id) = match self.load(id, &expected)? {
            Node::Leaf { key, value } => {
                return self.merge_leaf((id, expected), key, value, depth, base, lo, hi)
            }
            Node::Inner {
                left,
                right,
                left_id,
                right_id,
            } => (left, right, left_id, right_id),
        };
        let right_base = with_bit(&base, depth)?;
        let mid = lo + self.keys[lo..hi].partition_point(|k| *k < right_base);
        let mut left = Ref {
            id: left_id,
            hash: lh,
            leaf: None,
        };
        let mut right = Ref {
            id: right_id,
            hash: rh,
            leaf: None,
        };
        if lo < mid {
            left = self.apply(left_id, lh, depth + 1, base, lo, mid)?;
        }
        if mid < hi {
            right = self.apply(right_id, rh, depth + 1, right_base, mid, hi)?;
        }
        if left.hash == lh && right.hash == rh {
            return Ok(Ref {
                id,
                hash: expected,
                leaf: Some(false),
            });
        }
        self.join(left, right)
    }

    /// The subtree at `depth` after the one change `i`: walk down, fix, hash up.
    fn apply_one(
        &mut self,
        id: u64,
        expected: Hash,
        depth: usize,
        i: usize,
    ) -> Result<Ref, R::Error> {
        let (k, value) = (self.keys[i], self.values[i]);
        let unchanged = Ref {
            id,
            hash: expected,
            leaf: None,
        };
        let (path, end_id, end_hash, end) = self.descend(id, expected, depth, &k)?;
        let bottom = depth + path.len();
        let current = match (end, value) {
            (None, None) => return Ok(unchanged), // deleting where the path ends empty
            (None, Some(v)) => self.new_leaf(&k, &v),
            (Some((key, old)), _) if key == k => match value {
                Some(v) if v == old => return Ok(unchanged),
                Some(v) => self.new_leaf(&k, &v),
                None => EMPTY,
            },
            (Some(_), None) => return Ok(unchanged), // deleting a key that is absent
            (Some((key, old)), Some(_)) => {
                self.split_leaf((end_id, end_hash), key, old, bottom, i)?
            }
        };
        self.ascend(&path, current, bottom, &k)
    }

    /// The internal nodes down `k`'s path, then where it ends: (id, hash, leaf if any).
    fn descend(
        &mut self,
        mut id: u64,
        mut expected: Hash,
        mut depth: usize,
        k: &Hash,
    ) -> Result<Walk, R::Error> {
        let mut path = Vec::with_capacity(32);
        while id != 0 {
            match self.load(id, &expected)? {
                Node::Leaf { key, value } => return Ok((path, id, expected, Some((key, value)))),
                Node::Inner {
                    left,
                    right,
                    left_id,
                    right_id,
                } => {
                    path.push((left, right, left_id, right_id));
                    (id, expected) = if bit(k, depth)? {
                        (right_id, right)
                    } else {
                        (left_id, left)
                    };
                    depth += 1;
                }
            }
        }
        Ok((path, 0, expected, None))
    }

    /// Rebuild the internal nodes of `path` above the new `current` at `depth`.
    fn ascend(
        &mut self,
        path: &[Inner],
        mut current: Ref,
        mut depth: usize,
        k: &Hash,
    ) -> Result<Ref, R::Error> {
        for &(lh, rh, left_id, right_id) in path.iter().rev() {
            depth -= 1;
            let left = Ref {
                id: left_id,
                hash: lh,
                leaf: None,
            };
            let right = Ref {
                id: right_id,
                hash: rh,
                leaf: None,
            };
            current = if bit(k, depth)? {
                if current.id != 0 && left_id != 0 {
                    self.new_node(left, current)
                } else {
                    self.join(left, current)?
                }
            } else if current.id != 0 && right_id != 0 {
                self.new_node(current, right)
            } else {
                self.join(current, right)?
            };
        }
        Ok(current)
    }

    /// The subtree at `depth` holding the stored leaf `leaf` and the new key `i` beside it.
    fn split_leaf(
        &mut self,
        leaf: (u64, Hash),
        key: Hash,
        value: Hash,
        depth: usize,
        i: usize,
    ) -> Result<Ref, R::Error> {
        let k = self.keys[i];
        let mine = Entry {
            key: k,
            value: self.values[i].expect("a set"),
            reuse: None,
        };
        let theirs = Entry {
            key,
            value,
            reuse: Some(leaf),
        };
        let entries = if k < key {
            [mine, theirs]
        } else {
            [theirs, mine]
        };
        self.build(&entries, depth, prefix(&k, depth))
    }

    /// The parent of two changed subtrees, collapsing a lone leaf upwards.
    fn join(&mut self, left: Ref, right: Ref) -> Result<Ref, R::Error> {
        if left.id != 0 && right.id != 0 {
            return Ok(self.new_node(left, right));
        }
        if left.id == 0 {
            if right.id == 0 {
                return Ok(EMPTY);
            }
            if self.is_leaf(right)? {
                return Ok(Ref {
                    leaf: Some(true),
                    ..right
                });
            }
        } else if right.id == 0 && self.is_leaf(left)? {
            return Ok(Ref {
                leaf: Some(true),
                ..left
            });
        }
        Ok(self.new_node(left, right))
    }

    fn is_leaf(&mut self, subtree: Ref) -> Result<bool, R::Error> {
        match subtree.leaf {
            Some(known) => Ok(known),
            None => Ok(matches!(
                self.load(subtree.id, &subtree.hash)?,
                Node::Leaf { .. }
            )),
        }
    }

    /// The subtree that was the single stored leaf `leaf`, after changes `[lo, hi)`.
    #[allow(clippy::too_many_arguments)]
    fn merge_leaf(
        &mut self,
        leaf: (u64, Hash),
        key: Hash,
        value: Hash,
        depth: usize,
        base: Hash,
        lo: usize,
        hi: usize,
    ) -> Result<Ref, R::Error> {
        let mut entries = self.inserts(lo, hi);
        let at = lo + self.keys[lo..hi].partition_point(|k| *k < key);
        let stored = Entry {
            key,
            value,
            reuse: Some(leaf),
        };
        let pos = entries.partition_point(|e| e.key < key);
        if at == hi || self.keys[at] != key {
            entries.insert(pos, stored);
        } else if self.values[at] == Some(value) {
            entries[pos] = stored;
        }
        self.build(&entries, depth, base)
    }

    /// The changes `[lo, hi)` that set a value, as entries.
    fn inserts(&self, lo: usize, hi: usize) -> Vec<Entry> {
        (lo..hi)
            .filter_map(|i| {
                self.values[i].map(|value| Entry {
                    key: self.keys[i],
                    value,
                    reuse: None,
                })
            })
            .collect()
    }

    /// A fresh subtree at (`depth`, `base`) over sorted `entries`.
    fn build(&mut self, entries: &[Entry], depth: usize, base: Hash) -> Result<Ref, R::Error> {
        match entries {
            [] => Ok(EMPTY),
            [Entry {
                reuse: Some((id, hash)),
                ..
            }] => Ok(Ref {
                id: *id,
                hash: *hash,
                leaf: Some(true),
            }),
            [Entry {
                key,
                value,
                reuse: None,
            }] => Ok(self.new_leaf(key, value)),
            _ => {
                let right_base = with_bit(&base, depth)?;
                let mid = entries.partition_point(|e| e.key < right_base);
                let left = self.build(&entries[..mid], depth + 1, base)?;
                let right = self.build(&entries[mid..], depth + 1, right_base)?;
                Ok(self.new_node(left, right))
            }
        }
    }

    fn load(&mut self, id: u64, expected: &Hash) -> Result<Node, R::Error> {
        if let Some(node) = self.cache.get(id, expected) {
            return Ok(node);
        }
        let node = self.reader.read(id, expected)?;
        self.cache.remember(id, *expected, node);
        Ok(node)
    }

    fn allocate(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = id.checked_add(1).expect("node ids run out at 2**64");
        id
    }

    fn new_leaf(&mut self, key: &Hash, value: &Hash) -> Ref {
        let id = self.allocate();
        self.rows.push((id, Row::Leaf(encode_leaf(key, value))));
        Ref {
            id,
            hash: leaf_hash(key, value),
            leaf: Some(true),
        }
    }

    fn new_node(&mut self, left: Ref, right: Ref) -> Ref {
        let id = self.allocate();
        self.rows.push((
            id,
            Row::Inner(encode_inner(&left.hash, &right.hash, left.id, right.id)),
        ));
        let hash = node_hash(&left.hash, &right.hash);
        let node = Node::Inner {
            left: left.hash,
            right: right.hash,
            left_id: left.id,
            right_id: right.id,
        };
        self.cache.remember(id, hash, node);
        Ref {
            id,
            hash,
            leaf: Some(false),
        }
    }
}
