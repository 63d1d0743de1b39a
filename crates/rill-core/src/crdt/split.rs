//! Sets stored one record per member, and the deltas that update them.
//!
//! A set kept as one object is read and rewritten whole by every update, so an add costs time
//! proportional to the set (Riak's behaviour: tens of milliseconds at ten thousand members). In
//! the *split* layout a vnode stores a set as a small [`SetHead`] — the set's clock, its
//! deferred removes and its size — plus one record per member holding that member's live dots.
//! An update reads the head and the records of the members it names, and writes those back:
//! its cost depends on the operation, not on the set.
//!
//! The coordinating replica turns an operation into a [`SetDelta`]: the event's dot, the clock
//! it was applied on, and per member the dots it removed and whether it added one. A replica
//! applies a delta only on a state that has seen everything the coordinator had seen
//! ([`DeltaOutcome::Behind`] otherwise): then joining the coordinator's whole state would
//! change nothing but the delta's members, so applying the delta to those members is exactly
//! that join. A replica that is behind merges the whole state instead, as before.
//!
//! Whole states still exist where a set crosses a boundary — a fetch, read repair, handoff —
//! and [`assemble`] / [`split`] convert between the two forms; [`diff`] says which member
//! records a whole-state merge changed.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::codec::{Reader, put_varint};
use crate::crdt::causal::{Causal, Deferred, DotSet, VersionVector};
use crate::crdt::encoding::{
    self, Actors, DecodeError, TAG_SET, put_bytes, put_deferred, put_vv, read_deferred, read_vv,
};
use crate::crdt::object::{content_type, newest_content, next_event, state_of, typed_content};
use crate::crdt::set::{Elements, OrSet, SetOp};
use crate::crdt::{Crdt, DtError};
use crate::object::{Content, RiakObject};
use crate::props::Datatype;
use crate::vclock::{Actor, Dot};

/// The format byte of a set head (whole states start with [`super::encoding::FORMAT_V1`]), so
/// a head can never be mistaken for a whole state.
pub const FORMAT_SPLIT: u8 = 2;

const TRUNCATED: DecodeError = DecodeError("truncated");

/// What a split set keeps apart from its members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetHead {
    pub clock: VersionVector,
    pub deferred: Deferred<Bytes>,
    /// Members present.
    pub len: u64,
}

impl SetHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.clock.len() * 10);
        out.push(FORMAT_SPLIT);
        out.push(TAG_SET);
        put_vv(&mut out, &self.clock);
        put_deferred(&mut out, &self.deferred, |out, m| put_bytes(out, m));
        put_varint(&mut out, self.len);
        out
    }

    pub fn decode(raw: &Bytes) -> Result<SetHead, DecodeError> {
        let mut r = Reader::new(raw);
        if r.byte() != Some(FORMAT_SPLIT) || r.byte() != Some(TAG_SET) {
            return Err(DecodeError("not a set head"));
        }
        let clock = read_vv(&mut r)?;
        let deferred = read_deferred(&mut r, |r| {
            let len = usize::try_from(r.varint().ok_or(TRUNCATED)?).map_err(|_| TRUNCATED)?;
            Ok(raw.slice_ref(r.take(len).ok_or(TRUNCATED)?))
        })?;
        let len = r.varint().ok_or(TRUNCATED)?;
        if r.remaining() != 0 {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(SetHead {
            clock,
            deferred,
            len,
        })
    }
}

/// Whether stored state bytes are a split set's head.
pub fn is_head(value: &[u8]) -> bool {
    value.first() == Some(&FORMAT_SPLIT)
}

/// A member record: the member's live dots, each with its whole actor id (records are
/// written independently of the head, so they cannot name actors by position in its clock).
pub fn encode_dots(dots: &DotSet) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + dots.len() * 10);
    put_varint(&mut out, dots.len() as u64);
    for d in dots.dots() {
        out.extend_from_slice(&d.actor.0);
        put_varint(&mut out, d.counter);
    }
    out
}

pub fn decode_dots(raw: &[u8]) -> Result<DotSet, DecodeError> {
    let mut r = Reader::new(raw);
    let mut dots = DotSet::default();
    for _ in 0..r.varint().ok_or(TRUNCATED)? {
        let actor = Actor(r.array().ok_or(TRUNCATED)?);
        match r.varint().ok_or(TRUNCATED)? {
            0 => return Err(DecodeError("dot counter 0")),
            counter => dots.0.insert(Dot { actor, counter }, ()),
        };
    }
    if dots.is_empty() || r.remaining() != 0 {
        return Err(DecodeError("malformed member record"));
    }
    Ok(dots)
}

