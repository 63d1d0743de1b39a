//! A dedicated connection for one bulk stream: a partition's handoff, a key listing.
//!
//! Bulk traffic never shares the multiplexed connection, so a transfer of gigabytes cannot
//! delay a foreground read queued behind it, and a slow consumer of a listing slows only its
//! own stream (TCP flow control does the rest). What the frames mean is up to the two ends.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio_util::codec::Framed;

use crate::PeerName;
use crate::frame::{FrameCodec, FrameError};
use crate::handshake::{self, Handshaken};
use crate::net::Conn;

/// One end of a bulk stream.
pub struct BulkStream {
    peer: PeerName,
    framed: Framed<Box<dyn Conn>, FrameCodec>,
}

impl BulkStream {
    pub(crate) fn new(hs: Handshaken, max_frame: usize) -> BulkStream {
        let peer = hs.peer.clone();
        BulkStream {
            peer,
            framed: handshake::reframe(hs, FrameCodec::new(max_frame)),
        }
    }

    /// The authenticated peer at the other end.
    pub fn peer(&self) -> &PeerName {
        &self.peer
    }

    /// Sends one frame (and flushes it).
    pub async fn send(&mut self, frame: Bytes) -> Result<(), FrameError> {
        self.framed.send(frame).await
    }

    /// The next frame; `None` when the peer closed the stream cleanly.
    pub async fn recv(&mut self) -> Option<Result<Bytes, FrameError>> {
        self.framed.next().await
    }
}
