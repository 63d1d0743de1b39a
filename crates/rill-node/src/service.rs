//! What a node does with what its peers send: the server side of [`crate::proto`].
//!
//! Each request is decoded (garbage is answered with an error, never a panic), served, and
//! answered with a [`Response`]. Replica requests go to the local vnode; a request for a
//! partition this node no longer holds (the sender's ring is behind) is passed once to the
//! partition's current owner, and a request that names this node as a fallback opens a
//! fallback vnode for the partition.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use futures::future::BoxFuture;
use rill_core::bkey::Bucket;
use rill_core::codec;
use rill_core::ring::NodeName;
use rill_core::vclock::VClock;
use rill_net::{BulkStream, PeerName};
use tokio::sync::mpsc;

use crate::coord::list::{local_buckets, scan_keys};
use crate::error::{NodeError, NodeResult};
use crate::node::{Inner, Node};
use crate::proto::{self, ListMsg, Reply, Request, Response, StreamOpen, VnodeRef, WireKey};
use crate::remote::unexpected;
use crate::request::{DtUpdateRequest, PutRequest};
use crate::vnode::{SetUpdate, Vnode};
use rill_core::crdt::split::SetDelta;

/// The transport's view of a node. Holds the node weakly: the node owns its peer table, which
/// owns this service.
pub(crate) struct NodeService {
    node: Weak<Inner>,
}

impl NodeService {
    pub(crate) fn new(node: Weak<Inner>) -> NodeService {
        NodeService { node }
    }

    fn node(&self) -> Option<Node> {
        self.node.upgrade().map(|inner| Node { inner })
    }
}

impl rill_net::Service for NodeService {
    fn request(&self, peer: PeerName, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>> {
        let node = self.node();
        Box::pin(async move {
            let Some(node) = node else {
                return Err("node is shutting down".into());
            };
            let peer = NodeName::from(&*peer);
            let response: Response = match proto::decode::<Request>(&body) {
                Ok(req) => node.serve(&peer, req).await,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "undecodable internode request");
                    Err(e)
                }
            };
            Ok(proto::encode(&response))
        })
    }

    /// Heartbeats and replica reads held here are answered on the connection's reader: they
    /// never wait, and they are most of the traffic.
    fn answer_now(&self, peer: &PeerName, body: &Bytes) -> Option<Result<Bytes, String>> {
        if !matches!(body.first(), Some(&proto::PING_TAG | &proto::GET_TAG)) {
            return None;
        }
        let node = self.node()?;
        let peer = NodeName::from(&**peer);
        let response = match proto::decode::<Request>(body).ok()? {
            Request::Ping { digest } => node.pong(&peer, digest),
            Request::Get { vnode, key } => node.get_here(&vnode, &key).ok()?,
            _ => return None,
        };
        Some(Ok(proto::encode(&response)))
    }

    fn stream(&self, peer: PeerName, stream: BulkStream) -> BoxFuture<'static, ()> {
        let node = self.node();
        Box::pin(async move {
            if let Some(node) = node {
                node.serve_stream(NodeName::from(&*peer), stream).await;
            }
        })
    }
}

/// Where a replica request is served.
enum Served {
    Here(Arc<Vnode>),
    /// Passed to the partition's current owner.
    There(NodeName),
}