/// The records of the members one update names, as read from storage: a member without an
/// entry is absent.
pub type Touched = BTreeMap<Bytes, DotSet>;

/// One member's part of an update.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberChange {
    pub member: Bytes,
    /// Dots of the member the coordinator held and dropped (an add replaces them all; a
    /// remove drops the ones the client had seen).
    pub removed: Vec<Dot>,
    /// Whether the member gained the event's dot (an add).
    pub added: bool,
}

/// A set update as replicas apply it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetDelta {
    pub dot: Dot,
    /// The coordinator's clock before the update.
    pub seen: VersionVector,
    /// In member order, every member the operation named.
    pub changes: Vec<MemberChange>,
    /// Removes whose context the coordinator had not fully seen yet, to wait at every replica.
    pub deferred: Option<(VersionVector, Vec<Bytes>)>,
}

impl SetDelta {
    /// The members the operation named.
    pub fn members(&self) -> impl Iterator<Item = &Bytes> {
        self.changes.iter().map(|c| &c.member)
    }
}

/// The members whose records a replica holding `head` must read before applying `delta` (and
/// write after): the delta's, and those of waiting removes that the delta's event lets run.
pub fn needed(head: &SetHead, delta: &SetDelta) -> Vec<Bytes> {
    let mut clock = head.clock.clone();
    clock.witness(delta.dot);
    let mut members: Vec<Bytes> = delta.members().cloned().collect();
    for (ctx, items) in &head.deferred.0 {
        if clock.descends(ctx) {
            members.extend(items.iter().cloned());
        }
    }
    if let Some((ctx, items)) = &delta.deferred
        && clock.descends(ctx)
    {
        members.extend(items.iter().cloned());
    }
    members.sort();
    members.dedup();
    members
}

/// Applies `op` as event `dot` at the coordinating replica. `touched` must hold the records of
/// every member the operation names; it is updated in place, as is the head. Returns the delta
/// for the other replicas; on error nothing changed.
pub fn coordinate(
    head: &mut SetHead,
    touched: &mut Touched,
    op: &SetOp,
    dot: Dot,
    ctx: Option<&VersionVector>,
) -> Result<SetDelta, DtError> {
    // The operation runs on the set restricted to the members it names: every rule of the
    // whole-set code (preconditions, add-wins, deferral) applies unchanged.
    let mut part = OrSet {
        clock: head.clock.clone(),
        store: Elements(std::mem::take(touched)),
        deferred: head.deferred.clone(),
    };
    let before = part.store.clone();
    let seen = part.clock.clone();
    if let Err(e) = part.apply(op, dot, ctx) {
        *touched = before.0;
        return Err(e);
    }
    let mut named: Vec<&Bytes> = op.adds.iter().chain(&op.removes).collect();
    named.sort();
    named.dedup();
    let empty = DotSet::default();
    let changes = named
        .into_iter()
        .map(|m| {
            let old = before.0.get(m).unwrap_or(&empty);
            let new = part.store.0.get(m).unwrap_or(&empty);
            MemberChange {
                member: m.clone(),
                removed: old.dots().filter(|d| !new.0.contains_key(d)).collect(),
                added: new.0.contains_key(&dot),
            }
        })
        .collect();
    let deferred = ctx
        .filter(|ctx| !part.clock.descends(ctx) && !op.removes.is_empty())
        .map(|ctx| (ctx.clone(), op.removes.clone()));
    head.len = adjusted_len(head.len, &before, &part.store);
    head.clock = part.clock;
    head.deferred = part.deferred;
    *touched = part.store.0;
    Ok(SetDelta {
        dot,
        seen,
        changes,
        deferred,
    })
}

/// What a replica made of a delta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// Applied: the head and `touched` changed.
    Applied,
    /// The replica had already seen the event: nothing to do.
    Seen,
    /// The replica has not seen everything the coordinator had: it must merge the whole state.
    Behind,
}

