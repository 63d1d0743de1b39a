//! Data types inside Riak objects: how a state is stored, updated by a coordinator, and
//! merged between replicas.
//!
//! A data-type object holds one content whose value is the encoded state and whose content
//! type names the type (`application/riak_set`, ... as Riak's). Its vector clock advances with
//! every update, so replicas and read repair see ancestry as for any object; concurrent
//! objects merge their states into one content instead of becoming siblings.
//!
//! A tombstone stands for the empty state that has seen the tombstone's clock: an update
//! after a delete starts from it, and a replica still holding the deleted state drops what
//! the delete had observed when it merges, while updates the delete had not seen survive.

use bytes::Bytes;

use crate::crdt::encoding::{self, DecodeError};
use crate::crdt::{Context, Crdt, DtError, DtValue, Fetched, Op, VersionVector, hll};
use crate::merge::vtag_for;
use crate::object::{Content, Metadata, RiakObject};
use crate::props::Datatype;
use crate::vclock::{Actor, Dot, VClock};

/// The content type Riak gives objects of each data type.
pub fn content_type(dt: Datatype) -> &'static str {
    match dt {
        Datatype::Counter => "application/riak_counter",
        Datatype::Set => "application/riak_set",
        Datatype::Map => "application/riak_map",
        Datatype::Hll => "application/riak_hll",
        Datatype::Gset => "application/riak_gset",
    }
}

/// Why a data-type update failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The operation itself was refused (precondition, wrong type, bad context).
    #[error(transparent)]
    Op(#[from] DtError),
    /// The stored object is not a state of the bucket's type.
    #[error("stored data type object is unreadable: {0}")]
    Corrupt(String),
}

/// The state an object holds: its contents' states merged, a tombstone as the empty state
/// that has seen the tombstone's clock. `None` only for an object of tombstones alone when
/// `seed_tombstones` is false (the key reads as not found).
pub fn state_of(
    obj: &RiakObject,
    dt: Datatype,
    seed_tombstones: bool,
) -> Result<Option<Crdt>, DecodeError> {
    let mut state: Option<Crdt> = None;
    for c in obj.contents.iter().filter(|c| !c.is_tombstone()) {
        let s = encoding::decode(&c.value)?;
        if s.datatype() != dt {
            return Err(DecodeError("state of another data type"));
        }
        match &mut state {
            None => state = Some(s),
            Some(acc) => acc.merge(&s),
        }
    }
    if state.is_none() && seed_tombstones {
        state = Some(Crdt::new(
            dt,
            VersionVector::from_vclock(&obj.vclock),
            hll::MAX_PRECISION,
        ));
    }
    Ok(state)
}

/// What a fetch reports of an object (see [`state_of`]); a set holding one state is read
/// without building it.
pub fn fetched(obj: &RiakObject, dt: Datatype) -> Result<Option<Fetched>, DecodeError> {
    let mut live = obj.contents.iter().filter(|c| !c.is_tombstone());
    if dt == Datatype::Set
        && let (Some(c), None) = (live.next(), live.next())
    {
        let (clock, members) = encoding::set_view(&c.value)?;
        return Ok(Some(Fetched {
            datatype: dt,
            value: DtValue::Set(members),
            actors: clock.len(),
            context: Some(Context(clock)),
        }));
    }
    Ok(state_of(obj, dt, false)?.as_ref().map(Fetched::from))
}

/// The coordinating replica's part of an update: apply `op` to what the replica holds
/// (`local`), as a new event of `actor`, and return the object to store and ship, with its
/// state.
pub fn coordinate(
    local: Option<&RiakObject>,
    dt: Datatype,
    op: &Op,
    ctx: Option<&VersionVector>,
    actor: Actor,
    now_us: u64,
    hll_precision: u8,
) -> Result<(RiakObject, Crdt), UpdateError> {
    if op.datatype() != dt {
        return Err(DtError::WrongType {
            op: op.datatype().as_str().into(),
            bucket: dt.as_str().into(),
        }
        .into());
    }
    let mut state = match local {
        Some(obj) => state_of(obj, dt, true)
            .map_err(|e| UpdateError::Corrupt(e.to_string()))?
            .expect("seeded from tombstones"),
        None => Crdt::new(dt, VersionVector::new(), hll_precision),
    };
    state.fit_precision(hll_precision);
    let (vclock, dot) = next_event(local, actor, state.seen(actor), now_us);
    state.apply(op, dot, ctx, now_us)?;
    let content = typed_content(dt, dot, now_us, Bytes::from(encoding::encode(&state)));
    Ok((RiakObject::new(vclock, content), state))
}

/// The clock of the object an update at `actor` writes, and the update's dot: past both the
/// object's clock and the `seen` events of the actor in the state.
pub(crate) fn next_event(
    local: Option<&RiakObject>,
    actor: Actor,
    seen: u64,
    now_us: u64,
) -> (VClock, Dot) {
    let mut vclock = local.map(|o| o.vclock.clone()).unwrap_or_default();
    let dot = vclock.increment_past(actor, seen, now_us / 1_000_000);
    (vclock, dot)
}

/// The content an update writes: the state's bytes, typed, stamped with the update's dot.
pub(crate) fn typed_content(dt: Datatype, dot: Dot, now_us: u64, value: Bytes) -> Content {
    let meta = Metadata {
        content_type: Bytes::from_static(content_type(dt).as_bytes()),
        vtag: vtag_for(dot),
        last_modified_us: now_us,
        ..Metadata::default()
    };
    Content {
        meta,
        value,
        dot: Some(dot),
    }
}

