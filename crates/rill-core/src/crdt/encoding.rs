//! The stored form of data-type states: a format byte, a type tag, then the state.
//!
//! Dots name their actor by its position in the state's clock (one byte for the usual few
//! actors instead of eight), so a set member costs its bytes plus about three. Decoding slices
//! members and register values out of the input instead of copying them, and refuses anything
//! malformed with an error instead of trusting lengths.

use bytes::Bytes;

use crate::codec::{Reader, put_varint};
use crate::crdt::causal::{Causal, Deferred, DotFun, DotSet, VersionVector};
use crate::crdt::map::{Field, FieldKey, FieldKind, FieldValue, Fields};
use crate::crdt::set::Elements;
use crate::crdt::{Crdt, GSet, Hll, PnCounter, hll};
use crate::vclock::{Actor, Dot};

/// The current (and only) state format.
pub const FORMAT_V1: u8 = 1;

const TAG_COUNTER: u8 = 1;
pub(crate) const TAG_SET: u8 = 2;
const TAG_MAP: u8 = 3;
const TAG_HLL: u8 = 4;
const TAG_GSET: u8 = 5;

/// Why stored bytes are not a data-type state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed data type state: {0}")]
pub struct DecodeError(pub &'static str);

type Result<T> = std::result::Result<T, DecodeError>;

const TRUNCATED: DecodeError = DecodeError("truncated");

pub fn encode(crdt: &Crdt) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_V1);
    match crdt {
        Crdt::Counter(c) => {
            out.push(TAG_COUNTER);
            put_varint(&mut out, c.0.len() as u64);
            for (a, (p, n)) in &c.0 {
                out.extend_from_slice(&a.0);
                put_varint(&mut out, *p);
                put_varint(&mut out, *n);
            }
        }
        Crdt::Set(s) => {
            out.push(TAG_SET);
            put_vv(&mut out, &s.clock);
            let actors = Actors::of(&s.clock);
            put_elements(&mut out, &actors, &s.store);
            put_deferred(&mut out, &s.deferred, |out, m| put_bytes(out, m));
        }
        Crdt::Map(m) => {
            out.push(TAG_MAP);
            put_vv(&mut out, &m.clock);
            let actors = Actors::of(&m.clock);
            put_fields(&mut out, &actors, &m.store);
            put_deferred(&mut out, &m.deferred, put_key);
        }
        Crdt::Hll(h) => {
            out.push(TAG_HLL);
            out.push(h.precision);
            let used: Vec<(usize, u8)> = h
                .registers
                .iter()
                .enumerate()
                .filter(|(_, r)| **r != 0)
                .map(|(i, r)| (i, *r))
                .collect();
            // Sparse while that is smaller: (index gap, rank) pairs of at most ~4 bytes.
            if used.len() * 4 < h.registers.len() {
                out.push(1);
                put_varint(&mut out, used.len() as u64);
                let mut last = 0;
                for (i, r) in used {
                    put_varint(&mut out, (i - last) as u64);
                    out.push(r);
                    last = i;
                }
            } else {
                out.push(0);
                out.extend_from_slice(&h.registers);
            }
        }
        Crdt::Gset(g) => {
            out.push(TAG_GSET);
            put_varint(&mut out, g.0.len() as u64);
            for m in &g.0 {
                put_bytes(&mut out, m);
            }
        }
    }
    out
}