/// Applies a coordinator's delta at a replica whose head is `head` and whose records of the
/// [`needed`] members are `touched`.
pub fn apply(head: &mut SetHead, touched: &mut Touched, delta: &SetDelta) -> DeltaOutcome {
    if head.clock.covers(delta.dot) {
        return DeltaOutcome::Seen;
    }
    if !head.clock.descends(&delta.seen) {
        return DeltaOutcome::Behind;
    }
    let before = Elements(touched.clone());
    for change in &delta.changes {
        let dots = touched.entry(change.member.clone()).or_default();
        for d in &change.removed {
            dots.0.remove(d);
        }
        if change.added {
            dots.0.insert(delta.dot, ());
        }
    }
    head.clock.witness(delta.dot);
    // As a whole-state merge does: take in the delta's waiting removes, then run every waiting
    // remove whose context this replica has now seen (this replica may have seen more than
    // the coordinator, and the delta's event may be the one a remove waited for).
    if let Some((ctx, members)) = &delta.deferred {
        head.deferred
            .0
            .entry(ctx.clone())
            .or_default()
            .extend(members.iter().cloned());
    }
    for (ctx, members) in head
        .deferred
        .absorb_and_take_ready(&Deferred::default(), &head.clock)
    {
        for m in members {
            if let Some(dots) = touched.get_mut(&m) {
                dots.remove_seen(Some(&ctx));
            }
        }
    }
    touched.retain(|_, dots| !dots.is_empty());
    head.len = adjusted_len(head.len, &before, &Elements(touched.clone()));
    DeltaOutcome::Applied
}

/// The head's size after the named members went from `before` to `after`.
fn adjusted_len(len: u64, before: &Elements, after: &Elements) -> u64 {
    (len + after.len() as u64).saturating_sub(before.len() as u64)
}

/// The whole set from its head and its member records (in any order).
pub fn assemble(head: SetHead, members: impl IntoIterator<Item = (Bytes, DotSet)>) -> OrSet {
    Causal {
        clock: head.clock,
        store: Elements(members.into_iter().collect()),
        deferred: head.deferred,
    }
}

/// The whole set's state bytes (what [`encoding::decode`] reads) written straight from its head
/// and its records (member, record), without building the set: a fetch of a big set is mostly
/// this. Records in member order, as a scan yields them.
pub fn assemble_state<'a>(
    head: &SetHead,
    records: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + Clone,
) -> Result<Vec<u8>, DecodeError> {
    let bytes: usize = records.clone().map(|(m, r)| m.len() + r.len()).sum();
    let mut out = Vec::with_capacity(16 + head.clock.len() * 10 + bytes);
    out.push(encoding::FORMAT_V1);
    out.push(TAG_SET);
    put_vv(&mut out, &head.clock);
    let actors = Actors::of(&head.clock);
    put_varint(&mut out, records.len() as u64);
    for (member, record) in records {
        put_bytes(&mut out, member);
        let mut r = Reader::new(record);
        let n = r.varint().ok_or(TRUNCATED)?;
        if n == 0 {
            return Err(DecodeError("malformed member record"));
        }
        put_varint(&mut out, n);
        for _ in 0..n {
            let actor = Actor(r.array().ok_or(TRUNCATED)?);
            let counter = match r.varint().ok_or(TRUNCATED)? {
                0 => return Err(DecodeError("dot counter 0")),
                c => c,
            };
            actors.put_dot(&mut out, Dot { actor, counter });
        }
        if r.remaining() != 0 {
            return Err(DecodeError("malformed member record"));
        }
    }
    put_deferred(&mut out, &head.deferred, |out, m| put_bytes(out, m));
    Ok(out)
}

/// A whole set as a head and its member records.
pub fn split(set: OrSet) -> (SetHead, Elements) {
    let head = SetHead {
        clock: set.clock,
        deferred: set.deferred,
        len: set.store.len() as u64,
    };
    (head, set.store)
}

/// The member records that change from `old` to `new`: the new dots, or `None` for a member
/// that is gone. In member order.
pub fn diff<'a>(
    old: &'a Elements,
    new: &'a Elements,
) -> impl Iterator<Item = (&'a Bytes, Option<&'a DotSet>)> + 'a {
    let gone = old
        .0
        .keys()
        .filter(|m| !new.0.contains_key(*m))
        .map(|m| (m, None));
    let changed = new
        .0
        .iter()
        .filter(|(m, dots)| old.0.get(*m) != Some(*dots))
        .map(|(m, dots)| (m, Some(dots)));
    let mut all: Vec<_> = gone.chain(changed).collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    all.into_iter()
}

/// Sets whose whole state takes more bytes than this are stored split. Below it, reading and
/// rewriting the state costs less than a read and a write per member named plus the head
/// (measured: 16 clients adding to sets of a dozen members ran at 58 % of the whole layout's
/// rate with every set split).
pub const SPLIT_ABOVE_BYTES: usize = 8 * 1024;

