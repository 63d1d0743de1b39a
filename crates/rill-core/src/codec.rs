//! The on-disk (and handoff) byte encoding of a [`RiakObject`].
//!
//! Every read and write of an object goes through this codec, so it is hand-written rather
//! than derived: a version byte, then the clock and each sibling as LEB128 varints and
//! length-prefixed byte strings, with no per-field tags. Decoding copies the input once into a
//! shared buffer and hands out every value and metadata field as a slice of it, instead of
//! allocating per field; callers that already own the bytes as [`Bytes`] skip even that copy
//! with [`decode_bytes`].
//!
//! The first byte is the format version, so a later format can be introduced while old data
//! stays readable; an unknown version is refused with a clear error. Input is untrusted (a disk
//! can be corrupt, a handoff peer can be wrong): decoding never panics and never allocates
//! more than the input can justify.

use bytes::Bytes;

use crate::object::{Content, Link, Metadata, RiakObject};
use crate::vclock::{Actor, ClockError, Dot, VClock};

/// The current (and only) object format.
pub const FORMAT_V1: u8 = 1;

/// Why stored bytes could not be decoded into an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty input: no format version byte")]
    Empty,
    #[error("unknown object format version {0} (this build reads version {FORMAT_V1})")]
    UnknownVersion(u8),
    #[error("object encoding is truncated or has an oversized number")]
    Truncated,
    #[error("malformed object encoding: {0}")]
    Malformed(&'static str),
    #[error("object encoding has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("malformed vector clock: {0}")]
    Clock(#[from] ClockError),
}

/// Encodes `obj` into a fresh buffer.
pub fn encode(obj: &RiakObject) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(obj, &mut out);
    out
}

/// Appends the encoding of `obj` to `out` (reusable buffers avoid an allocation per write).
pub fn encode_into(obj: &RiakObject, out: &mut Vec<u8>) {
    // Fixed overhead per sibling is well under 64 bytes; one reservation covers the rest.
    out.reserve(obj.approx_size() + 64 * obj.contents.len() + 16);
    out.push(FORMAT_V1);
    obj.vclock.encode_body(out);
    put_varint(out, obj.contents.len() as u64);
    for content in &obj.contents {
        put_content(out, content);
    }
}

/// Decodes bytes written by [`encode`]. The input is copied once; fields share that copy.
pub fn decode(raw: &[u8]) -> Result<RiakObject, CodecError> {
    // Check the version before copying so that garbage is refused cheaply.
    check_version(raw)?;
    decode_bytes(Bytes::copy_from_slice(raw))
}

/// Decodes bytes written by [`encode`] without copying: every field is a slice of `raw`.
pub fn decode_bytes(raw: Bytes) -> Result<RiakObject, CodecError> {
    check_version(&raw)?;
    let mut r = Reader::new(&raw[1..]);
    let src = Source { base: &raw };
    let vclock = VClock::decode_body(&mut r)?;
    let count = r.varint().ok_or(CodecError::Truncated)?;
    // A sibling takes at least 11 bytes: dot tag, three lengths, two option tags, timestamp,
    // deleted flag and three counts.
    let mut contents = Vec::with_capacity(r.capacity_for(count, 11));
    for _ in 0..count {
        contents.push(src.content(&mut r)?);
    }
    match r.remaining() {
        0 => Ok(RiakObject { vclock, contents }),
        n => Err(CodecError::TrailingBytes(n)),
    }
}

fn check_version(raw: &[u8]) -> Result<(), CodecError> {
    match raw.first() {
        None => Err(CodecError::Empty),
        Some(&FORMAT_V1) => Ok(()),
        Some(&v) => Err(CodecError::UnknownVersion(v)),
    }
}

