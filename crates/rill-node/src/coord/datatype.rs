//! The data-type coordinator: fetches and updates of counters, sets, maps, HLLs and gsets.
//!
//! A fetch is a GET through the quorum machine (replicas' states merge like any objects of a
//! data-type bucket: into one state, never siblings), decoded into the state. An update is a
//! write whose coordinating vnode applies the operation to its own state with its own actor
//! (`Vnode::stage_datatype`); the other replicas merge the resulting object, through the same
//! replica writing as a PUT (`write_replicas`). Riak 1.4's counters (any `allow_mult` bucket)
//! are counter states updated and read the same way.

use std::time::Instant;

use rill_core::bkey::BKey;
use rill_core::crdt::object::{fetched, state_of};
use rill_core::crdt::split::{self, SetHead};
use rill_core::crdt::{Crdt, DtValue, Fetched, Op, encoding};
use rill_core::fsm::put::PutParams;
use rill_core::props::{BucketProps, DEFAULT_HLL_PRECISION, Datatype, QuorumParam};

use crate::coord::put::Coordinated;
use crate::coord::{resolve_n, resolve_quorum};
use crate::error::{NodeError, NodeResult};
use crate::node::{Node, Replica};
use crate::proto::{Reply, Request, WireKey};
use crate::remote::unexpected;
use crate::request::{DtFetchOptions, DtUpdateOptions, DtUpdateRequest, GetOptions, GetResponse};
use crate::vnode::DatatypeWrite;
use rill_core::ring::{NodeName, PreflistEntry};

impl Node {
    /// Fetches a data type: the bucket's type, and the state (`None` when the key holds none
    /// or was deleted).
    pub async fn dt_fetch(
        &self,
        bkey: &BKey,
        opts: &DtFetchOptions,
    ) -> NodeResult<(Datatype, Option<Fetched>)> {
        let props = self.inner.metadata.bucket_props(&bkey.bucket)?;
        let dt = datatype_of(&props, "")?;
        let state = self.fetch_as(dt, bkey, opts).await?;
        Ok((dt, state))
    }

    /// Reads a legacy (Riak 1.4) counter of an `allow_mult` bucket; `None` when absent.
    pub async fn counter_fetch(
        &self,
        bkey: &BKey,
        opts: &DtFetchOptions,
    ) -> NodeResult<Option<i64>> {
        let props = self.inner.metadata.bucket_props(&bkey.bucket)?;
        legacy_counter_bucket(&props)?;
        let state = self.fetch_as(Datatype::Counter, bkey, opts).await?;
        Ok(state.map(|s| counter_value(s.value())))
    }

    /// Adds `amount` to a legacy counter; returns the new value when `return_body` asked.
    pub async fn counter_update(
        &self,
        bkey: &BKey,
        amount: i64,
        opts: &DtUpdateOptions,
    ) -> NodeResult<Option<i64>> {
        let props = self.inner.metadata.bucket_props(&bkey.bucket)?;
        legacy_counter_bucket(&props)?;
        let req = DtUpdateRequest {
            bkey: bkey.clone(),
            op: Op::Counter(amount),
            context: None,
        };
        let state = self
            .update_as(Datatype::Counter, &props, &req, opts, 0)
            .await?;
        Ok(state.map(|s| counter_value(s.value())))
    }

