//! A minimal Riak Protocol Buffers client: one request in flight on one TCP connection.
//!
//! It reuses the server's framing ([`RiakCodec`]) and request encoding ([`Request::encode`]), so
//! the bytes on the wire are exactly what any Riak PB client sends: `RpbGetReq`, `RpbPutReq`
//! (with the fetched vclock for read-modify-write), `RpbDelReq`, `DtUpdateReq` (never with
//! `return_body`), `DtFetchReq`, `RpbSetBucketReq` and `RpbGetBucketTypeReq`.

use bytes::{Bytes, BytesMut};
use prost::Message;
use rill_api::pb::riak::{
    CounterOp, DtFetchReq, DtFetchResp, DtOp, DtUpdateReq, MapField, MapOp, MapUpdate,
    RpbBucketProps, RpbContent, RpbDelReq, RpbErrorResp, RpbGetBucketResp, RpbGetBucketTypeReq,
    RpbGetReq, RpbGetResp, RpbPutReq, RpbSetBucketReq, SetOp, map_field::MapFieldType,
};
use rill_api::pb::{InboundFrame, MessageCode, Request, RiakCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use super::{ClientError, DtFetched, DtUpdate, Fetched, MAP_COUNTER, MAP_REGISTER, Namespace};
use crate::bench::options::PropsSetup;

/// Content type the benchmark's values are stored under.
const CONTENT_TYPE: &[u8] = b"application/octet-stream";

/// An open PB connection.
pub struct PbConn {
    stream: TcpStream,
    codec: RiakCodec,
    read: BytesMut,
    write: BytesMut,
}

impl PbConn {
    /// Connects to `target`.
    pub async fn connect(target: &str) -> Result<PbConn, ClientError> {
        let stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        Ok(PbConn {
            stream,
            codec: RiakCodec::new(),
            read: BytesMut::with_capacity(8 * 1024),
            write: BytesMut::with_capacity(8 * 1024),
        })
    }

    /// Sends `req` and returns the body of the response, which must carry `expect`.
    async fn call(&mut self, req: &Request, expect: MessageCode) -> Result<Bytes, ClientError> {
        self.write.clear();
        req.encode(&mut self.write)
            .map_err(|e| ClientError::Server(format!("cannot encode request: {e}")))?;
        self.stream.write_all(&self.write).await?;
        loop {
            let frame = self
                .codec
                .decode(&mut self.read)
                .map_err(|e| ClientError::Connection(e.to_string()))?;
            match frame {
                Some(frame) => return answer(frame, expect),
                None => {
                    if self.stream.read_buf(&mut self.read).await? == 0 {
                        return Err(ClientError::Connection(
                            "server closed the connection".into(),
                        ));
                    }
                }
            }
        }
    }

    pub async fn get(&mut self, ns: &Namespace, key: &Bytes) -> Result<Fetched, ClientError> {
        let req = Request::Get(RpbGetReq {
            bucket: ns.bucket.clone(),
            key: key.clone(),
            r#type: ns.bucket_type.clone(),
            ..Default::default()
        });
        let body = self.call(&req, MessageCode::GetResp).await?;
        let resp = RpbGetResp::decode(body)
            .map_err(|e| ClientError::Connection(format!("bad RpbGetResp: {e}")))?;
        Ok(fetched(resp))
    }

    pub async fn put(
        &mut self,
        ns: &Namespace,
        key: &Bytes,
        value: Bytes,
        vclock: Option<Bytes>,
    ) -> Result<(), ClientError> {
        let req = Request::Put(RpbPutReq {
            bucket: ns.bucket.clone(),
            key: Some(key.clone()),
            vclock,
            content: RpbContent {
                value,
                content_type: Some(Bytes::from_static(CONTENT_TYPE)),
                ..Default::default()
            },
            r#type: ns.bucket_type.clone(),
            ..Default::default()
        });
        self.call(&req, MessageCode::PutResp).await.map(drop)
    }

    pub async fn delete(&mut self, ns: &Namespace, key: &Bytes) -> Result<(), ClientError> {
        let req = Request::Del(RpbDelReq {
            bucket: ns.bucket.clone(),
            key: key.clone(),
            r#type: ns.bucket_type.clone(),
            ..Default::default()
        });
        self.call(&req, MessageCode::DelResp).await.map(drop)
    }

    pub async fn dt_update(
        &mut self,
        ns: &Namespace,
        key: &Bytes,
        update: &DtUpdate,
    ) -> Result<(), ClientError> {
        let req = Request::DtUpdate(dt_update_req(ns, key, update));
        self.call(&req, MessageCode::DtUpdateResp).await.map(drop)
    }

    pub async fn dt_fetch(
        &mut self,
        ns: &Namespace,
        key: &Bytes,
    ) -> Result<DtFetched, ClientError> {
        let req = Request::DtFetch(DtFetchReq {
            bucket: ns.bucket.clone(),
            key: key.clone(),
            r#type: dt_type(ns),
            ..Default::default()
        });
        let body = self.call(&req, MessageCode::DtFetchResp).await?;
        // Decoded in full, as a client reading the value does: at 100 000 members that is part
        // of what fetching a big set costs.
        let resp = DtFetchResp::decode(body)
            .map_err(|e| ClientError::Connection(format!("bad DtFetchResp: {e}")))?;
        Ok(dt_fetched(&resp))
    }

    pub async fn type_datatype(&mut self, name: &str) -> Result<Option<String>, ClientError> {
        let req = Request::GetBucketType(RpbGetBucketTypeReq {
            r#type: Bytes::copy_from_slice(name.as_bytes()),
        });
        let body = self.call(&req, MessageCode::GetBucketResp).await?;
        let resp = RpbGetBucketResp::decode(body)
            .map_err(|e| ClientError::Connection(format!("bad RpbGetBucketResp: {e}")))?;
        Ok(resp
            .props
            .datatype
            .map(|d| String::from_utf8_lossy(&d).into_owned()))
    }

    pub async fn set_bucket_props(
        &mut self,
        ns: &Namespace,
        props: &PropsSetup,
    ) -> Result<(), ClientError> {
        let req = Request::SetBucket(RpbSetBucketReq {
            bucket: ns.bucket.clone(),
            props: RpbBucketProps {
                n_val: props.n_val,
                r: props.r,
                w: props.w,
                ..Default::default()
            },
            r#type: ns.bucket_type.clone(),
        });
        self.call(&req, MessageCode::SetBucketResp).await.map(drop)
    }
}

/// Interprets a response frame: the expected message, a server error, or a protocol breach.
fn answer(frame: InboundFrame, expect: MessageCode) -> Result<Bytes, ClientError> {
    match frame {
        InboundFrame::Message { code, body } if code == expect.as_u8() => Ok(body),
        InboundFrame::Message { code, body } if code == MessageCode::ErrorResp.as_u8() => {
            let msg = RpbErrorResp::decode(body)
                .map(|e| String::from_utf8_lossy(&e.errmsg).into_owned())
                .unwrap_or_else(|e| format!("undecodable RpbErrorResp: {e}"));
            Err(ClientError::Server(msg))
        }
        InboundFrame::Message { code, .. } => Err(ClientError::Connection(format!(
            "expected {} but got message code {code}",
            expect.name()
        ))),
        InboundFrame::TooLarge { len } => Err(ClientError::Server(format!(
            "response of {len} bytes exceeds the frame limit"
        ))),
        InboundFrame::Empty => Err(ClientError::Connection("empty response frame".into())),
    }
}

/// A GET response with no content is "not found" (a tombstone's vclock may still come back).
fn fetched(resp: RpbGetResp) -> Fetched {
    Fetched {
        found: !resp.content.is_empty(),
        vclock: resp.vclock,
    }
}

/// The bucket type of a data-type request; data types never live in the default type, so a
/// namespace without one is sent as `default` and the server's refusal says why.
fn dt_type(ns: &Namespace) -> Bytes {
    ns.bucket_type
        .clone()
        .unwrap_or_else(|| Bytes::from_static(b"default"))
}

/// The `DtUpdateReq` of an update: default quorums, and no `return_body`, so the answer is
/// the bare acknowledgement and the update's cost is all that is measured.
fn dt_update_req(ns: &Namespace, key: &Bytes, update: &DtUpdate) -> DtUpdateReq {
    DtUpdateReq {
        bucket: ns.bucket.clone(),
        key: Some(key.clone()),
        r#type: dt_type(ns),
        op: dt_op(update),
        ..Default::default()
    }
}

fn map_field(name: &str, ty: MapFieldType) -> MapField {
    MapField {
        name: Bytes::copy_from_slice(name.as_bytes()),
        r#type: ty as i32,
    }
}

/// The `DtOp` of an update.
fn dt_op(update: &DtUpdate) -> DtOp {
    match update {
        DtUpdate::Increment(n) => DtOp {
            counter_op: Some(CounterOp {
                increment: Some(*n),
            }),
            ..Default::default()
        },
        DtUpdate::AddMembers(members) => DtOp {
            set_op: Some(SetOp {
                adds: members.clone(),
                removes: Vec::new(),
            }),
            ..Default::default()
        },
        DtUpdate::Map { register } => DtOp {
            map_op: Some(MapOp {
                removes: Vec::new(),
                updates: vec![
                    MapUpdate {
                        field: map_field(MAP_COUNTER, MapFieldType::Counter),
                        counter_op: Some(CounterOp { increment: Some(1) }),
                        ..Default::default()
                    },
                    MapUpdate {
                        field: map_field(MAP_REGISTER, MapFieldType::Register),
                        register_op: Some(register.clone()),
                        ..Default::default()
                    },
                ],
            }),
            ..Default::default()
        },
    }
}

/// A fetch response without a value is "not found".
fn dt_fetched(resp: &DtFetchResp) -> DtFetched {
    match &resp.value {
        Some(v) => DtFetched {
            found: true,
            len: v.set_value.len() + v.map_value.len(),
        },
        None => DtFetched {
            found: false,
            len: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(code: MessageCode, body: &[u8]) -> InboundFrame {
        InboundFrame::Message {
            code: code.as_u8(),
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn expected_message_yields_its_body() {
        let body = answer(frame(MessageCode::PutResp, b"xyz"), MessageCode::PutResp).unwrap();
        assert_eq!(&body[..], b"xyz");
    }

    #[test]
    fn error_response_is_a_server_error_with_its_message() {
        let err = RpbErrorResp {
            errmsg: Bytes::from_static(b"{insufficient_vnodes,1,need,2}"),
            errcode: 1,
        };
        let got = answer(
            frame(MessageCode::ErrorResp, &err.encode_to_vec()),
            MessageCode::GetResp,
        );
        assert_eq!(
            got,
            Err(ClientError::Server("{insufficient_vnodes,1,need,2}".into()))
        );
    }

    #[test]
    fn unexpected_code_breaks_the_connection() {
        let got = answer(frame(MessageCode::PingResp, b""), MessageCode::GetResp);
        assert!(got.unwrap_err().is_connection());
        assert!(
            answer(InboundFrame::Empty, MessageCode::GetResp)
                .unwrap_err()
                .is_connection()
        );
    }

    #[test]
    fn empty_get_response_is_not_found() {
        assert_eq!(
            fetched(RpbGetResp::default()),
            Fetched {
                found: false,
                vclock: None
            }
        );
        let resp = RpbGetResp {
            content: vec![RpbContent::default()],
            vclock: Some(Bytes::from_static(b"vc")),
            unchanged: None,
        };
        assert_eq!(
            fetched(resp),
            Fetched {
                found: true,
                vclock: Some(Bytes::from_static(b"vc"))
            }
        );
    }

    #[test]
    fn updates_carry_their_op_and_never_ask_for_the_body() {
        let ns = Namespace {
            bucket: Bytes::from_static(b"b"),
            bucket_type: Some(Bytes::from_static(b"sets")),
        };
        let op = dt_op(&DtUpdate::AddMembers(vec![Bytes::from_static(b"m")]));
        assert_eq!(op.set_op.unwrap().adds, vec![Bytes::from_static(b"m")]);
        assert!(op.counter_op.is_none() && op.map_op.is_none());
        assert_eq!(
            dt_op(&DtUpdate::Increment(1)).counter_op,
            Some(CounterOp { increment: Some(1) })
        );
        let map = dt_op(&DtUpdate::Map {
            register: Bytes::from_static(b"v"),
        })
        .map_op
        .unwrap();
        assert_eq!(map.updates.len(), 2);
        assert_eq!(
            map.updates[0].field,
            map_field("visits", MapFieldType::Counter)
        );
        assert_eq!(
            map.updates[1].field,
            map_field("last", MapFieldType::Register)
        );
        assert_eq!(map.updates[1].register_op, Some(Bytes::from_static(b"v")));
        let req = dt_update_req(&ns, &Bytes::from_static(b"k"), &DtUpdate::Increment(1));
        assert_eq!(req.r#type, Bytes::from_static(b"sets"));
        assert_eq!(req.key, Some(Bytes::from_static(b"k")));
        // Unset is Riak's default, false: the server answers without the new value.
        assert_eq!(req.return_body, None);
        let untyped = Namespace {
            bucket_type: None,
            ..ns
        };
        assert_eq!(dt_type(&untyped), Bytes::from_static(b"default"));
    }

    #[test]
    fn fetch_without_a_value_is_not_found_and_sizes_count_members() {
        use rill_api::pb::riak::DtValue;
        assert_eq!(
            dt_fetched(&DtFetchResp::default()),
            DtFetched {
                found: false,
                len: 0
            }
        );
        let resp = DtFetchResp {
            value: Some(DtValue {
                set_value: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            dt_fetched(&resp),
            DtFetched {
                found: true,
                len: 2
            }
        );
        let counter = DtFetchResp {
            value: Some(DtValue {
                counter_value: Some(5),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            dt_fetched(&counter),
            DtFetched {
                found: true,
                len: 0
            }
        );
    }
}
