//! Riak PB framing: a tokio-util codec for `length | code | body` frames.
//!
//! Every message on a Riak PB connection, in either direction, is a 4-byte
//! big-endian length counting the code byte and the body, then the 1-byte
//! message code, then the protobuf body. The same codec serves Rill's server
//! and its own PB client (the load generator).
//!
//! The decoder never fails on what a peer sends: malformed framing becomes an
//! [`InboundFrame`] item the server can answer with `RpbErrorResp` while the
//! connection stays usable. In particular a frame longer than the configured
//! limit is refused from its header alone: the codec reports it and then
//! discards its body as it arrives, never holding it in memory.
//!
//! The decoder never reserves buffer room for a frame it has only seen the
//! header of: a declared length is a claim, not bytes. The caller grows its
//! buffer as bytes arrive ([`RiakCodec::wanted`] says how many the frame under
//! way still needs), which is how the server charges them to its request
//! memory budget.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use tokio_util::codec::{Decoder, Encoder};

use super::codes::MessageCode;

/// Bytes of the length prefix.
const LEN_PREFIX: usize = 4;

/// Default largest accepted frame (code byte + body): Riak's 50 MiB object
/// size limit plus 1 MiB for the request's other fields and metadata.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 51 * 1024 * 1024;

/// One unit read from a Riak PB connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundFrame {
    /// A whole frame: its message code (possibly one Riak does not define)
    /// and its undecoded body.
    Message {
        /// The message code byte as received.
        code: u8,
        /// The protobuf body, sliced from the read buffer without copying.
        body: Bytes,
    },
    /// A frame whose declared length exceeds the limit. Its `len` bytes are
    /// being discarded unread; the frames after it decode normally.
    TooLarge {
        /// The declared length (code byte + body).
        len: u32,
    },
    /// A frame with length 0, which cannot hold the mandatory code byte.
    Empty,
}

/// Errors of the codec. Decoding fails only on I/O errors and on a
/// connection that ends inside a frame; encoding only on a message too large
/// for the 32-bit length prefix.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The underlying connection failed, or ended in the middle of a frame.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The encoded message does not fit the 4-byte length prefix.
    #[error("message of {len} bytes is too large to frame")]
    MessageTooLarge {
        /// The encoded body length.
        len: usize,
    },
}

/// The Riak PB frame codec, decoding [`InboundFrame`]s and encoding
/// `(MessageCode, &message)` pairs.
#[derive(Debug, Clone)]
pub struct RiakCodec {
    max_frame_len: u32,
    /// Bytes of an oversized frame still to be thrown away.
    discarding: u32,
}

impl RiakCodec {
    /// A codec accepting frames up to [`DEFAULT_MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::with_max_frame_len(DEFAULT_MAX_FRAME_LEN)
    }

    /// A codec accepting frames (code byte + body) of at most `max_frame_len`
    /// bytes.
    pub fn with_max_frame_len(max_frame_len: u32) -> Self {
        Self {
            max_frame_len,
            discarding: 0,
        }
    }

    /// The largest accepted frame length (code byte + body).
    pub fn max_frame_len(&self) -> u32 {
        self.max_frame_len
    }

    /// Whether an oversized frame's body is being thrown away as it arrives.
    pub fn is_discarding(&self) -> bool {
        self.discarding > 0
    }

    /// How many more bytes the frame under way needs before it can be decoded: the rest of
    /// its length prefix, of its body, or of an oversized body being discarded. Zero when
    /// `src` already holds a whole frame (or nothing has begun: then the next prefix's 4).
    pub fn wanted(&self, src: &BytesMut) -> usize {
        if self.discarding > 0 {
            return (self.discarding as usize).saturating_sub(src.len());
        }
        match src.first_chunk::<LEN_PREFIX>() {
            None => LEN_PREFIX - src.len(),
            Some(prefix) => {
                let len = u32::from_be_bytes(*prefix);
                if len > self.max_frame_len {
                    0
                } else {
                    (LEN_PREFIX + len as usize).saturating_sub(src.len())
                }
            }
        }
    }

    /// Drops as much of an oversized frame's remainder as `src` holds.
    /// Returns whether some of it is still to come.
    fn discard(&mut self, src: &mut BytesMut) -> bool {
        let n = src.len().min(self.discarding as usize);
        src.advance(n);
        // `n` is at most `discarding`, a u32, so the cast is lossless.
        self.discarding -= n as u32;
        self.discarding > 0
    }
}

