//! Riak's map: named, typed fields holding counters, sets, registers, flags and nested maps,
//! all sharing the map's clock.
//!
//! Every field and everything inside it is a dot store under that one clock, so removing a
//! field is forgetting the dots the client had observed, at every depth. A field whose
//! concurrent update another replica has not seen survives the remove, and keeps only what
//! the remover had not observed: Riak's reset-remove. One exception, shared with Riak's
//! embedded counter: a counter keeps one running total per actor under that actor's latest
//! dot, so an actor's concurrent increment brings back that actor's whole total (keeping a dot
//! per increment would grow without bound).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::crdt::DtError;
use crate::crdt::causal::{Causal, DotFun, DotSet, DotStore, VersionVector};
use crate::crdt::set::{Elements, SetOp};
use crate::vclock::Dot;

/// The type of a map field (numbered as in Riak's `MapField.MapFieldType`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum FieldKind {
    Counter = 1,
    Set = 2,
    Register = 3,
    Flag = 4,
    Map = 5,
}

impl FieldKind {
    pub fn from_code(code: u8) -> Option<FieldKind> {
        Some(match code {
            1 => FieldKind::Counter,
            2 => FieldKind::Set,
            3 => FieldKind::Register,
            4 => FieldKind::Flag,
            5 => FieldKind::Map,
            _ => return None,
        })
    }

    /// The suffix Riak's HTTP API gives fields of this kind (`name_counter`, ...).
    pub fn suffix(self) -> &'static str {
        match self {
            FieldKind::Counter => "counter",
            FieldKind::Set => "set",
            FieldKind::Register => "register",
            FieldKind::Flag => "flag",
            FieldKind::Map => "map",
        }
    }

    /// The riak_dt module Riak names in its error messages.
    pub(crate) fn riak_module(self) -> &'static str {
        match self {
            FieldKind::Counter => "riak_dt_emcntr",
            FieldKind::Set => "riak_dt_orswot",
            FieldKind::Register => "riak_dt_lwwreg",
            FieldKind::Flag => "riak_dt_od_flag",
            FieldKind::Map => "riak_dt_map",
        }
    }
}

/// A field's identity: two fields of the same name and different kinds are different fields.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct FieldKey {
    pub name: Bytes,
    pub kind: FieldKind,
}

impl FieldKey {
    pub fn new(name: impl Into<Bytes>, kind: FieldKind) -> Self {
        FieldKey {
            name: name.into(),
            kind,
        }
    }
}

/// An operation on one field; its kind must match the field's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FieldOp {
    Counter(i64),
    Set(SetOp),
    Register(Bytes),
    /// Enable (true) or disable (false).
    Flag(bool),
    Map(MapOp),
}

impl FieldOp {
    pub fn kind(&self) -> FieldKind {
        match self {
            FieldOp::Counter(_) => FieldKind::Counter,
            FieldOp::Set(_) => FieldKind::Set,
            FieldOp::Register(_) => FieldKind::Register,
            FieldOp::Flag(_) => FieldKind::Flag,
            FieldOp::Map(_) => FieldKind::Map,
        }
    }
}

/// An operation on a map: field removes, then field updates.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapOp {
    pub removes: Vec<FieldKey>,
    pub updates: Vec<(FieldKey, FieldOp)>,
}

/// What a field holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldValue {
    /// Per actor, its (increments, decrements) under its latest dot.
    Counter(DotFun<(u64, u64)>),
    Set(Elements),
    /// Values written at live dots, with their timestamps (µs); the latest is the value.
    Register(DotFun<(u64, Bytes)>),
    /// Enabled while any enable is alive.
    Flag(DotSet),
    Map(Fields),
}

/// A field: the dots of the updates that keep it present, and its value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Field {
    pub(crate) dots: DotSet,
    pub(crate) value: FieldValue,
}

/// The fields of a map (or of a nested map), by key.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fields(pub(crate) BTreeMap<FieldKey, Field>);

