//! The state's big collections as persistent (copy-on-write) B-trees, so that a state
//! snapshot ([`crate::snapshot::take`]) copies a few pointers under the state lock instead
//! of every live grant: cloning a map shares its nodes; a later change copies only the
//! nodes on its path that are still shared (with a snapshot being encoded), and changes in
//! place otherwise.
//!
//! Grants are held behind [`Arc`] inside the map: a node copied after a snapshot copies
//! pointers, and a grant changed while a snapshot holds it is copied alone
//! ([`Arc::make_mut`]).

use std::sync::Arc;

/// A persistent ordered map (cheap clone, copy on write).
pub type CowMap<K, V> = imbl::OrdMap<K, V>;
/// A persistent ordered set (cheap clone, copy on write).
pub type CowSet<T> = imbl::OrdSet<T>;

/// A [`CowMap`] of values behind [`Arc`] (the state's grants), read and changed through the
/// map API the rest of the daemon uses: a value changed while a snapshot holds it is copied
/// alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArcMap<K: Ord + Clone, V>(CowMap<K, Arc<V>>);

impl<K: Ord + Clone, V> Default for ArcMap<K, V> {
    fn default() -> Self {
        Self(CowMap::new())
    }
}

impl<K: Ord + Clone, V: Clone> ArcMap<K, V> {
    /// The value under `k`.
    #[must_use]
    pub fn get(&self, k: &K) -> Option<&V> {
        self.0.get(k).map(|v| &**v)
    }

    /// The value under `k`, to change: copied first if a snapshot still holds it.
    #[must_use]
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.0.get_mut(k).map(Arc::make_mut)
    }

    /// Holds `v` under `k`, replacing what was held under it.
    pub fn insert(&mut self, k: K, v: V) {
        self.0.insert(k, Arc::new(v));
    }

    /// Lets go of the value under `k`; returns it.
    pub fn remove(&mut self, k: &K) -> Option<Arc<V>> {
        self.0.remove(k)
    }

    /// Whether a value is held under `k`.
    #[must_use]
    pub fn contains_key(&self, k: &K) -> bool {
        self.0.contains_key(k)
    }

    /// Number of values held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.keys()
    }

    /// Values, in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.values().map(|v| &**v)
    }

    /// Keys and values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, &**v))
    }
}