impl Default for RiakCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for RiakCodec {
    type Item = InboundFrame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<InboundFrame>, FrameError> {
        if self.discard(src) {
            return Ok(None);
        }
        let Some(prefix) = src.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix);
        if len == 0 {
            src.advance(LEN_PREFIX);
            return Ok(Some(InboundFrame::Empty));
        }
        if len > self.max_frame_len {
            src.advance(LEN_PREFIX);
            self.discarding = len;
            self.discard(src);
            return Ok(Some(InboundFrame::TooLarge { len }));
        }
        let frame_end = LEN_PREFIX + len as usize;
        if src.len() < frame_end {
            return Ok(None);
        }
        src.advance(LEN_PREFIX);
        let mut body = src.split_to(len as usize).freeze();
        let code = body.get_u8();
        Ok(Some(InboundFrame::Message { code, body }))
    }
}

/// Appends one frame holding `msg` under `code` to `dst`.
///
/// The message is encoded straight into `dst` after its header, with no
/// intermediate buffer. Empty-bodied messages (PingResp, DelResp, ...) are
/// encoded by passing `&()`.
pub fn encode_frame(
    code: MessageCode,
    msg: &impl Message,
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    let body_len = msg.encoded_len();
    let frame_len = u32::try_from(body_len)
        .ok()
        .and_then(|len| len.checked_add(1))
        .ok_or(FrameError::MessageTooLarge { len: body_len })?;
    dst.reserve(LEN_PREFIX + 1 + body_len);
    dst.put_u32(frame_len);
    dst.put_u8(code.as_u8());
    // BytesMut grows on demand, so prost's capacity check cannot fail; the
    // error is mapped rather than unwrapped all the same.
    msg.encode(dst)
        .map_err(|_| FrameError::MessageTooLarge { len: body_len })
}

impl<M: Message> Encoder<(MessageCode, &M)> for RiakCodec {
    type Error = FrameError;

    fn encode(
        &mut self,
        (code, msg): (MessageCode, &M),
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        encode_frame(code, msg, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::riak::{RpbErrorResp, RpbGetReq};
    use proptest::prelude::*;

    /// Builds a raw frame by hand, independently of the encoder.
    fn raw_frame(code: u8, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(body.len() + 1).expect("test body fits u32");
        let mut out = len.to_be_bytes().to_vec();
        out.push(code);
        out.extend_from_slice(body);
        out
    }

    fn message(code: u8, body: &[u8]) -> InboundFrame {
        InboundFrame::Message {
            code,
            body: Bytes::copy_from_slice(body),
        }
    }

    /// Feeds `input` to `codec` in pieces of `chunk` bytes, collecting items.
    fn decode_chunked(codec: &mut RiakCodec, input: &[u8], chunk: usize) -> Vec<InboundFrame> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(frame) = codec.decode(&mut buf).expect("decode never fails") {
                out.push(frame);
            }
        }
        out
    }

