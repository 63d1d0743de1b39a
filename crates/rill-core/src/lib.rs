//! Rill's pure core: everything that decides, nothing that waits.
//!
//! This crate holds the data model and the algorithms of a Dynamo-style store — the ring and
//! preference lists, vector clocks and dotted version vectors, Riak objects and their sibling
//! merge, bucket types and properties, and the quorum state machines that coordinate reads and
//! writes. None of it performs I/O or reads a clock on its own: callers pass time and randomness
//! in, so the same code runs in production, in unit tests with scripted replies, and under a
//! deterministic cluster simulator.

pub mod base62;
pub mod bkey;
pub mod cluster;
pub mod codec;
pub mod crdt;
pub mod fsm;
pub mod merge;
pub mod object;
pub mod props;
pub mod ring;
pub mod vclock;
