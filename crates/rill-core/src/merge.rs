//! Causal merge: how a write, a replica's copy and a set of replies become one object.
//!
//! Three situations need a merge, and each has its function here:
//! - the coordinating vnode applies a client's write to what it holds ([`coordinate_put`]):
//!   it advances the clock, gives the write a [`Dot`], and decides which existing siblings the
//!   client had seen (and so replaces) and which it had not (and so must keep);
//! - a replica, a read repair or a handoff receives someone else's object
//!   ([`replica_merge`]): keep what it has, take the incoming one, or merge the two;
//! - a GET combines the replies of N replicas ([`reconcile`]).
//!
//! The rules follow Riak. With dotted version vectors (`dvv_enabled`), a sibling is dropped
//! exactly when a write whose context covered its dot supersedes it, so siblings only exist for
//! genuinely concurrent writes. Classic vector clocks decide per object instead: a write that
//! did not see everything the vnode holds keeps *all* old siblings, stale ones included, which
//! is how Riak's sibling explosion happens. Either way nothing a client has not seen is ever
//! dropped, except by the bucket's own choice to keep one value (`allow_mult = false`, or
//! `last_write_wins`), which keeps the newest.
//!
//! Results are canonical — siblings sorted by dot, duplicates removed — so that merging is
//! commutative, associative and idempotent: replicas that saw the same writes in any order
//! hold byte-identical objects, which anti-entropy relies on.

use std::cmp::Ordering;

use bytes::Bytes;

use crate::crdt;
use crate::object::{Content, RiakObject};
use crate::props::Datatype;
use crate::vclock::{Actor, Dot, VClock};

/// The bucket properties that steer merging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MergeOptions {
    /// Keep concurrent writes as siblings; when false only the newest sibling is kept.
    pub allow_mult: bool,
    /// Skip causality: every write replaces the object, the newest write wins.
    pub last_write_wins: bool,
    /// Use dots to drop exactly the siblings a writer had seen (dotted version vectors).
    pub dvv_enabled: bool,
    /// The bucket holds this convergent data type: concurrent objects merge their states
    /// into one content instead of becoming siblings.
    pub datatype: Option<Datatype>,
}

/// What a replica should do with an incoming object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaMerge {
    /// Store this object in place of the local one.
    Store(RiakObject),
    /// The local object already contains everything incoming has: nothing to write.
    Unchanged,
}

/// How two clocks' histories relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// Same history.
    Equal,
    /// The first strictly contains the second.
    Descends,
    /// The second strictly contains the first.
    Ancestor,
    /// Neither contains the other.
    Concurrent,
}

/// How `a`'s history relates to `b`'s.
pub fn relation(a: &VClock, b: &VClock) -> Relation {
    match (a.descends(b), b.descends(a)) {
        (true, true) => Relation::Equal,
        (true, false) => Relation::Descends,
        (false, true) => Relation::Ancestor,
        (false, false) => Relation::Concurrent,
    }
}

/// Applies a client's write at the coordinating vnode.
///
/// `local` is what the vnode holds, `context` the clock the client read (empty for a blind
/// write), `new` the client's sibling, `actor` the vnode's id. The new sibling is stamped with
/// its dot, `last_modified_us = now_us` and a vtag derived from the dot (unique per write, and
/// identical on every replica). The result's clock descends both `local` and `context`.
pub fn coordinate_put(
    local: Option<&RiakObject>,
    context: &VClock,
    mut new: Content,
    actor: Actor,
    now_us: u64,
    opts: &MergeOptions,
) -> RiakObject {
    let mut clock = match local {
        Some(l) => l.vclock.merge(context),
        None => context.clone(),
    };
    // The counter goes past both the vnode's and the client's, so the dot is a new event.
    let dot = clock.increment(actor, now_us / 1_000_000);
    new.dot = Some(dot);
    new.meta.last_modified_us = now_us;
    new.meta.vtag = vtag_for(dot);
    if opts.last_write_wins {
        return RiakObject::new(clock, new);
    }
    let mut contents: Vec<Content> = match local {
        None => Vec::new(),
        Some(l) if opts.dvv_enabled => l
            .contents
            .iter()
            .filter(|c| !seen_by_writer(c, context, &l.vclock))
            .cloned()
            .collect(),
        // Classic clocks: the write replaces the object only if the client saw all of it.
        Some(l) if context.descends(&l.vclock) => Vec::new(),
        Some(l) => l.contents.clone(),
    };
    contents.push(new);
    finish(clock, contents, opts)
}