pub fn decode(raw: &Bytes) -> Result<Crdt> {
    let mut r = Reader::new(raw);
    if r.byte() != Some(FORMAT_V1) {
        return Err(DecodeError("unknown format version"));
    }
    let src = Src { base: raw };
    let crdt = match r.byte().ok_or(TRUNCATED)? {
        TAG_COUNTER => {
            let mut c = PnCounter::default();
            for _ in 0..varint(&mut r)? {
                let a = Actor(r.array().ok_or(TRUNCATED)?);
                c.0.insert(a, (varint(&mut r)?, varint(&mut r)?));
            }
            Crdt::Counter(c)
        }
        TAG_SET => {
            let clock = read_vv(&mut r)?;
            let actors = Actors::of(&clock);
            let elems = src.elements(&mut r, &actors)?;
            let deferred = read_deferred(&mut r, |r| src.bytes(r))?;
            Crdt::Set(Causal {
                clock,
                store: elems,
                deferred,
            })
        }
        TAG_MAP => {
            let clock = read_vv(&mut r)?;
            let actors = Actors::of(&clock);
            let fields = src.fields(&mut r, &actors, 0)?;
            let deferred = read_deferred(&mut r, |r| src.key(r))?;
            Crdt::Map(Causal {
                clock,
                store: fields,
                deferred,
            })
        }
        TAG_HLL => {
            let p = r.byte().ok_or(TRUNCATED)?;
            if !(hll::MIN_PRECISION..=hll::MAX_PRECISION).contains(&p) {
                return Err(DecodeError("hll precision out of range"));
            }
            let mut h = Hll::new(p);
            let max_rank = 64 - p + 1;
            match r.byte().ok_or(TRUNCATED)? {
                0 => h.registers = r.take(1 << p).ok_or(TRUNCATED)?.to_vec(),
                1 => {
                    let mut i = 0usize;
                    for n in 0..varint(&mut r)? {
                        let gap = usize::try_from(varint(&mut r)?).map_err(|_| TRUNCATED)?;
                        i = i.checked_add(gap).ok_or(TRUNCATED)?;
                        if (n > 0 && gap == 0) || i >= h.registers.len() {
                            return Err(DecodeError("hll register index"));
                        }
                        h.registers[i] = r.byte().ok_or(TRUNCATED)?;
                    }
                }
                _ => return Err(DecodeError("hll layout")),
            }
            if h.registers.iter().any(|r| *r > max_rank) {
                return Err(DecodeError("hll rank out of range"));
            }
            Crdt::Hll(h)
        }
        TAG_GSET => {
            let mut g = GSet::default();
            for _ in 0..varint(&mut r)? {
                g.0.insert(src.bytes(&mut r)?);
            }
            Crdt::Gset(g)
        }
        _ => return Err(DecodeError("unknown data type tag")),
    };
    match r.remaining() {
        0 => Ok(crdt),
        _ => Err(DecodeError("trailing bytes")),
    }
}

/// A set state's clock and members, read from its encoding without building the state (the
/// dots are checked and skipped). Refuses what [`decode`] refuses of a set.
pub(crate) fn set_view(raw: &Bytes) -> Result<(VersionVector, Vec<Bytes>)> {
    let mut r = Reader::new(raw);
    if r.byte() != Some(FORMAT_V1) {
        return Err(DecodeError("unknown format version"));
    }
    if r.byte() != Some(TAG_SET) {
        return Err(DecodeError("state of another data type"));
    }
    let src = Src { base: raw };
    let clock = read_vv(&mut r)?;
    let actors = clock.len() as u64;
    let n = varint(&mut r)?;
    let mut members = Vec::with_capacity(r.capacity_for(n, 2));
    for _ in 0..n {
        members.push(src.bytes(&mut r)?);
        let dots = varint(&mut r)?;
        if dots == 0 {
            return Err(DecodeError("set member without dots"));
        }
        for _ in 0..dots {
            match varint(&mut r)? {
                0 => drop(r.take(8).ok_or(TRUNCATED)?),
                i if i > actors => return Err(DecodeError("dot actor index")),
                _ => {}
            }
            if varint(&mut r)? == 0 {
                return Err(DecodeError("dot counter 0"));
            }
        }
    }
    read_deferred(&mut r, |r| src.bytes(r))?;
    match r.remaining() {
        0 => Ok((clock, members)),
        _ => Err(DecodeError("trailing bytes")),
    }
}

pub(crate) fn put_vv(out: &mut Vec<u8>, vv: &VersionVector) {
    put_varint(out, vv.len() as u64);
    for (a, c) in vv.iter() {
        out.extend_from_slice(&a.0);
        put_varint(out, c);
    }
}

