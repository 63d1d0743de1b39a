//! Internode framing: a 4-byte big-endian length, then that many bytes of payload.
//!
//! The decoder never allocates for what a peer merely *declares*: the read buffer grows with
//! the bytes that actually arrive, so a peer claiming a huge frame costs nothing until it sends
//! it. A declared length over the limit is an error, and the connection is dropped: unlike a
//! client protocol, a peer that frames wrongly is broken or hostile, and nothing after the bad
//! header can be trusted.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("connection ended inside a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The codec, with its frame-size limit.
#[derive(Clone, Copy, Debug)]
pub struct FrameCodec {
    max: usize,
}

impl FrameCodec {
    /// A codec refusing payloads longer than `max` bytes.
    pub fn new(max: usize) -> FrameCodec {
        FrameCodec { max }
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(prefix) = src.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if src.len() < LEN_PREFIX + len {
            // Deliberately no `reserve(len)`: the buffer grows as bytes arrive.
            return Ok(None);
        }
        src.advance(LEN_PREFIX);
        Ok(Some(src.split_to(len).freeze()))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_header(item.len(), self.max, dst)?;
        dst.extend_from_slice(&item);
        Ok(())
    }
}

/// Appends the length prefix of a payload of `len` bytes, refusing one over `max`.
pub fn encode_header(len: usize, max: usize, dst: &mut BytesMut) -> Result<(), FrameError> {
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    dst.reserve(LEN_PREFIX + len.min(64 * 1024));
    dst.put_u32(len as u32);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    #[test]
    fn frames_round_trip_in_any_chunking() {
        let input = framed(&[b"a", b"", b"hello world"]);
        for chunk in 1..input.len() {
            let mut codec = FrameCodec::new(64);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in input.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(f) = codec.decode(&mut buf).unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, vec![&b"a"[..], b"", b"hello world"], "chunk {chunk}");
        }
    }

    #[test]
    fn a_declared_length_over_the_limit_is_an_error() {
        let mut buf = BytesMut::from(&100u32.to_be_bytes()[..]);
        let err = FrameCodec::new(99).decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 100, max: 99 }));
    }

    #[test]
    fn a_declared_length_reserves_nothing() {
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&(64 * 1024 * 1024u32).to_be_bytes());
        buf.extend_from_slice(b"abc");
        assert!(
            FrameCodec::new(usize::MAX)
                .decode(&mut buf)
                .unwrap()
                .is_none()
        );
        assert!(buf.capacity() < 1024, "capacity {}", buf.capacity());
    }

    #[test]
    fn truncation_at_eof_is_an_error_and_a_clean_eof_is_not() {
        let mut codec = FrameCodec::new(64);
        let mut buf = BytesMut::from(&[0, 0, 0, 5, 1, 2][..]);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(FrameError::Truncated)
        ));
        assert!(codec.decode_eof(&mut BytesMut::new()).unwrap().is_none());
    }

    #[test]
    fn encoding_refuses_oversize_payloads() {
        let mut dst = BytesMut::new();
        let err = FrameCodec::new(3)
            .encode(Bytes::from_static(b"four"), &mut dst)
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 4, max: 3 }));
    }

    proptest! {
        #[test]
        fn garbage_never_panics_and_frames_respect_the_limit(
            input in proptest::collection::vec(any::<u8>(), 0..512),
            chunk in 1usize..32,
            max in 0usize..128,
        ) {
            let mut codec = FrameCodec::new(max);
            let mut buf = BytesMut::new();
            'outer: for piece in input.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(f)) => prop_assert!(f.len() <= max),
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
        }
    }
}
