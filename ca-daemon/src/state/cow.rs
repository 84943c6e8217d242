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

use breakglass_proto::profile::GrantId;

use super::Grant;

/// A persistent ordered map (cheap clone, copy on write).
pub type CowMap<K, V> = imbl::OrdMap<K, V>;
/// A persistent ordered set (cheap clone, copy on write).
pub type CowSet<T> = imbl::OrdSet<T>;

/// Grants by id, in id order: a [`CowMap`] of shared grants behind the map API the rest of
/// the daemon reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants(CowMap<GrantId, Arc<Grant>>);

impl Grants {
    /// The grant `id`.
    #[must_use]
    pub fn get(&self, id: &GrantId) -> Option<&Grant> {
        self.0.get(id).map(|g| &**g)
    }

    /// The grant `id`, to change: copied first if a snapshot still holds it.
    #[must_use]
    pub fn get_mut(&mut self, id: &GrantId) -> Option<&mut Grant> {
        self.0.get_mut(id).map(Arc::make_mut)
    }

    /// Holds `g` under its id, replacing the grant held under it.
    pub fn insert(&mut self, g: Grant) {
        self.0.insert(g.issued.grant_id, Arc::new(g));
    }

    /// Lets go of grant `id`; returns it.
    pub fn remove(&mut self, id: &GrantId) -> Option<Arc<Grant>> {
        self.0.remove(id)
    }

    /// Whether grant `id` is held.
    #[must_use]
    pub fn contains_key(&self, id: &GrantId) -> bool {
        self.0.contains_key(id)
    }

    /// Number of grants held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no grant is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Grant ids, in order.
    pub fn keys(&self) -> impl Iterator<Item = &GrantId> {
        self.0.keys()
    }

    /// Grants, in id order.
    pub fn values(&self) -> impl Iterator<Item = &Grant> {
        self.0.values().map(|g| &**g)
    }

    /// Ids and grants, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&GrantId, &Grant)> {
        self.0.iter().map(|(id, g)| (id, &**g))
    }
}
