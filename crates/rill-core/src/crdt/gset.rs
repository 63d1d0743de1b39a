//! The grow-only set: members are added and never removed; merging is union.

use std::collections::BTreeSet;

use bytes::Bytes;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GSet(pub(crate) BTreeSet<Bytes>);

impl GSet {
    pub fn members(&self) -> impl Iterator<Item = &Bytes> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn add_all(&mut self, members: &[Bytes]) {
        self.0.extend(members.iter().cloned());
    }

    pub(crate) fn merge(&mut self, other: &GSet) {
        self.0.extend(other.0.iter().cloned());
    }
}
