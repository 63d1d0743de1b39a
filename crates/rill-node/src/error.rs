//! The node's error type, with stable machine-readable codes.
//!
//! Every failure a client can see maps to one variant here. The protocol layers turn a variant into
//! Riak's status code and body (HTTP) or `RpbErrorResp` (PB); `code()` is the stable identifier
//! that logs, metrics and tests use, independent of the wording.

use rill_core::fsm::{GetError, PutError};
use rill_core::object::LimitError;
use rill_core::props::{PropsError, QuorumError};
use rill_storage::StorageError;

/// Result alias for node operations.
pub type NodeResult<T> = Result<T, NodeError>;

#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum NodeError {
    /// The request names a bucket type that does not exist.
    #[error("Unknown bucket type: {0}")]
    UnknownBucketType(String),
    /// The bucket type exists but has not been activated.
    #[error("Bucket type {0} is not active")]
    InactiveBucketType(String),
    /// A quorum parameter cannot be satisfied by the bucket's n_val, or is malformed.
    #[error("{0}")]
    InvalidQuorum(#[from] QuorumError),
    /// Bucket or bucket-type properties were refused.
    #[error("{0}")]
    InvalidProps(#[from] PropsError),
    /// Anything else wrong with the request itself.
    #[error("{0}")]
    BadRequest(String),
    /// Too few replicas answered a read in time or successfully.
    #[error("{0}")]
    GetQuorum(GetError),
    /// Too few replicas acknowledged a write.
    #[error("{0}")]
    PutQuorum(PutError),
    /// The object exceeds the size or sibling limits.
    #[error("{0}")]
    Limit(#[from] LimitError),
    /// `if_not_modified`: the stored object's clock differs from the one supplied.
    #[error("modified")]
    Modified,
    /// The object a conditional request depends on does not exist.
    #[error("notfound")]
    NotFound,
    /// `if_none_match`: an object already exists at this key.
    #[error("match_found")]
    MatchFound,
    /// The storage layer failed (disk full, I/O error, corruption).
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A stored object could not be decoded.
    #[error("corrupt object: {0}")]
    Corrupt(String),
    /// A data-type operation was refused (a remove without context of something absent, an
    /// operation of another type, a bad context).
    #[error("{0}")]
    Datatype(#[from] rill_core::crdt::DtError),
    /// The request did not complete within its timeout.
    #[error("timeout")]
    Timeout,
    /// The node's configuration does not fit its data directory (or is invalid).
    #[error("configuration: {0}")]
    Config(String),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// A peer the request needed could not be reached, or failed mid-request.
    #[error("{0}")]
    Unreachable(String),
}

impl NodeError {
    /// A stable identifier for the error, for logs, metrics and tests.
    pub fn code(&self) -> &'static str {
        match self {
            NodeError::UnknownBucketType(_) => "unknown_bucket_type",
            NodeError::InactiveBucketType(_) => "inactive_bucket_type",
            NodeError::InvalidQuorum(_) => "invalid_quorum",
            NodeError::InvalidProps(_) => "invalid_props",
            NodeError::BadRequest(_) => "bad_request",
            NodeError::GetQuorum(_) => "get_quorum",
            NodeError::PutQuorum(_) => "put_quorum",
            NodeError::Limit(LimitError::TooLarge { .. }) => "too_large",
            NodeError::Limit(_) => "too_many_siblings",
            NodeError::Modified => "modified",
            NodeError::MatchFound => "match_found",
            NodeError::NotFound => "notfound",
            NodeError::Storage(_) => "storage",
            NodeError::Corrupt(_) => "corrupt",
            NodeError::Datatype(rill_core::crdt::DtError::NotPresent(_))
            | NodeError::Datatype(rill_core::crdt::DtError::FieldNotPresent(_)) => "precondition",
            NodeError::Datatype(_) => "datatype",
            NodeError::Timeout => "timeout",
            NodeError::Config(_) => "config",
            NodeError::ShuttingDown => "shutting_down",
            NodeError::Unreachable(_) => "unreachable",
        }
    }
}
