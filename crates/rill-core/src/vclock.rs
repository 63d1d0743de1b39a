//! Vector clocks and dots: the causal history of an object.
//!
//! Every replica (vnode) that coordinates a write is an *actor* with a random 8-byte id. A
//! [`VClock`] maps actors to the number of writes each has coordinated that are in an object's
//! history; comparing two clocks tells whether one object's history contains the other's
//! (`descends`) or whether they were written concurrently and must both be kept as siblings.
//! A [`Dot`] names one single write event (actor, counter); attaching it to a sibling is what
//! lets the merge tell which siblings a client had seen (dotted version vectors), instead of
//! keeping every sibling whenever two whole objects are concurrent.
//!
//! Each entry also remembers when its actor last touched it (seconds since the epoch) so that
//! clocks can be pruned the way Riak prunes them, keeping them small under actor churn.
//!
//! Clients get the clock as an opaque context (`X-Riak-Vclock`) and send it back with their next
//! write; [`VClock::to_bytes`] / [`VClock::from_bytes`] is that versioned byte form, which must
//! survive arbitrary input without panicking.

use std::cmp::Ordering;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{Reader, put_varint};

/// The version byte that starts every encoded clock.
const CLOCK_FORMAT_V1: u8 = 1;

/// The id of a replica that coordinates writes (one per vnode, random).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Actor(pub [u8; 8]);

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Actor({self})")
    }
}

/// One write event: the `counter`-th write coordinated by `actor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub actor: Actor,
    pub counter: u64,
}

/// One actor's entry in a clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClockEntry {
    pub actor: Actor,
    /// Number of this actor's writes in the history; never 0 in a valid clock.
    pub counter: u64,
    /// When the actor last advanced this entry, in seconds since the epoch (used for pruning).
    pub timestamp: u64,
}

/// A vector clock: entries sorted by actor, one per actor, counters >= 1.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VClock {
    entries: Vec<ClockEntry>,
}

/// Why an encoded clock was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("vector clock is empty input (not even a version byte)")]
    Empty,
    #[error("unknown vector clock format version {0}")]
    UnknownVersion(u8),
    #[error("vector clock is truncated or has an oversized number")]
    Truncated,
    #[error("vector clock entries are not sorted by actor or repeat an actor")]
    Unsorted,
    #[error("vector clock has an entry with counter 0")]
    ZeroCounter,
    #[error("vector clock has {0} trailing bytes")]
    TrailingBytes(usize),
}

/// Riak's vector clock pruning limits (bucket props `small_vclock`, `big_vclock`,
/// `young_vclock`, `old_vclock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneLimits {
    /// Never prune a clock with at most this many entries.
    pub small: usize,
    /// Prune the oldest entries while the clock has more than this many.
    pub big: usize,
    /// Never prune when the oldest entry is younger than this (seconds).
    pub young_secs: u64,
    /// Prune entries older than this (seconds).
    pub old_secs: u64,
}

impl Default for PruneLimits {
    fn default() -> Self {
        PruneLimits {
            small: 50,
            big: 50,
            young_secs: 20,
            old_secs: 86_400,
        }
    }
}

