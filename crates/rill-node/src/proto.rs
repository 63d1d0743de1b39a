//! The internode protocol: what nodes ask of each other, and the answers.
//!
//! Messages are Rust enums encoded with postcard (compact, fast, not self-describing). The
//! protocol version is checked in the transport's handshake; within a version, variants are
//! only ever appended, so a variant's number never changes meaning. Objects travel in the
//! on-disk encoding of `rill_core::codec` (versioned, and what a replica stores anyway), so a
//! replica write is decoded once, for its merge.
//!
//! Requests and streams:
//! - [`Request`] on the multiplexed connection, answered by a [`Response`]: heartbeats, gossip,
//!   replica reads and writes, forwarded writes, metadata, joins, the claimant's commands;
//! - [`StreamOpen`] opens a dedicated bulk connection: a partition's handoff
//!   ([`HandoffMsg`]) or one node's part of a key or bucket listing ([`ListMsg`]).

use std::net::SocketAddr;

use bytes::Bytes;
use rill_core::bkey::{BKey, Bucket};
use rill_core::cluster::{Change, ClusterState, CommitId, Plan};
use rill_core::merge::MergeOptions;
use rill_core::ring::{NodeName, PartitionId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{NodeError, NodeResult};
use crate::handoff::TransferStatus;
use crate::metadata::Entry;
use crate::request::{DtUpdateOptions, PutOptions};
use rill_core::crdt::split::SetDelta;
use rill_core::crdt::{Context, Op};

/// A bucket and key as they travel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireKey {
    pub btype: Bytes,
    pub bucket: Bytes,
    pub key: Bytes,
}

impl From<&BKey> for WireKey {
    fn from(b: &BKey) -> Self {
        WireKey {
            btype: b.bucket.btype.clone(),
            bucket: b.bucket.name.clone(),
            key: b.key.clone(),
        }
    }
}

impl WireKey {
    /// The key, checked as a client's would be (a peer is trusted, not infallible).
    pub fn bkey(&self) -> NodeResult<BKey> {
        let bucket = Bucket::new(self.btype.clone(), self.bucket.clone())
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        BKey::new(bucket, self.key.clone()).map_err(|e| NodeError::BadRequest(e.to_string()))
    }
}

/// Which replica a request is for, and how the sender sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VnodeRef {
    pub partition: PartitionId,
    /// Whether the sender addressed this node as the partition's owner (else as a fallback).
    pub primary: bool,
    /// Times the request was already forwarded (a node that no longer holds a partition passes
    /// the request to its new owner once, never in a loop).
    pub hops: u8,
}

/// The claimant's commands, sent to it by whichever node an operator talks to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClaimantOp {
    Stage(Change),
    Plan,
    Commit,
    Clear,
    Staged,
}

/// What the claimant answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClaimantReply {
    Staged(Vec<Change>),
    Plan(Plan),
    Committed,
    Cleared,
}

/// The first byte of an encoded [`Request::Ping`] (postcard writes the variant index first).
pub const PING_TAG: u8 = 0;
/// The first byte of an encoded [`Request::Get`].
pub const GET_TAG: u8 = 2;

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// A heartbeat, with the digest of the sender's cluster state.
    Ping {
        digest: u64,
    },
    /// The sender's cluster state, to merge (push); the answer carries the receiver's when it
    /// knows more (pull).
    Gossip(Box<ClusterState>),
    /// Read a replica.
    Get {
        vnode: VnodeRef,
        key: WireKey,
    },
    /// Merge an object into a replica and store it durably.
    Put {
        vnode: VnodeRef,
        key: WireKey,
        object: Bytes,
        merge: MergeOptions,
        return_object: bool,
    },
    /// Remove a tombstone if it is still exactly the one read.
    Reap {
        vnode: VnodeRef,
        key: WireKey,
        clock: Bytes,
    },
    /// Coordinate a client's write (the receiving node holds no vnode of its preference list).
    /// `object` holds the client's context as its clock and the new content as its sibling.
    Coordinate {
        key: WireKey,
        object: Bytes,
        opts: PutOptions,
        hops: u8,
    },
    /// One metadata change (broadcast).
    Meta(Entry),
    /// "My metadata digest is this": answered with every entry when the receiver's differs.
    MetaSync {
        digest: [u8; 20],
    },
    /// Entries the receiver may lack.
    MetaPush(Vec<Entry>),
    /// A node asks to join the receiver's cluster.
    Join {
        name: NodeName,
        addr: SocketAddr,
        ring_size: u32,
    },
    Claimant(ClaimantOp),
    /// Whether the receiver knows a bucket type (activation needs every member to).
    HasType(String),
    /// The receiver's outgoing transfers.
    Transfers,
    /// Coordinate a data-type update (the receiving node holds no replica of the key);
    /// `legacy` for a Riak 1.4 counter of an `allow_mult` bucket.
    CoordinateDatatype {
        key: WireKey,
        op: Op,
        context: Option<Context>,
        opts: DtUpdateOptions,
        legacy: bool,
        hops: u8,
    },
    /// Apply a set update to a replica in the split layout (`rill_core::crdt::split`):
    /// `head` is the coordinator's new head object, encoded. Answered `Behind` when the
    /// replica must be sent the whole set instead.
    PutSetDelta {
        vnode: VnodeRef,
        key: WireKey,
        head: Bytes,
        delta: SetDelta,
        return_object: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Pong {
        digest: u64,
    },
    Gossip(Option<Box<ClusterState>>),
    /// A replica's object (tombstones included), encoded, or nothing.
    Object(Option<Bytes>),
    Reaped(bool),
    /// A stored write: the object as stored, when asked for.
    Stored(Option<Bytes>),
    Entries(Option<Vec<Entry>>),
    Joined(Box<ClusterState>),
    Claimant(ClaimantReply),
    HasType(bool),
    Transfers(Vec<TransferStatus>),
    Done,
    /// A data type's state after an update, encoded, when asked for.
    Datatype(Option<Bytes>),
    /// A set replica had not seen everything the coordinator of a delta had.
    Behind,
}