    #[test]
    fn decodes_a_ping() {
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 1][..]);
        let frame = RiakCodec::new().decode(&mut buf).unwrap();
        assert_eq!(frame, Some(message(1, b"")));
        assert!(buf.is_empty());
    }

    #[test]
    fn decodes_many_frames_from_one_buffer() {
        let mut input = raw_frame(1, b"");
        input.extend(raw_frame(9, b"\x0a\x01b\x12\x01k"));
        input.extend(raw_frame(7, b""));
        let frames = decode_chunked(&mut RiakCodec::new(), &input, input.len());
        assert_eq!(
            frames,
            vec![
                message(1, b""),
                message(9, b"\x0a\x01b\x12\x01k"),
                message(7, b"")
            ]
        );
    }

    #[test]
    fn decodes_frames_split_at_every_boundary() {
        let mut input = raw_frame(11, &[7; 300]);
        input.extend(raw_frame(1, b""));
        for chunk in 1..input.len() {
            let frames = decode_chunked(&mut RiakCodec::new(), &input, chunk);
            assert_eq!(
                frames,
                vec![message(11, &[7; 300]), message(1, b"")],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn zero_length_is_an_item_and_the_stream_continues() {
        let mut input = vec![0, 0, 0, 0];
        input.extend(raw_frame(1, b""));
        let frames = decode_chunked(&mut RiakCodec::new(), &input, 1);
        assert_eq!(frames, vec![InboundFrame::Empty, message(1, b"")]);
    }

    #[test]
    fn frame_at_the_limit_is_accepted() {
        let input = raw_frame(11, &[1; 15]);
        let frames = decode_chunked(&mut RiakCodec::with_max_frame_len(16), &input, 4);
        assert_eq!(frames, vec![message(11, &[1; 15])]);
    }

    #[test]
    fn oversized_frame_is_skipped_then_next_frame_decodes() {
        let mut input = raw_frame(11, &[0xAB; 100]);
        input.extend(raw_frame(1, b""));
        for chunk in [1, 3, 7, 50, input.len()] {
            let mut codec = RiakCodec::with_max_frame_len(64);
            let frames = decode_chunked(&mut codec, &input, chunk);
            assert_eq!(
                frames,
                vec![InboundFrame::TooLarge { len: 101 }, message(1, b"")],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn oversized_frame_body_is_never_buffered() {
        let mut codec = RiakCodec::with_max_frame_len(1024);
        let mut buf = BytesMut::from(&4_000_000u32.to_be_bytes()[..]);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(InboundFrame::TooLarge { len: 4_000_000 })
        );
        let mut remaining = 4_000_000usize;
        while remaining > 0 {
            let n = remaining.min(8192);
            buf.extend_from_slice(&vec![0xFF; n]);
            assert_eq!(codec.decode(&mut buf).unwrap(), None);
            assert!(buf.is_empty(), "discarded bytes must not accumulate");
            remaining -= n;
        }
        buf.extend_from_slice(&raw_frame(2, b""));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(message(2, b"")));
    }

    #[test]
    fn a_declared_length_reserves_nothing_and_wanted_counts_what_is_missing() {
        let mut codec = RiakCodec::new();
        let mut buf = BytesMut::new();
        assert_eq!(codec.wanted(&buf), 4);
        buf.extend_from_slice(&50_000_000u32.to_be_bytes()[..2]);
        assert_eq!(codec.wanted(&buf), 2);
        buf.extend_from_slice(&50_000_000u32.to_be_bytes()[2..]);
        buf.extend_from_slice(&[11; 100]);
        let before = buf.capacity();
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(
            buf.capacity(),
            before,
            "no room reserved for a claimed 50 MB"
        );
        assert_eq!(codec.wanted(&buf), 50_000_000 + 4 - 104);
        let mut small = BytesMut::from(&raw_frame(1, b"")[..]);
        assert_eq!(codec.wanted(&small), 0);
        assert!(codec.decode(&mut small).unwrap().is_some());

        let mut limited = RiakCodec::with_max_frame_len(10);
        let mut buf = BytesMut::from(&1000u32.to_be_bytes()[..]);
        assert_eq!(
            limited.wanted(&buf),
            0,
            "an oversized header decodes at once"
        );
        limited.decode(&mut buf).unwrap();
        assert!(limited.is_discarding());
        assert_eq!(limited.wanted(&buf), 1000);
    }

    #[test]
    fn truncated_frame_at_eof_is_an_error_not_a_panic() {
        let mut buf = BytesMut::from(&[0, 0, 0, 9, 9, 1][..]);
        assert!(matches!(
            RiakCodec::new().decode_eof(&mut buf),
            Err(FrameError::Io(_))
        ));
    }

    #[test]
    fn clean_eof_and_eof_while_discarding_end_the_stream() {
        let mut codec = RiakCodec::with_max_frame_len(8);
        let mut buf = BytesMut::from(&[0, 0, 1, 0, 5, 5][..]);
        assert_eq!(
            codec.decode_eof(&mut buf).unwrap(),
            Some(InboundFrame::TooLarge { len: 256 })
        );
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        assert_eq!(
            RiakCodec::new().decode_eof(&mut BytesMut::new()).unwrap(),
            None
        );
    }

    #[test]
    fn encodes_header_then_body() {
        let err = RpbErrorResp {
            errmsg: Bytes::from_static(b"boom"),
            errcode: 1,
        };
        let mut dst = BytesMut::new();
        RiakCodec::new()
            .encode((MessageCode::ErrorResp, &err), &mut dst)
            .unwrap();
        assert_eq!(&dst[..], &raw_frame(0, &err.encode_to_vec())[..]);
        assert_eq!(&dst[..5], &[0, 0, 0, 9, 0]);
    }

    #[test]
    fn empty_message_encodes_as_code_only() {
        let mut dst = BytesMut::from(&b"xy"[..]);
        encode_frame(MessageCode::PingResp, &(), &mut dst).unwrap();
        assert_eq!(
            &dst[..],
            b"xy\x00\x00\x00\x01\x02",
            "appends after existing bytes"
        );
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let req = RpbGetReq {
            bucket: Bytes::from_static(b"b"),
            key: Bytes::from_static(b"k"),
            r: Some(2),
            ..Default::default()
        };
        let mut codec = RiakCodec::new();
        let mut buf = BytesMut::new();
        codec.encode((MessageCode::GetReq, &req), &mut buf).unwrap();
        let Some(InboundFrame::Message { code, body }) = codec.decode(&mut buf).unwrap() else {
            panic!("expected a message frame");
        };
        assert_eq!(code, MessageCode::GetReq.as_u8());
        assert_eq!(RpbGetReq::decode(body).unwrap(), req);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_respect_the_limit(
            input in proptest::collection::vec(any::<u8>(), 0..2048),
            chunk in 1usize..64,
            max in 0u32..512,
        ) {
            let mut codec = RiakCodec::with_max_frame_len(max);
            for frame in decode_chunked(&mut codec, &input, chunk) {
                match frame {
                    InboundFrame::Message { body, .. } => {
                        prop_assert!(body.len() < max as usize);
                    }
                    InboundFrame::TooLarge { len } => prop_assert!(len > max),
                    InboundFrame::Empty => {}
                }
            }
        }

        #[test]
        fn chunking_does_not_change_the_frames(
            bodies in proptest::collection::vec(
                (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..80)), 0..8),
            chunk in 1usize..40,
        ) {
            let mut input = Vec::new();
            for (code, body) in &bodies {
                input.extend(raw_frame(*code, body));
            }
            // Limit 50: bodies of 50+ bytes are oversized and skipped.
            let expected: Vec<InboundFrame> = bodies
                .iter()
                .map(|(code, body)| {
                    if body.len() + 1 > 50 {
                        InboundFrame::TooLarge { len: body.len() as u32 + 1 }
                    } else {
                        message(*code, body)
                    }
                })
                .collect();
            let frames = decode_chunked(&mut RiakCodec::with_max_frame_len(50), &input, chunk);
            prop_assert_eq!(frames, expected);
        }
    }
}