/// Whether a whole set object is big enough to be stored split.
pub fn worth_splitting(obj: &RiakObject) -> bool {
    match obj.contents.as_slice() {
        [c] => !c.is_tombstone() && !is_head(&c.value) && c.value.len() > SPLIT_ABOVE_BYTES,
        _ => false,
    }
}

/// A stored object's content, when it is a split set's head.
pub fn head_content(obj: &RiakObject) -> Option<&Content> {
    match obj.contents.as_slice() {
        [c] if !c.is_tombstone()
            && is_head(&c.value)
            && c.meta.content_type == content_type(Datatype::Set) =>
        {
            Some(c)
        }
        _ => None,
    }
}

/// What a vnode holds of a set key, as an update starts from it: the head, and — when the
/// object is stored whole (written before the split layout, or a tombstone) — its members,
/// which the update must write out as records.
pub fn stored_head(local: Option<&RiakObject>) -> Result<(SetHead, Option<Elements>), DecodeError> {
    let Some(obj) = local else {
        return Ok((SetHead::default(), None));
    };
    if let Some(c) = head_content(obj) {
        return Ok((SetHead::decode(&c.value)?, None));
    }
    match state_of(obj, Datatype::Set, true)? {
        Some(Crdt::Set(set)) => {
            let (head, members) = split(set);
            Ok((head, Some(members)))
        }
        _ => Err(DecodeError("state of another data type")),
    }
}

/// The coordinating replica's part of a set update in the split layout: the object to store
/// under the key (the new head) and the delta for the other replicas. `head` and `touched`
/// (see [`coordinate`]) are updated to what this replica now holds.
pub fn coordinate_object(
    local: Option<&RiakObject>,
    head: &mut SetHead,
    touched: &mut Touched,
    op: &SetOp,
    ctx: Option<&VersionVector>,
    actor: Actor,
    now_us: u64,
) -> Result<(RiakObject, SetDelta), DtError> {
    let (vclock, dot) = next_event(local, actor, head.clock.get(actor), now_us);
    let delta = coordinate(head, touched, op, dot, ctx)?;
    let content = typed_content(Datatype::Set, dot, now_us, Bytes::from(head.encode()));
    Ok((RiakObject::new(vclock, content), delta))
}

/// A replica's part: applies the coordinator's `delta`, whose head object is `incoming`, to
/// what this replica holds (`local`, read as `head` and `touched`). Returns the object to
/// store under the key once [`DeltaOutcome::Applied`].
pub fn apply_object(
    local: Option<&RiakObject>,
    head: &mut SetHead,
    touched: &mut Touched,
    incoming: &RiakObject,
    delta: &SetDelta,
) -> (DeltaOutcome, Option<RiakObject>) {
    let outcome = apply(head, touched, delta);
    if outcome != DeltaOutcome::Applied {
        return (outcome, None);
    }
    let local_contents = local.map(|o| o.contents.as_slice()).unwrap_or_default();
    let Some(newest) = newest_content(local_contents.iter().chain(&incoming.contents)) else {
        return (DeltaOutcome::Behind, None);
    };
    let content = Content {
        meta: newest.meta.clone(),
        value: Bytes::from(head.encode()),
        dot: newest.dot,
    };
    let vclock = match local {
        Some(l) => l.vclock.merge(&incoming.vclock),
        None => incoming.vclock.clone(),
    };
    (outcome, Some(RiakObject::new(vclock, content)))
}

/// A whole set object in the split layout: its head object and its members. `None` when the
/// object holds no single readable set state (a tombstone, or siblings a merge could not
/// join), which is then stored whole.
pub fn split_object(obj: &RiakObject) -> Option<(RiakObject, Elements)> {
    let [c] = obj.contents.as_slice() else {
        return None;
    };
    if c.is_tombstone() {
        return None;
    }
    let Ok(Crdt::Set(set)) = encoding::decode(&c.value) else {
        return None;
    };
    let (head, members) = split(set);
    let content = Content {
        value: Bytes::from(head.encode()),
        ..c.clone()
    };
    Some((RiakObject::new(obj.vclock.clone(), content), members))
}

/// A split set's head object made whole again with its members: what read repair or handoff
/// sees.
pub fn assemble_object(
    head_obj: &RiakObject,
    members: impl IntoIterator<Item = (Bytes, DotSet)>,
) -> Result<RiakObject, DecodeError> {
    let c = head_content(head_obj).ok_or(DecodeError("not a set head"))?;
    let set = assemble(SetHead::decode(&c.value)?, members);
    Ok(with_state(head_obj, c, encoding::encode(&Crdt::Set(set))))
}

