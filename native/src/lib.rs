//! `medledger_native`: the state tree's batch update (`SparseMerkleTree.update` of
//! `medledger.merkle.sparse`), compiled. Same reads, same checks, same rows, same ids as
//! the Python reference; the Python module keeps the reference and chooses between them.
//!
//! Nodes are read through the store's `get_node(id) -> bytes` (a `KeyError` when absent)
//! and checked against the hash their parent commits to. The errors are the ones the
//! caller hands in: `missing(node_id)` and `tampered(node_id, expected, got, reason)` build
//! the exception raised (`MissingNode`, `TamperedNode`); anything else `get_node` raises
//! passes through unchanged.

mod batch;
mod cache;
mod node;

use pyo3::exceptions::{PyIndexError, PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use batch::{Reader, TooDeep};
use cache::Lru;
use node::{decode, Hash, Node, Tampered};

impl From<TooDeep> for PyErr {
    fn from(_: TooDeep) -> PyErr {
        PyIndexError::new_err("list index out of range")
    }
}

/// Reads nodes through the Python store and raises the caller's exception types.
struct PyReader<'a, 'py> {
    get_node: &'a Bound<'py, PyAny>,
    missing: &'a Bound<'py, PyAny>,
    tampered: &'a Bound<'py, PyAny>,
}

impl PyReader<'_, '_> {
    fn missing_node(&self, id: u64, cause: PyErr) -> PyErr {
        let py = self.get_node.py();
        match self.missing.call1((id,)) {
            Ok(exception) => {
                let err = PyErr::from_value(exception);
                err.set_cause(py, Some(cause));
                err
            }
            Err(err) => err,
        }
    }

    fn tampered_node(&self, id: u64, expected: &Hash, fault: Tampered) -> PyErr {
        let py = self.get_node.py();
        let got = fault.got.map(|got| PyBytes::new(py, &got));
        match self
            .tampered
            .call1((id, PyBytes::new(py, expected), got, fault.reason))
        {
            Ok(exception) => PyErr::from_value(exception),
            Err(err) => err,
        }
    }
}

impl Reader for PyReader<'_, '_> {
    type Error = PyErr;

    fn read(&mut self, id: u64, expected: &Hash) -> PyResult<Node> {
        let py = self.get_node.py();
        let raw = match self.get_node.call1((id,)) {
            Ok(raw) => raw,
            Err(err) if err.is_instance_of::<PyKeyError>(py) => {
                return Err(self.missing_node(id, err))
            }
            Err(err) => return Err(err),
        };
        let raw = raw.cast_into::<PyBytes>()?;
        decode(raw.as_bytes(), expected).map_err(|fault| self.tampered_node(id, expected, fault))
    }
}

/// `value` if it is a hash: exactly `bytes`, 32 of them (as `_is_hash` has it).
fn as_hash(value: &Bound<'_, PyAny>) -> Option<Hash> {
    value
        .cast_exact::<PyBytes>()
        .ok()?
        .as_bytes()
        .try_into()
        .ok()
}

/// The changes, sorted by key, as keys and values; checked as `_check_change` does.
fn changes_of(changes: &Bound<'_, PyAny>) -> PyResult<(Vec<Hash>, Vec<Option<Hash>>)> {
    let mut items = Vec::new();
    for item in changes.call_method0("items")?.try_iter()? {
        let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
        let key =
            as_hash(&key).ok_or_else(|| PyValueError::new_err("a state tree key is 32 bytes"))?;
        let value = if value.is_none() {
            None
        } else {
            let message = "a state tree value hash is 32 bytes (or None to delete)";
            Some(as_hash(&value).ok_or_else(|| PyValueError::new_err(message))?)
        };
        items.push((key, value));
    }
    items.sort_unstable_by_key(|item| item.0);
    if items.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return Err(PyValueError::new_err("a key changes once in a batch"));
    }
    Ok(items.into_iter().unzip())
}

/// The batch update over one store, with its own bounded cache of verified nodes.
#[pyclass(module = "medledger_native")]
struct NativeTree {
    get_node: Py<PyAny>,
    missing: Py<PyAny>,
    tampered: Py<PyAny>,
    cache: Lru,
}

#[pymethods]
impl NativeTree {
    /// `NativeTree(get_node, cache_size, missing, tampered)`: see the module's doc.
    #[new]
    fn new(
        get_node: Py<PyAny>,
        cache_size: usize,
        missing: Py<PyAny>,
        tampered: Py<PyAny>,
    ) -> Self {
        NativeTree {
            get_node,
            missing,
            tampered,
            cache: Lru::new(cache_size),
        }
    }

    /// How many decoded nodes the cache holds now.
    #[getter]
    fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// The cache's `(id, hash)` pairs, least recently used first (for tests).
    fn cache_entries<'py>(&self, py: Python<'py>) -> Vec<(u64, Bound<'py, PyBytes>)> {
        let entries = self.cache.entries().into_iter();
        entries
            .map(|(id, hash)| (id, PyBytes::new(py, &hash)))
            .collect()
    }

    /// `update(root_id, root_hash, changes, next_id) -> (id, hash, rows)`.
    ///
    /// Applies `changes` (a mapping of 32-byte keys to value hashes, `None` deleting) to
    /// the tree at the root; `rows` is a tuple of `(id, bytes)`, children before parents,
    /// ids from `next_id` upwards.
    fn update<'py>(
        &mut self,
        py: Python<'py>,
        root_id: u64,
        root_hash: &Bound<'py, PyAny>,
        changes: &Bound<'py, PyAny>,
        next_id: u64,
    ) -> PyResult<(u64, Bound<'py, PyBytes>, Bound<'py, PyTuple>)> {
        let root_hash =
            as_hash(root_hash).ok_or_else(|| PyValueError::new_err("a root hash is 32 bytes"))?;
        let (keys, values) = changes_of(changes)?;
        if keys.is_empty() {
            return Ok((root_id, PyBytes::new(py, &root_hash), PyTuple::empty(py)));
        }
        let reader = PyReader {
            get_node: self.get_node.bind(py),
            missing: self.missing.bind(py),
            tampered: self.tampered.bind(py),
        };
        let root = (root_id, root_hash);
        let (id, hash, rows) =
            batch::update(&mut self.cache, reader, root, &keys, &values, next_id)?;
        let rows = rows
            .iter()
            .map(|(id, row)| (*id, PyBytes::new(py, row.bytes())));
        Ok((id, PyBytes::new(py, &hash), PyTuple::new(py, rows)?))
    }
}

#[pymodule]
fn medledger_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<NativeTree>()
}
