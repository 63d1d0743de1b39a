//! The PUT coordinator: the first reachable replica of the preference list coordinates (advances
//! the clock and merges), the others merge the coordinated object; the write quorum machine
//! counts acknowledgements (W when a replica stored the object, DW once the group commit made it
//! durable, PW among primaries).

use std::time::Instant;

use rill_core::bkey::BKey;
use rill_core::fsm::put::{PutFsm, PutParams, PutReply};
use std::sync::Arc;

use rill_core::object::RiakObject;
use rill_core::props::{BucketProps, QuorumParam};
use rill_core::ring::PreflistEntry;
use rill_core::vclock::PruneLimits;
use rill_storage::BatchPut;

use crate::coord::{fsm_targets, merge_options, resolve_n, resolve_quorum};
use crate::error::{NodeError, NodeResult};
use crate::node::{Node, Replica, head_only};
use crate::request::{GetOptions, GetResponse, PutOptions, PutRequest, PutResponse};
use crate::vnode::{DatatypeWrite, KeyLock, Staged, Vnode, WriteRules};

/// What the coordinating replica makes of a write.
pub(crate) enum Coordinated<'a> {
    /// A client's object under its context; with `asis` it is stored as it is, uncoordinated.
    Object { req: &'a PutRequest, asis: bool },
    /// A data-type operation applied to the replica's state (`coord::datatype`).
    Datatype(DatatypeWrite<'a>),
}

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
        self.check_conditions(&req, opts).await?;

        let targets = self.preflist(&req.bkey, n);
        let stored = self
            .write_replicas(
                &req.bkey,
                &Coordinated::Object {
                    req: &req,
                    asis: opts.asis,
                },
                &props,
                params,
                &targets,
            )
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
    ) -> NodeResult<Arc<RiakObject>> {
        // The first target coordinates; `asis` writes have no coordinator (every replica merges).
        let asis = matches!(write, Coordinated::Object { asis: true, .. });
        let coordinator = (!asis).then_some(0);
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
        let stored = if self.inner.config.sync_writes && multi_thread {
            tokio::task::block_in_place(|| {
                self.write_local_replicas(bkey, write, props, targets, &mut fsm)
            })?
        } else {
            self.write_local_replicas(bkey, write, props, targets, &mut fsm)?
        };

        // One group commit covers every local replica's write: that is DW.
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
            }
        }
        if fsm.outcome().is_none() {
            fsm.on_timeout();
        }
        match (fsm.outcome(), stored.into_iter().next()) {
            (Some(Ok(())), Some((_, obj))) => Ok(obj),
            (Some(Err(e)), _) => Err(NodeError::PutQuorum(e.clone())),
            _ => Err(NodeError::Timeout),
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
        fsm: &mut PutFsm<usize, Arc<RiakObject>>,
    ) -> NodeResult<Vec<(usize, Arc<RiakObject>)>> {
        let merge = merge_options(props);
        let limits = &self.inner.config.limits;
        let mut vnodes = Vec::with_capacity(targets.len());
        for (i, target) in targets.iter().enumerate() {
            match self.replica(target) {
                Ok(Replica::Local(v)) => vnodes.push((i, v)),
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
                (Some((_, _, coordinated)), _) => {
                    let obj = coordinated.object.clone();
                    v.stage_replica(lock, bkey, &obj, &merge, limits)
                }
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
                Err(e) => {
                    fsm.add_reply(i, PutReply::Fail(e.to_string()));
                    if matches!(fsm.outcome(), Some(Err(_))) {
                        return Ok(Vec::new());
                    }
                }
            }
        }

        let puts: Vec<BatchPut<'_>> = staged
            .iter()
            .filter_map(|(i, v, s)| {
                Some(BatchPut {
                    partition: v.partition(),
                    key: locks[*i].as_ref()?.storage_key(),
                    value: s.encoded.as_deref()?,
                })
            })
            .collect();
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
            Ok(()) => staged.into_iter().map(|(i, _, s)| (i, s.object)).collect(),
            Err(_) => Vec::new(),
        })
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
