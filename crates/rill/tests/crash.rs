//! Durability of acknowledged writes: objects written over PB and acknowledged must all be
//! there, with their values, after the node is killed with SIGKILL (buffered and synced
//! durability, after the writes and in the middle of them) or stopped with SIGTERM and
//! restarted on the same data directory.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, mpsc};

use bytes::{Bytes, BytesMut};
use common::{PbClient, TestNode};
use prost::Message;
use rill_api::pb::riak::{RpbContent, RpbGetReq, RpbGetResp, RpbPutReq};
use rill_api::pb::{MessageCode, Request};

const OBJECTS: usize = 3000;
/// Requests per pipelined write; small enough that the replies fit the socket buffers.
const BATCH: usize = 100;

fn put(i: usize) -> Request {
    Request::Put(RpbPutReq {
        bucket: Bytes::from_static(b"durable"),
        key: Some(key(i)),
        content: RpbContent {
            value: value(i),
            content_type: Some(Bytes::from_static(b"text/plain")),
            ..Default::default()
        },
        ..Default::default()
    })
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key-{i:05}"))
}

/// A value that differs per object and is long enough to span more than one block.
fn value(i: usize) -> Bytes {
    Bytes::from(format!("value {i} ").repeat(1 + i % 40))
}

/// Writes every object; returns the indexes of the writes the node acknowledged.
fn write_all(c: &mut PbClient) -> Vec<usize> {
    let mut acked = Vec::with_capacity(OBJECTS);
    let indexes: Vec<usize> = (0..OBJECTS).collect();
    for batch in indexes.chunks(BATCH) {
        let reqs: Vec<Request> = batch.iter().map(|&i| put(i)).collect();
        for (&i, (code, body)) in batch.iter().zip(c.pipeline(&reqs)) {
            assert_eq!(code, MessageCode::PutResp.as_u8(), "write {i}: {body:?}");
            acked.push(i);
        }
    }
    acked
}

/// Reads every acknowledged object back; returns how many came back with their value.
fn count_found(c: &mut PbClient, acked: &[usize]) -> usize {
    let mut found = 0;
    for batch in acked.chunks(BATCH) {
        let reqs: Vec<Request> = batch
            .iter()
            .map(|&i| {
                Request::Get(RpbGetReq {
                    bucket: Bytes::from_static(b"durable"),
                    key: key(i),
                    ..Default::default()
                })
            })
            .collect();
        for (&i, (code, body)) in batch.iter().zip(c.pipeline(&reqs)) {
            assert_eq!(code, MessageCode::GetResp.as_u8(), "read {i}");
            let resp = RpbGetResp::decode(body).unwrap();
            match resp.content.as_slice() {
                [one] if one.value == value(i) => found += 1,
                [] => eprintln!("lost: {i}"),
                other => panic!("object {i} came back wrong: {other:?}"),
            }
        }
    }
    found
}

/// Writes, kills with SIGKILL, restarts on the same directory, and checks every write.
fn survives_kill9(extra: &[&str], label: &str) {
    let mut node = TestNode::start(extra);
    let acked = write_all(&mut node.pb());
    node.kill9();

    let restarted = TestNode::start_in(&node.data_dir, extra);
    let found = count_found(&mut restarted.pb(), &acked);
    println!("{label}: written {}, found {found}", acked.len());
    assert_eq!(acked.len(), OBJECTS);
    assert_eq!(
        found,
        acked.len(),
        "every acknowledged write survives kill -9"
    );
}

#[test]
fn acknowledged_writes_survive_kill9() {
    survives_kill9(&[], "kill -9, default durability");
}

#[test]
fn acknowledged_writes_survive_kill9_with_sync() {
    survives_kill9(&["--sync", "true"], "kill -9, --sync true");
}

#[test]
fn sigterm_exits_cleanly_and_keeps_the_data() {
    let mut node = TestNode::start(&[]);
    let acked = write_all(&mut node.pb());
    assert!(node.terminate(), "SIGTERM exits with status 0");

    let restarted = TestNode::start_in(&node.data_dir, &[]);
    let mut c = restarted.pb();
    c.ping();
    let found = count_found(&mut c, &acked);
    println!("SIGTERM: written {}, found {found}", acked.len());
    assert_eq!(found, OBJECTS);
}

/// One write and its acknowledgement, without panicking when the node has gone away.
fn try_put(c: &mut PbClient, i: usize) -> std::io::Result<bool> {
    let mut buf = BytesMut::new();
    put(i).encode(&mut buf).expect("encode");
    c.stream.write_all(&buf)?;
    let mut header = [0u8; 5];
    c.stream.read_exact(&mut header)?;
    let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
    let mut rest = vec![0u8; len.saturating_sub(1)];
    c.stream.read_exact(&mut rest)?;
    Ok(header[4] == MessageCode::PutResp.as_u8())
}

#[test]
fn writes_acknowledged_before_a_kill_in_mid_stream_survive() {
    let mut node = TestNode::start(&[]);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (halfway_tx, halfway) = mpsc::channel();
    let writer = {
        let mut c = node.pb();
        let acked = acked.clone();
        // Returns the write that the kill interrupted, or `None` if every write finished.
        std::thread::spawn(move || {
            for i in 0..OBJECTS * 10 {
                match try_put(&mut c, i) {
                    Ok(true) => {
                        acked.lock().unwrap().push(i);
                        if i + 1 == OBJECTS / 2 {
                            let _ = halfway_tx.send(());
                        }
                    }
                    Ok(false) => panic!("write {i} refused"),
                    // The node was killed under us.
                    Err(_) => return Some(i),
                }
            }
            None
        })
    };
    // Kill once a good part of the writes were acknowledged, with more in flight.
    halfway.recv().expect("half of the writes acknowledged");
    node.kill9();
    let interrupted = writer.join().expect("writer thread");
    let acked = acked.lock().unwrap().clone();
    let Some(interrupted) = interrupted else {
        panic!(
            "all {} writes finished: the kill came too late",
            OBJECTS * 10
        )
    };
    // The writes were acknowledged in order up to the one the kill cut off.
    assert!(interrupted >= OBJECTS / 2, "killed at {interrupted}");
    assert_eq!(acked, (0..interrupted).collect::<Vec<_>>());

    let restarted = TestNode::start_in(&node.data_dir, &[]);
    let found = count_found(&mut restarted.pb(), &acked);
    println!(
        "kill -9 mid-stream: acknowledged {}, found {found}",
        acked.len()
    );
    assert_eq!(
        found,
        acked.len(),
        "every acknowledged write survives kill -9"
    );
}
