//! Typed Riak PB requests, and the response encoders the server answers with.
//!
//! A frame's code byte says which message its body holds; [`Request::decode`]
//! turns the pair into one [`Request`]. The ways that can fail are kept apart
//! in [`DecodeError`] so the server can tell the client precisely what was
//! wrong in an `RpbErrorResp` and carry on with the connection: a code Riak
//! never defined, a code Rill does not serve (time series, replication, or a
//! response sent as a request), or a body that is not valid protobuf.
//!
//! Like Riak's own decoders for most fields, prost does not insist on
//! `required` fields: an absent one decodes as its default (empty bytes,
//! zero, an all-default embedded message), which the request's handler
//! judges as it would an explicit empty value.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use super::codes::MessageCode;
use super::frame::{FrameError, encode_frame};
use super::riak::{
    DtFetchReq, DtUpdateReq, RpbAuthReq, RpbCounterGetReq, RpbCounterUpdateReq, RpbCoverageReq,
    RpbCsBucketReq, RpbDelReq, RpbErrorResp, RpbGetBucketKeyPreflistReq, RpbGetBucketReq,
    RpbGetBucketTypeReq, RpbGetReq, RpbIndexReq, RpbListBucketsReq, RpbListKeysReq, RpbMapRedReq,
    RpbPutReq, RpbResetBucketReq, RpbSearchQueryReq, RpbSetBucketReq, RpbSetBucketTypeReq,
    RpbSetClientIdReq, RpbYokozunaIndexDeleteReq, RpbYokozunaIndexGetReq, RpbYokozunaIndexPutReq,
    RpbYokozunaSchemaGetReq, RpbYokozunaSchemaPutReq,
};

/// Why a frame could not be turned into a [`Request`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The code byte names no Riak message.
    #[error("unknown message code {0}")]
    UnknownCode(u8),
    /// A Riak message that is not a request Rill serves: a response, or a
    /// request of a Riak feature Rill does not implement.
    #[error("unsupported message {0}")]
    Unsupported(MessageCode),
    /// The body is not a valid protobuf encoding of the code's message.
    #[error("invalid {code} body: {source}")]
    Body {
        /// The frame's message code.
        code: MessageCode,
        /// What prost found wrong.
        source: prost::DecodeError,
    },
}

