//! Calls to vnodes and coordinators on other nodes: the remote half of [`crate::node::Replica`].
//!
//! Each call encodes a [`Request`], sends it through the peer table and decodes the answer. A
//! peer that cannot be reached (or drops the connection) is also reported to the failure
//! detector, so preference lists stop naming it at once rather than after its heartbeats
//! lapse. Every failure becomes a [`NodeError`], which the quorum machines count as that
//! replica's failure.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rill_core::bkey::BKey;
use rill_core::codec;
use rill_core::merge::MergeOptions;
use rill_core::object::RiakObject;
use rill_core::ring::{NodeName, PreflistEntry};
use rill_core::vclock::VClock;
use rill_net::CallError;

use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::proto::{self, Reply, Request, Response, VnodeRef, WireKey};
use crate::vnode::SetUpdate;

/// What became of a delta sent to a replica.
pub(crate) enum Delivered {
    /// Stored; the replica's object when asked for.
    Stored(Option<Arc<RiakObject>>),
    /// The replica must be sent the whole set instead.
    Behind,
}

impl Node {
    /// Sends `req` to `node` and waits up to `timeout` for its reply.
    pub(crate) async fn call(
        &self,
        node: &NodeName,
        req: &Request,
        timeout: Duration,
    ) -> NodeResult<Reply> {
        let peer = rill_net::PeerName::from(node.as_str());
        match self
            .inner
            .peers
            .call(&peer, proto::encode(req), timeout)
            .await
        {
            Ok(raw) => proto::decode::<Response>(&raw)?,
            Err(e) => {
                if matches!(
                    e,
                    CallError::Unreachable { .. } | CallError::ConnectionLost { .. }
                ) {
                    self.inner.liveness.connection_failed(node);
                }
                Err(NodeError::Unreachable(e.to_string()))
            }
        }
    }

    /// Sends a one-way message to `node` (best effort: gossip repairs what is lost).
    pub(crate) async fn cast(&self, node: &NodeName, req: &Request) {
        let peer = rill_net::PeerName::from(node.as_str());
        if let Err(e) = self.inner.peers.cast(&peer, proto::encode(req)).await {
            tracing::debug!(peer = %node, error = %e, "one-way message not sent");
        }
    }

    /// Reads a replica on another node.
    pub(crate) async fn remote_get(
        &self,
        target: &PreflistEntry,
        node: &NodeName,
        bkey: &BKey,
    ) -> NodeResult<Option<Arc<RiakObject>>> {
        let req = Request::Get {
            vnode: vnode_ref(target, 0),
            key: WireKey::from(bkey),
        };
        match self
            .call(node, &req, self.inner.config.internode_timeout)
            .await?
        {
            Reply::Object(None) => Ok(None),
            Reply::Object(Some(raw)) => decode_object(raw).map(|o| Some(Arc::new(o))),
            other => Err(unexpected(&other)),
        }
    }

    /// Merges an object into a replica on another node; returns what it stored when asked.
    pub(crate) async fn remote_put(
        &self,
        target: &PreflistEntry,
        node: &NodeName,
        bkey: &BKey,
        object: Bytes,
        merge: MergeOptions,
        return_object: bool,
    ) -> NodeResult<Option<Arc<RiakObject>>> {
        let req = Request::Put {
            vnode: vnode_ref(target, 0),
            key: WireKey::from(bkey),
            object,
            merge,
            return_object,
        };
        match self
            .call(node, &req, self.inner.config.internode_timeout)
            .await?
        {
            Reply::Stored(None) => Ok(None),
            Reply::Stored(Some(raw)) => decode_object(raw).map(|o| Some(Arc::new(o))),
            other => Err(unexpected(&other)),
        }
    }

    /// Applies a set update's delta to a replica on another node.
    pub(crate) async fn remote_set_delta(
        &self,
        target: &PreflistEntry,
        node: &NodeName,
        bkey: &BKey,
        update: &SetUpdate,
        return_object: bool,
    ) -> NodeResult<Delivered> {
        let req = Request::PutSetDelta {
            vnode: vnode_ref(target, 0),
            key: WireKey::from(bkey),
            head: Bytes::from(codec::encode(&update.head)),
            delta: update.delta.clone(),
            return_object,
        };
        match self
            .call(node, &req, self.inner.config.internode_timeout)
            .await?
        {
            Reply::Behind => Ok(Delivered::Behind),
            Reply::Stored(None) => Ok(Delivered::Stored(None)),
            Reply::Stored(Some(raw)) => {
                decode_object(raw).map(|o| Delivered::Stored(Some(Arc::new(o))))
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Reaps a tombstone on another node's replica.
    pub(crate) async fn remote_reap(
        &self,
        target: &PreflistEntry,
        node: &NodeName,
        bkey: &BKey,
        clock: &VClock,
    ) -> NodeResult<bool> {
        let req = Request::Reap {
            vnode: vnode_ref(target, 0),
            key: WireKey::from(bkey),
            clock: clock.to_bytes(),
        };
        match self
            .call(node, &req, self.inner.config.internode_timeout)
            .await?
        {
            Reply::Reaped(done) => Ok(done),
            other => Err(unexpected(&other)),
        }
    }
}

fn vnode_ref(target: &PreflistEntry, hops: u8) -> VnodeRef {
    VnodeRef {
        partition: target.partition,
        primary: target.primary,
        hops,
    }
}

/// An object as received from a peer.
pub(crate) fn decode_object(raw: Bytes) -> NodeResult<RiakObject> {
    codec::decode_bytes(raw).map_err(|e| NodeError::Corrupt(format!("object from a peer: {e}")))
}

/// A reply of the wrong kind: a peer speaking another dialect.
pub(crate) fn unexpected(reply: &Reply) -> NodeError {
    let mut shown = format!("{reply:?}");
    if let Some((cut, _)) = shown.char_indices().nth(120) {
        shown.truncate(cut);
    }
    NodeError::Unreachable(format!("unexpected internode reply: {shown}"))
}