/// Whether a writer with `context` had seen sibling `c` of an object with clock `local`.
fn seen_by_writer(c: &Content, context: &VClock, local: &VClock) -> bool {
    match c.dot {
        Some(dot) => context.covers(dot),
        // A sibling from before dots: only a context covering the whole object saw it.
        None => context.descends(local),
    }
}

/// What a non-coordinating replica (or read repair, or handoff) does with `incoming`.
pub fn replica_merge(
    local: Option<&RiakObject>,
    incoming: &RiakObject,
    opts: &MergeOptions,
) -> ReplicaMerge {
    let Some(local) = local else {
        return ReplicaMerge::Store(incoming.clone());
    };
    match merge_pair(local, incoming, opts) {
        Pick::Left => ReplicaMerge::Unchanged,
        Pick::Right => ReplicaMerge::Store(incoming.clone()),
        Pick::Merged(obj) if obj == *local => ReplicaMerge::Unchanged,
        Pick::Merged(obj) => ReplicaMerge::Store(obj),
    }
}

/// Merges the objects returned by several replicas into the one a GET answers with.
/// Commutative, associative and idempotent; `None` only for no objects.
pub fn reconcile(objs: &[RiakObject], opts: &MergeOptions) -> Option<RiakObject> {
    let (first, rest) = objs.split_first()?;
    let mut acc = first.clone();
    for obj in rest {
        match merge_pair(&acc, obj, opts) {
            Pick::Left => {}
            Pick::Right => acc = obj.clone(),
            Pick::Merged(merged) => acc = merged,
        }
    }
    Some(acc)
}

/// The outcome of merging two objects, without cloning when one side wins whole.
enum Pick {
    Left,
    Right,
    Merged(RiakObject),
}

fn merge_pair(a: &RiakObject, b: &RiakObject, opts: &MergeOptions) -> Pick {
    let relation = relation(&a.vclock, &b.vclock);
    if relation == Relation::Equal && a == b {
        return Pick::Left;
    }
    let one_value = opts.last_write_wins || !opts.allow_mult;
    // A descendant holds everything that survives of its ancestor when the siblings follow
    // from the clock: with dots (a writer drops exactly what it saw), with one value, and
    // with data types (states that absorb their past). Classic clocks break that: a writer
    // that did not see the whole object keeps even the siblings it had seen, so a
    // descendant can still hold one its ancestor had dropped, and only the join by dots
    // below gives every merge order the same answer.
    if opts.dvv_enabled || one_value || opts.datatype.is_some() {
        match relation {
            Relation::Descends => return Pick::Left,
            Relation::Ancestor => return Pick::Right,
            Relation::Equal | Relation::Concurrent => {}
        }
    }
    // Data types merge their states whenever neither side contains the other.
    if let Some(obj) = opts
        .datatype
        .and_then(|dt| crdt::object::merge_objects(a, b, dt))
    {
        return Pick::Merged(obj);
    }
    if one_value {
        // The newest of both sides. Never the dot join: with skewed clocks each side may
        // have dropped the other's only value, and the join would keep neither.
        let contents = a.contents.iter().chain(&b.contents).cloned().collect();
        return Pick::Merged(finish(a.vclock.merge(&b.vclock), contents, opts));
    }
    Pick::Merged(syntactic_merge(a, b, opts))
}

/// Merges two objects by their dots: the union of their histories, and every sibling that
/// the other side has not superseded. Seen as the pair (siblings, history), this is a join:
/// a sibling one side has dropped under a clock covering its dot stays dropped, whatever
/// the order of merges, so it is commutative, associative and idempotent.
fn syntactic_merge(a: &RiakObject, b: &RiakObject, opts: &MergeOptions) -> RiakObject {
    let contents = survivors(a, b).chain(survivors(b, a)).cloned().collect();
    finish(a.vclock.merge(&b.vclock), contents, opts)
}

