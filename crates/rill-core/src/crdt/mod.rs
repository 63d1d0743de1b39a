//! Riak's convergent data types: counters, sets, maps (of counters, sets, registers, flags and
//! maps), HyperLogLogs and grow-only sets, as pure state, operations and merge.
//!
//! A data type is updated by applying an operation at one replica (the coordinating vnode,
//! with its own actor id and a fresh event counter), which yields a new state; every other
//! replica merges states. Merge is commutative, associative and idempotent, so replicas that
//! saw the same updates in any order converge, and data-type keys never grow siblings.
//!
//! The observed-remove types (sets, maps and everything in maps) follow the causal model of
//! [`causal`]; removes carry the opaque context a fetch returned ([`Context`]), naming what
//! the client saw. [`object`] stores states inside Riak objects and merges those; [`encoding`]
//! is the on-disk format.

pub mod causal;
pub mod counter;
pub mod encoding;
pub mod gset;
pub mod hll;
pub mod map;
pub mod object;
pub mod set;
pub mod split;

use std::borrow::Cow;

use bytes::Bytes;

use crate::codec::Reader;
use crate::props::Datatype;
use crate::vclock::{Actor, Dot};

pub use causal::VersionVector;
pub use counter::PnCounter;
pub use gset::GSet;
pub use hll::Hll;
pub use map::{FieldKey, FieldKind, FieldOp, FieldView, MapOp, OrMap};
pub use set::{OrSet, SetOp};

/// Why an operation was refused or a state could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum DtError {
    /// A remove without a context named a member that is not in the set.
    #[error("{{precondition,{{not_present,{}}}}}", erlang_binary(.0))]
    NotPresent(Bytes),
    /// A remove without a context named a field that is not in the map.
    #[error("{{precondition,{{not_present,{{{},{}}}}}}}", erlang_binary(&.0.name), .0.kind.riak_module())]
    FieldNotPresent(FieldKey),
    /// The operation is for another data type than the bucket holds.
    #[error("Operation type is `{op}` but  bucket type is `{bucket}`.")]
    WrongType {
        op: Cow<'static, str>,
        bucket: Cow<'static, str>,
    },
    /// The context is not one this server produced.
    #[error("the update context is invalid")]
    BadContext,
    /// A malformed operation or stored state.
    #[error("{0}")]
    Malformed(Cow<'static, str>),
}

/// An Erlang binary literal as Riak prints it in error messages: `<<"text">>`.
fn erlang_binary(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("<<\"{s}\">>"),
        _ => {
            let bytes: Vec<String> = b.iter().map(u8::to_string).collect();
            format!("<<{}>>", bytes.join(","))
        }
    }
}

/// An update operation on a data type.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    Counter(i64),
    Set(SetOp),
    Map(MapOp),
    Hll(Vec<Bytes>),
    Gset(Vec<Bytes>),
}

impl Op {
    pub fn datatype(&self) -> Datatype {
        match self {
            Op::Counter(_) => Datatype::Counter,
            Op::Set(_) => Datatype::Set,
            Op::Map(_) => Datatype::Map,
            Op::Hll(_) => Datatype::Hll,
            Op::Gset(_) => Datatype::Gset,
        }
    }
}

/// A data type's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Crdt {
    Counter(PnCounter),
    Set(OrSet),
    Map(OrMap),
    Hll(Hll),
    Gset(GSet),
}

/// A data type's value as clients see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtValue {
    Counter(i64),
    Set(Vec<Bytes>),
    Map(Vec<(FieldKey, FieldView)>),
    Hll(u64),
    Gset(Vec<Bytes>),
}

impl Crdt {
    /// The empty state of `dt`; `seen` is the history it starts from (a deleted key's clock,
    /// so that replicas still holding the deleted state drop it on merge).
    pub fn new(dt: Datatype, seen: VersionVector, hll_precision: u8) -> Crdt {
        match dt {
            Datatype::Counter => Crdt::Counter(PnCounter::default()),
            Datatype::Set => Crdt::Set(OrSet::seeded(seen)),
            Datatype::Map => Crdt::Map(OrMap::seeded(seen)),
            Datatype::Hll => Crdt::Hll(Hll::new(hll_precision)),
            Datatype::Gset => Crdt::Gset(GSet::default()),
        }
    }

    pub fn datatype(&self) -> Datatype {
        match self {
            Crdt::Counter(_) => Datatype::Counter,
            Crdt::Set(_) => Datatype::Set,
            Crdt::Map(_) => Datatype::Map,
            Crdt::Hll(_) => Datatype::Hll,
            Crdt::Gset(_) => Datatype::Gset,
        }
    }

    /// Events of `actor` this state has seen (0 for the types without a clock).
    pub fn seen(&self, actor: Actor) -> u64 {
        self.clock().map_or(0, |c| c.get(actor))
    }

