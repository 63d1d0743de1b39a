//! The Protocol Buffers server (port 8087): one task per connection, requests answered in order.
//!
//! A connection reads frames with [`RiakCodec`], decodes each into a [`Request`], calls the node
//! and writes the response frame(s). Nothing a client sends can end the connection except
//! closing it: an unknown code, an undecodable body or an oversized frame is answered with
//! `RpbErrorResp` and the next frame is served. Streamed answers (key and bucket listings) are
//! written chunk by chunk; a client that disconnects mid-stream drops the listing's channel,
//! which stops the scan behind it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use rill_core::bkey::{BKey, Bucket, DEFAULT_TYPE};
use rill_core::vclock::VClock;
use rill_node::request::{
    DeleteOptions, DtFetchOptions, DtUpdateOptions, DtUpdateRequest, GetOptions, GetResponse,
    PutOptions, PutRequest, generate_key, generate_vtag,
};
use rill_node::{Node, NodeError};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;

use super::codes::MessageCode;
use super::convert::{
    content_from_pb, contents_to_pb, preflist_item, props_patch, props_to_pb, quorum,
};
use super::datatype;
use super::frame::{InboundFrame, RiakCodec};
use super::messages::{Request, encode_empty, encode_error, encode_response};
use super::riak::*;
use crate::RIAK_API_VERSION;

/// Replies buffered beyond this many bytes are written even while further requests wait, so a
/// client pipelining many reads of large objects never makes the server hold every reply.
const FLUSH_AT: usize = 256 * 1024;
/// An output buffer grown beyond this (by one huge reply) is released once written, rather
/// than kept for the life of the connection.
const KEEP_CAPACITY: usize = 1024 * 1024;

/// Settings of the PB listener.
#[derive(Clone, Debug)]
pub struct PbConfig {
    /// Largest frame accepted (code byte + body); larger ones are refused unread.
    pub max_frame: usize,
}

impl Default for PbConfig {
    fn default() -> Self {
        PbConfig {
            max_frame: super::frame::DEFAULT_MAX_FRAME_LEN as usize,
        }
    }
}

/// Serves PB connections on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    node: Node,
    config: PbConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: wait a moment rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let node = node.clone();
                let config = config.clone();
                tokio::spawn(async move {
                    node.stats().pbc_connects.inc();
                    node.stats().pbc_active.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = Connection::new(stream, node.clone(), &config).run().await {
                        tracing::debug!(%peer, error = %e, "PB connection ended");
                    }
                    node.stats().pbc_active.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
    }
}

struct Connection {
    reader: FramedRead<tokio::net::tcp::OwnedReadHalf, RiakCodec>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    out: BytesMut,
    node: Node,
    client_id: Bytes,
}

impl Connection {
    fn new(stream: TcpStream, node: Node, config: &PbConfig) -> Self {
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        let max = u32::try_from(config.max_frame).unwrap_or(u32::MAX);
        Connection {
            reader: FramedRead::new(r, RiakCodec::with_max_frame_len(max)),
            writer: w,
            out: BytesMut::with_capacity(4096),
            node,
            client_id: Bytes::copy_from_slice(&rand::random::<[u8; 4]>()),
        }
    }

    async fn run(mut self) -> std::io::Result<()> {
        while let Some(frame) = self.reader.next().await {
            let frame = frame.map_err(std::io::Error::other)?;
            match frame {
                InboundFrame::Message { code, body } => match Request::decode(code, body) {
                    Ok(req) => self.handle(req).await?,
                    Err(e) => error_frame(&e.to_string(), &mut self.out),
                },
                InboundFrame::TooLarge { len } => {
                    let max = self.reader.decoder().max_frame_len();
                    error_frame(
                        &format!("message of {len} bytes exceeds the limit of {max} bytes"),
                        &mut self.out,
                    )
                }
                InboundFrame::Empty => error_frame("empty frame: no message code", &mut self.out),
            }
            // Answer now unless the client already sent more (pipelining): then the replies
            // go out together in one write, up to a bound.
            if self.reader.read_buffer().is_empty() || self.out.len() >= FLUSH_AT {
                self.flush().await?;
            }
        }
        self.flush().await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.writer.write_all(&self.out).await?;
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
        let key = m.key.unwrap_or_else(generate_key);
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
            content: content_from_pb(content, generate_vtag(), self.node.now_us())
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
        let key = m.key.unwrap_or_else(generate_key);
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