impl VClock {
    /// The empty clock: the history of an object nobody has written.
    pub fn new() -> Self {
        VClock::default()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of actors in the clock.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries, sorted by actor.
    pub fn entries(&self) -> &[ClockEntry] {
        &self.entries
    }

    /// How many of `actor`'s writes this history contains (0 if none).
    pub fn get(&self, actor: Actor) -> u64 {
        self.find(actor).map_or(0, |i| self.entries[i].counter)
    }

    fn find(&self, actor: Actor) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.actor.cmp(&actor))
    }

    /// Records a new write by `actor` at `now_secs` and returns that write's dot.
    pub fn increment(&mut self, actor: Actor, now_secs: u64) -> Dot {
        let counter = match self.find(actor) {
            Ok(i) => {
                let e = &mut self.entries[i];
                e.counter = e.counter.saturating_add(1);
                e.timestamp = now_secs;
                e.counter
            }
            Err(i) => {
                let entry = ClockEntry {
                    actor,
                    counter: 1,
                    timestamp: now_secs,
                };
                self.entries.insert(i, entry);
                1
            }
        };
        Dot { actor, counter }
    }

    /// Records a new write by `actor` whose counter is past both this clock's and `floor`
    /// (a data type's own clock may have seen more of the actor than a pruned object clock).
    pub fn increment_past(&mut self, actor: Actor, floor: u64, now_secs: u64) -> Dot {
        let counter = self.get(actor).max(floor).saturating_add(1);
        let entry = ClockEntry {
            actor,
            counter,
            timestamp: now_secs,
        };
        match self.find(actor) {
            Ok(i) => self.entries[i] = entry,
            Err(i) => self.entries.insert(i, entry),
        }
        Dot { actor, counter }
    }

    /// True if this history contains every event of `other` (self >= other).
    pub fn descends(&self, other: &VClock) -> bool {
        other.entries.iter().all(|e| self.get(e.actor) >= e.counter)
    }

    /// True if this history strictly contains `other`'s (self > other).
    pub fn dominates(&self, other: &VClock) -> bool {
        self.descends(other) && !other.descends(self)
    }

    /// True if neither history contains the other.
    pub fn concurrent(&self, other: &VClock) -> bool {
        !self.descends(other) && !other.descends(self)
    }

    /// True if the event `dot` is part of this history.
    pub fn covers(&self, dot: Dot) -> bool {
        self.get(dot.actor) >= dot.counter
    }

    /// The union of both histories: pointwise maximum of counters. For an actor present on both
    /// sides the entry with the greater (counter, timestamp) is kept, as Riak does, so merging
    /// with an ancestor leaves a clock unchanged.
    pub fn merge(&self, other: &VClock) -> VClock {
        let (a, b) = (&self.entries, &other.entries);
        let mut out = Vec::with_capacity(a.len().max(b.len()));
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].actor.cmp(&b[j].actor) {
                Ordering::Less => {
                    out.push(a[i]);
                    i += 1;
                }
                Ordering::Greater => {
                    out.push(b[j]);
                    j += 1;
                }
                Ordering::Equal => {
                    let newer = |e: &ClockEntry| (e.counter, e.timestamp);
                    out.push(if newer(&b[j]) > newer(&a[i]) {
                        b[j]
                    } else {
                        a[i]
                    });
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        VClock { entries: out }
    }

    /// Riak's clock pruning: a clock with at most `small` entries, or whose oldest entry is
    /// younger than `young_secs`, is left alone; otherwise the oldest entries are dropped while
    /// the clock has more than `big` entries or its oldest entry is older than `old_secs`.
    /// Pruning forgets history, so it can only cause false siblings, never lost writes.
    pub fn prune(&mut self, now_secs: u64, limits: &PruneLimits) {
        if self.entries.len() <= limits.small {
            return;
        }
        // Oldest first; ties broken by actor so the outcome does not depend on input order.
        let mut by_age = self.entries.clone();
        by_age.sort_by_key(|e| (e.timestamp, e.actor));
        let age = |e: &ClockEntry| now_secs.saturating_sub(e.timestamp);
        let mut drop = 0;
        while let Some(oldest) = by_age.get(drop) {
            let remaining = by_age.len() - drop;
            if remaining <= limits.small || age(oldest) < limits.young_secs {
                break;
            }
            if remaining > limits.big || age(oldest) > limits.old_secs {
                drop += 1;
            } else {
                break;
            }
        }
        if drop > 0 {
            let doomed = &by_age[..drop];
            self.entries
                .retain(|e| !doomed.iter().any(|d| d.actor == e.actor));
        }
    }

    /// The opaque client context: a version byte, then the entries.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(2 + self.entries.len() * 14);
        out.push(CLOCK_FORMAT_V1);
        self.encode_body(&mut out);
        Bytes::from(out)
    }

    /// Parses a context produced by [`VClock::to_bytes`]. Any other input is an error.
    pub fn from_bytes(raw: &[u8]) -> Result<VClock, ClockError> {
        let (&version, body) = raw.split_first().ok_or(ClockError::Empty)?;
        if version != CLOCK_FORMAT_V1 {
            return Err(ClockError::UnknownVersion(version));
        }
        let mut reader = Reader::new(body);
        let clock = VClock::decode_body(&mut reader)?;
        match reader.remaining() {
            0 => Ok(clock),
            n => Err(ClockError::TrailingBytes(n)),
        }
    }

    /// Writes the entries (count, then actor, counter, timestamp each) without a version byte;
    /// shared by the context format and the on-disk object format.
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        put_varint(out, self.entries.len() as u64);
        for e in &self.entries {
            out.extend_from_slice(&e.actor.0);
            put_varint(out, e.counter);
            put_varint(out, e.timestamp);
        }
    }

    /// Reads what [`VClock::encode_body`] wrote, checking the clock's invariants.
    pub(crate) fn decode_body(r: &mut Reader<'_>) -> Result<VClock, ClockError> {
        let count = r.varint().ok_or(ClockError::Truncated)?;
        // Each entry takes at least 10 bytes: never trust the count for the allocation.
        let mut entries = Vec::with_capacity(r.capacity_for(count, 10));
        for _ in 0..count {
            let entry = ClockEntry {
                actor: Actor(r.array().ok_or(ClockError::Truncated)?),
                counter: r.varint().ok_or(ClockError::Truncated)?,
                timestamp: r.varint().ok_or(ClockError::Truncated)?,
            };
            entries.push(entry);
        }
        VClock::from_entries(entries)
    }

    /// A clock from entries, refusing unsorted, repeated or zero-counter entries.
    pub fn from_entries(entries: Vec<ClockEntry>) -> Result<VClock, ClockError> {
        if entries.iter().any(|e| e.counter == 0) {
            return Err(ClockError::ZeroCounter);
        }
        if entries.windows(2).any(|w| w[0].actor >= w[1].actor) {
            return Err(ClockError::Unsorted);
        }
        Ok(VClock { entries })
    }
}

