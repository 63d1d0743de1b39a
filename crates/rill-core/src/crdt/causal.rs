//! The causal machinery shared by the observed-remove types: a version vector that says which
//! events a state has seen, and dot stores that say which of those events are still alive.
//!
//! A state is a pair (store, context). An event (a [`Dot`]) that the context covers but the
//! store no longer holds was removed; one the store holds is alive. Joining two states keeps
//! an entry when both sides hold it, or when one side holds it and the other has never seen
//! it. That single rule gives add-wins sets, enable-wins flags and reset-remove map fields
//! without tombstones: a remove is nothing but forgetting observed dots.

use std::collections::{BTreeMap, BTreeSet};

use crate::vclock::{Actor, Dot, VClock};

/// Which events a state has seen: per actor, how many of its events (contiguous from 1).
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct VersionVector(BTreeMap<Actor, u64>);

impl VersionVector {
    pub fn new() -> Self {
        VersionVector(BTreeMap::new())
    }

    /// The events of `actor` seen (0 when none).
    pub fn get(&self, actor: Actor) -> u64 {
        self.0.get(&actor).copied().unwrap_or(0)
    }

    pub fn covers(&self, dot: Dot) -> bool {
        self.get(dot.actor) >= dot.counter
    }

    /// True when this has seen every event `other` has.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(a, c)| self.get(*a) >= *c)
    }

    /// Pointwise maximum.
    pub fn join(&mut self, other: &VersionVector) {
        for (a, c) in &other.0 {
            let e = self.0.entry(*a).or_insert(0);
            *e = (*e).max(*c);
        }
    }

    /// Records that `dot` (and so every earlier event of its actor) was seen.
    pub fn witness(&mut self, dot: Dot) {
        let e = self.0.entry(dot.actor).or_insert(0);
        *e = (*e).max(dot.counter);
    }

    /// Actors and counters, in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (Actor, u64)> + '_ {
        self.0.iter().map(|(a, c)| (*a, *c))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Builds a vector from (actor, counter) pairs; zero counters are dropped.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Actor, u64)>) -> Self {
        let mut vv = VersionVector::new();
        for (a, c) in pairs {
            if c > 0 {
                vv.witness(Dot {
                    actor: a,
                    counter: c,
                });
            }
        }
        vv
    }

    /// The events an object's vector clock has seen: what a deleted data type had observed
    /// when its tombstone was written.
    pub fn from_vclock(clock: &VClock) -> Self {
        Self::from_pairs(clock.entries().iter().map(|e| (e.actor, e.counter)))
    }
}

/// Whether an entry with `dot` held by one side survives a join with the other side, which
/// holds the same dot (`other_has`) or not, under context `other_ctx`.
pub(crate) fn survives(dot: Dot, other_has: bool, other_ctx: &VersionVector) -> bool {
    other_has || !other_ctx.covers(dot)
}

/// A store of dots mapped to values (a "dot fun"): registers keep the value written at each
/// live dot, embedded counters one running total per actor, flags and set members nothing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DotFun<V>(pub(crate) BTreeMap<Dot, V>);

impl<V> Default for DotFun<V> {
    fn default() -> Self {
        DotFun(BTreeMap::new())
    }
}

/// A set of live dots.
pub type DotSet = DotFun<()>;

impl<V: Clone + PartialEq> DotFun<V> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Dot, &V)> {
        self.0.iter()
    }

    /// Replaces every live dot (all of which the writer observed) with one new entry.
    pub fn replace(&mut self, dot: Dot, value: V) {
        self.0.clear();
        self.0.insert(dot, value);
    }

    /// Forgets the dots `ctx` covers (an observed remove); with no context, all of them.
    pub fn remove_seen(&mut self, ctx: Option<&VersionVector>) {
        match ctx {
            None => self.0.clear(),
            Some(ctx) => self.0.retain(|d, _| !ctx.covers(*d)),
        }
    }

    /// Joins `other` (with context `other_ctx`) into this store (with context `ctx`).
    pub fn join(&mut self, ctx: &VersionVector, other: &Self, other_ctx: &VersionVector) {
        self.0
            .retain(|d, _| survives(*d, other.0.contains_key(d), other_ctx));
        for (d, v) in &other.0 {
            if !self.0.contains_key(d) && survives(*d, false, ctx) {
                self.0.insert(*d, v.clone());
            }
        }
    }
}

impl DotSet {
    /// A set holding one dot.
    pub fn single(dot: Dot) -> Self {
        let mut s = DotSet::default();
        s.0.insert(dot, ());
        s
    }

    pub fn dots(&self) -> impl Iterator<Item = Dot> + '_ {
        self.0.keys().copied()
    }
}

/// Removes that arrived with a context this replica had not yet seen, kept until it has: the
/// replica may lag behind the one the client read from, and removing only what it holds would
/// let the rest come back on the next merge.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deferred<T: Ord>(pub(crate) BTreeMap<VersionVector, BTreeSet<T>>);

impl<T: Ord> Default for Deferred<T> {
    fn default() -> Self {
        Deferred(BTreeMap::new())
    }
}

