//! The Protocol Buffers server (port 8087): one task per connection, requests answered in order.
//!
//! A connection reads frames with [`RiakCodec`], decodes each into a [`Request`], calls the node
//! and writes the response frame(s). An unknown code, an undecodable body or an oversized frame
//! is answered with `RpbErrorResp` and the next frame is served. Streamed answers (key and
//! bucket listings) are written chunk by chunk; a client that disconnects mid-stream drops the
//! listing's channel, which stops the scan behind it.
//!
//! What a client costs is bounded ([`ClientLimits`]): the listener admits at most its
//! connection limit (the next client gets an `RpbErrorResp` and is closed); a frame's bytes are
//! read into a [`BudgetedBuf`] that grows only as they arrive and charges the request memory
//! budget — while the budget is spent the socket is simply not read — and is held until the
//! request has been answered; a frame larger than the whole budget is refused from its header;
//! and a frame not complete within the read timeout of its first byte ends the connection.
//! An idle connection (no frame begun) may stay open indefinitely.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rill_core::bkey::{BKey, Bucket, DEFAULT_TYPE};
use rill_core::vclock::VClock;
use rill_net::{Conn, Listener};
use rill_node::request::{
    DeleteOptions, DtFetchOptions, DtUpdateOptions, DtUpdateRequest, GetOptions, GetResponse,
    PutOptions, PutRequest,
};
use rill_node::{Node, NodeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

use super::codes::MessageCode;
use super::convert::{
    content_from_pb, contents_to_pb, preflist_item, props_patch, props_to_pb, quorum,
};
use super::datatype;
use super::frame::{InboundFrame, RiakCodec};
use super::messages::{Request, encode_empty, encode_error, encode_response};
use super::riak::*;
use crate::RIAK_API_VERSION;
use crate::budget::{BudgetError, BudgetedBuf};
use crate::client_limits::{ClientLimits, REQUEST_FREE_BYTES};

/// Replies buffered beyond this many bytes are written even while further requests wait, so a
/// client pipelining many reads of large objects never makes the server hold every reply.
const FLUSH_AT: usize = 256 * 1024;
/// An output buffer grown beyond this (by one huge reply) is released once written, rather
/// than kept for the life of the connection.
const KEEP_CAPACITY: usize = 1024 * 1024;
/// The most a connection reads from its socket at once (and so reserves ahead of the bytes).
const READ_CHUNK: usize = 64 * 1024;

/// What a client past the connection limit is told (in an `RpbErrorResp`) before it is closed.
const TOO_MANY_CONNECTIONS: &str = "too many connections: try again later";

/// Settings of the PB listener.
#[derive(Clone, Debug)]
pub struct PbConfig {
    /// Largest frame accepted (code byte + body); larger ones are refused unread.
    pub max_frame: usize,
    /// The node's client limits, shared with the HTTP listener.
    pub clients: Arc<ClientLimits>,
}

impl Default for PbConfig {
    fn default() -> Self {
        PbConfig {
            max_frame: super::frame::DEFAULT_MAX_FRAME_LEN as usize,
            clients: Arc::default(),
        }
    }
}

/// Serves PB connections on `listener` until `shutdown` resolves.
pub async fn serve(
    mut listener: Box<dyn Listener>,
    node: Node,
    config: PbConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let mut refusal = BytesMut::new();
    error_frame(TOO_MANY_CONNECTIONS, &mut refusal);
    let refusal = refusal.freeze();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            (stream, peer, slot) = config.clients.pb.accept(&mut *listener, &refusal) => {
                let node = node.clone();
                let config = config.clone();
                tokio::spawn(async move {
                    node.stats().pbc_connects.inc();
                    node.stats().pbc_active.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = Connection::new(stream, node.clone(), &config).run().await {
                        tracing::debug!(%peer, error = %e, "PB connection ended");
                    }
                    node.stats().pbc_active.fetch_sub(1, Ordering::Relaxed);
                    drop(slot);
                });
            }
        }
    }
}

struct Connection {
    /// The client's socket: requests are read and answered in turn, so one stream serves both.
    stream: Box<dyn Conn>,
    codec: RiakCodec,
    /// Received bytes not yet served, charged to the request memory budget.
    inbuf: BudgetedBuf,
    /// When the frame under way began to arrive (none while idle).
    frame_started: Option<Instant>,
    out: BytesMut,
    node: Node,
    client_id: Bytes,
    max_frame: usize,
    clients: Arc<ClientLimits>,
}