/// The siblings of `side` that `other` has not superseded: with a dot, a sibling survives if
/// `other` holds it too or has never seen its write; without one (legacy), it always does.
fn survivors<'a>(side: &'a RiakObject, other: &'a RiakObject) -> impl Iterator<Item = &'a Content> {
    side.contents.iter().filter(move |c| match c.dot {
        None => true,
        Some(dot) => !other.vclock.covers(dot) || other.contents.iter().any(|o| o.dot == c.dot),
    })
}

/// Puts `contents` in canonical order without duplicates and applies the bucket's
/// one-value policy.
fn finish(vclock: VClock, mut contents: Vec<Content>, opts: &MergeOptions) -> RiakObject {
    if opts.last_write_wins || !opts.allow_mult {
        let newest = contents.into_iter().max_by(newest_order);
        return RiakObject {
            vclock,
            contents: newest.into_iter().collect(),
        };
    }
    contents.sort_by(|x, y| x.dot.cmp(&y.dot).then_with(|| x.cmp(y)));
    contents.dedup();
    RiakObject { vclock, contents }
}

/// Orders siblings by age for the one-value policy: last-modified time, then vtag, then
/// value, then everything else, so the choice is the same on every replica.
fn newest_order(x: &Content, y: &Content) -> Ordering {
    (x.meta.last_modified_us.cmp(&y.meta.last_modified_us))
        .then_with(|| x.meta.vtag.cmp(&y.meta.vtag))
        .then_with(|| x.value.cmp(&y.value))
        .then_with(|| x.cmp(y))
}

