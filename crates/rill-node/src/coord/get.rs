//! The GET coordinator: ask the N replicas, decide with the quorum state machine, merge what
//! they returned, answer, then repair replicas that were missing the object or behind it.

use std::time::Instant;

use rill_core::bkey::BKey;
use rill_core::fsm::get::{GetFsm, GetOutcome, GetParams, GetReply};
use std::sync::Arc;

use rill_core::merge::{self, MergeOptions, Relation};
use rill_core::object::RiakObject;
use rill_core::props::{BucketProps, QuorumParam};
use rill_core::ring::PreflistEntry;

use crate::coord::{fsm_targets, merge_options, resolve_n, resolve_quorum};
use crate::error::{NodeError, NodeResult};
use crate::node::{Node, Replica, head_only};
use crate::request::{GetOptions, GetResponse};

impl Node {
    /// Reads an object with the request's quorum options.
    pub async fn get(&self, bkey: &BKey, opts: &GetOptions) -> NodeResult<GetResponse> {
        let started = Instant::now();
        let result = self
            .with_timeout(opts.timeout, self.get_inner(bkey, opts))
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
        let fsm = self.read_replicas(bkey, params, &targets)?;
        let merge_opts = merge_options(&props);
        let merged = match fsm.outcome() {
            Some(GetOutcome::Found) => merge_replies(fsm.decision_replies(), &merge_opts),
            Some(GetOutcome::NotFound) => None,
            Some(GetOutcome::Failed(e)) => return Err(NodeError::GetQuorum(e.clone())),
            None => return Err(NodeError::Timeout),
        };
        // Repair from everything that came back, not only what the decision needed.
        let all = if fsm.replies().len() == fsm.decision_replies().len() {
            merged.clone()
        } else {
            merge_replies(fsm.replies(), &merge_opts)
        };
        if let Some(all) = &all {
            self.read_repair(bkey, all, &targets, fsm.replies(), &props);
        }
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

    /// Reads every replica of the preference list through the quorum machine, which keeps
    /// every reply (the decision's and the late ones) for merging and read repair.
    pub(crate) fn read_replicas(
        &self,
        bkey: &BKey,
        params: GetParams,
        targets: &[PreflistEntry],
    ) -> NodeResult<GetFsm<usize, Arc<RiakObject>>> {
        let mut fsm = GetFsm::new(params, fsm_targets(targets)).map_err(NodeError::GetQuorum)?;
        for (i, target) in targets.iter().enumerate() {
            let reply = match self.replica(target).and_then(|r| match r {
                Replica::Local(v) => v.get(bkey),
            }) {
                Ok(Some(obj)) if obj.is_tombstone() => GetReply::Tombstone(obj),
                Ok(Some(obj)) => GetReply::Found(obj),
                Ok(None) => GetReply::NotFound,
                Err(e) => GetReply::Error(e.to_string()),
            };
            self.inner.stats.vnode_gets.inc();
            fsm.add_reply(i, reply);
        }
        if fsm.outcome().is_none() {
            fsm.on_timeout();
        }
        Ok(fsm)
    }

    /// Sends the merged object to every replica that answered not-found or an ancestor of it.
    /// Runs in the background: the client already has its answer.
    fn read_repair(
        &self,
        bkey: &BKey,
        merged: &RiakObject,
        targets: &[PreflistEntry],
        replies: &[(usize, GetReply<Arc<RiakObject>>)],
        props: &BucketProps,
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
        let opts = merge_options(props);
        tokio::spawn(async move {
            for target in stale {
                let result = node.replica(&target).and_then(|r| match r {
                    Replica::Local(v) => {
                        v.replica_put(&bkey, &merged, &opts, &node.inner.config.limits)
                    }
                });
                match result {
                    Ok(_) => node.inner.stats.read_repairs.inc(),
                    Err(e) => {
                        tracing::warn!(partition = target.partition, error = %e, "read repair failed")
                    }
                }
            }
            if let Err(e) = node.commit().await {
                tracing::warn!(error = %e, "read repair commit failed");
            }
        });
    }
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
