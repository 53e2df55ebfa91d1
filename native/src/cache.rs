//! A bounded cache of decoded, verified nodes, least recently used first out.
//!
//! It behaves exactly as the Python tree's `OrderedDict` cache, so that both read the
//! store for the same nodes: a hit (same id, same expected hash) moves the entry to the
//! newest end; remembering an id already present replaces its entry where it stands; an
//! entry over the bound evicts the oldest.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::node::{Hash, Node};

const NIL: u32 = u32::MAX;

/// Hashes a node id with the splitmix64 finaliser: ids are dense, SipHash is slow.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = z ^ (z >> 31);
    }
}

/// The cache: entries found by id, and their order (oldest to newest) as a doubly linked
/// list kept apart from them, so that reordering touches 8 bytes per neighbour.
pub struct Lru {
    capacity: usize,
    index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    entries: Vec<(u64, Hash, Node)>,
    links: Vec<(u32, u32)>, // (older, newer) of each entry
    free: Vec<u32>,
    oldest: u32,
    newest: u32,
}

impl Lru {
    /// An empty cache that holds at most `capacity` nodes.
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity,
            index: HashMap::default(),
            entries: Vec::new(),
            links: Vec::new(),
            free: Vec::new(),
            oldest: NIL,
            newest: NIL,
        }
    }

    /// How many nodes it holds.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The ids held with the hash each was remembered with, oldest first.
    pub fn entries(&self) -> Vec<(u64, Hash)> {
        let mut out = Vec::with_capacity(self.len());
        let mut at = self.oldest;
        while at != NIL {
            let (id, hash, _) = self.entries[at as usize];
            out.push((id, hash));
            at = self.links[at as usize].1;
        }
        out
    }

    /// The node under `id` if it was remembered with hash `expected` (then the newest).
    pub fn get(&mut self, id: u64, expected: &Hash) -> Option<Node> {
        let at = *self.index.get(&id)?;
        let (_, hash, node) = &self.entries[at as usize];
        if hash != expected {
            return None;
        }
        let node = *node;
        if at != self.newest {
            self.unlink(at);
            self.push_newest(at);
        }
        Some(node)
    }

    /// Keep `node` under `id` with its hash; evict the oldest entry when over the bound.
    pub fn remember(&mut self, id: u64, hash: Hash, node: Node) {
        if let Some(&at) = self.index.get(&id) {
            self.entries[at as usize] = (id, hash, node);
            return;
        }
        let at = match self.free.pop() {
            Some(at) => {
                self.entries[at as usize] = (id, hash, node);
                at
            }
            None => {
                self.entries.push((id, hash, node));
                self.links.push((NIL, NIL));
                u32::try_from(self.entries.len() - 1).expect("at most 2**32 - 1 cached nodes")
            }
        };
        self.index.insert(id, at);
        self.push_newest(at);
        if self.index.len() > self.capacity {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let at = self.oldest;
        self.unlink(at);
        self.index.remove(&self.entries[at as usize].0);
        self.free.push(at);
    }

    fn unlink(&mut self, at: u32) {
        let (older, newer) = self.links[at as usize];
        match older {
            NIL => self.oldest = newer,
            _ => self.links[older as usize].1 = newer,
        }
        match newer {
            NIL => self.newest = older,
            _ => self.links[newer as usize].0 = older,
        }
    }

    fn push_newest(&mut self, at: u32) {
        let before = self.newest;
        self.links[at as usize] = (before, NIL);
        match before {
            NIL => self.oldest = at,
            _ => self.links[before as usize].1 = at,
        }
        self.newest = at;
    }
}