/// A vtag for the write `dot`: the 128-bit number (actor, counter) in base 62, which is
/// unique per write and looks like Riak's (22 alphanumeric characters).
pub fn vtag_for(dot: Dot) -> Bytes {
    let n = (u128::from(u64::from_be_bytes(dot.actor.0)) << 64) | u128::from(dot.counter);
    Bytes::copy_from_slice(&crate::base62::numeral(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Metadata;
    use proptest::prelude::*;

    const DVV: MergeOptions = MergeOptions {
        allow_mult: true,
        last_write_wins: false,
        dvv_enabled: true,
        datatype: None,
    };
    const CLASSIC: MergeOptions = MergeOptions {
        dvv_enabled: false,
        ..DVV
    };
    const SINGLE: MergeOptions = MergeOptions {
        allow_mult: false,
        ..DVV
    };
    const LWW: MergeOptions = MergeOptions {
        last_write_wins: true,
        ..SINGLE
    };

    fn actor(n: u8) -> Actor {
        Actor([n; 8])
    }

    fn write(value: &str) -> Content {
        Content::new(
            Bytes::copy_from_slice(value.as_bytes()),
            Metadata::default(),
        )
    }

    fn values(obj: &RiakObject) -> Vec<&[u8]> {
        let mut v: Vec<&[u8]> = obj.contents.iter().map(|c| c.value.as_ref()).collect();
        v.sort();
        v
    }

    /// Puts `value` at vnode `a` over `local` with `ctx`, at time `t` seconds.
    fn put(
        local: Option<&RiakObject>,
        ctx: &VClock,
        value: &str,
        a: u8,
        t: u64,
        o: &MergeOptions,
    ) -> RiakObject {
        coordinate_put(local, ctx, write(value), actor(a), t * 1_000_000, o)
    }

    #[test]
    fn first_write_is_stamped() {
        let obj = put(None, &VClock::new(), "v", 1, 5, &DVV);
        let dot = Dot {
            actor: actor(1),
            counter: 1,
        };
        assert_eq!(obj.contents.len(), 1);
        let c = &obj.contents[0];
        assert_eq!(c.dot, Some(dot));
        assert_eq!(c.meta.last_modified_us, 5_000_000);
        assert_eq!(c.meta.vtag, vtag_for(dot));
        assert_eq!(obj.vclock.get(actor(1)), 1);
        assert_eq!(obj.vclock.entries()[0].timestamp, 5);
    }

    #[test]
    fn blind_writes_become_siblings_and_a_read_write_resolves_them() {
        for opts in [DVV, CLASSIC] {
            let a = put(None, &VClock::new(), "a", 1, 1, &opts);
            let ab = put(Some(&a), &VClock::new(), "b", 1, 2, &opts);
            assert_eq!(values(&ab), vec![b"a", b"b"], "{opts:?}");
            let resolved = put(Some(&ab), &ab.vclock, "ab", 1, 3, &opts);
            assert_eq!(values(&resolved), vec![b"ab"], "{opts:?}");
            assert!(resolved.vclock.dominates(&ab.vclock));
        }
    }

    #[test]
    fn dvv_drops_stale_siblings_that_classic_clocks_keep() {
        // Client 1 writes a and keeps a's context; client 2 writes b blindly; client 1 then
        // updates a with the context of its own write.
        let run = |opts: MergeOptions| {
            let a = put(None, &VClock::new(), "a", 1, 1, &opts);
            let ab = put(Some(&a), &VClock::new(), "b", 1, 2, &opts);
            put(Some(&ab), &a.vclock, "a2", 1, 3, &opts)
        };
        assert_eq!(values(&run(DVV)), vec![&b"a2"[..], b"b"]);
        assert_eq!(values(&run(CLASSIC)), vec![&b"a"[..], b"a2", b"b"]);
    }

    #[test]
    fn classic_blind_write_never_replaces_what_it_did_not_see() {
        // Incrementing the client's empty clock past the vnode's counter would make the new
        // clock descend the stored one; the stored write must still survive.
        let a = put(None, &VClock::new(), "a", 1, 1, &CLASSIC);
        let ab = put(Some(&a), &VClock::new(), "b", 1, 2, &CLASSIC);
        assert_eq!(values(&ab), vec![b"a", b"b"]);
        assert_eq!(ab.vclock.get(actor(1)), 2);
    }

    #[test]
    fn one_value_policies_keep_the_newest() {
        let a = put(None, &VClock::new(), "a", 1, 1, &SINGLE);
        let b = put(Some(&a), &VClock::new(), "b", 1, 2, &SINGLE);
        assert_eq!(values(&b), vec![b"b"]);
        assert!(b.vclock.dominates(&a.vclock));
        let l = put(Some(&b), &VClock::new(), "c", 2, 3, &LWW);
        assert_eq!(values(&l), vec![b"c"]);
        assert!(l.vclock.dominates(&b.vclock));
        // A write stamped older than what the vnode holds loses under allow_mult = false.
        let old = put(Some(&b), &VClock::new(), "old", 1, 0, &SINGLE);
        assert_eq!(values(&old), vec![b"b"]);
    }

    #[test]
    fn replica_merge_outcomes() {
        let a = put(None, &VClock::new(), "a", 1, 1, &DVV);
        let a2 = put(Some(&a), &a.vclock, "a2", 1, 2, &DVV);
        let b = put(None, &VClock::new(), "b", 2, 3, &DVV);
        assert_eq!(
            replica_merge(None, &a, &DVV),
            ReplicaMerge::Store(a.clone())
        );
        assert_eq!(replica_merge(Some(&a2), &a, &DVV), ReplicaMerge::Unchanged);
        assert_eq!(replica_merge(Some(&a2), &a2, &DVV), ReplicaMerge::Unchanged);
        assert_eq!(
            replica_merge(Some(&a), &a2, &DVV),
            ReplicaMerge::Store(a2.clone())
        );
        let ReplicaMerge::Store(m) = replica_merge(Some(&a2), &b, &DVV) else {
            panic!("concurrent objects must merge");
        };
        assert_eq!(values(&m), vec![&b"a2"[..], b"b"]);
        assert_eq!(m.vclock, a2.vclock.merge(&b.vclock));
        let ReplicaMerge::Store(one) = replica_merge(Some(&a2), &b, &SINGLE) else {
            panic!("concurrent objects must merge");
        };
        assert_eq!(values(&one), vec![b"b"]);
        // A concurrent object that adds nothing new is not rewritten.
        assert_eq!(replica_merge(Some(&m), &a, &DVV), ReplicaMerge::Unchanged);
    }

    #[test]
    fn concurrent_replica_merge_drops_siblings_the_other_side_superseded() {
        // Vnode 1 holds a and b as siblings; vnode 2 received them, then a client resolved
        // them there; meanwhile vnode 1 took a new blind write c.
        let a = put(None, &VClock::new(), "a", 1, 1, &DVV);
        let ab = put(Some(&a), &VClock::new(), "b", 1, 2, &DVV);
        let resolved = put(Some(&ab), &ab.vclock, "r", 2, 3, &DVV);
        let abc = put(Some(&ab), &VClock::new(), "c", 1, 4, &DVV);
        let merged = reconcile(&[abc.clone(), resolved.clone()], &DVV).unwrap();
        assert_eq!(values(&merged), vec![&b"c"[..], b"r"]);
        // Classic union semantics would have kept a and b: their dots say they were seen.
        assert_eq!(reconcile(&[resolved, abc], &DVV).unwrap(), merged);
    }

    #[test]
    fn legacy_siblings_without_dots() {
        let legacy = |v: &str, t| {
            let mut c = write(v);
            c.meta.last_modified_us = t;
            c
        };
        let mut clock = VClock::new();
        clock.increment(actor(9), 0);
        let old = RiakObject {
            vclock: clock.clone(),
            contents: vec![legacy("x", 1), legacy("y", 2)],
        };
        // A context that does not descend the object keeps the undotted siblings...
        let kept = put(Some(&old), &VClock::new(), "n", 1, 1, &DVV);
        assert_eq!(values(&kept), vec![&b"n"[..], b"x", b"y"]);
        // ...one that does replaces them.
        let replaced = put(Some(&old), &clock, "n", 1, 1, &DVV);
        assert_eq!(values(&replaced), vec![b"n"]);
        // Concurrent objects keep the union of undotted siblings, deduplicated.
        let mut other_clock = VClock::new();
        other_clock.increment(actor(8), 0);
        let other = RiakObject {
            vclock: other_clock,
            contents: vec![legacy("y", 2), legacy("z", 3)],
        };
        let merged = reconcile(&[old, other], &DVV).unwrap();
        assert_eq!(values(&merged), vec![&b"x"[..], b"y", b"z"]);
    }

    #[test]
    fn relations() {
        let mut a = VClock::new();
        a.increment(actor(1), 0);
        let mut b = a.clone();
        b.increment(actor(2), 0);
        let mut c = a.clone();
        c.increment(actor(3), 0);
        assert_eq!(relation(&a, &a), Relation::Equal);
        assert_eq!(relation(&b, &a), Relation::Descends);
        assert_eq!(relation(&a, &b), Relation::Ancestor);
        assert_eq!(relation(&b, &c), Relation::Concurrent);
    }

    #[test]
    fn vtags_are_unique_short_and_alphanumeric() {
        let dots = [(0u8, 1u64), (0, 2), (1, 1), (255, u64::MAX)];
        let tags: Vec<Bytes> = dots
            .iter()
            .map(|&(a, counter)| {
                vtag_for(Dot {
                    actor: actor(a),
                    counter,
                })
            })
            .collect();
        for (i, t) in tags.iter().enumerate() {
            assert!(
                t.len() == 22 && t.iter().all(u8::is_ascii_alphanumeric),
                "{t:?}"
            );
            assert!(!tags[..i].contains(t));
        }
        assert_eq!(
            vtag_for(Dot {
                actor: actor(0),
                counter: 61
            }),
            &b"000000000000000000000z"[..]
        );
    }

    #[test]
    fn a_sibling_dropped_under_the_same_clock_stays_dropped() {
        // Two objects with one history, one of them without sibling a: a was dropped by
        // something that saw it, so every merge order leaves it out, as when the clocks are
        // concurrent. Keeping the union would revive it in some merge orders only.
        let a = put(None, &VClock::new(), "a", 1, 1, &DVV);
        let ab = put(Some(&a), &VClock::new(), "b", 1, 2, &DVV);
        let only_b = RiakObject {
            vclock: ab.vclock.clone(),
            contents: ab
                .contents
                .iter()
                .filter(|c| c.value == "b")
                .cloned()
                .collect(),
        };
        assert_eq!(relation(&only_b.vclock, &ab.vclock), Relation::Equal);
        for opts in [DVV, CLASSIC] {
            let pair = [only_b.clone(), ab.clone()];
            assert_eq!(reconcile(&pair, &opts), Some(only_b.clone()), "{opts:?}");
            let pair = [ab.clone(), only_b.clone()];
            assert_eq!(reconcile(&pair, &opts), Some(only_b.clone()), "{opts:?}");
            let kept = replica_merge(Some(&only_b), &ab, &opts);
            assert_eq!(kept, ReplicaMerge::Unchanged, "{opts:?}");
            let dropped = replica_merge(Some(&ab), &only_b, &opts);
            assert_eq!(dropped, ReplicaMerge::Store(only_b.clone()), "{opts:?}");
        }
    }

    #[test]
    fn a_classic_descendant_loses_the_siblings_its_ancestor_dropped() {
        // Vnode 2 replaced w0 and w1 (its writer read both); vnode 1 then took a write whose
        // client read vnode 2, but classic clocks keep w0 and w1 there because that client
        // had not seen w3. The descendant must not win whole: merged in any order with a
        // third object, w0 and w1 stay dropped.
        let w0 = put(None, &VClock::new(), "w0", 1, 1, &CLASSIC);
        let w1 = put(Some(&w0), &VClock::new(), "w1", 1, 2, &CLASSIC);
        let w2 = put(None, &w1.vclock, "w2", 2, 3, &CLASSIC);
        let w3 = put(Some(&w1), &VClock::new(), "w3", 1, 4, &CLASSIC);
        let w4 = put(None, &VClock::new(), "w4", 0, 5, &CLASSIC);
        let w5 = put(Some(&w2), &VClock::new(), "w5", 2, 6, &CLASSIC);
        let w6 = put(Some(&w3), &w5.vclock, "w6", 1, 7, &CLASSIC);
        assert_eq!(values(&w6), vec![&b"w0"[..], b"w1", b"w3", b"w6"]);
        assert_eq!(relation(&w6.vclock, &w5.vclock), Relation::Descends);
        let merged = reconcile(&[w6.clone(), w5.clone()], &CLASSIC).unwrap();
        assert_eq!(values(&merged), vec![&b"w3"[..], b"w6"]);
        let all = reconcile(&[w6.clone(), w5.clone(), w4.clone()], &CLASSIC).unwrap();
        assert_eq!(values(&all), vec![&b"w3"[..], b"w4", b"w6"]);
        assert_eq!(reconcile(&[w5, w4, w6], &CLASSIC), Some(all));
    }

    #[test]
    fn one_value_merges_keep_a_value_under_skewed_clocks() {
        // x was replaced by w and y by z, but each replacement is stamped older than what it
        // replaced, so each side kept the other's replaced value. The merge keeps the newest
        // of the two, never neither.
        let y = put(None, &VClock::new(), "y", 2, 5, &SINGLE);
        let z = put(Some(&y), &y.vclock, "z", 2, 6, &SINGLE);
        let x = put(None, &VClock::new(), "x", 1, 10, &SINGLE);
        let w = put(Some(&x), &x.vclock, "w", 1, 3, &SINGLE);
        let left = reconcile(&[x.clone(), z.clone()], &SINGLE).unwrap();
        let right = reconcile(&[w.clone(), y.clone()], &SINGLE).unwrap();
        assert_eq!(values(&left), vec![b"x"]);
        assert_eq!(values(&right), vec![b"y"]);
        assert_eq!(relation(&left.vclock, &right.vclock), Relation::Concurrent);
        let merged = reconcile(&[left.clone(), right.clone()], &SINGLE).unwrap();
        assert_eq!(values(&merged), vec![b"x"]);
        assert_eq!(reconcile(&[right, left], &SINGLE), Some(merged));
    }

    #[test]
    fn reconcile_of_nothing_is_none() {
        assert_eq!(reconcile(&[], &DVV), None);
    }

    // ---- Generated histories -------------------------------------------------------------

    const REPLICAS: usize = 3;

    #[derive(Clone, Debug)]
    enum Op {
        /// A client reads the replicas in `read_mask` (reconciled), then writes through `at`.
        Put { at: usize, read_mask: u8 },
        /// Replica `from` sends its object to replica `to`.
        Sync { from: usize, to: usize },
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..REPLICAS, 0u8..1 << REPLICAS).prop_map(|(at, read_mask)| Op::Put { at, read_mask }),
            (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Op::Sync { from, to }),
        ]
    }

    fn arb_opts() -> impl Strategy<Value = MergeOptions> {
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(allow_mult, last_write_wins, dvv_enabled)| MergeOptions {
                allow_mult,
                last_write_wins,
                dvv_enabled,
                datatype: None,
            },
        )
    }

    /// An acknowledged write and what its client had read.
    struct Write {
        value: Bytes,
        dot: Dot,
        context: VClock,
        /// Values of the siblings the client read.
        seen: Vec<Bytes>,
    }

    struct History {
        opts: MergeOptions,
        replicas: Vec<Option<RiakObject>>,
        writes: Vec<Write>,
        /// Every object any replica ever held.
        snapshots: Vec<RiakObject>,
    }

    impl History {
        fn run(opts: MergeOptions, ops: &[Op]) -> History {
            let mut h = History {
                opts,
                replicas: vec![None; REPLICAS],
                writes: Vec::new(),
                snapshots: Vec::new(),
            };
            for (step, op) in ops.iter().enumerate() {
                // Strictly increasing time: a write that saw another is always newer than it.
                let now_us = (step as u64 + 1) * 1_000_003;
                match *op {
                    Op::Put { at, read_mask } => h.put(at, read_mask, now_us),
                    Op::Sync { from, to } => h.sync(from, to),
                }
            }
            h
        }

        fn put(&mut self, at: usize, read_mask: u8, now_us: u64) {
            let read = self.read(read_mask);
            self.write_after(read, at, now_us);
        }

        /// What a client reading the replicas in `read_mask` gets: context and sibling values.
        fn read(&self, read_mask: u8) -> (VClock, Vec<Bytes>) {
            let replies: Vec<RiakObject> = (0..REPLICAS)
                .filter(|i| read_mask & (1 << i) != 0)
                .filter_map(|i| self.replicas[i].clone())
                .collect();
            match reconcile(&replies, &self.opts) {
                Some(o) => (o.vclock, o.contents.into_iter().map(|c| c.value).collect()),
                None => (VClock::new(), Vec::new()),
            }
        }

        fn write_after(&mut self, (context, seen): (VClock, Vec<Bytes>), at: usize, now_us: u64) {
            let value = Bytes::from(format!("w{}", self.writes.len()));
            let new = Content::new(value.clone(), Metadata::default());
            let local = self.replicas[at].as_ref();
            let obj = coordinate_put(local, &context, new, actor(at as u8), now_us, &self.opts);
            // The write's dot is the coordinator's latest event.
            let dot = Dot {
                actor: actor(at as u8),
                counter: obj.vclock.get(actor(at as u8)),
            };
            self.writes.push(Write {
                value,
                dot,
                context,
                seen,
            });
            self.store(at, obj);
        }

        fn sync(&mut self, from: usize, to: usize) {
            let Some(incoming) = self.replicas[from].clone() else {
                return;
            };
            if let ReplicaMerge::Store(obj) =
                replica_merge(self.replicas[to].as_ref(), &incoming, &self.opts)
            {
                self.store(to, obj);
            }
        }

        fn store(&mut self, at: usize, obj: RiakObject) {
            self.snapshots.push(obj.clone());
            self.replicas[at] = Some(obj);
        }

        /// Full anti-entropy: every replica sends to every other, twice.
        fn converge(&mut self) {
            for _ in 0..2 {
                for from in 0..REPLICAS {
                    for to in 0..REPLICAS {
                        self.sync(from, to);
                    }
                }
            }
        }

        /// Whether some later write's client had seen `w` (its context covers w's dot).
        fn superseded(&self, w: &Write) -> bool {
            self.writes.iter().any(|o| o.context.covers(w.dot))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn merge_is_commutative_associative_idempotent(
            opts in arb_opts(),
            ops in prop::collection::vec(arb_op(), 1..30),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 3),
        ) {
            let h = History::run(opts, &ops);
            prop_assume!(!h.snapshots.is_empty());
            let pick = |i: usize| h.snapshots[picks[i].index(h.snapshots.len())].clone();
            let (a, b, c) = (pick(0), pick(1), pick(2));
            let m = |x: &RiakObject, y: &RiakObject| reconcile(&[x.clone(), y.clone()], &opts).unwrap();
            prop_assert_eq!(m(&a, &b), m(&b, &a));
            prop_assert_eq!(m(&m(&a, &b), &c), m(&a, &m(&b, &c)));
            prop_assert_eq!(m(&a, &a), a.clone());
            prop_assert_eq!(reconcile(&[a.clone(), b.clone(), c.clone()], &opts), reconcile(&[c, a, b], &opts));
        }

        #[test]
        fn replicas_converge_and_absorb_every_state(
            opts in arb_opts(),
            ops in prop::collection::vec(arb_op(), 1..30),
        ) {
            let mut h = History::run(opts, &ops);
            h.converge();
            let Some(last) = h.replicas[0].clone() else { return Ok(()) };
            for r in &h.replicas {
                prop_assert_eq!(r.as_ref(), Some(&last));
            }
            for s in &h.snapshots {
                prop_assert_eq!(reconcile(&[last.clone(), s.clone()], &opts).unwrap(), last.clone());
            }
        }

        #[test]
        fn no_acknowledged_write_is_lost(
            dvv in any::<bool>(),
            ops in prop::collection::vec(arb_op(), 1..30),
        ) {
            let opts = MergeOptions { allow_mult: true, last_write_wins: false, dvv_enabled: dvv, datatype: None };
            let mut h = History::run(opts, &ops);
            h.converge();
            let Some(last) = h.replicas[0].clone() else { return Ok(()) };
            let present: Vec<&Bytes> = last.contents.iter().map(|c| &c.value).collect();
            for w in &h.writes {
                // A write disappears only when some client that had seen it wrote over it.
                let kept = present.contains(&&w.value);
                prop_assert!(kept || h.superseded(w), "{:?} lost", w.value);
                // With dots, superseded writes are gone: siblings are exactly the concurrent ones.
                if dvv {
                    prop_assert_eq!(kept, !h.superseded(w), "{:?}", w.value);
                }
            }
            // Nothing appears that nobody wrote.
            for v in present {
                prop_assert!(h.writes.iter().any(|w| w.value == *v));
            }
        }

        #[test]
        fn a_write_supersedes_every_sibling_its_client_read(
            ops in prop::collection::vec(arb_op(), 1..30),
        ) {
            let mut h = History { opts: DVV, replicas: vec![None; REPLICAS], writes: Vec::new(), snapshots: Vec::new() };
            for (step, op) in ops.iter().enumerate() {
                let now_us = (step as u64 + 1) * 1_000_003;
                match *op {
                    Op::Put { at, read_mask } => {
                        h.put(at, read_mask, now_us);
                        let w = h.writes.last().unwrap();
                        let stored = h.replicas[at].as_ref().unwrap();
                        for c in &stored.contents {
                            prop_assert!(!w.seen.contains(&c.value), "{:?} survived a write that read it", c.value);
                        }
                        prop_assert!(stored.contents.iter().any(|c| c.value == w.value));
                    }
                    Op::Sync { from, to } => h.sync(from, to),
                }
            }
        }

        #[test]
        fn one_value_policies_keep_exactly_the_last_write(
            lww in any::<bool>(),
            dvv in any::<bool>(),
            ops in prop::collection::vec(arb_op(), 1..30),
        ) {
            let opts = MergeOptions { allow_mult: false, last_write_wins: lww, dvv_enabled: dvv, datatype: None };
            let mut h = History::run(opts, &ops);
            for s in &h.snapshots {
                prop_assert_eq!(s.contents.len(), 1);
            }
            h.converge();
            if let (Some(last), Some(w)) = (h.replicas[0].as_ref(), h.writes.last()) {
                prop_assert_eq!(&last.contents[0].value, &w.value);
            }
        }

        #[test]
        fn concurrent_puts_with_allow_mult_make_siblings(
            dvv in any::<bool>(),
            ops in prop::collection::vec(arb_op(), 0..20),
            a in 0..REPLICAS,
            b in 0..REPLICAS,
        ) {
            let opts = MergeOptions { allow_mult: true, last_write_wins: false, dvv_enabled: dvv, datatype: None };
            let mut h = History::run(opts, &ops);
            h.converge();
            // Two clients read the same converged state and write through different vnodes.
            let read = h.read(1);
            let base = h.snapshots.len() as u64 + 100;
            h.write_after(read.clone(), a, base * 1_000_003);
            h.write_after(read, b, (base + 1) * 1_000_003);
            h.converge();
            let last = h.replicas[0].as_ref().unwrap();
            let n = h.writes.len();
            for w in &h.writes[n - 2..] {
                prop_assert!(last.contents.iter().any(|c| c.value == w.value));
            }
        }
    }
}
