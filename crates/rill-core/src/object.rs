//! Riak objects: a causal history plus one or more sibling contents.
//!
//! This is the unit that vnodes store, replicas exchange and clients read. Each [`Content`] is
//! one sibling — a value with the metadata Riak exposes over HTTP and PB (content type, vtag,
//! last-modified, user metadata, links, secondary index entries, the tombstone flag) — and the
//! [`Dot`] of the write that created it, which the merge uses to tell which siblings a later
//! writer had seen. Several contents exist only after concurrent writes in `allow_mult` buckets.
//!
//! The object also carries Riak's guard rails: warnings and refusals for too many siblings or
//! too large an object ([`Limits`]), checked before a write is accepted.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::vclock::{Dot, VClock};

/// Content type of a value stored without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// A link to another object (HTTP `Link` header, PB `RpbLink`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Link {
    pub bucket: Bytes,
    pub key: Bytes,
    pub tag: Bytes,
}

/// Everything about a sibling except its value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Metadata {
    pub content_type: Bytes,
    pub charset: Option<Bytes>,
    pub content_encoding: Option<Bytes>,
    /// Identifies this sibling to clients (ETag, `?vtag=`); set by the coordinating vnode.
    pub vtag: Bytes,
    /// Microseconds since the epoch; set by the coordinating vnode.
    pub last_modified_us: u64,
    /// User metadata (`X-Riak-Meta-*`), in the order the client gave it.
    pub usermeta: Vec<(Bytes, Bytes)>,
    pub links: Vec<Link>,
    /// Secondary index entries: field name (e.g. `foo_bin`, `bar_int`) and value.
    pub indexes: Vec<(Bytes, Bytes)>,
    /// A tombstone: the sibling records a delete.
    pub deleted: bool,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            content_type: Bytes::from_static(DEFAULT_CONTENT_TYPE.as_bytes()),
            charset: None,
            content_encoding: None,
            vtag: Bytes::new(),
            last_modified_us: 0,
            usermeta: Vec::new(),
            links: Vec::new(),
            indexes: Vec::new(),
            deleted: false,
        }
    }
}

impl Metadata {
    /// Bytes held by the metadata's variable-length fields plus its fixed ones.
    pub fn approx_size(&self) -> usize {
        let opt = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        let pairs = |v: &[(Bytes, Bytes)]| v.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let links: usize = self
            .links
            .iter()
            .map(|l| l.bucket.len() + l.key.len() + l.tag.len())
            .sum();
        self.content_type.len()
            + opt(&self.charset)
            + opt(&self.content_encoding)
            + self.vtag.len()
            + size_of::<u64>()
            + 1
            + pairs(&self.usermeta)
            + links
            + pairs(&self.indexes)
    }
}

/// One sibling: a value, its metadata, and the write event that created it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Content {
    pub meta: Metadata,
    pub value: Bytes,
    /// The write that created this sibling; `None` for contents from before dots were kept.
    pub dot: Option<Dot>,
}

impl Content {
    /// A sibling not yet written (no dot): what a client's PUT becomes before coordination.
    pub fn new(value: impl Into<Bytes>, meta: Metadata) -> Self {
        Content {
            meta,
            value: value.into(),
            dot: None,
        }
    }

    pub fn is_tombstone(&self) -> bool {
        self.meta.deleted
    }
}

/// A stored object: its causal history and its siblings (at least one in a stored object).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RiakObject {
    pub vclock: VClock,
    pub contents: Vec<Content>,
}

/// Riak's object guard rails (`warn_siblings`, `max_siblings`, `warn_object_size`,
/// `max_object_size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub sibling_warn: usize,
    pub sibling_max: usize,
    /// Bytes.
    pub size_warn: usize,
    /// Bytes.
    pub size_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        const MIB: usize = 1024 * 1024;
        Limits {
            sibling_warn: 25,
            sibling_max: 100,
            size_warn: 5 * MIB,
            size_max: 50 * MIB,
        }
    }
}

/// A limit passed its warning threshold: the write goes ahead, the operator should be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitWarning {
    ManySiblings { count: usize, warn: usize },
    LargeObject { size: usize, warn: usize },
}

/// A limit was exceeded: the write must be refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum LimitError {
    #[error("too many siblings: {count} (max {max})")]
    TooManySiblings { count: usize, max: usize },
    #[error("object too large: {size} bytes (max {max})")]
    TooLarge { size: usize, max: usize },
}

impl RiakObject {
    /// An object with a single sibling.
    pub fn new(vclock: VClock, content: Content) -> Self {
        RiakObject {
            vclock,
            contents: vec![content],
        }
    }

    /// True if every sibling is a delete marker (the object reads as not found).
    pub fn is_tombstone(&self) -> bool {
        self.contents.iter().all(Content::is_tombstone)
    }

    pub fn sibling_count(&self) -> usize {
        self.contents.len()
    }

    /// Approximate stored size: values, metadata and clock.
    pub fn approx_size(&self) -> usize {
        let clock = self.vclock.len() * (8 + 2 * size_of::<u64>());
        let contents: usize = self
            .contents
            .iter()
            .map(|c| c.value.len() + c.meta.approx_size())
            .sum();
        clock + contents
    }

