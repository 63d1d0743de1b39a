//! The GET coordinator: ask the N replicas, decide with the quorum state machine, merge what
//! they returned, answer, then repair replicas that were missing the object or behind it.
//!
//! Local replicas answer at once; remote ones are asked concurrently and their replies are fed
//! to the machine as they arrive. The client gets its answer as soon as the machine decides;
//! replies still outstanding are collected in the background, and read repair then works from
//! every reply, as Riak's get FSM does after it has answered.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rill_core::bkey::BKey;
use rill_core::fsm::get::{GetFsm, GetOutcome, GetParams, GetReply};
use rill_core::merge::{self, MergeOptions, Relation};
use rill_core::object::RiakObject;
use rill_core::props::QuorumParam;
use rill_core::ring::PreflistEntry;

use crate::coord::{fsm_targets, merge_options, resolve_n, resolve_quorum};
use crate::error::{NodeError, NodeResult};
use crate::node::{Node, Replica, head_only};
use crate::request::{GetOptions, GetResponse};

/// Replies still to come from remote replicas, each with its position in the preference list.
/// A replica read on another node, with its preference-list position.
type RemoteRead = futures::future::BoxFuture<'static, (usize, NodeResult<Option<Arc<RiakObject>>>)>;

/// Replica reads on other nodes not yet answered. Nothing is allocated until the first one
/// (on a single node, or when every replica is here, there is none).
#[derive(Default)]
pub(crate) struct Outstanding(Option<FuturesUnordered<RemoteRead>>);

impl Outstanding {
    fn push(&mut self, read: RemoteRead) {
        self.0.get_or_insert_with(FuturesUnordered::new).push(read);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(FuturesUnordered::is_empty)
    }

    /// The next reply to arrive; `None` once every read has answered.
    pub(crate) async fn next(&mut self) -> Option<(usize, NodeResult<Option<Arc<RiakObject>>>)> {
        match &mut self.0 {
            Some(reads) => reads.next().await,
            None => None,
        }
    }
}

/// A read machine and the replies not yet in it.
pub(crate) struct Read {
    pub fsm: GetFsm<usize, Arc<RiakObject>>,
    pub outstanding: Outstanding,
}

impl Node {
    /// Reads an object with the request's quorum options.
    pub async fn get(&self, bkey: &BKey, opts: &GetOptions) -> NodeResult<GetResponse> {
        let started = Instant::now();
        let result = self
            .with_timeout(opts.timeout, std::pin::pin!(self.get_inner(bkey, opts)))
            .await;
        self.inner.stats.get_fsm.record(started.elapsed());
        if matches!(result, Ok(GetResponse::NotFound { .. })) {
            self.inner.stats.node_get_notfound.inc();
        }
        result
    }

    async fn get_inner(&self, bkey: &BKey, opts: &GetOptions) -> NodeResult<GetResponse> {
        let props = self.inner.metadata.bucket_props(&bkey.bucket)?;
        let n = resolve_n(opts.n_val, &props)?;
        let params = GetParams {
            n,
            r: resolve_quorum(QuorumParam::R, opts.r, &props, n)?,
            pr: resolve_quorum(QuorumParam::Pr, opts.pr, &props, n)?,
            notfound_ok: opts.notfound_ok.unwrap_or(props.notfound_ok),
            basic_quorum: opts.basic_quorum.unwrap_or(props.basic_quorum),
        };
        let targets = self.preflist(bkey, n);
        let read = self.read_replicas(bkey, params, &targets).await?;
        let merge_opts = merge_options(&props);
        let merged = match read.fsm.outcome() {
            Some(GetOutcome::Found) => merge_replies(read.fsm.decision_replies(), &merge_opts),
            Some(GetOutcome::NotFound) => None,
            Some(GetOutcome::Failed(e)) => return Err(NodeError::GetQuorum(e.clone())),
            None => return Err(NodeError::Timeout),
        };
        // With every reply in, the repair can be decided now; otherwise the late replies are
        // awaited in the background.
        let all = if read.outstanding.is_empty() {
            let all = if read.fsm.replies().len() == read.fsm.decision_replies().len() {
                merged.clone()
            } else {
                merge_replies(read.fsm.replies(), &merge_opts)
            };
            if let Some(all) = &all {
                self.read_repair(bkey, all, &targets, read.fsm.replies(), merge_opts);
            }
            all
        } else {
            self.repair_after_late_replies(bkey.clone(), read, targets, merge_opts);
            merged.clone()
        };
        let Some(obj) = merged else {
            let tombstone = opts.deleted_vclock.then(|| all.map(|o| o.vclock)).flatten();
            return Ok(GetResponse::NotFound { tombstone });
        };
        if obj.is_tombstone() {
            let tombstone = opts.deleted_vclock.then(|| obj.vclock.clone());
            return Ok(GetResponse::NotFound { tombstone });
        }
        if opts.if_modified.as_ref() == Some(&obj.vclock) {
            return Ok(GetResponse::Unchanged);
        }
        Ok(GetResponse::Found(if opts.head {
            head_only(obj)
        } else {
            obj
        }))
    }