    async fn fetch_as(
        &self,
        dt: Datatype,
        bkey: &BKey,
        opts: &DtFetchOptions,
    ) -> NodeResult<Option<Fetched>> {
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
                fetched(&obj, dt).map_err(|e| NodeError::Corrupt(e.to_string()))?
            }
            GetResponse::NotFound { .. } | GetResponse::Unchanged => None,
        };
        self.inner.stats.datatype_fetched(
            dt,
            started.elapsed(),
            state.as_ref().map(Fetched::actor_count),
        );
        Ok(state)
    }

    /// Applies a data-type operation; returns the new state when `return_body` asked for it.
    pub async fn dt_update(
        &self,
        req: &DtUpdateRequest,
        opts: &DtUpdateOptions,
    ) -> NodeResult<Option<Fetched>> {
        let props = self.inner.metadata.bucket_props(&req.bkey.bucket)?;
        let dt = datatype_of(&props, "Bucket datatype ")?;
        let state = self.update_as(dt, &props, req, opts, 0).await?;
        Ok(state.as_ref().map(Fetched::from))
    }

    /// An update another node passed here to coordinate (it holds no replica of the key).
    pub(crate) async fn update_forwarded(
        &self,
        req: &DtUpdateRequest,
        opts: &DtUpdateOptions,
        legacy: bool,
        hops: u8,
    ) -> NodeResult<Option<Crdt>> {
        let props = self.inner.metadata.bucket_props(&req.bkey.bucket)?;
        let dt = if legacy {
            legacy_counter_bucket(&props)?;
            Datatype::Counter
        } else {
            datatype_of(&props, "Bucket datatype ")?
        };
        self.update_as(dt, &props, req, opts, hops).await
    }

    async fn update_as(
        &self,
        dt: Datatype,
        props: &BucketProps,
        req: &DtUpdateRequest,
        opts: &DtUpdateOptions,
        hops: u8,
    ) -> NodeResult<Option<Crdt>> {
        let started = Instant::now();
        let n = resolve_n(opts.n_val, props)?;
        let params = PutParams {
            n,
            w: resolve_quorum(QuorumParam::W, opts.w, props, n)?,
            dw: resolve_quorum(QuorumParam::Dw, opts.dw, props, n)?,
            pw: resolve_quorum(QuorumParam::Pw, opts.pw, props, n)?,
        };
        let context = req.context.as_ref().map(|c| &c.0);
        let write = Coordinated::Datatype(DatatypeWrite {
            datatype: dt,
            op: &req.op,
            context,
            hll_precision: props.hll_precision.unwrap_or(DEFAULT_HLL_PRECISION),
        });
        let targets = self.preflist(&req.bkey, n);
        // Only a vnode of the preference list may apply the operation (with its own actor):
        // a node holding none passes the update to the node of the first replica.
        if hops == 0
            && let Some(first) = targets.first()
            && !targets.iter().any(|t| t.node == *self.name())
        {
            let legacy = props.datatype.is_none();
            return self.forward_update(&first.node, req, opts, legacy).await;
        }
        let stored = self
            .with_timeout(
                opts.timeout,
                std::pin::pin!(
                    self.write_replicas(&req.bkey, &write, props, params, &targets, true)
                ),
            )
            .await?;
        // A split set's head holds its clock but not its members: only a body that was asked
        // for is worth assembling the whole set.
        let (state, actors) = match split::head_content(&stored) {
            Some(head) => {
                let actors = SetHead::decode(&head.value).map(|h| h.clock.len()).ok();
                let state = match opts.return_body {
                    true => self.whole_at_coordinator(&req.bkey, &targets, dt)?,
                    false => None,
                };
                (state, actors)
            }
            None => {
                let state =
                    state_of(&stored, dt, false).map_err(|e| NodeError::Corrupt(e.to_string()))?;
                let actors = state.as_ref().map(Crdt::actor_count);
                (state, actors)
            }
        };
        self.inner
            .stats
            .datatype_updated(dt, started.elapsed(), stored.approx_size(), actors);
        Ok(if opts.return_body { state } else { None })
    }
}

impl Node {
    /// The state the coordinating replica (the first of `targets` held here) stores now.
    fn whole_at_coordinator(
        &self,
        bkey: &BKey,
        targets: &[PreflistEntry],
        dt: Datatype,
    ) -> NodeResult<Option<Crdt>> {
        let coordinator = targets.iter().find_map(|t| match self.replica(t) {
            Ok(Replica::Local(v)) => Some(v),
            _ => None,
        });
        let Some(obj) = coordinator.map(|v| v.get(bkey)).transpose()?.flatten() else {
            return Ok(None);
        };
        state_of(&obj, dt, false).map_err(|e| NodeError::Corrupt(e.to_string()))
    }

    async fn forward_update(
        &self,
        node: &NodeName,
        req: &DtUpdateRequest,
        opts: &DtUpdateOptions,
        legacy: bool,
    ) -> NodeResult<Option<Crdt>> {
        let msg = Request::CoordinateDatatype {
            key: WireKey::from(&req.bkey),
            op: req.op.clone(),
            context: req.context.clone(),
            opts: opts.clone(),
            legacy,
            hops: 1,
        };
        let timeout = opts.timeout.unwrap_or(self.inner.config.request_timeout);
        self.inner.stats.forwarded_puts.inc();
        match self.call(node, &msg, timeout).await? {
            Reply::Datatype(state) => state
                .map(|raw| {
                    encoding::decode(&raw)
                        .map_err(|e| NodeError::Corrupt(format!("a data type from a peer: {e}")))
                })
                .transpose(),
            other => Err(unexpected(&other)),
        }
    }
}

/// Legacy counters live in any `allow_mult` bucket without a data type (as in Riak 1.4).
fn legacy_counter_bucket(props: &BucketProps) -> NodeResult<()> {
    match (props.allow_mult, props.datatype) {
        (true, None | Some(Datatype::Counter)) => Ok(()),
        (false, _) => Err(NodeError::BadRequest(
            "Counters require bucket property 'allow_mult=true'".into(),
        )),
        (true, Some(dt)) => Err(NodeError::BadRequest(format!(
            "Bucket datatype `{}` does not hold counters",
            dt.as_str()
        ))),
    }
}

fn counter_value(value: DtValue) -> i64 {
    match value {
        DtValue::Counter(n) => n,
        _ => 0,
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