/// Of two objects' live contents, the one whose metadata a merge keeps: the newest, chosen the
/// same way on every replica.
pub(crate) fn newest_content<'a>(
    contents: impl IntoIterator<Item = &'a Content>,
) -> Option<&'a Content> {
    contents
        .into_iter()
        .filter(|c| !c.is_tombstone())
        .max_by(|x, y| {
            (x.meta.last_modified_us, &x.meta.vtag, x.dot).cmp(&(
                y.meta.last_modified_us,
                &y.meta.vtag,
                y.dot,
            ))
        })
}

/// Merges two concurrent objects of a data-type bucket into one content. `None` when there
/// is no state to merge (tombstones on both sides) or a side is unreadable: the caller keeps
/// both as it would for any object, so nothing is lost.
pub fn merge_objects(a: &RiakObject, b: &RiakObject, dt: Datatype) -> Option<RiakObject> {
    if a.contents
        .iter()
        .chain(&b.contents)
        .all(Content::is_tombstone)
    {
        return None;
    }
    let mut state = state_of(a, dt, true).ok()??;
    state.merge(&state_of(b, dt, true).ok()??);
    let newest = newest_content(a.contents.iter().chain(&b.contents))?;
    let content = Content {
        meta: newest.meta.clone(),
        value: Bytes::from(encoding::encode(&state)),
        dot: newest.dot,
    };
    Some(RiakObject::new(a.vclock.merge(&b.vclock), content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::{DtValue, SetOp};
    use crate::merge::{self, MergeOptions, ReplicaMerge};

    const OPTS: MergeOptions = MergeOptions {
        allow_mult: true,
        last_write_wins: false,
        dvv_enabled: true,
        datatype: Some(Datatype::Set),
    };
    const NOW: u64 = 1_700_000_000_000_000;

    fn actor(n: u8) -> Actor {
        Actor([n; 8])
    }

    fn add(m: &str) -> Op {
        Op::Set(SetOp {
            adds: vec![Bytes::copy_from_slice(m.as_bytes())],
            removes: vec![],
        })
    }

    fn update(local: Option<&RiakObject>, op: &Op, a: u8) -> RiakObject {
        coordinate(local, Datatype::Set, op, None, actor(a), NOW, 14)
            .unwrap()
            .0
    }

    fn members(obj: &RiakObject) -> Vec<String> {
        match state_of(obj, Datatype::Set, false)
            .unwrap()
            .map(|s| s.value())
        {
            Some(DtValue::Set(v)) => v
                .iter()
                .map(|m| String::from_utf8(m.to_vec()).unwrap())
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn coordinated_updates_advance_the_clock_and_store_one_typed_content() {
        let one = update(None, &add("a"), 1);
        let two = update(Some(&one), &add("b"), 1);
        assert!(two.vclock.dominates(&one.vclock));
        assert_eq!(two.contents.len(), 1);
        assert_eq!(two.contents[0].meta.content_type, "application/riak_set");
        assert_eq!(members(&two), ["a", "b"]);
        let err = coordinate(
            Some(&two),
            Datatype::Set,
            &Op::Counter(1),
            None,
            actor(1),
            NOW,
            14,
        );
        assert!(matches!(
            err,
            Err(UpdateError::Op(DtError::WrongType { .. }))
        ));
    }

    #[test]
    fn concurrent_objects_merge_into_one_content_in_any_order() {
        let base = update(None, &add("a"), 1);
        let x = update(Some(&base), &add("x"), 1);
        let y = update(Some(&base), &add("y"), 2);
        let xy = merge::reconcile(&[x.clone(), y.clone()], &OPTS).unwrap();
        let yx = merge::reconcile(&[y.clone(), x.clone()], &OPTS).unwrap();
        assert_eq!(xy, yx);
        assert_eq!(xy.contents.len(), 1, "no siblings");
        assert_eq!(members(&xy), ["a", "x", "y"]);
        assert!(xy.vclock.descends(&x.vclock) && xy.vclock.descends(&y.vclock));
        assert_eq!(
            merge::replica_merge(Some(&xy), &x, &OPTS),
            ReplicaMerge::Unchanged
        );
    }

    #[test]
    fn a_delete_removes_what_it_saw_and_a_concurrent_update_survives_it() {
        let base = update(None, &add("a"), 1);
        let mut tomb = base.clone();
        tomb.vclock.increment(actor(1), 1);
        tomb.contents[0].meta.deleted = true;
        tomb.contents[0].value = Bytes::new();
        // A stale replica merging the tombstone ends deleted.
        assert_eq!(
            merge::replica_merge(Some(&base), &tomb, &OPTS),
            ReplicaMerge::Store(tomb.clone())
        );
        // An update concurrent with the delete keeps only what the delete had not seen.
        let concurrent = update(Some(&base), &add("b"), 2);
        let merged = merge::reconcile(&[tomb.clone(), concurrent], &OPTS).unwrap();
        assert_eq!(members(&merged), ["b"]);
        // An update after the delete starts from the empty state that saw the delete.
        let after = update(Some(&tomb), &add("c"), 1);
        assert_eq!(members(&after), ["c"]);
        assert_eq!(
            members(&merge::reconcile(&[after, base], &OPTS).unwrap()),
            ["c"]
        );
    }
}
