//! What clients ask of a node, protocol-neutral: both the HTTP and the PB layer translate their
//! wire requests into these, so quorum handling and conditional logic exist once.

use std::time::Duration;

use rill_core::bkey::BKey;
use rill_core::crdt::{Context, Op};
use rill_core::object::{Content, RiakObject};
use rill_core::props::Quorum;
use rill_core::vclock::VClock;

/// Options of a read; `None` means "the bucket's value".
#[derive(Clone, Debug, Default)]
pub struct GetOptions {
    pub r: Option<Quorum>,
    pub pr: Option<Quorum>,
    pub basic_quorum: Option<bool>,
    pub notfound_ok: Option<bool>,
    /// A smaller n_val for this request (must not exceed the bucket's).
    pub n_val: Option<u32>,
    /// Return metadata only, no values.
    pub head: bool,
    /// On a tombstone, return its clock instead of a bare not-found.
    pub deleted_vclock: bool,
    /// Answer `Unchanged` when the object's clock still equals this one.
    pub if_modified: Option<VClock>,
    pub timeout: Option<Duration>,
}

/// The answer to a read.
#[derive(Clone, Debug)]
pub enum GetResponse {
    Found(RiakObject),
    /// Not found; `tombstone` is the clock of a tombstone when one was found and asked for.
    NotFound {
        tombstone: Option<VClock>,
    },
    /// `if_modified` matched: the object has not changed.
    Unchanged,
}

/// Options of a write; `None` means "the bucket's value".
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PutOptions {
    pub w: Option<Quorum>,
    pub dw: Option<Quorum>,
    pub pw: Option<Quorum>,
    pub n_val: Option<u32>,
    /// Return the stored object (all siblings) after the write.
    pub return_body: bool,
    /// Like `return_body` without the values.
    pub return_head: bool,
    /// Write only if the stored object's clock equals the request's context.
    pub if_not_modified: bool,
    /// Write only if no object exists at the key.
    pub if_none_match: bool,
    /// Store the object with the given clock as it is, without advancing it.
    pub asis: bool,
    pub timeout: Option<Duration>,
}

/// A client write: the content and the causal context it was based on.
#[derive(Clone, Debug)]
pub struct PutRequest {
    pub bkey: BKey,
    /// The clock the client read (empty when it read nothing).
    pub context: VClock,
    pub content: Content,
}

/// The answer to a write.
#[derive(Clone, Debug)]
pub struct PutResponse {
    /// The object as stored, when `return_body`/`return_head` asked for it.
    pub object: Option<RiakObject>,
}

/// Options of a delete; `None` means "the bucket's value".
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub rw: Option<Quorum>,
    pub r: Option<Quorum>,
    pub w: Option<Quorum>,
    pub pr: Option<Quorum>,
    pub pw: Option<Quorum>,
    pub dw: Option<Quorum>,
    pub n_val: Option<u32>,
    /// The clock the client read; without one the node reads it first.
    pub vclock: Option<VClock>,
    pub timeout: Option<Duration>,
}

/// The answer to a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// There was nothing to delete (no object, or already a tombstone).
    NotFound,
}

/// Options of a data-type fetch; `None` means "the bucket's value".
#[derive(Clone, Debug, Default)]
pub struct DtFetchOptions {
    pub r: Option<Quorum>,
    pub pr: Option<Quorum>,
    pub basic_quorum: Option<bool>,
    pub notfound_ok: Option<bool>,
    pub n_val: Option<u32>,
    pub timeout: Option<Duration>,
}

/// A data-type update: the operation, and the context of the fetch it is based on (needed
/// for removes).
#[derive(Clone, Debug)]
pub struct DtUpdateRequest {
    pub bkey: BKey,
    pub op: Op,
    pub context: Option<Context>,
}

/// Options of a data-type update; `None` means "the bucket's value".
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct DtUpdateOptions {
    pub w: Option<Quorum>,
    pub dw: Option<Quorum>,
    pub pw: Option<Quorum>,
    pub n_val: Option<u32>,
    /// Return the new value after the update.
    pub return_body: bool,
    pub timeout: Option<Duration>,
}
