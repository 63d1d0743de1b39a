//! What clients may cost a real node: hundreds of connections that declare maximum-size PB
//! frames and HTTP bodies and send only part of them keep the node's memory within the request
//! memory budget plus a fixed margin while other clients are served, and are closed after the
//! read timeout; large objects still work beside them; requests larger than the budget are
//! refused; the connection limit refuses the next connection cleanly; idle connections stay.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{PbClient, PeakRss, TestNode, b, get_req, http, put_req, rss_kib};
use prost::Message;
use rill_api::pb::riak::*;
use rill_api::pb::{MessageCode, Request};
use serde_json::Value;

const DECLARED: usize = 50_000_000;

fn stats(node: &TestNode) -> Value {
    node.get_json("/stats")
}

fn stat(node: &TestNode, name: &str) -> u64 {
    stats(node)[name]
        .as_u64()
        .unwrap_or_else(|| panic!("/stats has no {name}"))
}

/// A PB connection that declares a 50 MB `RpbPutReq` and sends 64 KiB of it.
fn hostile_pb(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = (DECLARED as u32 + 1).to_be_bytes().to_vec();
    head.push(MessageCode::PutReq.as_u8());
    s.write_all(&head).unwrap();
    s.write_all(&vec![b'x'; 64 * 1024]).unwrap();
    s
}

