//! The PN-counter (Riak's `riak_dt_pncounter`): per actor, the sum of its increments and of
//! its decrements; merging takes each actor's larger sums, the value is their difference.

use std::collections::BTreeMap;

use crate::vclock::Actor;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PnCounter(pub(crate) BTreeMap<Actor, (u64, u64)>);

impl PnCounter {
    pub fn value(&self) -> i64 {
        let sum: i128 = self.0.values().map(|(p, n)| *p as i128 - *n as i128).sum();
        sum.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    pub(crate) fn increment(&mut self, actor: Actor, delta: i64) {
        let (p, n) = self.0.entry(actor).or_insert((0, 0));
        if delta >= 0 {
            *p = p.saturating_add(delta.unsigned_abs());
        } else {
            *n = n.saturating_add(delta.unsigned_abs());
        }
    }

    pub(crate) fn merge(&mut self, other: &PnCounter) {
        for (a, (op, on)) in &other.0 {
            let (p, n) = self.0.entry(*a).or_insert((0, 0));
            *p = (*p).max(*op);
            *n = (*n).max(*on);
        }
    }

    /// How many actors have updated it (Riak's `counter_actor_counts` statistic).
    pub fn actors(&self) -> usize {
        self.0.len()
    }
}
