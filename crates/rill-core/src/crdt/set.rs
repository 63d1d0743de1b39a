//! The add-wins observed-remove set (Riak's ORSWOT) and the element store it shares with map
//! fields.
//!
//! Each member keeps the dots of the adds that are still alive; an add replaces the member's
//! dots with its own (the coordinator has observed them), a remove forgets the dots the client
//! had seen. A member is present while any dot is alive, so an add concurrent with a remove
//! wins. Removes without a context may only name present members (Riak's precondition
//! error); a remove whose context is ahead of the replica's clock is deferred until the
//! replica has seen what the client saw.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::crdt::DtError;
use crate::crdt::causal::{Causal, DotSet, DotStore, VersionVector};
use crate::vclock::Dot;

/// An operation on a set: adds, then removes (as Riak applies `add_all` then `remove_all`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetOp {
    pub adds: Vec<Bytes>,
    pub removes: Vec<Bytes>,
}

/// Members and the live dots of each.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Elements(pub(crate) BTreeMap<Bytes, DotSet>);

impl Elements {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.0.contains_key(member)
    }

    /// The members, in byte order.
    pub fn members(&self) -> impl Iterator<Item = &Bytes> {
        self.0.keys()
    }

    /// The live dots of `member`.
    pub fn get(&self, member: &[u8]) -> Option<&DotSet> {
        self.0.get(member)
    }

    /// Members and their live dots, in byte order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &DotSet)> {
        self.0.iter()
    }

    /// Sets a member's live dots; `None` (or no dots) removes it.
    pub fn set(&mut self, member: Bytes, dots: Option<DotSet>) {
        match dots.filter(|d| !d.is_empty()) {
            Some(d) => self.0.insert(member, d),
            None => self.0.remove(&member),
        };
    }

    /// Applies `op` as event `dot`. Without a context every removed member must be present
    /// (after the op's adds); the check comes first, so a refused op changes nothing.
    pub(crate) fn apply(
        &mut self,
        op: &SetOp,
        dot: Dot,
        ctx: Option<&VersionVector>,
    ) -> Result<(), DtError> {
        if ctx.is_none()
            && let Some(absent) = op
                .removes
                .iter()
                .find(|m| !self.contains(m) && !op.adds.contains(m))
        {
            return Err(DtError::NotPresent(absent.clone()));
        }
        for m in &op.adds {
            self.0.insert(m.clone(), DotSet::single(dot));
        }
        for m in &op.removes {
            self.remove(m, ctx);
        }
        Ok(())
    }

    /// Forgets the observed dots of `member` (all of them without a context).
    pub(crate) fn remove(&mut self, member: &[u8], ctx: Option<&VersionVector>) {
        if let Some(dots) = self.0.get_mut(member) {
            dots.remove_seen(ctx);
            if dots.is_empty() {
                self.0.remove(member);
            }
        }
    }

    /// Forgets every dot `ctx` covers (a map field's reset-remove).
    pub(crate) fn reset(&mut self, ctx: &VersionVector) {
        self.0.retain(|_, dots| {
            dots.remove_seen(Some(ctx));
            !dots.is_empty()
        });
    }

    pub(crate) fn join(
        &mut self,
        ctx: &VersionVector,
        other: &Elements,
        other_ctx: &VersionVector,
    ) {
        let empty = DotSet::default();
        self.0.retain(|m, dots| {
            dots.join(ctx, other.0.get(m).unwrap_or(&empty), other_ctx);
            !dots.is_empty()
        });
        for (m, theirs) in &other.0 {
            if !self.0.contains_key(m) {
                let mut dots = DotSet::default();
                dots.join(ctx, theirs, other_ctx);
                if !dots.is_empty() {
                    self.0.insert(m.clone(), dots);
                }
            }
        }
    }
}

impl IntoIterator for Elements {
    type Item = (Bytes, DotSet);
    type IntoIter = std::collections::btree_map::IntoIter<Bytes, DotSet>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<(Bytes, DotSet)> for Elements {
    fn from_iter<I: IntoIterator<Item = (Bytes, DotSet)>>(iter: I) -> Self {
        Elements(iter.into_iter().collect())
    }
}

impl DotStore for Elements {
    type Item = Bytes;

    fn join(&mut self, ctx: &VersionVector, other: &Self, other_ctx: &VersionVector) {
        Elements::join(self, ctx, other, other_ctx);
    }

    fn remove_seen_item(&mut self, item: &Bytes, ctx: &VersionVector) {
        self.remove(item, Some(ctx));
    }
}

/// A top-level set: members under the set's clock.
pub type OrSet = Causal<Elements>;

impl OrSet {
    pub fn elements(&self) -> &Elements {
        &self.store
    }

    pub(crate) fn apply(
        &mut self,
        op: &SetOp,
        dot: Dot,
        ctx: Option<&VersionVector>,
    ) -> Result<(), DtError> {
        self.store.apply(op, dot, ctx)?;
        self.applied(dot, ctx, &op.removes);
        Ok(())
    }
}