/// Why a connection stopped reading.
enum ReadEnd {
    /// The client closed the connection (or it failed).
    Closed(std::io::Result<()>),
    /// The frame under way did not arrive within the read timeout.
    TimedOut,
}

impl Connection {
    fn new(stream: Box<dyn Conn>, node: Node, config: &PbConfig) -> Self {
        let clients = config.clients.clone();
        // Frames the budget could never hold are refused from their header, like oversized
        // ones.
        let max = config.max_frame.min(clients.budget.capacity());
        let client_id = Bytes::copy_from_slice(&(node.random_u128() as u32).to_be_bytes());
        Connection {
            stream,
            codec: RiakCodec::with_max_frame_len(u32::try_from(max).unwrap_or(u32::MAX)),
            inbuf: BudgetedBuf::new(&clients.budget, REQUEST_FREE_BYTES),
            frame_started: None,
            out: BytesMut::with_capacity(4096),
            node,
            client_id,
            max_frame: config.max_frame,
            clients,
        }
    }

    async fn run(mut self) -> std::io::Result<()> {
        loop {
            let mut served = false;
            while let Some(frame) = self
                .codec
                .decode(self.inbuf.bytes_mut())
                .map_err(std::io::Error::other)?
            {
                served = true;
                self.serve(frame).await?;
                // Replies to pipelined requests go out together, up to a bound.
                if self.out.len() >= FLUSH_AT {
                    self.flush().await?;
                }
            }
            // The frames served are gone: their bytes go back to the budget.
            self.inbuf.settle();
            self.flush().await?;
            self.frame_started = if self.inbuf.is_empty() && !self.codec.is_discarding() {
                None
            } else if served {
                Some(Instant::now())
            } else {
                self.frame_started.or_else(|| Some(Instant::now()))
            };
            match self.read_more().await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(ReadEnd::Closed(result)) => return result,
                Err(ReadEnd::TimedOut) => {
                    self.clients.timed_out();
                    let secs = self.clients.read_timeout.as_secs_f64();
                    error_frame(
                        &format!("request not received within {secs} s: closing the connection"),
                        &mut self.out,
                    );
                    return self.flush().await;
                }
            }
        }
    }

    /// Reads what the client sent next into the budgeted buffer, at most what the frame under
    /// way still needs (and one read's worth). Waits for budget first when the buffer must
    /// grow; all of that within the frame's deadline, if one has begun.
    async fn read_more(&mut self) -> Result<usize, ReadEnd> {
        let wanted = self.codec.wanted(self.inbuf.bytes_mut());
        let len = self.inbuf.len();
        let (additional, upto) = if self.codec.is_discarding() {
            // Discarded bytes pass through the free part of the buffer only.
            let room = self.inbuf.free().saturating_sub(len).max(1);
            (wanted.clamp(1, room), len + room)
        } else {
            (wanted.clamp(1, READ_CHUNK), len + wanted.max(1))
        };
        let read = async {
            match self.inbuf.reserve(additional, upto).await {
                Ok(()) => self.stream.read_buf(self.inbuf.bytes_mut()).await,
                // The codec refuses frames larger than the budget from their header.
                Err(e @ BudgetError::TooLarge { .. }) => Err(std::io::Error::other(e)),
            }
        };
        let result = match self.frame_started {
            None => read.await,
            Some(started) => {
                let deadline = tokio::time::Instant::from_std(started + self.clients.read_timeout);
                match tokio::time::timeout_at(deadline, read).await {
                    Ok(r) => r,
                    Err(_) => return Err(ReadEnd::TimedOut),
                }
            }
        };
        result.map_err(|e| ReadEnd::Closed(Err(e)))
    }

    async fn serve(&mut self, frame: InboundFrame) -> std::io::Result<()> {
        match frame {
            InboundFrame::Message { code, body } => match Request::decode(code, body) {
                Ok(req) => self.handle(req).await?,
                Err(e) => error_frame(&e.to_string(), &mut self.out),
            },
            InboundFrame::TooLarge { len } if len as usize > self.max_frame => error_frame(
                &format!(
                    "message of {len} bytes exceeds the limit of {} bytes",
                    self.max_frame
                ),
                &mut self.out,
            ),
            InboundFrame::TooLarge { len } => error_frame(
                &self.clients.budget.refuse(len as usize).to_string(),
                &mut self.out,
            ),
            InboundFrame::Empty => error_frame("empty frame: no message code", &mut self.out),
        }
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
            if self.out.capacity() > KEEP_CAPACITY {
                self.out = BytesMut::with_capacity(4096);
            }
        }
        Ok(())
    }

    async fn handle(&mut self, req: Request) -> std::io::Result<()> {
        let result = match req {
            Request::Ping => {
                encode_empty(MessageCode::PingResp, &mut self.out);
                Ok(())
            }
            Request::GetClientId => {
                let msg = RpbGetClientIdResp {
                    client_id: self.client_id.clone(),
                };
                self.respond(MessageCode::GetClientIdResp, &msg)
            }
            Request::SetClientId(m) => {
                self.client_id = m.client_id;
                encode_empty(MessageCode::SetClientIdResp, &mut self.out);
                Ok(())
            }
            Request::GetServerInfo => {
                let msg = RpbGetServerInfoResp {
                    node: Some(Bytes::from(self.node.name().to_string())),
                    server_version: Some(Bytes::from_static(RIAK_API_VERSION.as_bytes())),
                };
                self.respond(MessageCode::GetServerInfoResp, &msg)
            }
            Request::Get(m) => self.get(m).await,
            Request::Put(m) => self.put(m).await,
            Request::Del(m) => self.del(m).await,
            Request::ListKeys(m) => return self.list_keys(m).await,
            Request::ListBuckets(m) => return self.list_buckets(m).await,
            Request::GetBucket(m) => self.get_bucket(bucket(m.r#type, m.bucket)),
            Request::SetBucket(m) => {
                let props = m.props;
                bucket(m.r#type, m.bucket).and_then(|b| {
                    self.node
                        .metadata()
                        .set_bucket_props(&b, &props_patch(&props))?;
                    encode_empty(MessageCode::SetBucketResp, &mut self.out);
                    Ok(())
                })
            }
            Request::ResetBucket(m) => bucket(m.r#type, m.bucket).and_then(|b| {
                self.node.metadata().reset_bucket_props(&b)?;
                encode_empty(MessageCode::ResetBucketResp, &mut self.out);
                Ok(())
            }),
            Request::GetBucketType(m) => self.get_bucket_type(&m.r#type),
            Request::SetBucketType(m) => {
                let props = m.props;
                type_name(&m.r#type).and_then(|t| {
                    self.node.metadata().update_type(t, &props_patch(&props))?;
                    encode_empty(MessageCode::SetBucketResp, &mut self.out);
                    Ok(())
                })
            }
            Request::GetBucketKeyPreflist(m) => self.preflist(m),
            Request::DtFetch(m) => self.dt_fetch(m).await,
            Request::DtUpdate(m) => self.dt_update(m).await,
            Request::CounterUpdate(m) => self.counter_update(m).await,
            Request::CounterGet(m) => self.counter_get(m).await,
            other => Err(NodeError::BadRequest(format!(
                "{} is not supported by this version of Rill",
                other.code()
            ))),
        };
        if let Err(e) = result {
            self.node.stats().errors.inc();
            error_frame(&e.to_string(), &mut self.out);
        }
        Ok(())
    }

    fn respond(&mut self, code: MessageCode, msg: &impl prost::Message) -> Result<(), NodeError> {
        encode_response(code, msg, &mut self.out).map_err(|e| NodeError::BadRequest(e.to_string()))
    }

    async fn get(&mut self, m: RpbGetReq) -> Result<(), NodeError> {
        let bkey = bkey(m.r#type, m.bucket, m.key)?;
        let opts = GetOptions {
            r: quorum(m.r),
            pr: quorum(m.pr),
            basic_quorum: m.basic_quorum,
            notfound_ok: m.notfound_ok,
            n_val: m.n_val,
            head: m.head.unwrap_or(false),
            deleted_vclock: m.deletedvclock.unwrap_or(false),
            if_modified: m.if_modified.as_deref().map(vclock).transpose()?,
            timeout: timeout(m.timeout),
        };
        let resp = match self.node.get(&bkey, &opts).await? {
            GetResponse::Found(obj) => RpbGetResp {
                content: contents_to_pb(&obj, false),
                vclock: Some(obj.vclock.to_bytes()),
                unchanged: None,
            },
            GetResponse::NotFound { tombstone } => RpbGetResp {
                content: Vec::new(),
                vclock: tombstone.map(|v| v.to_bytes()),
                unchanged: None,
            },
            GetResponse::Unchanged => RpbGetResp {
                content: Vec::new(),
                vclock: None,
                unchanged: Some(true),
            },
        };
        self.respond(MessageCode::GetResp, &resp)
    }

    async fn put(&mut self, m: RpbPutReq) -> Result<(), NodeError> {
        // Only an absent key asks for a generated one; an empty key is refused below, as
        // Riak does.
        let generated = m.key.is_none();
        let key = m.key.unwrap_or_else(|| self.node.generate_key());
        let bkey = bkey(m.r#type, m.bucket, key)?;
        let content = m.content;
        let opts = PutOptions {
            w: quorum(m.w),
            dw: quorum(m.dw),
            pw: quorum(m.pw),
            n_val: m.n_val,
            return_body: m.return_body.unwrap_or(false),
            return_head: m.return_head.unwrap_or(false),
            if_not_modified: m.if_not_modified.unwrap_or(false),
            if_none_match: m.if_none_match.unwrap_or(false),
            asis: m.asis.unwrap_or(false),
            timeout: timeout(m.timeout),
        };
        let req = PutRequest {
            bkey: bkey.clone(),
            context: m
                .vclock
                .as_deref()
                .map(vclock)
                .transpose()?
                .unwrap_or_default(),
            content: content_from_pb(content, self.node.generate_vtag(), self.node.now_us())
                .map_err(NodeError::BadRequest)?,
        };
        // Riak blanks the values whenever return_head is set, even alongside return_body.
        let head = opts.return_head;
        let stored = self.node.put(req, &opts).await?.object;
        let resp = RpbPutResp {
            content: stored
                .as_ref()
                .map(|o| contents_to_pb(o, head))
                .unwrap_or_default(),
            vclock: stored.as_ref().map(|o| o.vclock.to_bytes()),
            key: generated.then(|| bkey.key.clone()),
        };
        self.respond(MessageCode::PutResp, &resp)
    }

    async fn dt_fetch(&mut self, m: DtFetchReq) -> Result<(), NodeError> {
        let bkey = bkey(Some(m.r#type), m.bucket, m.key)?;
        let opts = DtFetchOptions {
            r: quorum(m.r),
            pr: quorum(m.pr),
            basic_quorum: m.basic_quorum,
            notfound_ok: m.notfound_ok,
            n_val: m.n_val,
            timeout: timeout(m.timeout),
        };
        let include_context = m.include_context.unwrap_or(true);
        let (dt, state) = self.node.dt_fetch(&bkey, &opts).await?;
        let resp = DtFetchResp {
            context: state
                .as_ref()
                .and_then(|s| datatype::context_to_pb(s, include_context)),
            r#type: datatype::data_type(dt) as i32,
            value: state.as_ref().map(datatype::value_to_pb),
        };
        self.respond(MessageCode::DtFetchResp, &resp)
    }

    async fn dt_update(&mut self, m: DtUpdateReq) -> Result<(), NodeError> {
        let generated = m.key.is_none();
        let key = m.key.unwrap_or_else(|| self.node.generate_key());
        let req = DtUpdateRequest {
            bkey: bkey(Some(m.r#type), m.bucket, key)?,
            op: datatype::op_from_pb(m.op)?,
            context: datatype::context_from_pb(m.context)?,
        };
        let opts = DtUpdateOptions {
            w: quorum(m.w),
            dw: quorum(m.dw),
            pw: quorum(m.pw),
            n_val: m.n_val,
            return_body: m.return_body.unwrap_or(false),
            timeout: timeout(m.timeout),
        };
        let state = self.node.dt_update(&req, &opts).await?;
        let resp = datatype::update_resp(
            generated.then(|| req.bkey.key.clone()),
            state.as_ref(),
            m.include_context.unwrap_or(true),
        );
        self.respond(MessageCode::DtUpdateResp, &resp)
    }

    /// Riak 1.4 counters (default-type `allow_mult` buckets).
    async fn counter_update(&mut self, m: RpbCounterUpdateReq) -> Result<(), NodeError> {
        let bkey = bkey(None, m.bucket, m.key)?;
        let opts = DtUpdateOptions {
            w: quorum(m.w),
            dw: quorum(m.dw),
            pw: quorum(m.pw),
            return_body: m.returnvalue.unwrap_or(false),
            ..DtUpdateOptions::default()
        };
        let value = self.node.counter_update(&bkey, m.amount, &opts).await?;
        self.respond(
            MessageCode::CounterUpdateResp,
            &RpbCounterUpdateResp { value },
        )
    }

    async fn counter_get(&mut self, m: RpbCounterGetReq) -> Result<(), NodeError> {
        let bkey = bkey(None, m.bucket, m.key)?;
        let opts = DtFetchOptions {
            r: quorum(m.r),
            pr: quorum(m.pr),
            basic_quorum: m.basic_quorum,
            notfound_ok: m.notfound_ok,
            ..DtFetchOptions::default()
        };
        let value = self.node.counter_fetch(&bkey, &opts).await?;
        self.respond(MessageCode::CounterGetResp, &RpbCounterGetResp { value })
    }

    async fn del(&mut self, m: RpbDelReq) -> Result<(), NodeError> {
        let bkey = bkey(m.r#type, m.bucket, m.key)?;
        let opts = DeleteOptions {
            rw: quorum(m.rw),
            r: quorum(m.r),
            w: quorum(m.w),
            pr: quorum(m.pr),
            pw: quorum(m.pw),
            dw: quorum(m.dw),
            n_val: m.n_val,
            vclock: m.vclock.as_deref().map(vclock).transpose()?,
            timeout: timeout(m.timeout),
        };
        // Deleting what is not there succeeds, as in Riak.
        self.node.delete(&bkey, &opts).await?;
        encode_empty(MessageCode::DelResp, &mut self.out);
        Ok(())
    }

    /// Streams `RpbListKeysResp` chunks, then one with `done`.
    async fn list_keys(&mut self, m: RpbListKeysReq) -> std::io::Result<()> {
        let deadline = timeout(m.timeout).map(|t| tokio::time::Instant::now() + t);
        let rx = match bucket(m.r#type, m.bucket).and_then(|b| self.node.list_keys(&b)) {
            Ok(rx) => rx,
            Err(e) => {
                error_frame(&e.to_string(), &mut self.out);
                return Ok(());
            }
        };
        self.stream_chunks(
            rx,
            deadline,
            |keys| RpbListKeysResp { keys, done: None },
            MessageCode::ListKeysResp,
            || RpbListKeysResp {
                keys: Vec::new(),
                done: Some(true),
            },
        )
        .await
    }

    /// `RpbListBucketsResp`: streamed chunks with a final `done` when asked, else one message.
    async fn list_buckets(&mut self, m: RpbListBucketsReq) -> std::io::Result<()> {
        let btype = m
            .r#type
            .unwrap_or_else(|| Bytes::from_static(DEFAULT_TYPE.as_bytes()));
        let rx = match type_name(&btype).and_then(|t| self.node.list_buckets(t)) {
            Ok(rx) => rx,
            Err(e) => {
                error_frame(&e.to_string(), &mut self.out);
                return Ok(());
            }
        };
        if m.stream.unwrap_or(false) {
            return self
                .stream_chunks(
                    rx,
                    None,
                    |buckets| RpbListBucketsResp {
                        buckets,
                        done: None,
                    },
                    MessageCode::ListBucketsResp,
                    || RpbListBucketsResp {
                        buckets: Vec::new(),
                        done: Some(true),
                    },
                )
                .await;
        }
        let mut all = Vec::new();
        let mut rx = rx;
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Ok(c) => all.extend(c),
                Err(e) => {
                    error_frame(&e.to_string(), &mut self.out);
                    return Ok(());
                }
            }
        }
        let msg = RpbListBucketsResp {
            buckets: all,
            done: None,
        };
        if let Err(e) = encode_response(MessageCode::ListBucketsResp, &msg, &mut self.out) {
            error_frame(&e.to_string(), &mut self.out);
        }
        Ok(())
    }

    /// Writes each chunk as its own frame as it arrives, then the closing frame. A write
    /// failure (the client left) or the request's `deadline` passing ends the stream (the
    /// latter with Riak's `timeout` error) and drops the channel, stopping the scan.
    async fn stream_chunks<M: prost::Message>(
        &mut self,
        mut rx: rill_node::coord::KeyChunks,
        deadline: Option<tokio::time::Instant>,
        chunk: impl Fn(Vec<Bytes>) -> M,
        code: MessageCode,
        done: impl Fn() -> M,
    ) -> std::io::Result<()> {
        loop {
            let next = match deadline {
                None => rx.recv().await,
                Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        error_frame(&NodeError::Timeout.to_string(), &mut self.out);
                        return Ok(());
                    }
                },
            };
            let Some(item) = next else { break };
            match item {
                Ok(names) => {
                    encode_response(code, &chunk(names), &mut self.out)
                        .map_err(std::io::Error::other)?;
                    self.flush().await?;
                }
                Err(e) => {
                    error_frame(&e.to_string(), &mut self.out);
                    return Ok(());
                }
            }
        }
        encode_response(code, &done(), &mut self.out).map_err(std::io::Error::other)?;
        Ok(())
    }

    fn get_bucket(&mut self, b: Result<Bucket, NodeError>) -> Result<(), NodeError> {
        let props = self.node.metadata().bucket_props(&b?)?;
        let msg = RpbGetBucketResp {
            props: props_to_pb(&props),
        };
        self.respond(MessageCode::GetBucketResp, &msg)
    }

    fn get_bucket_type(&mut self, btype: &Bytes) -> Result<(), NodeError> {
        let (props, _) = self.node.metadata().type_props(type_name(btype)?)?;
        let msg = RpbGetBucketResp {
            props: props_to_pb(&props),
        };
        self.respond(MessageCode::GetBucketResp, &msg)
    }

    fn preflist(&mut self, m: RpbGetBucketKeyPreflistReq) -> Result<(), NodeError> {
        let bkey = bkey(m.r#type, m.bucket, m.key)?;
        let props = self.node.metadata().bucket_props(&bkey.bucket)?;
        let list = self.node.preflist(&bkey, props.n_val);
        let msg = RpbGetBucketKeyPreflistResp {
            preflist: list.iter().map(preflist_item).collect(),
        };
        self.respond(MessageCode::GetBucketKeyPreflistResp, &msg)
    }
}

/// Appends an `RpbErrorResp`. Riak sends errcode 0 for request errors.
fn error_frame(msg: &str, out: &mut BytesMut) {
    // Only a message over 4 GiB could fail to frame; ours are a line of text.
    let _ = encode_error(msg, 0, out);
}

/// The request's bucket: an absent type is the `default` type; an empty one is refused, as
/// Riak does, rather than quietly meaning `default`.
fn bucket(btype: Option<Bytes>, name: Bytes) -> Result<Bucket, NodeError> {
    if btype.as_ref().is_some_and(|t| t.is_empty()) {
        return Err(NodeError::BadRequest("Type cannot be zero-length".into()));
    }
    let btype = btype.unwrap_or_else(|| Bytes::from_static(DEFAULT_TYPE.as_bytes()));
    Bucket::new(btype, name).map_err(|e| NodeError::BadRequest(e.to_string()))
}

fn bkey(btype: Option<Bytes>, name: Bytes, key: Bytes) -> Result<BKey, NodeError> {
    BKey::new(bucket(btype, name)?, key).map_err(|e| NodeError::BadRequest(e.to_string()))
}

fn type_name(t: &Bytes) -> Result<&str, NodeError> {
    std::str::from_utf8(t).map_err(|_| NodeError::BadRequest("bucket type must be UTF-8".into()))
}

/// A client's vclock field. Zero bytes is a fresh clock, as in Riak (clients send an empty
/// vclock for an object they never read); anything else must be a clock we handed out.
fn vclock(raw: &[u8]) -> Result<VClock, NodeError> {
    if raw.is_empty() {
        return Ok(VClock::default());
    }
    VClock::from_bytes(raw).map_err(|e| NodeError::BadRequest(format!("invalid vclock: {e}")))
}

fn timeout(ms: Option<u32>) -> Option<std::time::Duration> {
    ms.map(|ms| std::time::Duration::from_millis(ms as u64))
}