/// Every answer: a reply, or the node error that the requester passes on (a forwarded write's
/// client sees exactly the error the coordinating node produced).
pub type Response = Result<Reply, NodeError>;

/// What a bulk connection is for (its first frame).
#[derive(Debug, Serialize, Deserialize)]
pub enum StreamOpen {
    Handoff {
        partition: PartitionId,
        commit: CommitId,
    },
    /// The keys of `bucket` in `partitions`, each reported only by the first partition of
    /// its preference list that is in `covering` (so every key is listed once cluster-wide).
    ListKeys {
        btype: Bytes,
        bucket: Bytes,
        partitions: Vec<PartitionId>,
        covering: Vec<PartitionId>,
        n: u32,
    },
    /// The buckets of a type stored on the receiver, in storage order.
    ListBuckets { btype: Bytes },
}

/// Frames of a handoff, after [`StreamOpen::Handoff`].
#[derive(Debug, Serialize, Deserialize)]
pub enum HandoffMsg {
    /// Receiver: where to resume (the last key it stored), or from the start.
    Resume {
        cursor: Option<Bytes>,
    },
    /// Sender: objects (storage key, encoded object), and the fold position they reach.
    Batch {
        seq: u64,
        items: Vec<(Bytes, Bytes)>,
        cursor: Option<Bytes>,
    },
    /// Receiver: batch `seq` is stored durably.
    Ack {
        seq: u64,
    },
    /// Sender: everything is sent; receiver answers `Ack` once it holds it all.
    Done {
        seq: u64,
    },
    Error(String),
}

/// Frames of a listing, after [`StreamOpen::ListKeys`] or [`StreamOpen::ListBuckets`].
#[derive(Debug, Serialize, Deserialize)]
pub enum ListMsg {
    Chunk(Vec<Bytes>),
    End,
    Error(String),
}

/// Encodes a message.
pub fn encode<T: Serialize>(msg: &T) -> Bytes {
    Bytes::from(postcard::to_allocvec(msg).expect("internode messages serialize"))
}

/// Decodes a message; garbage is an error, never a panic.
pub fn decode<T: DeserializeOwned>(raw: &[u8]) -> NodeResult<T> {
    postcard::from_bytes(raw)
        .map_err(|e| NodeError::BadRequest(format!("malformed internode message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip() {
        let req = Request::Get {
            vnode: VnodeRef {
                partition: 3,
                primary: true,
                hops: 0,
            },
            key: WireKey {
                btype: Bytes::from_static(b"default"),
                bucket: Bytes::from_static(b"b"),
                key: Bytes::from_static(b"k"),
            },
        };
        let back: Request = decode(&encode(&req)).unwrap();
        assert!(
            matches!(back, Request::Get { vnode, key } if vnode.partition == 3 && key.key == "k")
        );
        let resp: Response = Err(NodeError::Timeout);
        let back: Response = decode(&encode(&resp)).unwrap();
        assert!(matches!(back, Err(NodeError::Timeout)));
    }

    #[test]
    fn tags_are_the_variants_first_bytes() {
        assert_eq!(encode(&Request::Ping { digest: 7 })[0], PING_TAG);
        let get = Request::Get {
            vnode: VnodeRef {
                partition: 1,
                primary: true,
                hops: 0,
            },
            key: WireKey {
                btype: Bytes::new(),
                bucket: Bytes::new(),
                key: Bytes::new(),
            },
        };
        assert_eq!(encode(&get)[0], GET_TAG);
        assert_ne!(encode(&Request::Transfers)[0], GET_TAG);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Request>(&raw);
            let _ = decode::<Response>(&raw);
            let _ = decode::<StreamOpen>(&raw);
            let _ = decode::<HandoffMsg>(&raw);
        }
    }
}