/// Declares [`Request`] from one table, keeping its variants, their codes,
/// decoding and encoding in step. Empty requests are identified by their
/// code alone; the others carry their decoded message.
macro_rules! requests {
    (
        empty {
            $($(#[$edoc:meta])* $evariant:ident = $ecode:ident,)+
        }
        with_body {
            $($(#[$doc:meta])* $variant:ident($msg:ty) = $code:ident,)+
        }
    ) => {
        /// A request received from a Riak PB client.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $($(#[$edoc])* $evariant,)+
            $($(#[$doc])* $variant($msg),)+
        }

        impl Request {
            /// The message code this request travels under.
            pub fn code(&self) -> MessageCode {
                match self {
                    $(Request::$evariant => MessageCode::$ecode,)+
                    $(Request::$variant(_) => MessageCode::$code,)+
                }
            }

            /// Appends this request as one frame to `dst` (the client side).
            pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
                match self {
                    $(Request::$evariant => {
                        encode_empty(MessageCode::$ecode, dst);
                        Ok(())
                    })+
                    $(Request::$variant(msg) => encode_frame(MessageCode::$code, msg, dst),)+
                }
            }

            /// Decodes `body` as the request `code` names.
            fn decode_body(code: MessageCode, body: Bytes) -> Result<Request, DecodeError> {
                match code {
                    $(MessageCode::$ecode => Ok(Request::$evariant),)+
                    $(MessageCode::$code => <$msg>::decode(body)
                        .map(Request::$variant)
                        .map_err(|source| DecodeError::Body { code, source }),)+
                    _ => Err(DecodeError::Unsupported(code)),
                }
            }
        }
    };
}

requests! {
    empty {
        /// `RpbPingReq`: answered with `RpbPingResp`.
        Ping = PingReq,
        /// `RpbGetClientIdReq`: answered with `RpbGetClientIdResp`.
        GetClientId = GetClientIdReq,
        /// `RpbGetServerInfoReq`: answered with `RpbGetServerInfoResp`.
        GetServerInfo = GetServerInfoReq,
        /// `RpbStartTls`: the client wants to switch the connection to TLS.
        StartTls = StartTls,
    }
    with_body {
        /// Answered with an empty `RpbSetClientIdResp`.
        SetClientId(RpbSetClientIdReq) = SetClientIdReq,
        /// Answered with `RpbGetResp`.
        Get(RpbGetReq) = GetReq,
        /// Answered with `RpbPutResp`.
        Put(RpbPutReq) = PutReq,
        /// Answered with an empty `RpbDelResp`.
        Del(RpbDelReq) = DelReq,
        /// Answered with one or more (if streaming) `RpbListBucketsResp`.
        ListBuckets(RpbListBucketsReq) = ListBucketsReq,
        /// Answered with a stream of `RpbListKeysResp`, the last one `done`.
        ListKeys(RpbListKeysReq) = ListKeysReq,
        /// Answered with `RpbGetBucketResp`.
        GetBucket(RpbGetBucketReq) = GetBucketReq,
        /// Answered with an empty `RpbSetBucketResp`.
        SetBucket(RpbSetBucketReq) = SetBucketReq,
        /// Answered with an empty `RpbResetBucketResp`.
        ResetBucket(RpbResetBucketReq) = ResetBucketReq,
        /// Answered with `RpbGetBucketResp`.
        GetBucketType(RpbGetBucketTypeReq) = GetBucketTypeReq,
        /// Answered with an empty `RpbSetBucketResp`.
        SetBucketType(RpbSetBucketTypeReq) = SetBucketTypeReq,
        /// Answered with `RpbGetBucketKeyPreflistResp`.
        GetBucketKeyPreflist(RpbGetBucketKeyPreflistReq) = GetBucketKeyPreflistReq,
        /// Answered with a stream of `RpbMapRedResp`, the last one `done`.
        MapRed(RpbMapRedReq) = MapRedReq,
        /// Answered with `RpbIndexResp` (or `RpbIndexBodyResp` with
        /// return_body), streamed if asked.
        Index(RpbIndexReq) = IndexReq,
        /// Answered with `RpbSearchQueryResp`.
        SearchQuery(RpbSearchQueryReq) = SearchQueryReq,
        /// Answered with a stream of `RpbCSBucketResp`.
        CsBucket(RpbCsBucketReq) = CsBucketReq,
        /// Legacy counter increment; answered with `RpbCounterUpdateResp`.
        CounterUpdate(RpbCounterUpdateReq) = CounterUpdateReq,
        /// Legacy counter read; answered with `RpbCounterGetResp`.
        CounterGet(RpbCounterGetReq) = CounterGetReq,
        /// Answered with `RpbYokozunaIndexGetResp`.
        YokozunaIndexGet(RpbYokozunaIndexGetReq) = YokozunaIndexGetReq,
        /// Answered with an empty `RpbPutResp`.
        YokozunaIndexPut(RpbYokozunaIndexPutReq) = YokozunaIndexPutReq,
        /// Answered with an empty `RpbDelResp`.
        YokozunaIndexDelete(RpbYokozunaIndexDeleteReq) = YokozunaIndexDeleteReq,
        /// Answered with `RpbYokozunaSchemaGetResp`.
        YokozunaSchemaGet(RpbYokozunaSchemaGetReq) = YokozunaSchemaGetReq,
        /// Answered with an empty `RpbPutResp`.
        YokozunaSchemaPut(RpbYokozunaSchemaPutReq) = YokozunaSchemaPutReq,
        /// Answered with `RpbCoverageResp`.
        Coverage(RpbCoverageReq) = CoverageReq,
        /// Answered with `DtFetchResp`.
        DtFetch(DtFetchReq) = DtFetchReq,
        /// Answered with `DtUpdateResp`.
        DtUpdate(DtUpdateReq) = DtUpdateReq,
        /// Answered with an empty `RpbAuthResp`.
        Auth(RpbAuthReq) = AuthReq,
    }
}

impl Request {
    /// Decodes the body of a frame with message code `code`.
    ///
    /// Empty requests (ping, ...) ignore their body. The body's buckets,
    /// keys and values are slices of `body`, not copies.
    pub fn decode(code: u8, body: Bytes) -> Result<Request, DecodeError> {
        let code = MessageCode::from_u8(code).ok_or(DecodeError::UnknownCode(code))?;
        Request::decode_body(code, body)
    }
}

/// Appends a response frame carrying `msg` under `code` to `dst`.
///
/// The message is encoded directly into `dst`; this is the path every
/// response takes.
pub fn encode_response(
    code: MessageCode,
    msg: &impl Message,
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    encode_frame(code, msg, dst)
}

/// Appends a frame with no body (`RpbPingResp`, `RpbDelResp`,
/// `RpbSetBucketResp`, ...) to `dst`.
pub fn encode_empty(code: MessageCode, dst: &mut BytesMut) {
    dst.reserve(5);
    dst.put_u32(1);
    dst.put_u8(code.as_u8());
}

/// Appends an `RpbErrorResp` with message `errmsg` and code `errcode` to
/// `dst`. Riak clients show `errmsg` to the user as the failure's reason.
pub fn encode_error(
    errmsg: impl AsRef<[u8]>,
    errcode: u32,
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    let resp = RpbErrorResp {
        errmsg: Bytes::copy_from_slice(errmsg.as_ref()),
        errcode,
    };
    encode_frame(MessageCode::ErrorResp, &resp, dst)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bytes::Bytes;
    use proptest::prelude::*;
    use tokio_util::codec::Decoder;

    use super::*;
    use crate::pb::frame::{InboundFrame, RiakCodec};
    use crate::pb::riak::{
        CounterOp, DtOp, GSetOp, HllOp, MapField, MapOp, MapUpdate, RpbBucketProps, RpbCommitHook,
        RpbContent, RpbLink, RpbModFun, RpbPair, RpbYokozunaIndex, RpbYokozunaSchema, SetOp,
        map_field::MapFieldType, map_update::FlagOp, rpb_bucket_props::RpbReplMode,
        rpb_index_req::IndexQueryType,
    };

    const ONE: u32 = u32::MAX - 1;
    const QUORUM: u32 = u32::MAX - 2;
    const ALL: u32 = u32::MAX - 3;
    const DEFAULT: u32 = u32::MAX - 4;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn content() -> RpbContent {
        RpbContent {
            value: b("{\"a\":1}"),
            content_type: Some(b("application/json")),
            charset: Some(b("utf-8")),
            content_encoding: Some(b("identity")),
            vtag: Some(b("5b4CkbKIP1Ou9DCVJeBUqK")),
            links: vec![RpbLink {
                bucket: Some(b("people")),
                key: Some(b("bob")),
                tag: Some(b("friend")),
            }],
            last_mod: Some(1_700_000_000),
            last_mod_usecs: Some(123_456),
            usermeta: vec![RpbPair {
                key: b("colour"),
                value: Some(b("blue")),
            }],
            indexes: vec![RpbPair {
                key: b("age_int"),
                value: Some(b("42")),
            }],
            deleted: Some(false),
        }
    }

    fn hook() -> RpbCommitHook {
        RpbCommitHook {
            modfun: Some(RpbModFun {
                module: b("my_hooks"),
                function: b("validate"),
            }),
            name: None,
        }
    }

    fn props() -> RpbBucketProps {
        RpbBucketProps {
            n_val: Some(3),
            allow_mult: Some(true),
            last_write_wins: Some(false),
            precommit: vec![hook()],
            has_precommit: Some(true),
            postcommit: vec![RpbCommitHook {
                modfun: None,
                name: Some(b("jsHook")),
            }],
            has_postcommit: Some(true),
            chash_keyfun: Some(RpbModFun {
                module: b("riak_core_util"),
                function: b("chash_std_keyfun"),
            }),
            linkfun: Some(RpbModFun {
                module: b("riak_kv_wm_link_walker"),
                function: b("mapreduce_linkfun"),
            }),
            old_vclock: Some(86_400),
            young_vclock: Some(20),
            big_vclock: Some(50),
            small_vclock: Some(50),
            pr: Some(0),
            r: Some(QUORUM),
            w: Some(QUORUM),
            pw: Some(0),
            dw: Some(QUORUM),
            rw: Some(QUORUM),
            basic_quorum: Some(false),
            notfound_ok: Some(true),
            backend: Some(b("fjall")),
            search: Some(false),
            repl: Some(RpbReplMode::Realtime as i32),
            search_index: Some(b("idx")),
            datatype: Some(b("map")),
            consistent: Some(false),
            write_once: Some(true),
            hll_precision: Some(14),
        }
    }

    fn map_field(name: &str, ty: MapFieldType) -> MapField {
        MapField {
            name: b(name),
            r#type: ty as i32,
        }
    }

    /// One populated request of every kind.
    fn samples() -> Vec<Request> {
        vec![
            Request::Ping,
            Request::GetClientId,
            Request::GetServerInfo,
            Request::StartTls,
            Request::SetClientId(RpbSetClientIdReq {
                client_id: b("cid1"),
            }),
            Request::Get(RpbGetReq {
                bucket: b("b"),
                key: b("k"),
                r: Some(QUORUM),
                pr: Some(ONE),
                basic_quorum: Some(true),
                notfound_ok: Some(false),
                if_modified: Some(b("vclock")),
                head: Some(true),
                deletedvclock: Some(true),
                timeout: Some(5000),
                sloppy_quorum: Some(true),
                n_val: Some(3),
                r#type: Some(b("t")),
                node_confirms: Some(2),
            }),
            Request::Put(RpbPutReq {
                bucket: b("b"),
                key: Some(b("k")),
                vclock: Some(b("a85hYGBgzGDKBVIcypz/fgaUHjmdwZTImMfKwDbz")),
                content: content(),
                w: Some(ALL),
                dw: Some(DEFAULT),
                return_body: Some(true),
                pw: Some(1),
                if_not_modified: Some(true),
                if_none_match: Some(false),
                return_head: Some(false),
                timeout: Some(1),
                asis: Some(false),
                sloppy_quorum: Some(true),
                n_val: Some(5),
                r#type: Some(b("t")),
                node_confirms: Some(1),
            }),
            Request::Del(RpbDelReq {
                bucket: b("b"),
                key: b("k"),
                rw: Some(QUORUM),
                vclock: Some(b("vc")),
                r: Some(ONE),
                w: Some(ALL),
                pr: Some(DEFAULT),
                pw: Some(2),
                dw: Some(1),
                timeout: Some(100),
                sloppy_quorum: Some(false),
                n_val: Some(3),
                r#type: Some(b("t")),
            }),
            Request::ListBuckets(RpbListBucketsReq {
                timeout: Some(60_000),
                stream: Some(true),
                r#type: Some(b("t")),
            }),
            Request::ListKeys(RpbListKeysReq {
                bucket: b("b"),
                timeout: Some(60_000),
                r#type: Some(b("t")),
            }),
            Request::GetBucket(RpbGetBucketReq {
                bucket: b("b"),
                r#type: Some(b("t")),
            }),
            Request::SetBucket(RpbSetBucketReq {
                bucket: b("b"),
                props: props(),
                r#type: Some(b("t")),
            }),
            Request::ResetBucket(RpbResetBucketReq {
                bucket: b("b"),
                r#type: Some(b("t")),
            }),
            Request::GetBucketType(RpbGetBucketTypeReq { r#type: b("maps") }),
            Request::SetBucketType(RpbSetBucketTypeReq {
                r#type: b("maps"),
                props: props(),
            }),
            Request::GetBucketKeyPreflist(RpbGetBucketKeyPreflistReq {
                bucket: b("b"),
                key: b("k"),
                r#type: Some(b("t")),
            }),
            Request::MapRed(RpbMapRedReq {
                request: b("{\"inputs\":\"b\",\"query\":[]}"),
                content_type: b("application/json"),
            }),
            Request::Index(RpbIndexReq {
                bucket: b("b"),
                index: b("age_int"),
                qtype: IndexQueryType::Range as i32,
                key: None,
                range_min: Some(b("10")),
                range_max: Some(b("99")),
                return_terms: Some(true),
                stream: Some(true),
                max_results: Some(100),
                continuation: Some(b("g2gCbQ")),
                timeout: Some(1000),
                r#type: Some(b("t")),
                term_regex: Some(b("^1")),
                pagination_sort: Some(true),
                cover_context: Some(b("ctx")),
                return_body: Some(false),
            }),
            Request::SearchQuery(RpbSearchQueryReq {
                q: b("name_s:bob"),
                index: b("people"),
                rows: Some(10),
                start: Some(0),
                sort: Some(b("score desc")),
                filter: Some(b("age_i:[1 TO 9]")),
                df: Some(b("text")),
                op: Some(b("and")),
                fl: vec![b("_yz_rk"), b("score")],
                presort: Some(b("key")),
            }),
            Request::CsBucket(RpbCsBucketReq {
                bucket: b("b"),
                start_key: b("a"),
                end_key: Some(b("z")),
                start_incl: Some(false),
                end_incl: Some(true),
                continuation: Some(b("c")),
                max_results: Some(1000),
                timeout: Some(10),
                r#type: Some(b("t")),
                cover_context: Some(b("ctx")),
            }),
            Request::CounterUpdate(RpbCounterUpdateReq {
                bucket: b("b"),
                key: b("k"),
                amount: -42,
                w: Some(QUORUM),
                dw: Some(ONE),
                pw: Some(0),
                returnvalue: Some(true),
                node_confirms: Some(1),
            }),
            Request::CounterGet(RpbCounterGetReq {
                bucket: b("b"),
                key: b("k"),
                r: Some(ALL),
                pr: Some(0),
                basic_quorum: Some(true),
                notfound_ok: Some(true),
                node_confirms: Some(2),
            }),
            Request::YokozunaIndexGet(RpbYokozunaIndexGetReq {
                name: Some(b("idx")),
            }),
            Request::YokozunaIndexPut(RpbYokozunaIndexPutReq {
                index: RpbYokozunaIndex {
                    name: b("idx"),
                    schema: Some(b("_yz_default")),
                    n_val: Some(3),
                },
                timeout: Some(30_000),
            }),
            Request::YokozunaIndexDelete(RpbYokozunaIndexDeleteReq { name: b("idx") }),
            Request::YokozunaSchemaGet(RpbYokozunaSchemaGetReq { name: b("s") }),
            Request::YokozunaSchemaPut(RpbYokozunaSchemaPutReq {
                schema: RpbYokozunaSchema {
                    name: b("s"),
                    content: Some(b("<schema/>")),
                },
            }),
            Request::Coverage(RpbCoverageReq {
                r#type: Some(b("t")),
                bucket: b("b"),
                min_partitions: Some(64),
                replace_cover: Some(b("bad")),
                unavailable_cover: vec![b("x"), b("y")],
            }),
            Request::DtFetch(DtFetchReq {
                bucket: b("b"),
                key: b("k"),
                r#type: b("maps"),
                r: Some(QUORUM),
                pr: Some(ONE),
                basic_quorum: Some(false),
                notfound_ok: Some(true),
                timeout: Some(10),
                sloppy_quorum: Some(true),
                n_val: Some(3),
                include_context: Some(false),
                node_confirms: Some(1),
            }),
            Request::DtUpdate(DtUpdateReq {
                bucket: b("b"),
                key: None,
                r#type: b("maps"),
                context: Some(b("opaque")),
                op: DtOp {
                    counter_op: Some(CounterOp {
                        increment: Some(-3),
                    }),
                    set_op: Some(SetOp {
                        adds: vec![b("x")],
                        removes: vec![b("y")],
                    }),
                    map_op: Some(MapOp {
                        removes: vec![map_field("gone", MapFieldType::Flag)],
                        updates: vec![
                            MapUpdate {
                                field: map_field("name", MapFieldType::Register),
                                register_op: Some(b("Bob")),
                                ..Default::default()
                            },
                            MapUpdate {
                                field: map_field("on", MapFieldType::Flag),
                                flag_op: Some(FlagOp::Enable as i32),
                                ..Default::default()
                            },
                            MapUpdate {
                                field: map_field("inner", MapFieldType::Map),
                                map_op: Some(MapOp {
                                    removes: vec![],
                                    updates: vec![MapUpdate {
                                        field: map_field("n", MapFieldType::Counter),
                                        counter_op: Some(CounterOp { increment: None }),
                                        ..Default::default()
                                    }],
                                }),
                                ..Default::default()
                            },
                        ],
                    }),
                    hll_op: Some(HllOp { adds: vec![b("h")] }),
                    gset_op: Some(GSetOp { adds: vec![b("g")] }),
                },
                w: Some(QUORUM),
                dw: Some(ALL),
                pw: Some(DEFAULT),
                return_body: Some(true),
                timeout: Some(5),
                sloppy_quorum: Some(false),
                n_val: Some(3),
                include_context: Some(true),
                node_confirms: Some(2),
            }),
            Request::Auth(RpbAuthReq {
                user: b("riakuser"),
                password: b("secret"),
            }),
        ]
    }

    /// Encodes `request` as a frame and reads it back through the codec.
    fn through_the_wire(request: &Request) -> Request {
        let mut buf = BytesMut::new();
        request.encode(&mut buf).unwrap();
        let frame = RiakCodec::new().decode(&mut buf).unwrap();
        assert!(buf.is_empty(), "one frame per request");
        let Some(InboundFrame::Message { code, body }) = frame else {
            panic!("expected a message frame, got {frame:?}");
        };
        assert_eq!(code, request.code().as_u8());
        Request::decode(code, body).unwrap()
    }

    #[test]
    fn every_request_round_trips_through_a_frame() {
        for request in samples() {
            assert_eq!(through_the_wire(&request), request);
        }
    }

    #[test]
    fn samples_cover_every_decodable_code() {
        let sampled: BTreeSet<u8> = samples().iter().map(|r| r.code().as_u8()).collect();
        assert_eq!(sampled.len(), samples().len(), "one sample per kind");
        let decodable: BTreeSet<u8> = (0..=u8::MAX)
            .filter(|&code| {
                !matches!(
                    Request::decode(code, Bytes::new()),
                    Err(DecodeError::UnknownCode(_) | DecodeError::Unsupported(_))
                )
            })
            .collect();
        assert_eq!(sampled, decodable);
    }

    #[test]
    fn symbolic_quorum_values_survive_hand_encoded_bytes() {
        // RpbGetReq: bucket "b" (1), key "k" (2), r = quorum (3), pr = one (4).
        let body: &[u8] = &[
            0x0a, 0x01, b'b', 0x12, 0x01, b'k', //
            0x18, 0xfd, 0xff, 0xff, 0xff, 0x0f, //
            0x20, 0xfe, 0xff, 0xff, 0xff, 0x0f,
        ];
        let Request::Get(req) = Request::decode(9, Bytes::from_static(body)).unwrap() else {
            panic!("expected a get");
        };
        assert_eq!(req.r, Some(4_294_967_293));
        assert_eq!(req.pr, Some(4_294_967_294));
        assert_eq!(req.encode_to_vec(), body, "re-encodes byte for byte");
    }

    #[test]
    fn symbolic_quorum_values_survive_bucket_props() {
        let mut quorums = props();
        (quorums.pr, quorums.r, quorums.w) = (Some(ONE), Some(QUORUM), Some(ALL));
        (quorums.pw, quorums.dw, quorums.rw) = (Some(DEFAULT), Some(QUORUM), Some(ONE));
        let request = Request::SetBucket(RpbSetBucketReq {
            bucket: b("b"),
            props: quorums.clone(),
            r#type: None,
        });
        let Request::SetBucket(back) = through_the_wire(&request) else {
            panic!("expected a set-bucket");
        };
        assert_eq!(back.props, quorums);
    }

    #[test]
    fn unknown_and_unsupported_codes_are_distinct() {
        assert_eq!(
            Request::decode(35, Bytes::new()),
            Err(DecodeError::UnknownCode(35))
        );
        assert_eq!(
            Request::decode(10, Bytes::new()),
            Err(DecodeError::Unsupported(MessageCode::GetResp))
        );
        assert_eq!(
            Request::decode(90, Bytes::new()),
            Err(DecodeError::Unsupported(MessageCode::TsQueryReq))
        );
    }

    #[test]
    fn garbage_body_is_a_body_error() {
        // Field 1 as a length-delimited value claiming more bytes than exist.
        let err = Request::decode(9, Bytes::from_static(&[0x0a, 0x7f, 1, 2])).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Body {
                    code: MessageCode::GetReq,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("invalid RpbGetReq (9) body"));
    }

    #[test]
    fn required_messages_are_always_encoded() {
        // Riak clients reject a response lacking a required field, so even
        // all-default props must be on the wire.
        let resp = crate::pb::riak::RpbGetBucketResp::default();
        assert_eq!(resp.encode_to_vec(), [0x0a, 0x00]);
    }

    #[test]
    fn empty_requests_ignore_their_body() {
        assert_eq!(
            Request::decode(1, Bytes::from_static(b"junk")),
            Ok(Request::Ping)
        );
    }

    #[test]
    fn old_clients_list_buckets_with_an_empty_body() {
        assert_eq!(
            Request::decode(15, Bytes::new()),
            Ok(Request::ListBuckets(RpbListBucketsReq::default()))
        );
    }

    #[test]
    fn proto_defaults_apply_to_absent_fields() {
        let Ok(Request::DtFetch(req)) = Request::decode(80, Bytes::new()) else {
            panic!("empty DtFetchReq body decodes");
        };
        assert!(req.include_context(), "include_context defaults to true");
        let Ok(Request::CsBucket(req)) = Request::decode(40, Bytes::new()) else {
            panic!("empty RpbCSBucketReq body decodes");
        };
        assert!(req.start_incl() && !req.end_incl());
    }

    #[test]
    fn required_scalars_are_always_encoded() {
        // proto2 parsers in Riak clients reject messages lacking required
        // fields, even when their value is the default.
        let mut dst = BytesMut::new();
        encode_error("", 0, &mut dst).unwrap();
        assert_eq!(&dst[..], &[0, 0, 0, 5, 0, 0x0a, 0x00, 0x10, 0x00]);
    }

    #[test]
    fn error_response_decodes_as_riak_clients_read_it() {
        let mut dst = BytesMut::new();
        encode_error("no such bucket type", 7, &mut dst).unwrap();
        let frame = RiakCodec::new().decode(&mut dst).unwrap();
        let Some(InboundFrame::Message { code: 0, body }) = frame else {
            panic!("expected an error frame, got {frame:?}");
        };
        let resp = RpbErrorResp::decode(body).unwrap();
        assert_eq!(resp.errmsg, b("no such bucket type"));
        assert_eq!(resp.errcode, 7);
    }

    #[test]
    fn empty_responses_are_five_bytes() {
        let mut dst = BytesMut::new();
        encode_empty(MessageCode::PingResp, &mut dst);
        encode_empty(MessageCode::DelResp, &mut dst);
        assert_eq!(&dst[..], &[0, 0, 0, 1, 2, 0, 0, 0, 1, 14]);
    }

    #[test]
    fn responses_append_after_earlier_ones() {
        let info = crate::pb::riak::RpbGetServerInfoResp {
            node: Some(b("rill@127.0.0.1")),
            server_version: Some(b("3.2.0")),
        };
        let mut dst = BytesMut::new();
        encode_empty(MessageCode::PingResp, &mut dst);
        encode_response(MessageCode::GetServerInfoResp, &info, &mut dst).unwrap();
        let mut codec = RiakCodec::new();
        assert!(matches!(
            codec.decode(&mut dst).unwrap(),
            Some(InboundFrame::Message { code: 2, .. })
        ));
        let Some(InboundFrame::Message { code: 8, body }) = codec.decode(&mut dst).unwrap() else {
            panic!("expected the server info frame");
        };
        assert_eq!(
            crate::pb::riak::RpbGetServerInfoResp::decode(body).unwrap(),
            info
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(
            code in any::<u8>(),
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let result = Request::decode(code, Bytes::from(body));
            if let Ok(request) = result {
                prop_assert_eq!(request.code().as_u8(), code);
            }
        }

        #[test]
        fn get_options_round_trip(
            r in proptest::option::of(any::<u32>()),
            pr in proptest::option::of(any::<u32>()),
            timeout in proptest::option::of(any::<u32>()),
            key in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let request = Request::Get(RpbGetReq {
                bucket: b("b"),
                key: Bytes::from(key),
                r,
                pr,
                timeout,
                ..Default::default()
            });
            prop_assert_eq!(through_the_wire(&request), request);
        }
    }
}
