//! Criterion benchmarks of the PB wire path: decoding a framed request and encoding a response,
//! the work every PB request does before and after the node.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, criterion_group, criterion_main};
use rill_api::pb::riak::{RpbContent, RpbGetResp, RpbPutReq};
use rill_api::pb::{MessageCode, Request, RiakCodec, encode_response};
use tokio_util::codec::Decoder;

fn put_request() -> Request {
    Request::Put(RpbPutReq {
        bucket: Bytes::from_static(b"bench"),
        key: Some(Bytes::from_static(b"key-00042")),
        content: RpbContent {
            value: Bytes::from(vec![b'x'; 100]),
            content_type: Some(Bytes::from_static(b"application/octet-stream")),
            ..Default::default()
        },
        ..Default::default()
    })
}

fn framing(c: &mut Criterion) {
    let mut wire = BytesMut::new();
    put_request().encode(&mut wire).expect("encodes");
    let wire = wire.freeze();
    c.bench_function("pb/decode_put_frame", |b| {
        let mut codec = RiakCodec::new();
        b.iter(|| {
            let mut buf = BytesMut::from(&wire[..]);
            match codec.decode(&mut buf).expect("decodes") {
                Some(rill_api::pb::InboundFrame::Message { code, body }) => {
                    Request::decode(code, body).expect("valid request")
                }
                other => panic!("unexpected {other:?}"),
            }
        })
    });
    let resp = RpbGetResp {
        content: vec![RpbContent {
            value: Bytes::from(vec![b'x'; 100]),
            content_type: Some(Bytes::from_static(b"application/octet-stream")),
            vtag: Some(Bytes::from_static(b"4bVjvq3Uu6JNJf1MGZdI1b")),
            last_mod: Some(1_700_000_000),
            last_mod_usecs: Some(123_456),
            ..Default::default()
        }],
        vclock: Some(Bytes::from(vec![7u8; 40])),
        unchanged: None,
    };
    c.bench_function("pb/encode_get_response", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            encode_response(MessageCode::GetResp, black_box(&resp), &mut out).expect("encodes");
        })
    });
}

criterion_group!(benches, framing);
criterion_main!(benches);