/// [`assemble_object`] from the records as stored (see [`assemble_state`]): what a fetch sees.
pub fn assemble_object_from_records<'a>(
    head_obj: &RiakObject,
    records: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + Clone,
) -> Result<RiakObject, DecodeError> {
    let c = head_content(head_obj).ok_or(DecodeError("not a set head"))?;
    let state = assemble_state(&SetHead::decode(&c.value)?, records)?;
    Ok(with_state(head_obj, c, state))
}

fn with_state(head_obj: &RiakObject, c: &Content, state: Vec<u8>) -> RiakObject {
    let content = Content {
        value: Bytes::from(state),
        ..c.clone()
    };
    RiakObject::new(head_obj.vclock.clone(), content)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::crdt::causal::tests::{actor, dot};

    const NOW: u64 = 1_700_000_000_000_000;

    fn m(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn op(adds: &[&str], removes: &[&str]) -> SetOp {
        SetOp {
            adds: adds.iter().map(|s| m(s)).collect(),
            removes: removes.iter().map(|s| m(s)).collect(),
        }
    }

    /// The records `op` names, from a whole set.
    fn touched_of(set: &OrSet, op: &SetOp) -> Touched {
        op.adds
            .iter()
            .chain(&op.removes)
            .filter_map(|m| Some((m.clone(), set.store.0.get(m)?.clone())))
            .collect()
    }

    /// A replica in both forms: the whole state the old layout keeps, and the split one.
    #[derive(Clone, Debug)]
    struct Twin {
        actor: Actor,
        whole: OrSet,
        head: SetHead,
        members: Elements,
    }

    impl Twin {
        fn new(n: u8) -> Twin {
            Twin {
                actor: actor(n),
                whole: OrSet::default(),
                head: SetHead::default(),
                members: Elements::default(),
            }
        }

        fn assembled(&self) -> OrSet {
            assemble(self.head.clone(), self.members.0.clone())
        }

        /// Coordinates `op` in both forms; returns the delta and the whole post-state.
        fn update(
            &mut self,
            op: &SetOp,
            ctx: Option<&VersionVector>,
        ) -> Result<(SetDelta, OrSet), DtError> {
            let d = Dot {
                actor: self.actor,
                counter: self.whole.clock.get(self.actor) + 1,
            };
            let whole = self.whole.apply(op, d, ctx);
            let mut touched = touched_of(&self.assembled(), op);
            let split = coordinate(&mut self.head, &mut touched, op, d, ctx);
            assert_eq!(whole.is_ok(), split.is_ok(), "{whole:?} / {split:?}");
            let delta = split?;
            self.store(touched, delta.members());
            Ok((delta, self.whole.clone()))
        }

        /// Delivers a coordinator's update: the old layout merges the whole state, the split
        /// layout applies the delta, or merges the whole state when it is behind.
        fn deliver(&mut self, delta: &SetDelta, post: &OrSet) -> DeltaOutcome {
            self.whole.merge(post);
            let needed = needed(&self.head, delta);
            let mut touched: Touched = needed
                .iter()
                .filter_map(|m| Some((m.clone(), self.members.0.get(m)?.clone())))
                .collect();
            let outcome = apply(&mut self.head, &mut touched, delta);
            match outcome {
                DeltaOutcome::Applied => self.store(touched, needed.iter()),
                DeltaOutcome::Seen => {}
                DeltaOutcome::Behind => self.merge_whole(post),
            }
            outcome
        }

        /// A whole-state merge (read repair, handoff) in the split layout: diff the members.
        fn merge_whole(&mut self, other: &OrSet) {
            let mut merged = self.assembled();
            merged.merge(other);
            let (head, members) = split(merged);
            let changes: Vec<(Bytes, Option<DotSet>)> = diff(&self.members, &members)
                .map(|(m, d)| (m.clone(), d.cloned()))
                .collect();
            for (member, dots) in changes {
                match dots {
                    Some(d) => self.members.0.insert(member, d),
                    None => self.members.0.remove(&member),
                };
            }
            assert_eq!(self.members, members);
            self.head = head;
        }

        fn store<'a>(&mut self, touched: Touched, members: impl Iterator<Item = &'a Bytes>) {
            for member in members {
                match touched.get(member) {
                    Some(d) => self.members.0.insert(member.clone(), d.clone()),
                    None => self.members.0.remove(member),
                };
            }
        }

        fn check(&self) {
            assert_eq!(
                self.assembled(),
                self.whole,
                "split and whole layouts differ"
            );
            assert_eq!(self.head.len, self.members.len() as u64);
            let records: Vec<(Bytes, Bytes)> = self
                .members
                .iter()
                .map(|(m, d)| (m.clone(), Bytes::from(encode_dots(d))))
                .collect();
            let refs = records.iter().map(|(m, r)| (&m[..], &r[..]));
            let state = Bytes::from(assemble_state(&self.head, refs).unwrap());
            assert_eq!(
                encoding::decode(&state).unwrap(),
                Crdt::Set(self.whole.clone())
            );
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// Replica `at` adds and removes members (by index) with the context of replica
        /// `ctx_of` (none when `None`), delivering to the replicas whose bit is set.
        Update {
            at: usize,
            adds: Vec<usize>,
            removes: Vec<usize>,
            ctx_of: Option<usize>,
            deliver: u8,
        },
        /// Read repair or handoff: `to` merges `from`'s whole state.
        Repair { from: usize, to: usize },
    }

    const MEMBERS: [&str; 4] = ["a", "b", "c", "d"];

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (
                0..3usize,
                prop::collection::vec(0..4usize, 0..3),
                prop::collection::vec(0..4usize, 0..3),
                prop::option::of(0..3usize),
                0..8u8,
            )
                .prop_map(|(at, adds, removes, ctx_of, deliver)| Step::Update {
                    at,
                    adds,
                    removes,
                    ctx_of,
                    deliver,
                }),
            1 => (0..3usize, 0..3usize).prop_map(|(from, to)| Step::Repair { from, to }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Whatever replicas miss and however they catch up, the split layout holds exactly
        /// the state the whole-object layout would.
        #[test]
        fn the_split_layout_holds_what_the_whole_layout_would(
            steps in prop::collection::vec(arb_step(), 1..60)
        ) {
            let mut replicas: Vec<Twin> = (1..=3).map(Twin::new).collect();
            for step in steps {
                match step {
                    Step::Update { at, adds, removes, ctx_of, deliver } => {
                        let names = |ix: &[usize]| ix.iter().map(|i| MEMBERS[*i]).collect::<Vec<_>>();
                        let o = op(&names(&adds), &names(&removes));
                        let ctx = ctx_of.map(|r| replicas[r].whole.clock.clone());
                        let Ok((delta, post)) = replicas[at].update(&o, ctx.as_ref()) else {
                            continue;
                        };
                        for (r, replica) in replicas.iter_mut().enumerate() {
                            if r != at && deliver & (1 << r) != 0 {
                                replica.deliver(&delta, &post);
                            }
                        }
                    }
                    Step::Repair { from, to } => {
                        let other = replicas[from].whole.clone();
                        replicas[to].whole.merge(&other);
                        replicas[to].merge_whole(&other);
                    }
                }
                for r in &replicas {
                    r.check();
                }
            }
        }

        #[test]
        fn heads_and_member_records_round_trip(steps in prop::collection::vec(arb_step(), 1..20)) {
            let mut r = Twin::new(1);
            for step in steps {
                if let Step::Update { adds, removes, ctx_of, .. } = step {
                    let names = |ix: &[usize]| ix.iter().map(|i| MEMBERS[*i]).collect::<Vec<_>>();
                    let ctx = ctx_of.map(|_| VersionVector::from_pairs([(actor(9), 2)]));
                    let _ = r.update(&op(&names(&adds), &names(&removes)), ctx.as_ref());
                }
            }
            prop_assert_eq!(SetHead::decode(&Bytes::from(r.head.encode())).unwrap(), r.head.clone());
            for dots in r.members.0.values() {
                prop_assert_eq!(&decode_dots(&encode_dots(dots)).unwrap(), dots);
            }
        }

        /// Garbage never panics, and whatever does decode survives a round trip unchanged.
        #[test]
        fn garbage_heads_and_records_never_panic(raw in prop::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(head) = SetHead::decode(&Bytes::from(raw.clone())) {
                prop_assert_eq!(SetHead::decode(&Bytes::from(head.encode())).unwrap(), head);
            }
            if let Ok(dots) = decode_dots(&raw) {
                prop_assert_eq!(decode_dots(&encode_dots(&dots)).unwrap(), dots);
            }
        }
    }

    #[test]
    fn a_replica_that_missed_an_update_is_behind_and_one_that_saw_it_ignores_it() {
        let mut a = Twin::new(1);
        let (first, post1) = a.update(&op(&["x"], &[]), None).unwrap();
        let (second, post2) = a.update(&op(&["y"], &[]), None).unwrap();
        let mut b = Twin::new(2);
        assert_eq!(b.deliver(&second, &post2), DeltaOutcome::Behind);
        b.check();
        assert_eq!(b.deliver(&first, &post1), DeltaOutcome::Seen);
        assert_eq!(b.deliver(&second, &post2), DeltaOutcome::Seen);
        let mut c = Twin::new(3);
        assert_eq!(c.deliver(&first, &post1), DeltaOutcome::Applied);
        assert_eq!(c.deliver(&second, &post2), DeltaOutcome::Applied);
        c.check();
        assert_eq!(c.members.0.keys().collect::<Vec<_>>(), [&m("x"), &m("y")]);
        assert_eq!(c.head.len, 2);
    }

    #[test]
    fn an_add_names_the_dots_it_replaced_and_a_refused_remove_changes_nothing() {
        let mut a = Twin::new(1);
        a.update(&op(&["x"], &[]), None).unwrap();
        let (delta, _) = a.update(&op(&["x"], &[]), None).unwrap();
        assert_eq!(
            delta.changes,
            [MemberChange {
                member: m("x"),
                removed: vec![dot(1, 1)],
                added: true
            }]
        );
        assert_eq!(delta.seen, VersionVector::from_pairs([(actor(1), 1)]));
        let before = a.clone();
        let err = a.update(&op(&[], &["nope"]), None).unwrap_err();
        assert_eq!(err, DtError::NotPresent(m("nope")));
        assert_eq!(a.head, before.head);
        assert_eq!(a.members, before.members);
    }

    #[test]
    fn a_remove_ahead_of_the_coordinator_waits_at_every_replica() {
        let mut a = Twin::new(1);
        let (d1, p1) = a.update(&op(&["x"], &[]), None).unwrap();
        let mut b = Twin::new(2);
        b.deliver(&d1, &p1);
        // The client read from a replica that had also seen actor 3's first event.
        let ctx = VersionVector::from_pairs([(actor(1), 1), (actor(3), 1)]);
        let (d2, p2) = a.update(&op(&[], &["x"]), Some(&ctx)).unwrap();
        assert_eq!(d2.deferred, Some((ctx.clone(), vec![m("x")])));
        assert_eq!(b.deliver(&d2, &p2), DeltaOutcome::Applied);
        b.check();
        assert!(!b.head.deferred.is_empty(), "the remove waits");
        assert!(
            b.members.0.is_empty(),
            "what the coordinator saw is removed already"
        );
    }

    #[test]
    fn a_waiting_remove_runs_when_the_delta_it_waited_for_arrives() {
        let (mut a, mut b) = (Twin::new(1), Twin::new(2));
        // b adds x; a client reads from b and removes x through a, which has not seen b's add.
        let (add, add_post) = b.update(&op(&["x"], &[]), None).unwrap();
        let ctx = b.whole.clock.clone();
        let (remove, _) = a.update(&op(&[], &["x"]), Some(&ctx)).unwrap();
        assert!(
            remove.changes[0].removed.is_empty(),
            "a holds nothing of x yet"
        );
        assert!(!a.head.deferred.is_empty());
        // b's add reaches a: the remove that waited for it runs, and x stays removed.
        assert_eq!(a.deliver(&add, &add_post), DeltaOutcome::Applied);
        a.check();
        assert!(a.members.is_empty(), "{:?}", a.members);
        assert!(a.head.deferred.is_empty());
    }

    #[test]
    fn legacy_objects_and_tombstones_start_a_split_update() {
        use crate::crdt::Op;
        use crate::crdt::object::coordinate as coordinate_whole;
        let whole = coordinate_whole(
            None,
            Datatype::Set,
            &Op::Set(op(&["a", "b"], &[])),
            None,
            actor(1),
            NOW,
            14,
        )
        .unwrap()
        .0;
        let (head, members) = stored_head(Some(&whole)).unwrap();
        assert_eq!(head.len, 2);
        assert_eq!(members.unwrap().len(), 2);
        let mut tomb = whole.clone();
        tomb.vclock.increment(actor(1), 1);
        tomb.contents[0].meta.deleted = true;
        tomb.contents[0].value = Bytes::new();
        let (head, members) = stored_head(Some(&tomb)).unwrap();
        assert_eq!(head.clock.get(actor(1)), 2, "the delete's history is kept");
        assert!(members.unwrap().is_empty());
        assert_eq!(stored_head(None).unwrap(), (SetHead::default(), None));
    }

    #[test]
    fn a_set_object_splits_and_assembles_back_and_replicas_agree_on_its_head() {
        let mut head = SetHead::default();
        let mut touched = Touched::new();
        let add = op(&["a", "b"], &[]);
        let (obj, delta) =
            coordinate_object(None, &mut head, &mut touched, &add, None, actor(1), NOW).unwrap();
        assert!(head_content(&obj).is_some());
        assert_eq!(obj.contents[0].meta.content_type, "application/riak_set");
        let whole = assemble_object(&obj, touched.clone()).unwrap();
        assert!(head_content(&whole).is_none());
        let records: Vec<(Bytes, Bytes)> = touched
            .iter()
            .map(|(m, d)| (m.clone(), Bytes::from(encode_dots(d))))
            .collect();
        let refs = || records.iter().map(|(m, r)| (&m[..], &r[..]));
        assert_eq!(assemble_object_from_records(&obj, refs()).unwrap(), whole);
        let bad: [(&[u8], &[u8]); 1] = [(b"a", &[1, 7])];
        assert!(assemble_object_from_records(&obj, bad.into_iter()).is_err());
        let (again, members) = split_object(&whole).unwrap();
        assert_eq!(again, obj);
        assert_eq!(members.0, touched);

        // A replica applying the delta ends with the same head object.
        let (mut rhead, mut rtouched) = (SetHead::default(), Touched::new());
        let (outcome, stored) = apply_object(None, &mut rhead, &mut rtouched, &obj, &delta);
        assert_eq!(outcome, DeltaOutcome::Applied);
        assert_eq!(stored.as_ref(), Some(&obj));
        assert_eq!(rtouched, touched);
        // Seen again: nothing to store.
        let (outcome, stored) = apply_object(None, &mut rhead, &mut rtouched, &obj, &delta);
        assert_eq!((outcome, stored), (DeltaOutcome::Seen, None));
    }

    #[test]
    fn only_single_whole_states_past_the_threshold_are_worth_splitting() {
        let obj = |values: &[Vec<u8>]| {
            let mut o = RiakObject::new(
                Default::default(),
                typed_content(Datatype::Set, dot(1, 1), NOW, Bytes::new()),
            );
            o.contents = values
                .iter()
                .map(|v| typed_content(Datatype::Set, dot(1, 1), NOW, Bytes::from(v.clone())))
                .collect();
            o
        };
        let whole = |len: usize| {
            let mut v = vec![0u8; len];
            v[0] = encoding::FORMAT_V1;
            v
        };
        assert!(!worth_splitting(&obj(&[whole(SPLIT_ABOVE_BYTES)])));
        assert!(worth_splitting(&obj(&[whole(SPLIT_ABOVE_BYTES + 1)])));
        assert!(!worth_splitting(&obj(&[whole(100)])));
        let mut head = whole(SPLIT_ABOVE_BYTES + 1);
        head[0] = FORMAT_SPLIT;
        assert!(!worth_splitting(&obj(&[head])), "already split");
        let big = whole(SPLIT_ABOVE_BYTES + 1);
        assert!(
            !worth_splitting(&obj(&[big.clone(), big.clone()])),
            "siblings"
        );
        let mut tomb = obj(&[big]);
        tomb.contents[0].meta.deleted = true;
        assert!(!worth_splitting(&tomb), "a tombstone");
        assert_eq!(SPLIT_ABOVE_BYTES, 8192);
    }

    #[test]
    fn member_records_without_dots_or_with_trailing_bytes_are_refused() {
        let dots = DotSet::single(dot(1, 3));
        let mut raw = encode_dots(&dots);
        assert_eq!(decode_dots(&raw).unwrap(), dots);
        raw.push(0);
        assert!(decode_dots(&raw).is_err(), "trailing byte");
        assert!(decode_dots(&[0]).is_err(), "no dots");
        assert!(decode_dots(&[]).is_err(), "empty");
    }

    #[test]
    fn diff_names_changed_and_gone_members_in_order() {
        let one = DotSet::single(dot(1, 1));
        let two = DotSet::single(dot(1, 2));
        let old = Elements(
            [
                (m("a"), one.clone()),
                (m("b"), one.clone()),
                (m("c"), one.clone()),
            ]
            .into(),
        );
        let new = Elements(
            [
                (m("b"), two.clone()),
                (m("c"), one.clone()),
                (m("d"), one.clone()),
            ]
            .into(),
        );
        let d: Vec<_> = diff(&old, &new).collect();
        assert_eq!(
            d,
            [
                (&m("a"), None),
                (&m("b"), Some(&two)),
                (&m("d"), Some(&one))
            ]
        );
    }
}
