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

use crate::object::{Content, RiakObject};
use crate::vclock::{Actor, Dot, VClock};

/// The bucket properties that steer merging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeOptions {
    /// Keep concurrent writes as siblings; when false only the newest sibling is kept.
    pub allow_mult: bool,
    /// Skip causality: every write replaces the object, the newest write wins.
    pub last_write_wins: bool,
    /// Use dots to drop exactly the siblings a writer had seen (dotted version vectors).
    pub dvv_enabled: bool,
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
    new.meta.vtag = vtag_for(dot).into();
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
    match relation(&a.vclock, &b.vclock) {
        Relation::Descends => Pick::Left,
        Relation::Ancestor => Pick::Right,
        Relation::Equal if a == b => Pick::Left,
        // Same history but different contents should not happen (a dot names one write);
        // if it does, keep everything rather than guess.
        Relation::Equal => {
            let contents = a.contents.iter().chain(&b.contents).cloned().collect();
            Pick::Merged(finish(a.vclock.merge(&b.vclock), contents, opts))
        }
        Relation::Concurrent => Pick::Merged(syntactic_merge(a, b, opts)),
    }
}

/// Merges two concurrent objects: the union of their histories, and every sibling that the
/// other side has not superseded.
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
/// unique per write and looks like Riak's (up to 22 alphanumeric characters).
pub fn vtag_for(dot: Dot) -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = (u128::from(u64::from_be_bytes(dot.actor.0)) << 64) | u128::from(dot.counter);
    let mut out = Vec::with_capacity(22);
    loop {
        out.push(DIGITS[(n % 62) as usize]);
        n /= 62;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    out.into_iter().map(char::from).collect()
}
