//! The PUT coordinator. The first replica of the preference list that is held here
//! coordinates: it advances the clock with its own actor and merges with what it stores. The
//! other replicas here merge the coordinated object and are stored in the same batch; replicas
//! on other nodes receive the coordinated object concurrently. The write quorum machine counts
//! acknowledgements: W when a replica stored the object, DW once it is durable (a remote replica
//! answers after its own group commit, so its one answer is both), PW among primaries.
//!
//! A node that holds no replica of the key does not coordinate: it forwards the whole request to
//! the node of the first replica, as Riak does, so that clocks only ever advance with vnode
//! actors and concurrent writes through different nodes still meet at one coordinator.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rill_core::bkey::BKey;
use rill_core::codec;
use rill_core::fsm::put::{PutFsm, PutParams, PutReply};
use rill_core::merge::MergeOptions;
use rill_core::object::RiakObject;
use rill_core::props::{BucketProps, QuorumParam};
use rill_core::ring::{NodeName, PreflistEntry};
use rill_core::vclock::PruneLimits;
use rill_storage::BatchWrite;

use crate::coord::{fsm_targets, merge_options, resolve_n, resolve_quorum};
use crate::error::{NodeError, NodeResult};
use crate::node::{Node, Replica, head_only};
use crate::proto::{Reply, Request, WireKey};
use crate::remote::{Delivered, decode_object, unexpected};
use crate::request::{GetOptions, GetResponse, PutOptions, PutRequest, PutResponse};
use crate::vnode::{DatatypeWrite, KeyLock, SetUpdate, Staged, Vnode, WriteRules};

/// What the coordinating replica makes of a write.
pub(crate) enum Coordinated<'a> {
    /// A client's object under its context; with `asis` it is stored as it is, uncoordinated.
    Object { req: &'a PutRequest, asis: bool },
    /// A data-type operation applied to the replica's state (`coord::datatype`).
    Datatype(DatatypeWrite<'a>),
}

impl Coordinated<'_> {
    fn asis(&self) -> bool {
        matches!(self, Coordinated::Object { asis: true, .. })
    }

    /// The client's object, as the replicas merge it when nothing coordinated it.
    fn client_object(&self) -> Option<RiakObject> {
        match self {
            Coordinated::Object { req, .. } => Some(RiakObject {
                vclock: req.context.clone(),
                contents: vec![req.content.clone()],
            }),
            Coordinated::Datatype(_) => None,
        }
    }
}

/// The replicas here that stored a write (coordinator first, with what each holds), and a
/// coordinated split-set update for the others to apply.
type LocalWrites = (Vec<(usize, Arc<RiakObject>)>, Option<Arc<SetUpdate>>);

/// What replicas on other nodes are sent.
enum Shipment<'a> {
    /// An object to merge.
    Object(&'a RiakObject),
    /// A split set's update.
    Set(SetDelivery),
}

/// A split set's update for other nodes, and the coordinating replica, whose whole set a
/// replica that is behind gets instead.
#[derive(Clone)]
struct SetDelivery {
    update: Arc<SetUpdate>,
    coordinator: Option<Arc<Vnode>>,
}

/// Replica writes on other nodes, each on its own task, with its preference-list position.
type RemoteWrites =
    FuturesUnordered<tokio::task::JoinHandle<(usize, NodeResult<Option<Arc<RiakObject>>>)>>;

impl Node {
    /// Writes an object with the request's quorum and conditional options.
    pub async fn put(&self, req: PutRequest, opts: &PutOptions) -> NodeResult<PutResponse> {
        self.put_with_hops(req, opts, 0).await
    }

    /// A write that may already have been forwarded `hops` times.
    pub(crate) async fn put_with_hops(
        &self,
        req: PutRequest,
        opts: &PutOptions,
        hops: u8,
    ) -> NodeResult<PutResponse> {
        let started = Instant::now();
        let result = self
            .with_timeout(
                opts.timeout,
                std::pin::pin!(self.put_inner(req, opts, hops)),
            )
            .await;
        self.inner.stats.put_fsm.record(started.elapsed());
        result
    }

