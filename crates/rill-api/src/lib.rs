//! Riak's client protocols for Rill.
//!
//! Unmodified Riak clients talk to Rill through these: the Protocol Buffers
//! API (port 8087) lives in [`pb`].

pub mod pb;