impl<T: Ord + Clone> Deferred<T> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps `items`' removal under `ctx` when `clock` has not seen all of `ctx`.
    pub(crate) fn defer_unless_seen<'a>(
        &mut self,
        clock: &VersionVector,
        ctx: &VersionVector,
        items: impl IntoIterator<Item = &'a T>,
    ) where
        T: 'a,
    {
        if !clock.descends(ctx) {
            self.0
                .entry(ctx.clone())
                .or_default()
                .extend(items.into_iter().cloned());
        }
    }

    /// Takes in another replica's deferred removes, then hands back (and forgets) the ones
    /// `clock` has now seen, for the caller to run.
    pub(crate) fn absorb_and_take_ready(
        &mut self,
        other: &Deferred<T>,
        clock: &VersionVector,
    ) -> Vec<(VersionVector, BTreeSet<T>)> {
        for (ctx, items) in &other.0 {
            self.0
                .entry(ctx.clone())
                .or_default()
                .extend(items.iter().cloned());
        }
        let ready: Vec<VersionVector> = self
            .0
            .keys()
            .filter(|ctx| clock.descends(ctx))
            .cloned()
            .collect();
        ready
            .into_iter()
            .filter_map(|ctx| self.0.remove_entry(&ctx))
            .collect()
    }
}

/// A dot store that a top-level type keeps under its own clock: set members, map fields.
pub trait DotStore: Clone + Default + PartialEq + Eq + std::fmt::Debug {
    /// What a remove names (a member, a field).
    type Item: Ord + Clone + std::fmt::Debug;

    /// Joins `other` (with context `other_ctx`) into this store (with context `ctx`).
    fn join(&mut self, ctx: &VersionVector, other: &Self, other_ctx: &VersionVector);

    /// Forgets what `ctx` saw of `item` (a deferred remove running).
    fn remove_seen_item(&mut self, item: &Self::Item, ctx: &VersionVector);
}

/// A top-level observed-remove type (sets, maps): its store, the clock of every event it has
/// seen, and the removes waiting for that clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Causal<S: DotStore> {
    pub(crate) clock: VersionVector,
    pub(crate) store: S,
    pub(crate) deferred: Deferred<S::Item>,
}

impl<S: DotStore> Causal<S> {
    /// An empty state that has seen `clock` (a deleted key's history).
    pub fn seeded(clock: VersionVector) -> Self {
        Causal {
            clock,
            store: S::default(),
            deferred: Deferred::default(),
        }
    }

    pub fn clock(&self) -> &VersionVector {
        &self.clock
    }

    /// Records that the operation at `dot` was applied to the store; its removes under a
    /// context this state has not fully seen wait for it.
    pub(crate) fn applied(&mut self, dot: Dot, ctx: Option<&VersionVector>, removes: &[S::Item]) {
        self.clock.witness(dot);
        if let Some(ctx) = ctx.filter(|_| !removes.is_empty()) {
            self.deferred.defer_unless_seen(&self.clock, ctx, removes);
        }
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        self.store.join(&self.clock, &other.store, &other.clock);
        self.clock.join(&other.clock);
        for (ctx, items) in self
            .deferred
            .absorb_and_take_ready(&other.deferred, &self.clock)
        {
            for item in items {
                self.store.remove_seen_item(&item, &ctx);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn actor(n: u8) -> Actor {
        Actor([n; 8])
    }

    pub(crate) fn dot(a: u8, c: u64) -> Dot {
        Dot {
            actor: actor(a),
            counter: c,
        }
    }

    #[test]
    fn vector_covers_and_descends() {
        let mut v = VersionVector::new();
        v.witness(dot(1, 3));
        assert!(v.covers(dot(1, 1)) && v.covers(dot(1, 3)) && !v.covers(dot(1, 4)));
        assert!(!v.covers(dot(2, 1)));
        let mut w = v.clone();
        w.witness(dot(2, 1));
        assert!(w.descends(&v) && !v.descends(&w));
        v.join(&w);
        assert_eq!(v, w);
    }

    #[test]
    fn a_removed_dot_stays_removed_and_an_unseen_one_survives() {
        // Left saw a1 and removed it; right still holds a1 and added b1 unseen by left.
        let left_ctx = VersionVector::from_pairs([(actor(1), 1)]);
        let left = DotSet::default();
        let right_ctx = VersionVector::from_pairs([(actor(1), 1), (actor(2), 1)]);
        let mut right = DotSet::single(dot(1, 1));
        right.0.insert(dot(2, 1), ());
        let mut joined = left.clone();
        joined.join(&left_ctx, &right, &right_ctx);
        assert_eq!(joined.dots().collect::<Vec<_>>(), vec![dot(2, 1)]);
        let mut other_way = right.clone();
        other_way.join(&right_ctx, &left, &left_ctx);
        assert_eq!(joined, other_way);
    }

    proptest! {
        #[test]
        fn vector_join_is_a_lattice_join(
            a in prop::collection::vec((0u8..4, 0u64..6), 0..6),
            b in prop::collection::vec((0u8..4, 0u64..6), 0..6),
        ) {
            let a = VersionVector::from_pairs(a.into_iter().map(|(x, c)| (actor(x), c)));
            let b = VersionVector::from_pairs(b.into_iter().map(|(x, c)| (actor(x), c)));
            let mut ab = a.clone();
            ab.join(&b);
            let mut ba = b.clone();
            ba.join(&a);
            prop_assert_eq!(&ab, &ba);
            prop_assert!(ab.descends(&a) && ab.descends(&b));
            let mut aa = a.clone();
            aa.join(&a);
            prop_assert_eq!(aa, a);
        }
    }
}