    async fn put_inner(
        &self,
        req: PutRequest,
        opts: &PutOptions,
        hops: u8,
    ) -> NodeResult<PutResponse> {
        let props = self.inner.metadata.bucket_props(&req.bkey.bucket)?;
        // Deletes write tombstones through here; any other value would not be a state.
        if let Some(dt) = props.datatype
            && !req.content.is_tombstone()
        {
            return Err(NodeError::BadRequest(format!(
                "Bucket datatype `{}` holds a data type: write it with the data type API",
                dt.as_str()
            )));
        }
        let n = resolve_n(opts.n_val, &props)?;
        let params = PutParams {
            n,
            w: resolve_quorum(QuorumParam::W, opts.w, &props, n)?,
            dw: resolve_quorum(QuorumParam::Dw, opts.dw, &props, n)?,
            pw: resolve_quorum(QuorumParam::Pw, opts.pw, &props, n)?,
        };
        let targets = self.preflist(&req.bkey, n);
        if !opts.asis
            && hops == 0
            && let Some(first) = targets.first()
            && !targets.iter().any(|t| t.node == *self.name())
        {
            return self.forward_put(&first.node, req, opts).await;
        }
        self.check_conditions(&req, opts).await?;

        let write = Coordinated::Object {
            req: &req,
            asis: opts.asis,
        };
        let return_object = opts.return_body || opts.return_head;
        let stored = self
            .write_replicas(&req.bkey, &write, &props, params, &targets, return_object)
            .await?;
        let object = if opts.return_body {
            Some(Arc::unwrap_or_clone(stored))
        } else if opts.return_head {
            Some(head_only(Arc::unwrap_or_clone(stored)))
        } else {
            None
        };
        Ok(PutResponse { object })
    }

