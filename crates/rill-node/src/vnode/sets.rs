//! Sets at a vnode, in the split layout of `rill_core::crdt::split` (sets past
//! `split::SPLIT_ABOVE_BYTES`; smaller ones are stored whole like any data type): the set's head
//! is the object stored under its key (so caching, dirty marks, listing and reaping see one object as
//! for any key), and each member's dots are a record of its own beside it.
//!
//! Records live under `[RESERVED_PREFIX, b'M']`, then the set's storage key's length (two
//! bytes, so that one key's records never mix with those of a key it is a prefix of), the key,
//! and the member; a set's records are one prefix scan, and a member's one point read. They
//! sort after every object key, so object scans (handoff folds, listings) never meet them.
//!
//! An update reads the head and the records of the members it names and writes those back,
//! in one batch with the head: its cost depends on the operation, not on the set. Whatever
//! needs the whole set — a fetch, read repair, handoff, a delete — assembles it from the head
//! and a scan of the records, under the key's lock so that the two agree; a whole object
//! written back is split again, and only the records that changed are written.

use std::sync::Arc;

use bytes::Bytes;
use rill_core::codec;
use rill_core::crdt::VersionVector;
use rill_core::crdt::set::{Elements, SetOp};
use rill_core::crdt::split::{self, DeltaOutcome, SetDelta, Touched};
use rill_core::object::RiakObject;
use rill_core::props::Datatype;

use super::{KeyLock, Staged, Vnode};
use crate::error::{NodeError, NodeResult};
use crate::node::RESERVED_PREFIX;

/// The first bytes of every member record's storage key.
const RECORD_PREFIX: [u8; 2] = [RESERVED_PREFIX, b'M'];

/// A coordinated set update, as the other replicas receive it: the coordinator's new head
/// object (its clock and metadata) and the delta.
#[derive(Clone, Debug)]
pub struct SetUpdate {
    pub head: RiakObject,
    pub delta: SetDelta,
}

/// A whole set one replica assembled during a GET, for the next replica whose head is the same.
pub struct Shared {
    head: Arc<RiakObject>,
    whole: Arc<RiakObject>,
}

/// What a vnode holds of a key, for a write that merges whole objects.
pub(super) struct Whole {
    /// The object, a split set made whole.
    pub object: Option<Arc<RiakObject>>,
    /// A split set's member records as stored (`None` when the key is not a split set).
    pub records: Option<Elements>,
}

/// Whether a stored object is a split set's head.
pub(super) fn is_split(obj: &RiakObject) -> bool {
    split::head_content(obj).is_some()
}