impl Serialize for VClock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(s)
    }
}

impl<'de> Deserialize<'de> for VClock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<ClockEntry>::deserialize(d)?;
        VClock::from_entries(entries).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn actor(n: u8) -> Actor {
        Actor([n; 8])
    }

    fn clock(entries: &[(u8, u64)]) -> VClock {
        let mut c = VClock::new();
        for &(a, n) in entries {
            for _ in 0..n {
                c.increment(actor(a), 100);
            }
        }
        c
    }

    #[test]
    fn increment_returns_the_new_event_and_keeps_actors_sorted() {
        let mut c = VClock::new();
        assert!(c.is_empty());
        assert_eq!(
            c.increment(actor(2), 5),
            Dot {
                actor: actor(2),
                counter: 1
            }
        );
        assert_eq!(
            c.increment(actor(1), 6),
            Dot {
                actor: actor(1),
                counter: 1
            }
        );
        assert_eq!(
            c.increment(actor(2), 7),
            Dot {
                actor: actor(2),
                counter: 2
            }
        );
        let actors: Vec<_> = c.entries().iter().map(|e| e.actor).collect();
        assert_eq!(actors, vec![actor(1), actor(2)]);
        assert!(!c.is_empty());
        assert_eq!(c.get(actor(2)), 2);
        assert_eq!(c.entries()[1].timestamp, 7);
        assert_eq!(c.get(actor(3)), 0);
        assert!(c.covers(Dot {
            actor: actor(2),
            counter: 2
        }));
        assert!(!c.covers(Dot {
            actor: actor(2),
            counter: 3
        }));
    }

    #[test]
    fn comparisons() {
        let a = clock(&[(1, 2), (2, 1)]);
        let b = clock(&[(1, 1)]);
        let c = clock(&[(2, 2)]);
        assert!(a.descends(&b) && a.dominates(&b) && !b.descends(&a));
        assert!(a.descends(&a) && !a.dominates(&a));
        assert!(a.concurrent(&c) && !a.concurrent(&b));
        assert!(a.descends(&VClock::new()) && !VClock::new().descends(&a));
        let m = a.merge(&c);
        assert_eq!((m.get(actor(1)), m.get(actor(2))), (2, 2));
    }

    #[test]
    fn merge_keeps_newest_timestamp_for_equal_counters() {
        let mut a = VClock::new();
        a.increment(actor(1), 10);
        let mut b = VClock::new();
        b.increment(actor(1), 30);
        assert_eq!(a.merge(&b).entries()[0].timestamp, 30);
        assert_eq!(b.merge(&a).entries()[0].timestamp, 30);
        // A greater counter wins with its own timestamp, as in Riak.
        a.increment(actor(1), 20);
        assert_eq!(a.merge(&b).entries()[0], a.entries()[0]);
    }

    fn aged(n: usize, now: u64, age_of: impl Fn(usize) -> u64) -> VClock {
        let entries = (0..n)
            .map(|i| ClockEntry {
                actor: Actor((i as u64).to_be_bytes()),
                counter: 1,
                timestamp: now - age_of(i),
            })
            .collect();
        VClock::from_entries(entries).unwrap()
    }

    #[test]
    fn prune_follows_riak_rules() {
        let limits = PruneLimits {
            small: 3,
            big: 5,
            young_secs: 20,
            old_secs: 1000,
        };
        let now = 1_000_000;
        // Small clocks are never pruned, however old.
        let mut c = aged(3, now, |_| 5000);
        c.prune(now, &limits);
        assert_eq!(c.len(), 3);
        // Big but young: left alone.
        let mut c = aged(8, now, |_| 10);
        c.prune(now, &limits);
        assert_eq!(c.len(), 8);
        // Big and not young: oldest dropped down to `big`.
        let mut c = aged(8, now, |i| 100 + i as u64);
        c.prune(now, &limits);
        assert_eq!(c.len(), 5);
        // The survivors are the youngest (lowest i).
        assert!(
            c.entries()
                .iter()
                .all(|e| u64::from_be_bytes(e.actor.0) < 5)
        );
        // Within `big` but old entries go, down to `small`.
        let mut c = aged(5, now, |_| 2000);
        c.prune(now, &limits);
        assert_eq!(c.len(), 3);
        // Within `big` and not old: kept.
        let mut c = aged(5, now, |_| 500);
        c.prune(now, &limits);
        assert_eq!(c.len(), 5);
        // Old entries go, but pruning stops at the first entry that is neither old nor excess.
        let mut c = aged(5, now, |i| if i < 1 { 2000 } else { 500 });
        c.prune(now, &limits);
        assert_eq!(c.len(), 4);
        assert_eq!(c.get(Actor(0u64.to_be_bytes())), 0);
    }

    #[test]
    fn prune_limits_are_strict_where_riaks_are() {
        let limits = PruneLimits {
            small: 3,
            big: 5,
            young_secs: 20,
            old_secs: 1000,
        };
        let now = 1_000_000;
        // An oldest entry exactly `young_secs` old is no longer young (Riak: age < young).
        let mut c = aged(8, now, |_| 20);
        c.prune(now, &limits);
        assert_eq!(c.len(), 5);
        let mut c = aged(8, now, |_| 19);
        c.prune(now, &limits);
        assert_eq!(c.len(), 8);
        // Exactly `old_secs` old is not yet old (Riak: age > old).
        let mut c = aged(5, now, |_| 1000);
        c.prune(now, &limits);
        assert_eq!(c.len(), 5);
        let mut c = aged(5, now, |_| 1001);
        c.prune(now, &limits);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn riak_default_prune_limits() {
        let d = PruneLimits::default();
        assert_eq!(
            (d.small, d.big, d.young_secs, d.old_secs),
            (50, 50, 20, 86_400)
        );
    }

    #[test]
    fn context_bytes_round_trip_and_refuse_garbage() {
        let empty = VClock::new();
        assert_eq!(VClock::from_bytes(&empty.to_bytes()), Ok(empty));
        let c = clock(&[(1, 300), (9, 1)]);
        assert_eq!(VClock::from_bytes(&c.to_bytes()), Ok(c.clone()));
        assert_eq!(VClock::from_bytes(&[]), Err(ClockError::Empty));
        assert_eq!(
            VClock::from_bytes(&[7, 0]),
            Err(ClockError::UnknownVersion(7))
        );
        let mut long = c.to_bytes().to_vec();
        long.push(0);
        assert_eq!(VClock::from_bytes(&long), Err(ClockError::TrailingBytes(1)));
        let bytes = c.to_bytes();
        assert_eq!(
            VClock::from_bytes(&bytes[..bytes.len() - 1]),
            Err(ClockError::Truncated)
        );
        // Two entries in the wrong order.
        let mut bad = vec![1, 2];
        for a in [2u8, 1] {
            bad.extend_from_slice(&[a; 8]);
            bad.extend_from_slice(&[1, 0]);
        }
        assert_eq!(VClock::from_bytes(&bad), Err(ClockError::Unsorted));
        let zero = [&[1u8, 1][..], &[1; 8], &[0, 0]].concat();
        assert_eq!(VClock::from_bytes(&zero), Err(ClockError::ZeroCounter));
        // A count claiming billions of entries must not allocate for them.
        assert_eq!(
            VClock::from_bytes(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(ClockError::Truncated)
        );
    }

    #[test]
    fn serde_refuses_invalid_clocks() {
        let c = clock(&[(1, 1), (2, 1)]);
        let mut entries = c.entries().to_vec();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<VClock>(&json).unwrap(), c);
        entries.reverse();
        let json = serde_json::to_string(&entries).unwrap();
        assert!(serde_json::from_str::<VClock>(&json).is_err());
    }

    #[test]
    fn actor_displays_as_hex() {
        assert_eq!(
            Actor([0, 1, 2, 0xab, 0xcd, 0xef, 0x10, 0xff]).to_string(),
            "000102abcdef10ff"
        );
    }

    fn arb_clock() -> impl Strategy<Value = VClock> {
        prop::collection::btree_map(0u8..6, (1u64..5, 0u64..50), 0..6).prop_map(|m| {
            let entries = m
                .into_iter()
                .map(|(a, (counter, timestamp))| ClockEntry {
                    actor: actor(a),
                    counter,
                    timestamp,
                })
                .collect();
            VClock::from_entries(entries).unwrap()
        })
    }

    proptest! {
        #[test]
        fn merge_is_a_least_upper_bound(a in arb_clock(), b in arb_clock(), c in arb_clock()) {
            let ab = a.merge(&b);
            prop_assert_eq!(&ab, &b.merge(&a));
            prop_assert_eq!(ab.merge(&c), a.merge(&b.merge(&c)));
            prop_assert_eq!(a.merge(&a), a.clone());
            prop_assert!(ab.descends(&a) && ab.descends(&b));
            // Least: any clock descending both descends the merge.
            if c.descends(&a) && c.descends(&b) {
                prop_assert!(c.descends(&ab));
            }
        }

        #[test]
        fn exactly_one_relation_holds(a in arb_clock(), b in arb_clock()) {
            let eq = a.descends(&b) && b.descends(&a);
            let n = [eq, a.dominates(&b), b.dominates(&a), a.concurrent(&b)]
                .iter().filter(|&&x| x).count();
            prop_assert_eq!(n, 1);
        }

        #[test]
        fn bytes_round_trip(c in arb_clock()) {
            prop_assert_eq!(VClock::from_bytes(&c.to_bytes()), Ok(c));
        }

        #[test]
        fn garbage_never_panics(raw in prop::collection::vec(any::<u8>(), 0..64)) {
            // Also with a valid version byte, so the body parser is exercised.
            let _ = VClock::from_bytes(&raw);
            let _ = VClock::from_bytes(&[&[CLOCK_FORMAT_V1][..], &raw].concat());
        }

        #[test]
        fn pruning_only_forgets(c in arb_clock(), now in 0u64..100) {
            let limits = PruneLimits { small: 2, big: 3, young_secs: 5, old_secs: 30 };
            let mut p = c.clone();
            p.prune(now, &limits);
            prop_assert!(c.descends(&p));
            prop_assert!(p.len() >= c.len().min(limits.small));
            if c.len() <= limits.small { prop_assert_eq!(&p, &c); }
        }
    }
}
