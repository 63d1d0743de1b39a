//! The Riak Protocol Buffers API wire layer (port 8087).
//!
//! Riak frames each message as a 4-byte big-endian length, a 1-byte message
//! code and a protobuf body. This module turns bytes on a connection into
//! typed requests and typed responses back into bytes; it knows nothing of
//! what the requests mean, which is the coordinators' business.
//!
//! - [`riak`]: the message types generated from `proto/*.proto`.
//! - [`codes`]: the message code byte.
//! - [`frame`]: the tokio-util codec for the framing, with the size limit.
//! - [`messages`]: request decoding and response encoding.
//! - [`server`]: the listener and per-connection request loop that serves the node.

pub mod codes;
mod convert;
mod datatype;
pub mod frame;
pub mod messages;
pub mod server;

/// Message types generated from the project's Riak `.proto` files.
///
/// Names follow Riak's (`RpbGetReq`, `DtUpdateReq`, ...). proto2 `optional`
/// scalars are `Option`s, `required` ones plain values, embedded messages
/// always `Option`s; every `bytes` field is a [`bytes::Bytes`].
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod riak {
    include!(concat!(env!("OUT_DIR"), "/riak.rs"));
}

pub use codes::MessageCode;
pub use frame::{DEFAULT_MAX_FRAME_LEN, FrameError, InboundFrame, RiakCodec};
pub use messages::{DecodeError, Request, encode_empty, encode_error, encode_response};