/// The value of a field as clients see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldView {
    Counter(i64),
    Set(Vec<Bytes>),
    Register(Bytes),
    Flag(bool),
    Map(Vec<(FieldKey, FieldView)>),
}

impl FieldValue {
    fn empty(kind: FieldKind) -> FieldValue {
        match kind {
            FieldKind::Counter => FieldValue::Counter(DotFun::default()),
            FieldKind::Set => FieldValue::Set(Elements::default()),
            FieldKind::Register => FieldValue::Register(DotFun::default()),
            FieldKind::Flag => FieldValue::Flag(DotSet::default()),
            FieldKind::Map => FieldValue::Map(Fields::default()),
        }
    }

    fn apply(
        &mut self,
        op: &FieldOp,
        dot: Dot,
        ctx: Option<&VersionVector>,
        now_us: u64,
    ) -> Result<(), DtError> {
        match (self, op) {
            (FieldValue::Counter(c), FieldOp::Counter(delta)) => {
                let (mut p, mut n) = c
                    .iter()
                    .find(|(d, _)| d.actor == dot.actor)
                    .map_or((0, 0), |(_, v)| *v);
                if *delta >= 0 {
                    p = p.saturating_add(delta.unsigned_abs());
                } else {
                    n = n.saturating_add(delta.unsigned_abs());
                }
                c.0.retain(|d, _| d.actor != dot.actor);
                c.0.insert(dot, (p, n));
                Ok(())
            }
            (FieldValue::Set(s), FieldOp::Set(op)) => s.apply(op, dot, ctx),
            (FieldValue::Register(r), FieldOp::Register(v)) => {
                r.replace(dot, (now_us, v.clone()));
                Ok(())
            }
            (FieldValue::Flag(f), FieldOp::Flag(true)) => {
                f.replace(dot, ());
                Ok(())
            }
            (FieldValue::Flag(f), FieldOp::Flag(false)) => {
                f.remove_seen(ctx);
                Ok(())
            }
            (FieldValue::Map(m), FieldOp::Map(op)) => m.apply(op, dot, ctx, now_us),
            // Keys carry the kind and ops are matched to keys by kind before they get here.
            _ => Err(DtError::Malformed(
                "field operation does not match the field type".into(),
            )),
        }
    }

    /// Forgets everything `ctx` has observed.
    fn reset(&mut self, ctx: &VersionVector) {
        match self {
            FieldValue::Counter(c) => c.remove_seen(Some(ctx)),
            FieldValue::Set(s) => s.reset(ctx),
            FieldValue::Register(r) => r.remove_seen(Some(ctx)),
            FieldValue::Flag(f) => f.remove_seen(Some(ctx)),
            FieldValue::Map(m) => m.reset(ctx),
        }
    }

    fn join(&mut self, ctx: &VersionVector, other: &FieldValue, other_ctx: &VersionVector) {
        match (self, other) {
            (FieldValue::Counter(a), FieldValue::Counter(b)) => a.join(ctx, b, other_ctx),
            (FieldValue::Set(a), FieldValue::Set(b)) => a.join(ctx, b, other_ctx),
            (FieldValue::Register(a), FieldValue::Register(b)) => a.join(ctx, b, other_ctx),
            (FieldValue::Flag(a), FieldValue::Flag(b)) => a.join(ctx, b, other_ctx),
            (FieldValue::Map(a), FieldValue::Map(b)) => a.join(ctx, b, other_ctx),
            // Same key, same kind: the variants always match.
            _ => {}
        }
    }

    fn view(&self) -> FieldView {
        match self {
            FieldValue::Counter(c) => FieldView::Counter(
                c.iter()
                    .map(|(_, (p, n))| *p as i128 - *n as i128)
                    .sum::<i128>()
                    .clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            ),
            FieldValue::Set(s) => FieldView::Set(s.members().cloned().collect()),
            FieldValue::Register(r) => FieldView::Register(
                r.iter()
                    .map(|(_, (ts, v))| (ts, v))
                    .max()
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
            ),
            FieldValue::Flag(f) => FieldView::Flag(!f.is_empty()),
            FieldValue::Map(m) => FieldView::Map(m.view()),
        }
    }
}