/// An HTTP connection that declares a 50 MB PUT body; its body is sent by [`push`].
fn hostile_http(addr: SocketAddr, i: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "PUT /buckets/slow/keys/k{i} HTTP/1.1\r\nHost: rill\r\nContent-Type: text/plain\r\n\
         Content-Length: {DECLARED}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

/// Sends up to `each` bytes on every stream for at most `window`, as far as the node (and the
/// kernel's buffers) take them without blocking. Returns the bytes sent.
fn push(streams: &mut [TcpStream], each: usize, window: Duration) -> usize {
    let chunk = vec![b'y'; 64 * 1024];
    let mut sent = vec![0usize; streams.len()];
    let end = Instant::now() + window;
    while Instant::now() < end && sent.iter().any(|&n| n < each) {
        let mut progressed = false;
        for (s, n) in streams.iter_mut().zip(sent.iter_mut()) {
            if *n >= each {
                continue;
            }
            let want = (each - *n).min(chunk.len());
            match s.write(&chunk[..want]) {
                Ok(k) => {
                    *n += k;
                    progressed = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("hostile send failed: {e}"),
            }
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    sent.iter().sum()
}

/// Waits until the node's `/stats` satisfy `check`: what the kernel accepted from the slow
/// clients reaches the node's buffers (its budget, then its waits) a moment later.
fn stats_reach(node: &TestNode, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(node);
        if check(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the node has closed `s` (after perhaps sending a last answer), waiting up to
/// `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    let mut sink = [0u8; 8192];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn pb_put(bucket: &str, key: &str, value: Bytes) -> Request {
    let mut req = put_req(bucket, key, "");
    req.content.value = value;
    Request::Put(req)
}

fn pb_get(c: &mut PbClient, bucket: &str, key: &str) -> RpbGetResp {
    c.call(&Request::Get(get_req(bucket, key)), MessageCode::GetResp)
}

/// Ordinary clients on their own connections are answered promptly.
fn others_are_served(node: &TestNode, round: usize) {
    let started = Instant::now();
    let mut c = node.pb();
    c.ping();
    let _: RpbPutResp = c.call(
        &pb_put("fine", &format!("pb{round}"), b("small")),
        MessageCode::PutResp,
    );
    assert_eq!(
        pb_get(&mut c, "fine", &format!("pb{round}")).content[0].value,
        b("small")
    );
    let h = http();
    let url = node.url(&format!("/buckets/fine/keys/http{round}"));
    let put = h
        .put(&url)
        .header("Content-Type", "text/plain")
        .send("small")
        .unwrap();
    assert_eq!(put.status(), 204);
    let got = h.get(&url).call().unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.into_body().read_to_string().unwrap(), "small");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "ordinary requests took {:?} beside the hostile clients",
        started.elapsed()
    );
}

#[test]
fn hostile_clients_cost_at_most_the_budget_and_are_closed_after_the_timeout() {
    let node = TestNode::start(&["--request-memory-mb", "64", "--read-timeout-secs", "5"]);
    others_are_served(&node, 0);
    let pid = node.child.id();
    let baseline = rss_kib(pid);
    let peak = PeakRss::start(pid);

    let mut pb: Vec<TcpStream> = (0..200).map(|_| hostile_pb(node.pb)).collect();
    let mut web: Vec<TcpStream> = (0..200).map(|i| hostile_http(node.http, i)).collect();
    // 200 MB of bodies offered against a 64 MiB budget.
    let sent = push(&mut web, 1 << 20, Duration::from_secs(2));
    assert!(sent > 64 << 20, "the node took only {sent} body bytes");

    others_are_served(&node, 1);
    stats_reach(
        &node,
        "every client connected, the budget filled and connections waiting",
        |s| {
            s["request_memory_held_bytes"].as_u64().unwrap() > 32 << 20
                && s["request_memory_waits_total"].as_u64().unwrap() > 0
                && s["http_connections_open"].as_u64().unwrap() >= 200
                && s["pbc_active"].as_u64().unwrap() >= 200
        },
    );
    let s = stats(&node);
    let held = s["request_memory_held_bytes"].as_u64().unwrap();
    assert!(held <= 64 << 20, "held {held}");
    others_are_served(&node, 2);

    // Budget, plus per connection what it costs outside the budget (its task, socket, output
    // buffer, free request bytes, hyper's read buffer, allocator slack: ~100 KiB measured),
    // plus 32 MiB for everything else. Before the budget this shape took ~1 GB.
    let margin_kib = 400 * 128 + 32 * 1024;
    let grown = peak.finish().saturating_sub(baseline);
    eprintln!("RSS grew by {grown} KiB");
    assert!(
        grown <= 64 * 1024 + margin_kib,
        "RSS grew by {grown} KiB with 400 hostile clients (budget 64 MiB)"
    );

    // The read timeout (5 s from each request's first byte) closes every one of them.
    for s in pb.iter_mut().chain(web.iter_mut()) {
        assert!(
            closed_within(s, Duration::from_secs(15)),
            "a slow client stayed open"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(&node);
        let done = s["request_memory_held_bytes"] == 0
            && s["client_read_timeouts_total"].as_u64().unwrap() >= 400
            && s["pbc_active"] == 0;
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    others_are_served(&node, 3);
}

#[test]
fn a_40_mb_object_is_stored_and_read_while_slow_clients_hold_their_connections() {
    let node = TestNode::start(&[]);
    let _pb: Vec<TcpStream> = (0..200).map(|_| hostile_pb(node.pb)).collect();
    let mut web: Vec<TcpStream> = (0..50).map(|i| hostile_http(node.http, i)).collect();
    push(&mut web, 1 << 20, Duration::from_secs(2));
    stats_reach(&node, "the slow clients' bodies held", |s| {
        s["request_memory_held_bytes"].as_u64().unwrap() > 20 << 20
    });

    let big: Vec<u8> = (0..40_000_000u32).map(|i| (i % 251) as u8).collect();
    let h = http();
    let url = node.url("/buckets/large/keys/http");
    let put = h
        .put(&url)
        .header("Content-Type", "application/octet-stream")
        .send(&big[..])
        .unwrap();
    assert_eq!(put.status(), 204);
    let got = h.get(&url).call().unwrap();
    assert_eq!(got.status(), 200);
    let body = got
        .into_body()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    assert!(body == big, "the object read back differs");

    let mut c = node.pb();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let _: RpbPutResp = c.call(
        &pb_put("large", "pb", Bytes::from(big.clone())),
        MessageCode::PutResp,
    );
    let got = pb_get(&mut c, "large", "pb");
    assert!(got.content[0].value == big, "the object read back differs");
    c.ping();
    // The slow clients are still there, holding what they sent.
    assert!(stat(&node, "pbc_active") >= 200);
}

#[test]
fn requests_larger_than_the_whole_budget_are_refused() {
    let node = TestNode::start(&["--request-memory-mb", "1"]);
    let two_mb = vec![b'z'; 2 << 20];
    let resp = http()
        .put(&node.url("/buckets/b/keys/big"))
        .header("Content-Type", "text/plain")
        .send(&two_mb[..])
        .unwrap();
    assert_eq!(resp.status(), 413);
    let text = resp.into_body().read_to_string().unwrap();
    assert!(text.contains("request memory budget"), "{text}");
    // A chunked body is refused once it outgrows the budget.
    let mut s = TcpStream::connect(node.http).unwrap();
    s.write_all(
        b"PUT /buckets/b/keys/chunked HTTP/1.1\r\nHost: rill\r\nContent-Type: text/plain\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 256 * 1024, "c".repeat(256 * 1024));
    for _ in 0..8 {
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("request memory budget"), "{answer}");

    // Over PB the frame is refused from its header, and the connection goes on.
    let mut c = node.pb();
    let err = c.call_err(&pb_put("b", "big", Bytes::from(two_mb)));
    assert!(err.contains("request memory budget"), "{err}");
    c.ping();
    // What fits the budget is served.
    let half = Bytes::from(vec![b'h'; 512 * 1024]);
    let _: RpbPutResp = c.call(&pb_put("b", "half", half.clone()), MessageCode::PutResp);
    assert_eq!(pb_get(&mut c, "b", "half").content[0].value, half);
    assert!(stat(&node, "request_memory_refusals_total") >= 3);
}

/// Reads one HTTP response's status line and headers from a raw connection; returns the
/// status code and the rest of what arrived.
fn http_status(s: &mut TcpStream) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).expect("an HTTP answer");
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let code = text[9..12].parse().unwrap();
    (code, text)
}

fn raw_ping(s: &mut TcpStream) -> u16 {
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: rill\r\n\r\n")
        .unwrap();
    let (code, text) = http_status(s);
    // The body ("OK") follows the headers; read it so the next answer starts clean.
    if !text.ends_with("OK") {
        let mut ok = [0u8; 2];
        s.read_exact(&mut ok).unwrap();
    }
    code
}

#[test]
fn the_connection_limit_refuses_the_next_connection_cleanly() {
    let node = TestNode::start(&["--max-connections", "8"]);
    let mut open: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(node.http).unwrap();
            assert_eq!(raw_ping(&mut s), 200);
            s
        })
        .collect();
    let mut ninth = TcpStream::connect(node.http).unwrap();
    let _ = ninth.write_all(b"GET /ping HTTP/1.1\r\nHost: rill\r\n\r\n");
    let (code, text) = http_status(&mut ninth);
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("too many connections"), "{text}");
    assert!(closed_within(&mut ninth, Duration::from_secs(5)));
    // The others are unaffected, and a closed one frees its slot.
    assert_eq!(raw_ping(&mut open[0]), 200);
    drop(open.pop());
    std::thread::sleep(Duration::from_millis(200));
    let s = stats(&node);
    assert_eq!(s["http_connections_refused_total"], 1, "{s}");
    drop(open);

    let mut pb: Vec<PbClient> = (0..8).map(|_| node.pb()).collect();
    for c in &mut pb {
        c.ping();
    }
    let mut ninth = node.pb();
    let (code, body) = ninth.recv();
    assert_eq!(code, MessageCode::ErrorResp.as_u8());
    let e = RpbErrorResp::decode(body).unwrap();
    assert!(String::from_utf8_lossy(&e.errmsg).contains("too many connections"));
    assert!(closed_within(&mut ninth.stream, Duration::from_secs(5)));
    pb[3].ping();
    drop(pb.pop());
    std::thread::sleep(Duration::from_millis(200));
    node.pb().ping();
    assert_eq!(stat(&node, "pbc_connections_refused_total"), 1);
}

#[test]
fn stalled_requests_are_closed_and_idle_connections_stay() {
    let node = TestNode::start(&["--read-timeout-secs", "2"]);
    // Idle connections, before and after a wait longer than the timeout.
    let mut idle_pb = node.pb();
    idle_pb.ping();
    let mut idle_http = TcpStream::connect(node.http).unwrap();
    assert_eq!(raw_ping(&mut idle_http), 200);

    // Slowloris: a header that never ends; a PB length prefix cut short; a PB body cut short.
    let mut header = TcpStream::connect(node.http).unwrap();
    header
        .write_all(b"GET /ping HTTP/1.1\r\nHost: rill\r\nX-Slow: ")
        .unwrap();
    let mut prefix = TcpStream::connect(node.pb).unwrap();
    prefix.write_all(&[0, 0]).unwrap();
    let mut body = TcpStream::connect(node.pb).unwrap();
    body.write_all(&[0, 0, 0, 101, 11]).unwrap();
    body.write_all(&[1; 10]).unwrap();
    // An HTTP body that stops halfway.
    let mut half = TcpStream::connect(node.http).unwrap();
    half.write_all(
        b"PUT /buckets/b/keys/k HTTP/1.1\r\nHost: rill\r\nContent-Type: text/plain\r\n\
          Content-Length: 100\r\n\r\nhalf",
    )
    .unwrap();
    let started = Instant::now();
    for s in [&mut header, &mut prefix, &mut body] {
        assert!(closed_within(s, Duration::from_secs(10)));
    }
    let (code, _) = http_status(&mut half);
    assert_eq!(code, 408);
    assert!(closed_within(&mut half, Duration::from_secs(10)));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "closed after {took:?}"
    );
    assert!(stat(&node, "client_read_timeouts_total") >= 4);

    std::thread::sleep(Duration::from_secs(1));
    idle_pb.ping();
    assert_eq!(raw_ping(&mut idle_http), 200);
}
