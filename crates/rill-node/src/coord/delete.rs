//! The DELETE coordinator: a delete is a write of a tombstone with the causal context of what is
//! being deleted (read first when the client sent none), followed — per `delete_mode` — by
//! reaping: once every replica holds the same tombstone, each removes it, unless a newer write
//! arrived in between.

use std::time::Duration;

use bytes::Bytes;
use rill_core::bkey::BKey;
use rill_core::fsm::get::{GetOutcome, GetParams, GetReply};
use rill_core::fsm::{DeleteQuorums, DeleteRequest};
use rill_core::object::{Content, Metadata};
use rill_core::props::{Quorum, QuorumParam};
use rill_core::vclock::VClock;

use crate::config::DeleteMode;
use crate::coord::{resolve_n, resolve_quorum};
use crate::error::NodeResult;
use crate::node::{Node, Replica};
use crate::request::{
    DeleteOptions, DeleteOutcome, GetOptions, GetResponse, PutOptions, PutRequest,
};

impl Node {
    /// Deletes an object by writing a tombstone.
    pub async fn delete(&self, bkey: &BKey, opts: &DeleteOptions) -> NodeResult<DeleteOutcome> {
        let props = self.inner.metadata.bucket_props(&bkey.bucket)?;
        let n = resolve_n(opts.n_val, &props)?;
        // Riak: rw is the default for both halves; explicit r and w take precedence.
        let quorums = DeleteQuorums::resolve(DeleteRequest {
            r: opts
                .r
                .map(|q| resolve_quorum(QuorumParam::R, Some(q), &props, n))
                .transpose()?,
            w: opts
                .w
                .map(|q| resolve_quorum(QuorumParam::W, Some(q), &props, n))
                .transpose()?,
            rw: resolve_quorum(QuorumParam::Rw, opts.rw, &props, n)?,
            bucket_r: resolve_quorum(QuorumParam::R, None, &props, n)?,
        });
        let context = match &opts.vclock {
            Some(v) => v.clone(),
            None => {
                let get = GetOptions {
                    r: Some(Quorum::N(quorums.r)),
                    pr: opts.pr,
                    n_val: opts.n_val,
                    deleted_vclock: true,
                    timeout: opts.timeout,
                    ..GetOptions::default()
                };
                match self.get(bkey, &get).await? {
                    GetResponse::Found(obj) => obj.vclock,
                    GetResponse::NotFound { .. } | GetResponse::Unchanged => {
                        return Ok(DeleteOutcome::NotFound);
                    }
                }
            }
        };
        let req = PutRequest {
            bkey: bkey.clone(),
            context,
            content: Content {
                meta: Metadata {
                    deleted: true,
                    vtag: self.generate_vtag(),
                    last_modified_us: self.now_us(),
                    ..Metadata::default()
                },
                value: Bytes::new(),
                dot: None,
            },
        };
        let put = PutOptions {
            w: Some(Quorum::N(quorums.w)),
            dw: opts.dw,
            pw: opts.pw,
            n_val: opts.n_val,
            return_body: true,
            timeout: opts.timeout,
            ..PutOptions::default()
        };
        let stored = self.put(req, &put).await?.object;
        if let Some(obj) = stored.filter(|o| o.is_tombstone()) {
            self.schedule_reap(bkey.clone(), obj.vclock, n);
        }
        Ok(DeleteOutcome::Deleted)
    }

    /// Reaps the tombstone per the configured delete mode.
    fn schedule_reap(&self, bkey: BKey, clock: VClock, n: u32) {
        let delay = match self.inner.config.delete_mode {
            DeleteMode::Keep => return,
            DeleteMode::Immediate => Duration::ZERO,
            DeleteMode::After(d) => d,
        };
        let node = self.clone();
        let mut shutdown = self.shutdown_signal();
        tokio::spawn(async move {
            tokio::select! {
                _ = rill_net::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = node.reap(&bkey, &clock, n).await {
                tracing::warn!(error = %e, "tombstone reap failed");
            }
        });
    }

    /// Removes the tombstone from every replica, if all N hold exactly this tombstone.
    async fn reap(&self, bkey: &BKey, clock: &VClock, n: u32) -> NodeResult<()> {
        let params = GetParams {
            n,
            r: n,
            pr: 0,
            notfound_ok: false,
            basic_quorum: false,
        };
        let targets = self.preflist(bkey, n);
        // Only reap when every primary holds the identical tombstone: a fallback or a missing
        // replica could otherwise resurrect the object later through anti-entropy.
        if targets.iter().any(|t| !t.primary) {
            return Ok(());
        }
        let read = self.read_replicas(bkey, params, &targets).await?;
        let fsm = &read.fsm;
        if fsm.outcome() != Some(&GetOutcome::Found) || !fsm.all_replied() {
            return Ok(());
        }
        let all_same_tombstone = fsm.replies().iter().all(|(_, r)| match r {
            GetReply::Tombstone(o) => o.vclock == *clock,
            _ => false,
        });
        if !all_same_tombstone {
            return Ok(());
        }
        for target in &targets {
            let reaped = match self.replica(target)? {
                Replica::Local(v) => v.reap(bkey, clock)?,
                Replica::Remote(peer) => self.remote_reap(target, &peer, bkey, clock).await?,
            };
            if reaped {
                self.inner.stats.tombstones_reaped.inc();
            }
        }
        self.commit().await
    }
}
