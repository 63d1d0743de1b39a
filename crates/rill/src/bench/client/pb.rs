//! A minimal Riak Protocol Buffers client: one request in flight on one TCP connection.
//!
//! It reuses the server's framing ([`RiakCodec`]) and request encoding ([`Request::encode`]), so
//! the bytes on the wire are exactly what any Riak PB client sends: `RpbGetReq`, `RpbPutReq`
//! (with the fetched vclock for read-modify-write), `RpbDelReq` and `RpbSetBucketReq`.

use bytes::{Bytes, BytesMut};
use prost::Message;
use rill_api::pb::riak::{
    RpbBucketProps, RpbContent, RpbDelReq, RpbErrorResp, RpbGetReq, RpbGetResp, RpbPutReq,
    RpbSetBucketReq,
};
use rill_api::pb::{InboundFrame, MessageCode, Request, RiakCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use super::{ClientError, Fetched, Namespace};
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
}