    /// Reads every replica of the preference list through the quorum machine, until it
    /// decides. The returned [`Read`] holds every reply so far and the ones still to come.
    pub(crate) async fn read_replicas(
        &self,
        bkey: &BKey,
        params: GetParams,
        targets: &[PreflistEntry],
    ) -> NodeResult<Read> {
        let mut fsm = GetFsm::new(params, fsm_targets(targets)).map_err(NodeError::GetQuorum)?;
        let mut outstanding = Outstanding::default();
        let mut shared = None;
        for (i, target) in targets.iter().enumerate() {
            let result = match self.replica(target) {
                Ok(Replica::Local(v)) => v.get_shared(bkey, &mut shared),
                Ok(Replica::Remote(peer)) => {
                    let (node, target, bkey) = (self.clone(), target.clone(), bkey.clone());
                    outstanding.push(Box::pin(async move {
                        (i, node.remote_get(&target, &peer, &bkey).await)
                    }));
                    continue;
                }
                Err(e) => Err(e),
            };
            self.inner.stats.vnode_gets.inc();
            fsm.add_reply(i, get_reply(result));
        }
        let mut read = Read { fsm, outstanding };
        while read.fsm.outcome().is_none() {
            let Some((i, result)) = read.outstanding.next().await else {
                break;
            };
            self.inner.stats.vnode_gets.inc();
            read.fsm.add_reply(i, get_reply(result));
        }
        if read.fsm.outcome().is_none() {
            read.fsm.on_timeout();
        }
        Ok(read)
    }

    /// Collects the replies still outstanding, then repairs from all of them.
    fn repair_after_late_replies(
        &self,
        bkey: BKey,
        mut read: Read,
        targets: Vec<PreflistEntry>,
        opts: MergeOptions,
    ) {
        let node = self.clone();
        tokio::spawn(async move {
            while let Some((i, result)) = read.outstanding.next().await {
                read.fsm.add_reply(i, get_reply(result));
            }
            if !needs_repair(read.fsm.replies()) {
                return;
            }
            if let Some(all) = merge_replies(read.fsm.replies(), &opts) {
                node.read_repair(&bkey, &all, &targets, read.fsm.replies(), opts);
            }
        });
    }

    /// Sends the merged object to every replica that answered not-found or an ancestor of it.
    /// Runs in the background: the client already has its answer.
    fn read_repair(
        &self,
        bkey: &BKey,
        merged: &RiakObject,
        targets: &[PreflistEntry],
        replies: &[(usize, GetReply<Arc<RiakObject>>)],
        opts: MergeOptions,
    ) {
        let stale: Vec<PreflistEntry> = replies
            .iter()
            .filter(|(_, reply)| match reply {
                GetReply::NotFound => true,
                GetReply::Found(obj) | GetReply::Tombstone(obj) => {
                    merge::relation(&obj.vclock, &merged.vclock) != Relation::Equal
                }
                GetReply::Overload | GetReply::Error(_) => false,
            })
            .map(|(i, _)| targets[*i].clone())
            .collect();
        if stale.is_empty() {
            return;
        }
        let node = self.clone();
        let bkey = bkey.clone();
        let merged = merged.clone();
        tokio::spawn(async move {
            let encoded = bytes::Bytes::from(rill_core::codec::encode(&merged));
            for target in stale {
                let result = match node.replica(&target) {
                    Ok(Replica::Local(v)) => v
                        .replica_put(&bkey, &merged, &opts, &node.inner.config.limits)
                        .map(|_| ()),
                    Ok(Replica::Remote(peer)) => node
                        .remote_put(&target, &peer, &bkey, encoded.clone(), opts, false)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => node.inner.stats.read_repairs.inc(),
                    Err(e) => {
                        tracing::warn!(partition = target.partition, node = %target.node, error = %e, "read repair failed")
                    }
                }
            }
            if let Err(e) = node.commit().await {
                tracing::warn!(error = %e, "read repair commit failed");
            }
        });
    }
}

/// A replica's answer as the read machine takes it.
fn get_reply(result: NodeResult<Option<Arc<RiakObject>>>) -> GetReply<Arc<RiakObject>> {
    match result {
        Ok(Some(obj)) if obj.is_tombstone() => GetReply::Tombstone(obj),
        Ok(Some(obj)) => GetReply::Found(obj),
        Ok(None) => GetReply::NotFound,
        Err(e) => GetReply::Error(e.to_string()),
    }
}

/// Whether any replica may be behind: one answered not-found, or the replicas disagree. (The
/// common case — every replica holds the same object — costs a comparison per reply.)
fn needs_repair(replies: &[(usize, GetReply<Arc<RiakObject>>)]) -> bool {
    let mut first: Option<&Arc<RiakObject>> = None;
    for (_, reply) in replies {
        match reply {
            GetReply::NotFound => return true,
            GetReply::Found(o) | GetReply::Tombstone(o) => match first {
                None => first = Some(o),
                Some(f) if Arc::ptr_eq(f, o) || **f == **o => {}
                Some(_) => return true,
            },
            GetReply::Overload | GetReply::Error(_) => {}
        }
    }
    false
}

/// The merge of the objects carried by a set of replies. Replicas usually agree exactly; then
/// the merge is any one of them (merging is idempotent) and costs one comparison per reply.
fn merge_replies(
    replies: &[(usize, GetReply<Arc<RiakObject>>)],
    opts: &MergeOptions,
) -> Option<RiakObject> {
    let mut objs = replies.iter().filter_map(|(_, r)| r.object());
    let first = objs.next()?;
    if objs.all(|o| Arc::ptr_eq(o, first) || **o == **first) {
        return Some((**first).clone());
    }
    let all: Vec<RiakObject> = replies
        .iter()
        .filter_map(|(_, r)| r.object().map(|o| (**o).clone()))
        .collect();
    merge::reconcile(&all, opts)
}