fn records_prefix(skey: &[u8]) -> Vec<u8> {
    // Storage keys are at most `MAX_KEY_LEN` (u16::MAX) bytes.
    let len = u16::try_from(skey.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(RECORD_PREFIX.len() + 2 + skey.len() + 16);
    k.extend_from_slice(&RECORD_PREFIX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(skey);
    k
}

fn record_key(skey: &[u8], member: &[u8]) -> Vec<u8> {
    let mut k = records_prefix(skey);
    k.extend_from_slice(member);
    k
}

fn corrupt(e: impl std::fmt::Display) -> NodeError {
    NodeError::Corrupt(format!("stored set: {e}"))
}

impl Vnode {
    /// The stored object made whole, with a split set's records.
    pub(super) fn read_whole(&self, skey: &Bytes) -> NodeResult<Whole> {
        let stored = self.read_to_write(skey)?;
        match stored {
            Some(head) if is_split(&head) => {
                let records = self.scan_records(skey)?;
                let whole = split::assemble_object(&head, records.clone()).map_err(corrupt)?;
                Ok(Whole {
                    object: Some(Arc::new(whole)),
                    records: Some(records),
                })
            }
            object => Ok(Whole {
                object,
                records: None,
            }),
        }
    }

    /// A split set made whole for a read (see [`Vnode::get_shared`]).
    pub(super) fn assemble_shared(
        &self,
        skey: &Bytes,
        head: &RiakObject,
        shared: &mut Option<Shared>,
    ) -> NodeResult<Option<Arc<RiakObject>>> {
        if let Some(s) = shared
            && *s.head == *head
        {
            return Ok(Some(s.whole.clone()));
        }
        // The head and the records must come from one moment: under the lock, no update of
        // the key can land between reading one and scanning the other.
        let _guard = self.lock(skey);
        let head = match self.read(skey)? {
            Some(h) if is_split(&h) => h,
            // Replaced (by a delete's tombstone, say) since it was read: that is the answer.
            other => return Ok(other),
        };
        let prefix = records_prefix(skey);
        // Kept as scanned: slicing each key would cost an allocation per member.
        let records = self
            .store
            .scan_prefix(&prefix)
            .collect::<Result<Vec<_>, _>>()?;
        let members = records.iter().map(|(k, v)| (&k[prefix.len()..], &v[..]));
        let whole = split::assemble_object_from_records(&head, members).map_err(corrupt)?;
        let whole = Arc::new(whole);
        *shared = Some(Shared {
            head,
            whole: whole.clone(),
        });
        Ok(Some(whole))
    }

    fn scan_records(&self, skey: &[u8]) -> NodeResult<Elements> {
        let prefix = records_prefix(skey);
        self.store
            .scan_prefix(&prefix)
            .map(|item| {
                let (k, v) = item?;
                let dots = split::decode_dots(&v).map_err(corrupt)?;
                Ok((k.slice(prefix.len()..), dots))
            })
            .collect()
    }

    /// The records of `members`, from a set stored whole (`legacy`) or from storage.
    fn touched<'a>(
        &self,
        skey: &[u8],
        legacy: Option<&Elements>,
        members: impl Iterator<Item = &'a Bytes>,
    ) -> NodeResult<Touched> {
        let mut touched = Touched::new();
        for m in members {
            let dots = match legacy {
                Some(all) => all.get(m).cloned(),
                None => match self.store.get(&record_key(skey, m))? {
                    Some(raw) => Some(split::decode_dots(&raw).map_err(corrupt)?),
                    None => None,
                },
            };
            if let Some(dots) = dots {
                touched.insert(m.clone(), dots);
            }
        }
        Ok(touched)
    }

    /// The coordinating replica's update of a set stored split, or stored whole and past
    /// [`split::SPLIT_ABOVE_BYTES`] (which this update splits): apply `op` to the head and the
    /// named members' records, as a new event of this vnode's actor.
    pub(super) fn stage_set_update(
        &self,
        lock: &KeyLock<'_>,
        op: &SetOp,
        ctx: Option<&VersionVector>,
        now_us: u64,
    ) -> NodeResult<Staged> {
        let local = self.read_to_write(&lock.skey)?;
        let (mut head, legacy) = split::stored_head(local.as_deref()).map_err(corrupt)?;
        let named: Vec<&Bytes> = op.adds.iter().chain(&op.removes).collect();
        let mut touched = self.touched(&lock.skey, legacy.as_ref(), named.iter().copied())?;
        let (obj, delta) = split::coordinate_object(
            local.as_deref(),
            &mut head,
            &mut touched,
            op,
            ctx,
            self.actor,
            now_us,
        )
        .map_err(NodeError::Datatype)?;
        let mut staged =
            self.stage_split(&lock.skey, obj.clone(), legacy, &touched, delta.members())?;
        staged.update = Some(Arc::new(SetUpdate { head: obj, delta }));
        Ok(staged)
    }

    /// A replica's part of a set update coordinated elsewhere: apply its delta. `None` when
    /// this replica has not seen everything the coordinator had and must merge the whole set
    /// instead.
    pub fn stage_set_delta(
        &self,
        lock: &KeyLock<'_>,
        update: &SetUpdate,
    ) -> NodeResult<Option<Staged>> {
        fail::fail_point!("vnode-replica-put", |_| Err(super::injected(
            "vnode-replica-put"
        )));
        self.check_not_moved()?;
        let local = self.read_to_write(&lock.skey)?;
        let (mut head, legacy) = split::stored_head(local.as_deref()).map_err(corrupt)?;
        let needed = split::needed(&head, &update.delta);
        let mut touched = self.touched(&lock.skey, legacy.as_ref(), needed.iter())?;
        let (outcome, obj) = split::apply_object(
            local.as_deref(),
            &mut head,
            &mut touched,
            &update.head,
            &update.delta,
        );
        match (outcome, obj) {
            (DeltaOutcome::Applied, Some(obj)) => self
                .stage_split(&lock.skey, obj, legacy, &touched, needed.iter())
                .map(Some),
            (DeltaOutcome::Seen, _) => Ok(Some(Staged::unchanged(
                local.unwrap_or_else(|| Arc::new(update.head.clone())),
            ))),
            _ => Ok(None),
        }
    }

    /// [`Vnode::stage_set_delta`] on its own (a write from another node): stage and store.
    /// `None` when this replica is behind (see there).
    pub fn replica_set_delta(
        &self,
        bkey: &rill_core::bkey::BKey,
        update: &SetUpdate,
    ) -> NodeResult<Option<Arc<RiakObject>>> {
        let lock = self.lock_key(bkey);
        let Some(staged) = self.stage_set_delta(&lock, update)? else {
            return Ok(None);
        };
        self.store_staged(&lock, &staged)?;
        Ok(Some(staged.object))
    }

    /// The coordinator's whole set after `update`, read before the update is stored: what a
    /// replica too far behind to apply the delta merges instead.
    pub fn whole_after(&self, lock: &KeyLock<'_>, update: &SetUpdate) -> NodeResult<RiakObject> {
        let before = self.read_whole(&lock.skey)?.object;
        let (mut head, all) = split::stored_head(before.as_deref()).map_err(corrupt)?;
        let all = all.unwrap_or_default();
        let needed = split::needed(&head, &update.delta);
        let mut touched = self.touched(&lock.skey, Some(&all), needed.iter())?;
        let (_, head_obj) = split::apply_object(
            before.as_deref(),
            &mut head,
            &mut touched,
            &update.head,
            &update.delta,
        );
        let head_obj =
            head_obj.ok_or_else(|| corrupt("the coordinator cannot apply its own update"))?;
        let mut members = all;
        for m in needed {
            let dots = touched.remove(&m);
            members.set(m, dots);
        }
        split::assemble_object(&head_obj, members).map_err(corrupt)
    }

    /// Stages a split set's head object and the records of `members` as `touched` holds them;
    /// converting a set stored whole (`legacy`), every other member's record too.
    fn stage_split<'a>(
        &self,
        skey: &[u8],
        head_obj: RiakObject,
        legacy: Option<Elements>,
        touched: &Touched,
        members: impl Iterator<Item = &'a Bytes>,
    ) -> NodeResult<Staged> {
        let mut staged = Staged::changed(head_obj);
        let mut records: Vec<(Vec<u8>, Option<Bytes>)> = Vec::new();
        if let Some(all) = legacy {
            for (m, dots) in all.iter() {
                records.push((
                    record_key(skey, m),
                    Some(Bytes::from(split::encode_dots(dots))),
                ));
            }
        }
        for m in members {
            let record = touched.get(m).map(|d| Bytes::from(split::encode_dots(d)));
            records.push((record_key(skey, m), record));
        }
        staged.records = records;
        Ok(staged)
    }

    /// Stages a whole object merged or coordinated for `skey`, whose stored form was `local`:
    /// a set already split here, or past [`split::SPLIT_ABOVE_BYTES`], is split (and only its
    /// changed records written); anything else is stored whole (and a split set it replaces, a
    /// delete's tombstone say, loses its records).
    pub(super) fn stage_object(
        &self,
        skey: &[u8],
        local: &Whole,
        obj: RiakObject,
        dt: Option<Datatype>,
    ) -> NodeResult<Staged> {
        let split_form = match dt {
            Some(Datatype::Set) if local.records.is_some() || split::worth_splitting(&obj) => {
                split::split_object(&obj)
            }
            _ => None,
        };
        let empty = Elements::default();
        let old = local.records.as_ref().unwrap_or(&empty);
        let (mut staged, records) = match split_form {
            Some((head_obj, members)) => {
                let records = split::diff(old, &members)
                    .map(|(m, dots)| {
                        let record = dots.map(|d| Bytes::from(split::encode_dots(d)));
                        (record_key(skey, m), record)
                    })
                    .collect();
                (Staged::changed(head_obj), records)
            }
            None => {
                let gone = old.members().map(|m| (record_key(skey, m), None)).collect();
                (Staged::changed(obj), gone)
            }
        };
        staged.records = records;
        Ok(staged)
    }

    /// Objects as another node must receive them (handoff): split sets made whole.
    pub fn whole_objects(&self, items: Vec<(Bytes, Bytes)>) -> NodeResult<Vec<(Bytes, Bytes)>> {
        // Most partitions hold no split set: one seek says so, and nothing is decoded.
        if self.store.scan_keys(&RECORD_PREFIX, None).next().is_none() {
            return Ok(items);
        }
        items
            .into_iter()
            .map(|(skey, raw)| {
                let obj = codec::decode(&raw).map_err(corrupt)?;
                if !is_split(&obj) {
                    return Ok((skey, raw));
                }
                let _guard = self.lock(&skey);
                let whole = self.read_whole(&skey)?.object;
                let raw = whole.map_or(raw, |o| Bytes::from(codec::encode(&o)));
                Ok((skey, raw))
            })
            .collect()
    }
}