impl Node {
    async fn serve(&self, peer: &NodeName, req: Request) -> Response {
        match req {
            Request::Ping { digest } => self.pong(peer, digest),
            Request::Gossip(theirs) => {
                self.merge_state(&theirs)?;
                let mine = self.view();
                Ok(Reply::Gossip(
                    (!theirs.descends(&mine.state)).then(|| Box::new(mine.state.clone())),
                ))
            }
            Request::Get { vnode, key } => self.serve_get(vnode, key).await,
            Request::Put {
                vnode,
                key,
                object,
                merge,
                return_object,
            } => {
                self.serve_put(vnode, key, object, merge, return_object)
                    .await
            }
            Request::Reap { vnode, key, clock } => self.serve_reap(vnode, key, clock).await,
            Request::PutSetDelta {
                vnode,
                key,
                head,
                delta,
                return_object,
            } => {
                self.serve_set_delta(vnode, key, head, delta, return_object)
                    .await
            }
            Request::Coordinate {
                key,
                object,
                opts,
                hops,
            } => {
                let bkey = key.bkey()?;
                let carried = crate::remote::decode_object(object)?;
                let Some(content) = carried.contents.into_iter().next() else {
                    return Err(NodeError::BadRequest(
                        "a forwarded write without content".into(),
                    ));
                };
                let req = PutRequest {
                    bkey,
                    context: carried.vclock,
                    content,
                };
                let stored = self.put_with_hops(req, &opts, hops).await?.object;
                Ok(Reply::Stored(
                    stored.map(|o| Bytes::from(codec::encode(&o))),
                ))
            }
            Request::Meta(entry) => {
                self.metadata().apply_remote(&entry)?;
                Ok(Reply::Done)
            }
            Request::MetaSync { digest } => {
                let meta = self.metadata();
                Ok(Reply::Entries(
                    (meta.digest() != digest).then(|| meta.entries()),
                ))
            }
            Request::MetaPush(entries) => {
                for e in &entries {
                    self.metadata().apply_remote(e)?;
                }
                Ok(Reply::Done)
            }
            Request::Join {
                name,
                addr,
                ring_size,
            } => self.answer_join(&name, addr, ring_size),
            Request::Claimant(op) => self.serve_claimant(op).await.map(Reply::Claimant),
            Request::HasType(name) => Ok(Reply::HasType(self.metadata().has_type(&name))),
            Request::Transfers => Ok(Reply::Transfers(self.inner.transfers.status())),
            Request::CoordinateDatatype {
                key,
                op,
                context,
                opts,
                legacy,
                hops,
            } => {
                let req = DtUpdateRequest {
                    bkey: key.bkey()?,
                    op,
                    context,
                };
                let state = self.update_forwarded(&req, &opts, legacy, hops).await?;
                Ok(Reply::Datatype(state.map(|s| {
                    Bytes::from(rill_core::crdt::encoding::encode(&s))
                })))
            }
        }
    }

    /// Finds the vnode a replica request is for, or the node to pass it to. A request that
    /// addresses this node as the owner of a partition it does not (or no longer) own goes to
    /// the owner — even if data of that partition is still here (left by an interrupted
    /// cleanup) — while one that addresses it as a fallback is served here.
    fn served(&self, vnode: &VnodeRef) -> NodeResult<Served> {
        if vnode.partition >= self.ring_size() {
            return Err(NodeError::BadRequest(format!(
                "no partition {}",
                vnode.partition
            )));
        }
        let view = self.view();
        let ours = view.holds(vnode.partition, self.name()) || !vnode.primary;
        match self.vnode(vnode.partition) {
            Some(v) => match v.forwarding() {
                Some(to) => return Ok(Served::There(to)),
                None if ours => return Ok(Served::Here(v)),
                None => {}
            },
            None if ours => return self.open_vnode(vnode.partition).map(Served::Here),
            None => {}
        }
        let owner = view.state.owner(vnode.partition).clone();
        if vnode.hops > 0 || owner == *self.name() {
            return Err(NodeError::Unreachable(format!(
                "partition {} is not held by {}",
                vnode.partition,
                self.name()
            )));
        }
        Ok(Served::There(owner))
    }

    /// A heartbeat: the peer is alive; our digest goes back, and differing states are
    /// exchanged soon after.
    fn pong(&self, peer: &NodeName, digest: u64) -> Response {
        self.inner.liveness.heartbeat(peer, self.now_ms());
        let view = self.view();
        if digest != view.digest {
            self.gossip_soon(peer);
        }
        Ok(Reply::Pong {
            digest: view.digest,
        })
    }

    /// A replica read answered from a vnode here, or the node it must be passed to.
    fn get_here(&self, vnode: &VnodeRef, key: &WireKey) -> Result<Response, NodeName> {
        let v = match self.served(vnode) {
            Ok(Served::Here(v)) => v,
            Ok(Served::There(owner)) => return Err(owner),
            Err(e) => return Ok(Err(e)),
        };
        Ok(key.bkey().and_then(|bkey| {
            let obj = v.get(&bkey)?;
            Ok(Reply::Object(obj.map(|o| Bytes::from(codec::encode(&o)))))
        }))
    }

    async fn serve_get(&self, vnode: VnodeRef, key: WireKey) -> Response {
        match self.get_here(&vnode, &key) {
            Ok(answer) => answer,
            Err(owner) => {
                let req = Request::Get {
                    vnode: forwarded(vnode),
                    key,
                };
                self.call(&owner, &req, self.inner.config.internode_timeout)
                    .await
            }
        }
    }