    /// Passes a client's write to `node`, which holds a replica of the key, to coordinate.
    async fn forward_put(
        &self,
        node: &NodeName,
        req: PutRequest,
        opts: &PutOptions,
    ) -> NodeResult<PutResponse> {
        let carried = RiakObject {
            vclock: req.context,
            contents: vec![req.content],
        };
        let msg = Request::Coordinate {
            key: WireKey::from(&req.bkey),
            object: Bytes::from(codec::encode(&carried)),
            opts: opts.clone(),
            hops: 1,
        };
        let timeout = opts.timeout.unwrap_or(self.inner.config.request_timeout);
        self.inner.stats.forwarded_puts.inc();
        match self.call(node, &msg, timeout).await? {
            Reply::Stored(object) => Ok(PutResponse {
                object: object.map(decode_object).transpose()?,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// `if_none_match` and `if_not_modified`: read first, refuse when the condition fails.
    async fn check_conditions(&self, req: &PutRequest, opts: &PutOptions) -> NodeResult<()> {
        if !opts.if_none_match && !opts.if_not_modified {
            return Ok(());
        }
        let current = self.get(&req.bkey, &GetOptions::default()).await?;
        match current {
            GetResponse::Found(obj) => {
                if opts.if_none_match {
                    return Err(NodeError::MatchFound);
                }
                if obj.vclock != req.context {
                    return Err(NodeError::Modified);
                }
            }
            GetResponse::NotFound { .. } | GetResponse::Unchanged => {
                // Nothing stored: a write that expected a particular version cannot apply
                // (Riak answers `notfound`).
                if opts.if_not_modified {
                    return Err(NodeError::NotFound);
                }
            }
        }
        Ok(())
    }

    /// Runs the write through every target and the quorum machine; returns what the
    /// coordinator stored.
    pub(crate) async fn write_replicas(
        &self,
        bkey: &BKey,
        write: &Coordinated<'_>,
        props: &BucketProps,
        params: PutParams,
        targets: &[PreflistEntry],
        return_object: bool,
    ) -> NodeResult<Arc<RiakObject>> {
        let replicas: Vec<NodeResult<Replica>> = targets.iter().map(|t| self.replica(t)).collect();
        // The first replica held here coordinates; `asis` writes have no coordinator (every
        // replica merges the object as sent).
        let coordinator = match write.asis() {
            true => None,
            false => Some(
                replicas
                    .iter()
                    .position(|r| matches!(r, Ok(Replica::Local(_))))
                    .ok_or_else(|| {
                        NodeError::Unreachable(
                            "no replica of this key is held by the coordinating node".into(),
                        )
                    })?,
            ),
        };
        let mut fsm: PutFsm<usize, Arc<RiakObject>> =
            PutFsm::new(params, fsm_targets(targets), coordinator).map_err(NodeError::PutQuorum)?;
        // With synced writes the engine's journal lock is held for the length of each fsync,
        // so a write can wait that long. Waiting on a runtime worker would stall every other
        // request on that worker, and with it the next commit group (measured: synced
        // throughput stuck at ~8.8 k/s from 4 to 64 clients). Telling the runtime the worker
        // may block lets it keep serving requests on another thread, whose writes then
        // share the next fsync.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let (stored, update) = if self.inner.config.sync_writes && multi_thread {
            tokio::task::block_in_place(|| {
                self.write_local_replicas(bkey, write, props, targets, &replicas, &mut fsm)
            })?
        } else {
            self.write_local_replicas(bkey, write, props, targets, &replicas, &mut fsm)?
        };
        if let Some(Err(e)) = fsm.outcome() {
            return Err(NodeError::PutQuorum(e.clone()));
        }

        // What the other nodes' replicas merge: the coordinated object, or the client's; a set
        // update in the split layout ships its delta instead.
        let shipped = match (stored.first(), write.client_object()) {
            (Some((_, obj)), _) if coordinator.is_some() => (**obj).clone(),
            (_, Some(obj)) => obj,
            (_, None) => return Err(NodeError::Timeout),
        };
        let shipment = match update {
            Some(update) => Shipment::Set(SetDelivery {
                update,
                coordinator: match coordinator.map(|c| &replicas[c]) {
                    Some(Ok(Replica::Local(v))) => Some(v.clone()),
                    _ => None,
                },
            }),
            None => Shipment::Object(&shipped),
        };
        let mut remote =
            self.send_to_remote_replicas(bkey, return_object, props, targets, replicas, shipment);

        // One group commit covers every local replica's write: that is DW.
        let mut commit_failure = None;
        match self.commit().await {
            Ok(()) => {
                for (i, obj) in &stored {
                    fsm.add_reply(*i, PutReply::Dw(Some(obj.clone())));
                }
            }
            Err(e) => {
                for (i, _) in &stored {
                    fsm.add_reply(*i, PutReply::Fail(e.to_string()));
                }
                commit_failure = Some(e);
            }
        }
        while fsm.outcome().is_none() {
            let Some(joined) = remote.next().await else {
                break;
            };
            let (i, result) =
                joined.unwrap_or_else(|e| (usize::MAX, Err(NodeError::Unreachable(e.to_string()))));
            if i == usize::MAX {
                continue;
            }
            match result {
                Ok(obj) => {
                    fsm.add_reply(i, PutReply::W);
                    fsm.add_reply(i, PutReply::Dw(obj));
                }
                Err(e) => {
                    fsm.add_reply(i, PutReply::Fail(e.to_string()));
                }
            }
        }
        if fsm.outcome().is_none() {
            fsm.on_timeout();
        }
        let body = stored
            .into_iter()
            .next()
            .map(|(_, obj)| obj)
            .or_else(|| fsm.stored_objects().next().map(|(_, o)| o.clone()));
        match (fsm.outcome(), body) {
            (Some(Ok(())), Some(obj)) => Ok(obj),
            (Some(Ok(())), None) => Ok(Arc::new(shipped)),
            // A quorum this node's own commit failed: the commit's error (a full disk, say) is
            // the clearer answer.
            (Some(Err(e)), _) => {
                Err(commit_failure.unwrap_or_else(|| NodeError::PutQuorum(e.clone())))
            }
            (None, _) => Err(NodeError::Timeout),
        }
    }

    /// Sends the object (or, for a split set, the update's delta) to every replica on another
    /// node, each write on its own task so that it completes even after the client has its
    /// answer.
    fn send_to_remote_replicas(
        &self,
        bkey: &BKey,
        return_object: bool,
        props: &BucketProps,
        targets: &[PreflistEntry],
        replicas: Vec<NodeResult<Replica>>,
        shipment: Shipment<'_>,
    ) -> RemoteWrites {
        let remote = FuturesUnordered::new();
        let mut encoded: Option<Bytes> = None;
        let merge = merge_options(props);
        for (i, replica) in replicas.into_iter().enumerate() {
            let Ok(Replica::Remote(peer)) = replica else {
                continue;
            };
            let (node, target, bkey) = (self.clone(), targets[i].clone(), bkey.clone());
            let shipped = match &shipment {
                Shipment::Set(delivery) => {
                    let delivery = delivery.clone();
                    remote.push(tokio::spawn(async move {
                        let r = node
                            .deliver_set_update(
                                &target,
                                &peer,
                                &bkey,
                                &delivery,
                                merge,
                                return_object,
                            )
                            .await;
                        (i, r)
                    }));
                    continue;
                }
                Shipment::Object(shipped) => shipped,
            };
            let object = encoded
                .get_or_insert_with(|| Bytes::from(codec::encode(shipped)))
                .clone();
            remote.push(tokio::spawn(async move {
                let r = node
                    .remote_put(&target, &peer, &bkey, object, merge, return_object)
                    .await;
                (i, r)
            }));
        }
        remote
    }

    /// A set update for a replica on another node: its delta, or the coordinator's whole set
    /// (as stored now, the update included) when that replica is behind.
    async fn deliver_set_update(
        &self,
        target: &PreflistEntry,
        peer: &NodeName,
        bkey: &BKey,
        delivery: &SetDelivery,
        merge: MergeOptions,
        return_object: bool,
    ) -> NodeResult<Option<Arc<RiakObject>>> {
        match self
            .remote_set_delta(target, peer, bkey, &delivery.update, return_object)
            .await?
        {
            Delivered::Stored(obj) => Ok(obj),
            Delivered::Behind => {
                let whole = delivery
                    .coordinator
                    .as_ref()
                    .ok_or_else(|| NodeError::Unreachable("no coordinating replica".into()))?
                    .get(bkey)?
                    .ok_or(NodeError::NotFound)?;
                let object = Bytes::from(codec::encode(&whole));
                self.remote_put(target, peer, bkey, object, merge, return_object)
                    .await
            }
        }
    }

    /// Merges the write at every replica held here and stores all of them in one batch (one
    /// journal append instead of one per replica). The keys stay locked from the first read
    /// to the cache update, so no other write to the key interleaves; they are locked in
    /// partition order, so two writes can never wait for each other's locks.
    /// Returns the replicas that stored the write, coordinator first, with what they hold.
    fn write_local_replicas(
        &self,
        bkey: &BKey,
        write: &Coordinated<'_>,
        props: &BucketProps,
        targets: &[PreflistEntry],
        replicas: &[NodeResult<Replica>],
        fsm: &mut PutFsm<usize, Arc<RiakObject>>,
    ) -> NodeResult<LocalWrites> {
        let merge = merge_options(props);
        let limits = &self.inner.config.limits;
        let mut vnodes: Vec<(usize, &Vnode)> = Vec::with_capacity(targets.len());
        for (i, replica) in replicas.iter().enumerate() {
            match replica {
                Ok(Replica::Local(v)) => vnodes.push((i, v)),
                Ok(Replica::Remote(_)) => {}
                Err(e) => {
                    fsm.add_reply(i, PutReply::Fail(e.to_string()));
                }
            }
        }
        let mut locks: Vec<Option<KeyLock<'_>>> = (0..targets.len()).map(|_| None).collect();
        let mut order = vnodes.clone();
        order.sort_by_key(|(_, v)| v.partition());
        for (i, v) in order {
            locks[i] = Some(v.lock_key(bkey));
        }

        let mut staged: Vec<(usize, &Vnode, Staged)> = Vec::with_capacity(vnodes.len());
        for &(i, v) in &vnodes {
            let lock = locks[i].as_ref().expect("locked above");
            let rules = || WriteRules {
                merge,
                prune: prune_limits(props),
                limits,
                now_us: self.now_us(),
            };
            let result = match (staged.first(), write) {
                (Some((c, coordinator, coordinated)), _) => match &coordinated.update {
                    Some(update) => {
                        let coordinator_lock = locks[*c].as_ref().expect("locked above");
                        let at_coordinator = (*coordinator, coordinator_lock);
                        stage_set_replica(v, lock, bkey, update, at_coordinator, &merge, limits)
                    }
                    None => {
                        let obj = coordinated.object.clone();
                        v.stage_replica(lock, bkey, &obj, &merge, limits)
                    }
                },
                (None, Coordinated::Object { req, asis: false }) => {
                    v.stage_coordinated(lock, bkey, &req.context, req.content.clone(), &rules())
                }
                (None, Coordinated::Object { req, asis: true }) => {
                    let obj = RiakObject {
                        vclock: req.context.clone(),
                        contents: vec![req.content.clone()],
                    };
                    v.stage_replica(lock, bkey, &obj, &merge, limits)
                }
                (None, Coordinated::Datatype(dw)) => v.stage_datatype(lock, bkey, dw, &rules()),
            };
            match result {
                Ok(s) => staged.push((i, v, s)),
                // A write refused for its content (too large, too many siblings, a data-type
                // precondition) fails the request outright: no other replica would take it.
                Err(e @ (NodeError::Limit(_) | NodeError::Datatype(_))) => return Err(e),
                // The coordinator's failure sinks the write; its own error says why (a
                // storage failure, a corrupt stored object) better than a quorum count.
                Err(e) if staged.is_empty() && !write.asis() => return Err(e),
                Err(e) => {
                    fsm.add_reply(i, PutReply::Fail(e.to_string()));
                    if matches!(fsm.outcome(), Some(Err(_))) {
                        return Ok((Vec::new(), None));
                    }
                }
            }
        }

        // Replicas being handed off also leave a dirty mark in the same batch.
        let marks: Vec<(usize, Vec<u8>)> = staged
            .iter()
            .filter(|(_, _, s)| s.encoded.is_some() || !s.records.is_empty())
            .filter_map(|(i, v, _)| Some((*i, v.dirty_mark(locks[*i].as_ref()?.storage_key())?)))
            .collect();
        let mut puts: Vec<BatchWrite<'_>> = staged
            .iter()
            .flat_map(|(i, v, s)| {
                let skey = locks[*i].as_ref().expect("locked above").storage_key();
                s.writes(v.partition(), skey)
            })
            .collect();
        for (i, mark) in &marks {
            puts.push(BatchWrite {
                partition: targets[*i].partition,
                key: mark,
                value: Some(b""),
            });
        }
        let result = if puts.is_empty() {
            Ok(())
        } else {
            self.inner.backend.write_batch(&puts)
        };
        // The local storage refused the whole batch: that, not a quorum count, is the reason
        // to give (a full disk, say), unless replicas elsewhere can still meet the quorum.
        if let Err(e) = &result
            && targets.iter().all(|t| t.node == self.inner.name)
        {
            for (i, v, s) in &staged {
                v.written(locks[*i].as_ref().expect("locked above"), s, false);
            }
            return Err(NodeError::Storage(e.clone()));
        }
        for (i, v, s) in &staged {
            v.written(locks[*i].as_ref().expect("locked above"), s, result.is_ok());
            match &result {
                Ok(()) => {
                    self.inner.stats.vnode_puts.inc();
                    fsm.add_reply(*i, PutReply::W);
                }
                Err(e) => {
                    fsm.add_reply(*i, PutReply::Fail(e.to_string()));
                }
            }
        }
        Ok(match result {
            Ok(()) => {
                let update = staged.first().and_then(|(_, _, s)| s.update.clone());
                let stored = staged.into_iter().map(|(i, _, s)| (i, s.object)).collect();
                (stored, update)
            }
            Err(_) => (Vec::new(), None),
        })
    }
}

/// A local replica's part of a set update in the split layout: apply the coordinator's delta,
/// or, when this replica is behind, merge the coordinator's whole set (assembled as it will be
/// once the update is stored: the batch storing it is still being built).
fn stage_set_replica(
    v: &Vnode,
    lock: &KeyLock<'_>,
    bkey: &BKey,
    update: &SetUpdate,
    (coordinator, coordinator_lock): (&Vnode, &KeyLock<'_>),
    merge: &MergeOptions,
    limits: &rill_core::object::Limits,
) -> NodeResult<Staged> {
    match v.stage_set_delta(lock, update)? {
        Some(staged) => Ok(staged),
        None => {
            let whole = coordinator.whole_after(coordinator_lock, update)?;
            v.stage_replica(lock, bkey, &whole, merge, limits)
        }
    }
}

fn prune_limits(props: &BucketProps) -> PruneLimits {
    PruneLimits {
        small: props.small_vclock as usize,
        big: props.big_vclock as usize,
        young_secs: props.young_vclock,
        old_secs: props.old_vclock,
    }
}
