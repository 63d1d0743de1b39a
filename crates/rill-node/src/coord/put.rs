//! The PUT coordinator: the first reachable replica of the preference list coordinates (advances
//! the clock and merges), the others merge the coordinated object; the write quorum machine
//! counts acknowledgements (W when a replica stored the object, DW once the group commit made it
//! durable, PW among primaries).

use std::time::Instant;

use rill_core::fsm::Target;
use rill_core::fsm::put::{PutFsm, PutParams, PutReply};
use rill_core::object::RiakObject;
use rill_core::props::{BucketProps, QuorumParam};
use rill_core::ring::PreflistEntry;
use rill_core::vclock::PruneLimits;

use crate::coord::{merge_options, resolve_n, resolve_quorum};
use crate::error::{NodeError, NodeResult};
use crate::node::{Node, Replica, head_only};
use crate::request::{GetOptions, GetResponse, PutOptions, PutRequest, PutResponse};
use crate::vnode::WriteRules;

impl Node {
    /// Writes an object with the request's quorum and conditional options.
    pub async fn put(&self, req: PutRequest, opts: &PutOptions) -> NodeResult<PutResponse> {
        let started = Instant::now();
        let result = self
            .with_timeout(opts.timeout, self.put_inner(req, opts))
            .await;
        self.inner.stats.put_fsm.record(started.elapsed());
        result
    }

    async fn put_inner(&self, req: PutRequest, opts: &PutOptions) -> NodeResult<PutResponse> {
        let props = self.inner.metadata.bucket_props(&req.bkey.bucket)?;
        let n = resolve_n(opts.n_val, &props)?;
        let params = PutParams {
            n,
            w: resolve_quorum(QuorumParam::W, opts.w, &props, n)?,
            dw: resolve_quorum(QuorumParam::Dw, opts.dw, &props, n)?,
            pw: resolve_quorum(QuorumParam::Pw, opts.pw, &props, n)?,
        };
        self.check_conditions(&req, opts).await?;

        let targets = self.preflist(&req.bkey, n);
        let stored = self
            .write_replicas(&req, opts, &props, params, &targets)
            .await?;
        let object = if opts.return_body {
            Some(stored)
        } else if opts.return_head {
            Some(head_only(stored))
        } else {
            None
        };
        Ok(PutResponse { object })
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
        req: &PutRequest,
        opts: &PutOptions,
        props: &BucketProps,
        params: PutParams,
        targets: &[PreflistEntry],
    ) -> NodeResult<RiakObject> {
        let fsm_targets = targets
            .iter()
            .enumerate()
            .map(|(i, t)| Target {
                index: i,
                primary: t.primary,
            })
            .collect();
        // The first target coordinates; `asis` writes have no coordinator (every replica merges).
        let coordinator = (!opts.asis).then_some(0);
        let mut fsm: PutFsm<usize, RiakObject> =
            PutFsm::new(params, fsm_targets, coordinator).map_err(NodeError::PutQuorum)?;
        let merge = merge_options(props);
        let limits = &self.inner.config.limits;

        let mut coordinated: Option<RiakObject> = None;
        let mut stored = Vec::with_capacity(targets.len());
        for (i, target) in targets.iter().enumerate() {
            let result = self.replica(target).and_then(|r| {
                let Replica::Local(v) = r;
                match &coordinated {
                    None if !opts.asis => {
                        let rules = WriteRules {
                            merge,
                            prune: prune_limits(props),
                            limits,
                            now_us: self.now_us(),
                        };
                        v.coordinate_put(&req.bkey, &req.context, req.content.clone(), &rules)
                    }
                    Some(obj) => v.replica_put(&req.bkey, obj, &merge, limits),
                    None => {
                        let obj = RiakObject {
                            vclock: req.context.clone(),
                            contents: vec![req.content.clone()],
                        };
                        v.replica_put(&req.bkey, &obj, &merge, limits)
                    }
                }
            });
            match result {
                Ok(obj) => {
                    self.inner.stats.vnode_puts.inc();
                    fsm.add_reply(i, PutReply::W);
                    stored.push((i, obj.clone()));
                    coordinated.get_or_insert(obj);
                }
                // A write refused for its content (too large, too many siblings) fails the
                // request outright: no other replica would take it either.
                Err(e @ NodeError::Limit(_)) => return Err(e),
                Err(e) => {
                    fsm.add_reply(i, PutReply::Fail(e.to_string()));
                }
            }
            if matches!(fsm.outcome(), Some(Err(_))) {
                break;
            }
        }
        // One group commit covers every local replica's write: that is DW.
        match self.commit().await {
            Ok(()) => {
                for (i, obj) in stored {
                    fsm.add_reply(i, PutReply::Dw(Some(obj)));
                }
            }
            Err(e) => {
                for (i, _) in stored {
                    fsm.add_reply(i, PutReply::Fail(e.to_string()));
                }
            }
        }
        if fsm.outcome().is_none() {
            fsm.on_timeout();
        }
        match (fsm.outcome(), coordinated) {
            (Some(Ok(())), Some(obj)) => Ok(obj),
            (Some(Err(e)), _) => Err(NodeError::PutQuorum(e.clone())),
            _ => Err(NodeError::Timeout),
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
