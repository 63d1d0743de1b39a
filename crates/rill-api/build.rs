//! Compiles the Riak Protocol Buffers descriptions in `proto/` into Rust.
//!
//! protox parses the `.proto` files in pure Rust, so building Rill needs no
//! `protoc` binary; prost-build then generates the message types. Every
//! `bytes` field becomes `bytes::Bytes`, so decoding a request body slices
//! the received frame instead of copying buckets, keys and values.

use std::error::Error;

const PROTO_DIR: &str = "proto";
const PROTO_FILES: [&str; 4] = [
    "proto/riak.proto",
    "proto/riak_kv.proto",
    "proto/riak_dt.proto",
    "proto/riak_search.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(PROTO_FILES, [PROTO_DIR])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
