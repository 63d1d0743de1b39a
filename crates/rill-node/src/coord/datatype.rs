//! The data-type coordinator: fetches and updates of counters, sets, maps, HLLs and gsets.
//!
//! A fetch is a GET through the quorum machine (replicas' states merge like any objects of a
//! data-type bucket: into one state, never siblings), decoded into the state. An update is a
//! write whose coordinating vnode applies the operation to its own state with its own actor
//! (`Vnode::stage_datatype`); the other replicas merge the resulting object, through the same
//! replica writing as a PUT (`write_replicas`).

use std::time::Instant;

use rill_core::bkey::BKey;
use rill_core::crdt::Crdt;
use rill_core::crdt::object::state_of;
use rill_core::fsm::put::PutParams;
use rill_core::props::{BucketProps, DEFAULT_HLL_PRECISION, Datatype, QuorumParam};

use crate::coord::put::Coordinated;
use crate::coord::{resolve_n, resolve_quorum};
use crate::error::{NodeError, NodeResult};
use crate::node::Node;
use crate::request::{DtFetchOptions, DtUpdateOptions, DtUpdateRequest, GetOptions, GetResponse};
use crate::vnode::DatatypeWrite;

impl Node {
    /// Fetches a data type: the bucket's type, and the state (`None` when the key holds none
    /// or was deleted).
    pub async fn dt_fetch(
        &self,
        bkey: &BKey,
        opts: &DtFetchOptions,
    ) -> NodeResult<(Datatype, Option<Crdt>)> {
        let props = self.inner.metadata.bucket_props(&bkey.bucket)?;
        let dt = datatype_of(&props, "")?;
        let get = GetOptions {
            r: opts.r,
            pr: opts.pr,
            basic_quorum: opts.basic_quorum,
            notfound_ok: opts.notfound_ok,
            n_val: opts.n_val,
            timeout: opts.timeout,
            ..GetOptions::default()
        };
        let started = Instant::now();
        let state = match self.get(bkey, &get).await? {
            GetResponse::Found(obj) => {
                state_of(&obj, dt, false).map_err(|e| NodeError::Corrupt(e.to_string()))?
            }
            GetResponse::NotFound { .. } | GetResponse::Unchanged => None,
        };
        self.inner
            .stats
            .datatype_fetched(dt, started.elapsed(), state.as_ref());
        Ok((dt, state))
    }

    /// Applies a data-type operation; returns the new state when `return_body` asked for it.
    pub async fn dt_update(
        &self,
        req: &DtUpdateRequest,
        opts: &DtUpdateOptions,
    ) -> NodeResult<Option<Crdt>> {
        let started = Instant::now();
        let props = self.inner.metadata.bucket_props(&req.bkey.bucket)?;
        let dt = datatype_of(&props, "Bucket datatype ")?;
        let n = resolve_n(opts.n_val, &props)?;
        let params = PutParams {
            n,
            w: resolve_quorum(QuorumParam::W, opts.w, &props, n)?,
            dw: resolve_quorum(QuorumParam::Dw, opts.dw, &props, n)?,
            pw: resolve_quorum(QuorumParam::Pw, opts.pw, &props, n)?,
        };
        let context = req.context.as_ref().map(|c| &c.0);
        let write = Coordinated::Datatype(DatatypeWrite {
            datatype: dt,
            op: &req.op,
            context,
            hll_precision: props.hll_precision.unwrap_or(DEFAULT_HLL_PRECISION),
        });
        let targets = self.preflist(&req.bkey, n);
        let stored = self
            .with_timeout(
                opts.timeout,
                self.write_replicas(&req.bkey, &write, &props, params, &targets),
            )
            .await?;
        let state = state_of(&stored, dt, false).map_err(|e| NodeError::Corrupt(e.to_string()))?;
        self.inner.stats.datatype_updated(
            dt,
            started.elapsed(),
            stored.approx_size(),
            state.as_ref(),
        );
        Ok(if opts.return_body { state } else { None })
    }
}

/// The bucket's data type, or Riak's refusal for a bucket without one (`prefix` is what Riak
/// puts before the type in the message: fetches and updates word it differently).
fn datatype_of(props: &BucketProps, prefix: &str) -> NodeResult<Datatype> {
    if !props.allow_mult {
        return Err(NodeError::BadRequest(
            "Bucket must be allow_mult=true".into(),
        ));
    }
    props.datatype.ok_or_else(|| {
        NodeError::BadRequest(format!("{prefix}`undefined` is not a supported type"))
    })
}