    /// Checks the object against `limits`: an error if a maximum is exceeded, otherwise the
    /// warnings (possibly none) for thresholds passed.
    pub fn check_limits(&self, limits: &Limits) -> Result<Vec<LimitWarning>, LimitError> {
        let (count, size) = (self.sibling_count(), self.approx_size());
        if count > limits.sibling_max {
            return Err(LimitError::TooManySiblings {
                count,
                max: limits.sibling_max,
            });
        }
        if size > limits.size_max {
            return Err(LimitError::TooLarge {
                size,
                max: limits.size_max,
            });
        }
        let mut warnings = Vec::new();
        if count > limits.sibling_warn {
            warnings.push(LimitWarning::ManySiblings {
                count,
                warn: limits.sibling_warn,
            });
        }
        if size > limits.size_warn {
            warnings.push(LimitWarning::LargeObject {
                size,
                warn: limits.size_warn,
            });
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vclock::Actor;

    fn content(value: &[u8], deleted: bool) -> Content {
        let meta = Metadata {
            deleted,
            ..Metadata::default()
        };
        Content::new(Bytes::copy_from_slice(value), meta)
    }

    fn object(contents: Vec<Content>) -> RiakObject {
        RiakObject {
            vclock: VClock::new(),
            contents,
        }
    }

    #[test]
    fn default_metadata_is_octet_stream() {
        let m = Metadata::default();
        assert_eq!(m.content_type.as_ref(), b"application/octet-stream");
        assert!(!m.deleted && m.vtag.is_empty() && m.charset.is_none());
    }

    #[test]
    fn tombstone_only_when_every_sibling_is_deleted() {
        assert!(object(vec![content(b"", true), content(b"", true)]).is_tombstone());
        assert!(!object(vec![content(b"", true), content(b"v", false)]).is_tombstone());
        assert_eq!(object(vec![content(b"", true); 3]).sibling_count(), 3);
    }

    #[test]
    fn approx_size_counts_values_and_metadata() {
        let mut c = content(&[0; 1000], false);
        let base = object(vec![c.clone()]).approx_size();
        assert!(base >= 1000 + "application/octet-stream".len());
        c.meta
            .usermeta
            .push((Bytes::from_static(b"k"), Bytes::from_static(b"vv")));
        c.meta
            .indexes
            .push((Bytes::from_static(b"f_bin"), Bytes::from_static(b"x")));
        c.meta.links.push(Link {
            bucket: Bytes::from_static(b"b"),
            key: Bytes::from_static(b"k"),
            tag: Bytes::from_static(b"t"),
        });
        assert_eq!(object(vec![c]).approx_size(), base + 3 + 6 + 3);
    }

    #[test]
    fn approx_size_is_the_sum_of_every_field() {
        // Every fixed and optional field set, so each term of the sum is non-zero: content
        // type 24 + charset 5 + encoding 4 + vtag 3 + last-modified 8 + tombstone flag 1.
        let meta = Metadata {
            charset: Some(Bytes::from_static(b"utf-8")),
            content_encoding: Some(Bytes::from_static(b"gzip")),
            vtag: Bytes::from_static(b"abc"),
            last_modified_us: 7,
            ..Metadata::default()
        };
        assert_eq!(meta.approx_size(), 24 + 5 + 4 + 3 + 8 + 1);
        let c = Content::new(Bytes::from_static(b"value"), meta);
        let bare = object(vec![c.clone()]);
        assert_eq!(bare.approx_size(), 5 + 45);
        // Each clock entry counts 24 bytes: an 8-byte actor, its counter and its timestamp.
        let mut vclock = VClock::new();
        vclock.increment(Actor(*b"actor--a"), 10);
        vclock.increment(Actor(*b"actor--b"), 20);
        assert_eq!(vclock.len(), 2);
        let clocked = RiakObject::new(vclock, c);
        assert_eq!(clocked.approx_size(), 2 * 24 + 5 + 45);
    }

    #[test]
    fn an_object_exactly_at_a_limit_is_neither_warned_about_nor_refused() {
        let obj = object(vec![content(&[0; 3000], false); 2]);
        let size = obj.approx_size();
        let at = Limits {
            sibling_warn: 2,
            sibling_max: 2,
            size_warn: size,
            size_max: size,
        };
        assert_eq!(obj.check_limits(&at), Ok(vec![]));
        let below = Limits {
            sibling_warn: 1,
            sibling_max: 2,
            size_warn: size - 1,
            size_max: size,
        };
        assert_eq!(
            obj.check_limits(&below),
            Ok(vec![
                LimitWarning::ManySiblings { count: 2, warn: 1 },
                LimitWarning::LargeObject {
                    size,
                    warn: size - 1
                },
            ])
        );
        let over = Limits {
            size_max: size - 1,
            ..at
        };
        assert_eq!(
            obj.check_limits(&over),
            Err(LimitError::TooLarge {
                size,
                max: size - 1
            })
        );
    }

    #[test]
    fn limits_warn_then_refuse() {
        let limits = Limits {
            sibling_warn: 2,
            sibling_max: 3,
            size_warn: 2000,
            size_max: 4000,
        };
        let small = |n| object(vec![content(b"v", false); n]);
        assert_eq!(small(2).check_limits(&limits), Ok(vec![]));
        assert_eq!(
            small(3).check_limits(&limits),
            Ok(vec![LimitWarning::ManySiblings { count: 3, warn: 2 }])
        );
        assert_eq!(
            small(4).check_limits(&limits),
            Err(LimitError::TooManySiblings { count: 4, max: 3 })
        );
        let big = object(vec![content(&[0; 3000], false)]);
        let size = big.approx_size();
        assert_eq!(
            big.check_limits(&limits),
            Ok(vec![LimitWarning::LargeObject { size, warn: 2000 }])
        );
        let huge = object(vec![content(&[0; 5000], false)]);
        assert!(matches!(
            huge.check_limits(&limits),
            Err(LimitError::TooLarge { max: 4000, .. })
        ));
    }

    #[test]
    fn riak_default_limits() {
        let d = Limits::default();
        assert_eq!((d.sibling_warn, d.sibling_max), (25, 100));
        assert_eq!((d.size_warn, d.size_max), (5 << 20, 50 << 20));
    }
}