    async fn serve_put(
        &self,
        vnode: VnodeRef,
        key: WireKey,
        object: Bytes,
        merge: rill_core::merge::MergeOptions,
        return_object: bool,
    ) -> Response {
        let bkey = key.bkey()?;
        match self.served(&vnode)? {
            Served::Here(v) => {
                let incoming = crate::remote::decode_object(object)?;
                let limits = &self.inner.config.limits;
                let stored = v.replica_put(&bkey, &incoming, &merge, limits)?;
                self.inner.stats.vnode_puts.inc();
                self.commit().await?;
                Ok(Reply::Stored(
                    return_object.then(|| Bytes::from(codec::encode(&stored))),
                ))
            }
            Served::There(owner) => {
                let req = Request::Put {
                    vnode: forwarded(vnode),
                    key,
                    object,
                    merge,
                    return_object,
                };
                self.call(&owner, &req, self.inner.config.internode_timeout)
                    .await
            }
        }
    }

    async fn serve_set_delta(
        &self,
        vnode: VnodeRef,
        key: WireKey,
        head: Bytes,
        delta: SetDelta,
        return_object: bool,
    ) -> Response {
        let bkey = key.bkey()?;
        match self.served(&vnode)? {
            Served::Here(v) => {
                let update = SetUpdate {
                    head: crate::remote::decode_object(head)?,
                    delta,
                };
                let Some(stored) = v.replica_set_delta(&bkey, &update)? else {
                    return Ok(Reply::Behind);
                };
                self.inner.stats.vnode_puts.inc();
                self.commit().await?;
                Ok(Reply::Stored(
                    return_object.then(|| Bytes::from(codec::encode(&stored))),
                ))
            }
            Served::There(owner) => {
                let req = Request::PutSetDelta {
                    vnode: forwarded(vnode),
                    key,
                    head,
                    delta,
                    return_object,
                };
                self.call(&owner, &req, self.inner.config.internode_timeout)
                    .await
            }
        }
    }

    async fn serve_reap(&self, vnode: VnodeRef, key: WireKey, clock: Bytes) -> Response {
        let bkey = key.bkey()?;
        match self.served(&vnode)? {
            Served::Here(v) => {
                let clock = VClock::from_bytes(&clock)
                    .map_err(|e| NodeError::BadRequest(format!("clock from a peer: {e}")))?;
                let reaped = v.reap(&bkey, &clock)?;
                self.commit().await?;
                Ok(Reply::Reaped(reaped))
            }
            Served::There(owner) => {
                let req = Request::Reap {
                    vnode: forwarded(vnode),
                    key,
                    clock,
                };
                match self
                    .call(&owner, &req, self.inner.config.internode_timeout)
                    .await?
                {
                    r @ Reply::Reaped(_) => Ok(r),
                    other => Err(unexpected(&other)),
                }
            }
        }
    }

    /// A bulk stream opened by `peer`.
    async fn serve_stream(&self, peer: NodeName, mut stream: BulkStream) {
        let open = match stream.recv().await {
            Some(Ok(raw)) => proto::decode::<StreamOpen>(&raw),
            _ => return,
        };
        match open {
            Ok(StreamOpen::Handoff { partition, commit }) => {
                self.receive_handoff(&peer, partition, commit, stream).await;
            }
            Ok(StreamOpen::ListKeys {
                btype,
                bucket,
                partitions,
                covering,
                n,
            }) => {
                let bucket = match Bucket::new(btype, bucket) {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = stream
                            .send(proto::encode(&ListMsg::Error(e.to_string())))
                            .await;
                        return;
                    }
                };
                let (tx, rx) = mpsc::channel(4);
                let node = self.clone();
                tokio::task::spawn_blocking(move || {
                    scan_keys(&node, &bucket, &partitions, &covering, n, &tx)
                });
                send_listing(rx, stream).await;
            }
            Ok(StreamOpen::ListBuckets { btype }) => {
                let (tx, rx) = mpsc::channel(4);
                let node = self.clone();
                tokio::task::spawn_blocking(move || local_buckets(&node, &btype, &tx));
                send_listing(rx, stream).await;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "undecodable internode stream");
            }
        }
    }
}

/// The same replica request, one hop further.
fn forwarded(vnode: VnodeRef) -> VnodeRef {
    VnodeRef {
        hops: vnode.hops + 1,
        ..vnode
    }
}

/// Writes a local listing's chunks to a peer, then its end (or the error that cut it short).
async fn send_listing(mut rx: mpsc::Receiver<NodeResult<Vec<Bytes>>>, mut stream: BulkStream) {
    while let Some(item) = rx.recv().await {
        let msg = match item {
            Ok(names) => ListMsg::Chunk(names),
            Err(e) => ListMsg::Error(e.to_string()),
        };
        let last = matches!(msg, ListMsg::Error(_));
        if stream.send(proto::encode(&msg)).await.is_err() || last {
            return;
        }
    }
    let _ = stream.send(proto::encode(&ListMsg::End)).await;
}