fn put_content(out: &mut Vec<u8>, c: &Content) {
    match c.dot {
        None => out.push(0),
        Some(dot) => {
            out.push(1);
            out.extend_from_slice(&dot.actor.0);
            put_varint(out, dot.counter);
        }
    }
    put_bytes(out, &c.value);
    let m = &c.meta;
    put_bytes(out, &m.content_type);
    put_opt_bytes(out, m.charset.as_ref());
    put_opt_bytes(out, m.content_encoding.as_ref());
    put_bytes(out, &m.vtag);
    put_varint(out, m.last_modified_us);
    out.push(u8::from(m.deleted));
    put_pairs(out, &m.usermeta);
    put_varint(out, m.links.len() as u64);
    for l in &m.links {
        put_bytes(out, &l.bucket);
        put_bytes(out, &l.key);
        put_bytes(out, &l.tag);
    }
    put_pairs(out, &m.indexes);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_opt_bytes(out: &mut Vec<u8>, b: Option<&Bytes>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

fn put_pairs(out: &mut Vec<u8>, pairs: &[(Bytes, Bytes)]) {
    put_varint(out, pairs.len() as u64);
    for (k, v) in pairs {
        put_bytes(out, k);
        put_bytes(out, v);
    }
}

/// Appends `v` as an unsigned LEB128 varint (1 to 10 bytes).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The buffer that decoded fields are sliced from.
struct Source<'a> {
    base: &'a Bytes,
}

impl Source<'_> {
    fn content(&self, r: &mut Reader<'_>) -> Result<Content, CodecError> {
        let dot = match r.byte() {
            Some(0) => None,
            Some(1) => Some(read_dot(r)?),
            Some(_) => return Err(CodecError::Malformed("bad dot tag")),
            None => return Err(CodecError::Truncated),
        };
        let value = self.bytes(r)?;
        let meta = Metadata {
            content_type: self.bytes(r)?,
            charset: self.opt_bytes(r)?,
            content_encoding: self.opt_bytes(r)?,
            vtag: self.bytes(r)?,
            last_modified_us: r.varint().ok_or(CodecError::Truncated)?,
            deleted: match r.byte() {
                Some(0) => false,
                Some(1) => true,
                Some(_) => return Err(CodecError::Malformed("bad deleted flag")),
                None => return Err(CodecError::Truncated),
            },
            usermeta: self.pairs(r)?,
            links: self.links(r)?,
            indexes: self.pairs(r)?,
        };
        Ok(Content { meta, value, dot })
    }

    fn bytes(&self, r: &mut Reader<'_>) -> Result<Bytes, CodecError> {
        let len = r.varint().ok_or(CodecError::Truncated)?;
        let len = usize::try_from(len).map_err(|_| CodecError::Truncated)?;
        let slice = r.take(len).ok_or(CodecError::Truncated)?;
        Ok(self.base.slice_ref(slice))
    }

    fn opt_bytes(&self, r: &mut Reader<'_>) -> Result<Option<Bytes>, CodecError> {
        match r.byte() {
            Some(0) => Ok(None),
            Some(1) => self.bytes(r).map(Some),
            Some(_) => Err(CodecError::Malformed("bad option tag")),
            None => Err(CodecError::Truncated),
        }
    }

    fn pairs(&self, r: &mut Reader<'_>) -> Result<Vec<(Bytes, Bytes)>, CodecError> {
        let count = r.varint().ok_or(CodecError::Truncated)?;
        let mut out = Vec::with_capacity(r.capacity_for(count, 2));
        for _ in 0..count {
            out.push((self.bytes(r)?, self.bytes(r)?));
        }
        Ok(out)
    }

    fn links(&self, r: &mut Reader<'_>) -> Result<Vec<Link>, CodecError> {
        let count = r.varint().ok_or(CodecError::Truncated)?;
        let mut out = Vec::with_capacity(r.capacity_for(count, 3));
        for _ in 0..count {
            out.push(Link {
                bucket: self.bytes(r)?,
                key: self.bytes(r)?,
                tag: self.bytes(r)?,
            });
        }
        Ok(out)
    }
}

fn read_dot(r: &mut Reader<'_>) -> Result<Dot, CodecError> {
    let actor = Actor(r.array().ok_or(CodecError::Truncated)?);
    match r.varint().ok_or(CodecError::Truncated)? {
        0 => Err(CodecError::Malformed("dot with counter 0")),
        counter => Ok(Dot { actor, counter }),
    }
}