pub(crate) fn read_vv(r: &mut Reader<'_>) -> Result<VersionVector> {
    let n = varint(r)?;
    let mut pairs = Vec::with_capacity(r.capacity_for(n, 9));
    let mut last: Option<Actor> = None;
    for _ in 0..n {
        let a = Actor(r.array().ok_or(TRUNCATED)?);
        let c = varint(r)?;
        if c == 0 || last.is_some_and(|l| l >= a) {
            return Err(DecodeError("clock entries out of order or zero"));
        }
        last = Some(a);
        pairs.push((a, c));
    }
    Ok(VersionVector::from_pairs(pairs))
}

fn varint(r: &mut Reader<'_>) -> Result<u64> {
    r.varint().ok_or(TRUNCATED)
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_key(out: &mut Vec<u8>, key: &FieldKey) {
    put_bytes(out, &key.name);
    out.push(key.kind as u8);
}

/// The actors of a state's clock, for naming dots by position.
pub(crate) struct Actors(Vec<Actor>);

impl Actors {
    pub(crate) fn of(clock: &VersionVector) -> Self {
        Actors(clock.iter().map(|(a, _)| a).collect())
    }

    /// Position + 1, or 0 followed by the actor itself for one outside the clock (a state
    /// never holds such a dot, but the format does not depend on it).
    pub(crate) fn put_dot(&self, out: &mut Vec<u8>, dot: Dot) {
        match self.0.binary_search(&dot.actor) {
            Ok(i) => put_varint(out, i as u64 + 1),
            Err(_) => {
                out.push(0);
                out.extend_from_slice(&dot.actor.0);
            }
        }
        put_varint(out, dot.counter);
    }

    fn read_dot(&self, r: &mut Reader<'_>) -> Result<Dot> {
        let actor = match varint(r)? {
            0 => Actor(r.array().ok_or(TRUNCATED)?),
            i => *usize::try_from(i - 1)
                .ok()
                .and_then(|i| self.0.get(i))
                .ok_or(DecodeError("dot actor index"))?,
        };
        match varint(r)? {
            0 => Err(DecodeError("dot counter 0")),
            counter => Ok(Dot { actor, counter }),
        }
    }
}

fn put_dotfun<V>(
    out: &mut Vec<u8>,
    actors: &Actors,
    f: &DotFun<V>,
    mut put_value: impl FnMut(&mut Vec<u8>, &V),
) {
    put_varint(out, f.0.len() as u64);
    for (d, v) in &f.0 {
        actors.put_dot(out, *d);
        put_value(out, v);
    }
}

fn put_elements(out: &mut Vec<u8>, actors: &Actors, elems: &Elements) {
    put_varint(out, elems.0.len() as u64);
    for (m, dots) in &elems.0 {
        put_bytes(out, m);
        put_dotfun(out, actors, dots, |_, _| {});
    }
}

fn put_fields(out: &mut Vec<u8>, actors: &Actors, fields: &Fields) {
    put_varint(out, fields.0.len() as u64);
    for (key, field) in &fields.0 {
        put_key(out, key);
        put_dotfun(out, actors, &field.dots, |_, _| {});
        match &field.value {
            FieldValue::Counter(c) => put_dotfun(out, actors, c, |out, (p, n)| {
                put_varint(out, *p);
                put_varint(out, *n);
            }),
            FieldValue::Set(s) => put_elements(out, actors, s),
            FieldValue::Register(reg) => put_dotfun(out, actors, reg, |out, (ts, v)| {
                put_varint(out, *ts);
                put_bytes(out, v);
            }),
            FieldValue::Flag(f) => put_dotfun(out, actors, f, |_, _| {}),
            FieldValue::Map(m) => put_fields(out, actors, m),
        }
    }
}

pub(crate) fn put_deferred<T: Ord + Clone>(
    out: &mut Vec<u8>,
    d: &Deferred<T>,
    mut put_item: impl FnMut(&mut Vec<u8>, &T),
) {
    put_varint(out, d.0.len() as u64);
    for (ctx, items) in &d.0 {
        put_vv(out, ctx);
        put_varint(out, items.len() as u64);
        for item in items {
            put_item(out, item);
        }
    }
}

pub(crate) fn read_deferred<T: Ord + Clone>(
    r: &mut Reader<'_>,
    mut read_item: impl FnMut(&mut Reader<'_>) -> Result<T>,
) -> Result<Deferred<T>> {
    let mut d = Deferred::default();
    for _ in 0..varint(r)? {
        let ctx = read_vv(r)?;
        let items = d.0.entry(ctx).or_default();
        for _ in 0..varint(r)? {
            items.insert(read_item(r)?);
        }
    }
    Ok(d)
}

/// Nesting limit for maps in maps: deeper input is refused rather than risking the stack.
const MAX_DEPTH: usize = 32;

/// The buffer decoded members are sliced from.
struct Src<'a> {
    base: &'a Bytes,
}

impl Src<'_> {
    fn bytes(&self, r: &mut Reader<'_>) -> Result<Bytes> {
        let len = usize::try_from(varint(r)?).map_err(|_| TRUNCATED)?;
        Ok(self.base.slice_ref(r.take(len).ok_or(TRUNCATED)?))
    }

    fn key(&self, r: &mut Reader<'_>) -> Result<FieldKey> {
        let name = self.bytes(r)?;
        let kind = FieldKind::from_code(r.byte().ok_or(TRUNCATED)?)
            .ok_or(DecodeError("map field type"))?;
        Ok(FieldKey { name, kind })
    }

    fn dotfun<V>(
        &self,
        r: &mut Reader<'_>,
        actors: &Actors,
        mut read_value: impl FnMut(&mut Reader<'_>) -> Result<V>,
    ) -> Result<DotFun<V>> {
        let mut f = DotFun::default();
        for _ in 0..varint(r)? {
            let d = actors.read_dot(r)?;
            f.0.insert(d, read_value(r)?);
        }
        Ok(f)
    }

    fn dotset(&self, r: &mut Reader<'_>, actors: &Actors) -> Result<DotSet> {
        self.dotfun(r, actors, |_| Ok(()))
    }

    fn elements(&self, r: &mut Reader<'_>, actors: &Actors) -> Result<Elements> {
        let n = varint(r)?;
        let mut members = Vec::with_capacity(r.capacity_for(n, 2));
        for _ in 0..n {
            let m = self.bytes(r)?;
            let dots = self.dotset(r, actors)?;
            if dots.is_empty() {
                return Err(DecodeError("set member without dots"));
            }
            members.push((m, dots));
        }
        // Encoded in member order, so the map is built in bulk rather than by a search per
        // member (a third of a big set's decoding time).
        Ok(members.into_iter().collect())
    }

    fn fields(&self, r: &mut Reader<'_>, actors: &Actors, depth: usize) -> Result<Fields> {
        if depth > MAX_DEPTH {
            return Err(DecodeError("maps nested too deeply"));
        }
        let mut fields = Fields::default();
        for _ in 0..varint(r)? {
            let key = self.key(r)?;
            let dots = self.dotset(r, actors)?;
            let value = match key.kind {
                FieldKind::Counter => {
                    FieldValue::Counter(self.dotfun(r, actors, |r| Ok((varint(r)?, varint(r)?)))?)
                }
                FieldKind::Set => FieldValue::Set(self.elements(r, actors)?),
                FieldKind::Register => FieldValue::Register(
                    self.dotfun(r, actors, |r| Ok((varint(r)?, self.bytes(r)?)))?,
                ),
                FieldKind::Flag => FieldValue::Flag(self.dotset(r, actors)?),
                FieldKind::Map => FieldValue::Map(self.fields(r, actors, depth + 1)?),
            };
            fields.0.insert(key, Field { dots, value });
        }
        Ok(fields)
    }
}