impl Fields {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn view(&self) -> Vec<(FieldKey, FieldView)> {
        self.0
            .iter()
            .map(|(k, f)| (k.clone(), f.value.view()))
            .collect()
    }

    /// Applies `op` as event `dot`: removes, then updates. Errors leave a partly applied
    /// state, so callers apply to a copy they discard on error.
    pub(crate) fn apply(
        &mut self,
        op: &MapOp,
        dot: Dot,
        ctx: Option<&VersionVector>,
        now_us: u64,
    ) -> Result<(), DtError> {
        for key in &op.removes {
            match ctx {
                None => {
                    if self.0.remove(key).is_none() {
                        return Err(DtError::FieldNotPresent(key.clone()));
                    }
                }
                Some(ctx) => self.remove_seen(key, ctx),
            }
        }
        for (key, fop) in &op.updates {
            if fop.kind() != key.kind {
                return Err(DtError::Malformed(
                    "field operation does not match the field type".into(),
                ));
            }
            let field = self.0.entry(key.clone()).or_insert_with(|| Field {
                dots: DotSet::default(),
                value: FieldValue::empty(key.kind),
            });
            field.value.apply(fop, dot, ctx, now_us)?;
            field.dots.replace(dot, ());
        }
        Ok(())
    }

    /// A field remove with a context: forget what the context saw; the field stays only if
    /// an update the context did not see keeps it alive.
    pub(crate) fn remove_seen(&mut self, key: &FieldKey, ctx: &VersionVector) {
        if let Some(field) = self.0.get_mut(key) {
            field.dots.remove_seen(Some(ctx));
            field.value.reset(ctx);
            if field.dots.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn reset(&mut self, ctx: &VersionVector) {
        let keys: Vec<FieldKey> = self.0.keys().cloned().collect();
        for key in keys {
            self.remove_seen(&key, ctx);
        }
    }

    pub(crate) fn join(&mut self, ctx: &VersionVector, other: &Fields, other_ctx: &VersionVector) {
        let keys: BTreeSet<FieldKey> = self.0.keys().chain(other.0.keys()).cloned().collect();
        for key in keys {
            let empty = || Field {
                dots: DotSet::default(),
                value: FieldValue::empty(key.kind),
            };
            let mut mine = self.0.remove(&key).unwrap_or_else(empty);
            let theirs_owned;
            let theirs = match other.0.get(&key) {
                Some(f) => f,
                None => {
                    theirs_owned = empty();
                    &theirs_owned
                }
            };
            mine.dots.join(ctx, &theirs.dots, other_ctx);
            if mine.dots.is_empty() {
                continue;
            }
            mine.value.join(ctx, &theirs.value, other_ctx);
            self.0.insert(key, mine);
        }
    }
}

impl DotStore for Fields {
    type Item = FieldKey;

    fn join(&mut self, ctx: &VersionVector, other: &Self, other_ctx: &VersionVector) {
        Fields::join(self, ctx, other, other_ctx);
    }

    fn remove_seen_item(&mut self, item: &FieldKey, ctx: &VersionVector) {
        self.remove_seen(item, ctx);
    }
}

/// A top-level map: fields under the map's clock.
pub type OrMap = Causal<Fields>;

impl OrMap {
    pub fn fields(&self) -> &Fields {
        &self.store
    }

    /// Applies `op` atomically: on error the map is unchanged.
    pub(crate) fn apply(
        &mut self,
        op: &MapOp,
        dot: Dot,
        ctx: Option<&VersionVector>,
        now_us: u64,
    ) -> Result<(), DtError> {
        let mut fields = self.store.clone();
        fields.apply(op, dot, ctx, now_us)?;
        self.store = fields;
        self.applied(dot, ctx, &op.removes);
        Ok(())
    }
}