/// A cursor over untrusted bytes; every read is bounds-checked and returns `None` when the
/// input runs out, so callers map that to their own error.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// A safe preallocation for `count` items of at least `min_size` bytes each: never more
    /// than the remaining input could hold, whatever `count` claims.
    pub(crate) fn capacity_for(&self, count: u64, min_size: usize) -> usize {
        let fits = self.buf.len() / min_size.max(1);
        usize::try_from(count).map_or(fits, |c| c.min(fits))
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    pub(crate) fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Some(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// An unsigned LEB128 varint; `None` if truncated or wider than 64 bits.
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            // The tenth byte may only contribute the single remaining bit.
            if shift == 63 && bits > 1 {
                return None;
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vclock::ClockEntry;
    use proptest::prelude::*;

    fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    fn arb_actor() -> impl Strategy<Value = Actor> {
        any::<[u8; 8]>().prop_map(Actor)
    }

    fn arb_clock() -> impl Strategy<Value = VClock> {
        prop::collection::btree_map(arb_actor(), (1u64.., any::<u64>()), 0..5).prop_map(|m| {
            let entries = m
                .into_iter()
                .map(|(actor, (counter, timestamp))| ClockEntry {
                    actor,
                    counter,
                    timestamp,
                })
                .collect();
            VClock::from_entries(entries).unwrap()
        })
    }

    fn arb_pairs() -> impl Strategy<Value = Vec<(Bytes, Bytes)>> {
        prop::collection::vec((arb_bytes(8), arb_bytes(8)), 0..3)
    }

    fn arb_content() -> impl Strategy<Value = Content> {
        let meta = (
            arb_bytes(20),
            prop::option::of(arb_bytes(8)),
            prop::option::of(arb_bytes(8)),
            arb_bytes(22),
            any::<u64>(),
            arb_pairs(),
            prop::collection::vec((arb_bytes(6), arb_bytes(6), arb_bytes(6)), 0..3),
            arb_pairs(),
            any::<bool>(),
        )
            .prop_map(|(ct, cs, ce, vtag, lm, um, links, idx, deleted)| Metadata {
                content_type: ct,
                charset: cs,
                content_encoding: ce,
                vtag,
                last_modified_us: lm,
                usermeta: um,
                links: links
                    .into_iter()
                    .map(|(bucket, key, tag)| Link { bucket, key, tag })
                    .collect(),
                indexes: idx,
                deleted,
            });
        let dot = prop::option::of(
            (arb_actor(), 1u64..).prop_map(|(actor, counter)| Dot { actor, counter }),
        );
        (meta, arb_bytes(300), dot).prop_map(|(meta, value, dot)| Content { meta, value, dot })
    }

    fn arb_object() -> impl Strategy<Value = RiakObject> {
        (arb_clock(), prop::collection::vec(arb_content(), 0..4))
            .prop_map(|(vclock, contents)| RiakObject { vclock, contents })
    }

    fn sample() -> RiakObject {
        let mut vclock = VClock::new();
        let dot = vclock.increment(Actor([7; 8]), 1_700_000_000);
        let mut content = Content::new(Bytes::from_static(b"hello"), Metadata::default());
        content.dot = Some(dot);
        RiakObject::new(vclock, content)
    }

    #[test]
    fn unknown_versions_and_empty_input_are_refused() {
        assert_eq!(decode(&[]), Err(CodecError::Empty));
        let mut raw = encode(&sample());
        raw[0] = 2;
        assert_eq!(decode(&raw), Err(CodecError::UnknownVersion(2)));
        assert!(
            CodecError::UnknownVersion(2)
                .to_string()
                .contains("version 2")
        );
    }

    #[test]
    fn preallocation_is_bounded_by_the_input_not_the_claimed_count() {
        let r = Reader::new(&[0; 10]);
        assert_eq!(r.capacity_for(3, 2), 3, "a count that fits is taken as is");
        assert_eq!(
            r.capacity_for(1000, 2),
            5,
            "ten bytes hold at most five 2-byte items"
        );
        assert_eq!(r.capacity_for(u64::MAX, 3), 3);
        assert_eq!(r.capacity_for(7, 0), 7, "a zero size counts as one byte");
        assert_eq!(Reader::new(&[]).capacity_for(9, 1), 0);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let raw = encode(&sample());
        assert_eq!(decode(&raw), Ok(sample()));
        for len in 0..raw.len() {
            assert!(
                decode(&raw[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
        let mut long = raw.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(CodecError::TrailingBytes(1)));
    }

    #[test]
    fn bad_tags_are_malformed() {
        let mut raw = encode(&sample());
        // Layout: version, clock (count 1, actor 8, counter 1, timestamp 5), sibling count,
        // then the sibling's dot tag.
        let dot_tag = 1 + 1 + 8 + 1 + 5 + 1;
        assert_eq!(raw[dot_tag], 1);
        raw[dot_tag] = 9;
        assert_eq!(decode(&raw), Err(CodecError::Malformed("bad dot tag")));
    }

    #[test]
    fn varints_round_trip_and_refuse_overflow() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint(), Some(v));
            assert_eq!(r.remaining(), 0);
        }
        let eleven = [0xff; 11];
        assert_eq!(Reader::new(&eleven).varint(), None);
        let too_wide = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(Reader::new(&too_wide).varint(), None);
    }

    #[test]
    fn decoded_fields_share_the_input_buffer() {
        let raw = Bytes::from(encode(&sample()));
        let obj = decode_bytes(raw.clone()).unwrap();
        let value = &obj.contents[0].value;
        let range = raw.as_ptr_range();
        assert!(range.contains(&value.as_ptr()));
    }

    proptest! {
        #[test]
        fn round_trip(obj in arb_object()) {
            let raw = encode(&obj);
            prop_assert_eq!(decode(&raw), Ok(obj.clone()));
            prop_assert_eq!(decode_bytes(Bytes::from(raw)), Ok(obj));
        }

        #[test]
        fn encode_into_appends(obj in arb_object(), prefix in prop::collection::vec(any::<u8>(), 0..8)) {
            let mut buf = prefix.clone();
            encode_into(&obj, &mut buf);
            prop_assert_eq!(&buf[..prefix.len()], &prefix[..]);
            prop_assert_eq!(&buf[prefix.len()..], &encode(&obj)[..]);
        }

        #[test]
        fn garbage_never_panics(raw in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&raw);
            let _ = decode(&[&[FORMAT_V1][..], &raw].concat());
        }

        #[test]
        fn corrupted_encodings_never_panic(obj in arb_object(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut raw = encode(&obj);
            let i = at.index(raw.len());
            raw[i] = byte;
            let _ = decode(&raw);
        }
    }
}