    fn clock(&self) -> Option<&VersionVector> {
        match self {
            Crdt::Set(s) => Some(&s.clock),
            Crdt::Map(m) => Some(&m.clock),
            _ => None,
        }
    }

    /// Applies `op` as the event `dot` (whose counter must be past everything this state has
    /// seen of its actor), with the client's context if it sent one. `now_us` timestamps
    /// register writes. On error the state is unchanged.
    pub fn apply(
        &mut self,
        op: &Op,
        dot: Dot,
        ctx: Option<&VersionVector>,
        now_us: u64,
    ) -> Result<(), DtError> {
        match (self, op) {
            (Crdt::Counter(c), Op::Counter(delta)) => c.increment(dot.actor, *delta),
            (Crdt::Set(s), Op::Set(op)) => s.apply(op, dot, ctx)?,
            (Crdt::Map(m), Op::Map(op)) => m.apply(op, dot, ctx, now_us)?,
            (Crdt::Hll(h), Op::Hll(adds)) => h.add_all(adds),
            (Crdt::Gset(g), Op::Gset(adds)) => g.add_all(adds),
            (state, op) => {
                return Err(DtError::WrongType {
                    op: op.datatype().as_str().into(),
                    bucket: state.datatype().as_str().into(),
                });
            }
        }
        Ok(())
    }

    /// Merges another replica's state of the same type into this one (a different type is
    /// ignored: a bucket's datatype cannot change).
    pub fn merge(&mut self, other: &Crdt) {
        match (self, other) {
            (Crdt::Counter(a), Crdt::Counter(b)) => a.merge(b),
            (Crdt::Set(a), Crdt::Set(b)) => a.merge(b),
            (Crdt::Map(a), Crdt::Map(b)) => a.merge(b),
            (Crdt::Hll(a), Crdt::Hll(b)) => a.merge(b),
            (Crdt::Gset(a), Crdt::Gset(b)) => a.merge(b),
            _ => {}
        }
    }

    pub fn value(&self) -> DtValue {
        match self {
            Crdt::Counter(c) => DtValue::Counter(c.value()),
            Crdt::Set(s) => DtValue::Set(s.elements().members().cloned().collect()),
            Crdt::Map(m) => DtValue::Map(m.fields().view()),
            Crdt::Hll(h) => DtValue::Hll(h.estimate()),
            Crdt::Gset(g) => DtValue::Gset(g.members().cloned().collect()),
        }
    }

    /// The context a fetch hands to clients (sets and maps; the others need none).
    pub fn context(&self) -> Option<Context> {
        self.clock().map(|c| Context(c.clone()))
    }

    /// Lowers an HLL's precision to the bucket's (which may only be reduced).
    pub fn fit_precision(&mut self, precision: u8) {
        if let Crdt::Hll(h) = self {
            h.reduce_to(precision);
        }
    }

    /// How many actors have updated this state (Riak's `*_actor_counts` statistics).
    pub fn actor_count(&self) -> usize {
        match self {
            Crdt::Counter(c) => c.actors(),
            _ => self.clock().map_or(0, VersionVector::len),
        }
    }
}

/// A data type as a fetch (or an update's return body) reports it: the value, the context and
/// how many actors updated it. A set's is read straight from its encoding, without building
/// the state ([`object::fetched`]): most of a big set's fetch was building a map of every
/// member and its dots only to list the members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    datatype: Datatype,
    value: DtValue,
    context: Option<Context>,
    actors: usize,
}

impl Fetched {
    pub fn datatype(&self) -> Datatype {
        self.datatype
    }

    pub fn value(&self) -> DtValue {
        self.value.clone()
    }

    pub fn context(&self) -> Option<Context> {
        self.context.clone()
    }

    /// See [`Crdt::actor_count`].
    pub fn actor_count(&self) -> usize {
        self.actors
    }
}

impl From<&Crdt> for Fetched {
    fn from(state: &Crdt) -> Fetched {
        Fetched {
            datatype: state.datatype(),
            value: state.value(),
            context: state.context(),
            actors: state.actor_count(),
        }
    }
}

/// The opaque causal context handed to clients: the events the state they read had seen.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Context(pub VersionVector);

/// Version byte of the encoded context.
const CONTEXT_V1: u8 = 1;

impl Context {
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(2 + self.0.len() * 10);
        out.push(CONTEXT_V1);
        encoding::put_vv(&mut out, &self.0);
        Bytes::from(out)
    }

    /// Reads a context a client sent back; anything else is [`DtError::BadContext`].
    pub fn from_bytes(raw: &[u8]) -> Result<Context, DtError> {
        let mut r = Reader::new(raw);
        if r.byte() != Some(CONTEXT_V1) {
            return Err(DtError::BadContext);
        }
        let vv = encoding::read_vv(&mut r).map_err(|_| DtError::BadContext)?;
        if r.remaining() != 0 {
            return Err(DtError::BadContext);
        }
        Ok(Context(vv))
    }
}

#[cfg(test)]
mod tests;
