//! Test harness: starts the real `rill` binary on free loopback ports and talks to it over raw
//! HTTP (ureq) and raw Protocol Buffers frames.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod cluster;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;
use rill_api::pb::riak::{RpbContent, RpbGetReq, RpbPutReq};
use rill_api::pb::{MessageCode, Request};

/// A running node; killed when dropped.
pub struct TestNode {
    pub child: Child,
    pub http: SocketAddr,
    pub pb: SocketAddr,
    pub internode: SocketAddr,
    pub data_dir: PathBuf,
    /// Every line the node has logged so far.
    log: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestNode {
    /// A node with a fresh data directory.
    pub fn start(extra: &[&str]) -> TestNode {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut n = TestNode::start_in(&dir, extra);
        n._tmp = Some(tmp);
        n
    }

    /// A node on an existing data directory (for restarts).
    pub fn start_in(dir: &Path, extra: &[&str]) -> TestNode {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
        cmd.arg("start")
            .args(["--http", "127.0.0.1:0", "--pb", "127.0.0.1:0"])
            .args(["--ring-size", "16"]);
        if !extra.contains(&"--internode") {
            cmd.args(["--internode", "127.0.0.1:0"]);
        }
        cmd.arg("--data-dir")
            .arg(dir)
            .args(extra)
            .env("RILL_LOG", "info")
            .env_remove("RILL_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning rill");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_in = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log_in.lock().unwrap().push(line.clone());
                if !sent && line.contains("listening") {
                    let _ = tx.send(line.clone());
                    sent = true;
                }
                if std::env::var_os("RILL_TEST_LOG").is_some() {
                    eprintln!("[node] {line}");
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("node did not report listening");
        TestNode {
            child,
            http: field(&line, "http="),
            pb: field(&line, "pb="),
            internode: field(&line, "internode="),
            data_dir: dir.to_path_buf(),
            log,
            _tmp: None,
        }
    }

    /// The lines the node has logged so far that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.contains(needle)).cloned().collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns whether the process exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    pub fn pb(&self) -> PbClient {
        PbClient::connect(self.pb)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, name: &str) -> SocketAddr {
    let start = line.find(name).expect("address field") + name.len();
    let rest = &line[start..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].parse().expect("socket address")
}

/// An HTTP agent that returns every status as a response.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // 300 Multiple Choices is Riak's siblings answer, not a redirect to follow.
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A raw PB client: frames requests, reads response frames.
pub struct PbClient {
    pub stream: TcpStream,
}

impl PbClient {
    pub fn connect(addr: SocketAddr) -> PbClient {
        let stream = TcpStream::connect(addr).expect("connect PB");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        PbClient { stream }
    }

    pub fn send(&mut self, req: &Request) {
        let mut buf = BytesMut::new();
        req.encode(&mut buf).expect("encode");
        self.stream.write_all(&buf).unwrap();
    }

    pub fn send_raw(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).unwrap();
    }

    /// Reads one frame: (code, body).
    pub fn recv(&mut self) -> (u8, Bytes) {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).expect("frame length");
        let len = u32::from_be_bytes(len) as usize;
        let mut frame = vec![0u8; len];
        self.stream.read_exact(&mut frame).expect("frame body");
        let mut b = Bytes::from(frame);
        let code = b.get_u8();
        (code, b)
    }

    /// Sends a request and decodes the response as `M`, panicking on an error response.
    pub fn call<M: Message + Default>(&mut self, req: &Request, expect: MessageCode) -> M {
        self.send(req);
        let (code, body) = self.recv();
        if code == MessageCode::ErrorResp.as_u8() {
            let e = rill_api::pb::riak::RpbErrorResp::decode(body).unwrap();
            panic!("error response: {}", String::from_utf8_lossy(&e.errmsg));
        }
        assert_eq!(code, expect.as_u8(), "unexpected response code");
        M::decode(body).expect("decode response")
    }

    /// Sends a request that must fail; returns the error message.
    pub fn call_err(&mut self, req: &Request) -> String {
        self.send(req);
        let (code, body) = self.recv();
        assert_eq!(
            code,
            MessageCode::ErrorResp.as_u8(),
            "expected an error response"
        );
        let e = rill_api::pb::riak::RpbErrorResp::decode(body).unwrap();
        String::from_utf8_lossy(&e.errmsg).into_owned()
    }
}

impl TestNode {
    /// Creates and activates a bucket type through the HTTP admin endpoints; `props` is the
    /// inner JSON object of `{"props": ...}`.
    pub fn create_bucket_type(&self, name: &str, props: &str) {
        let h = http();
        let created = h
            .post(&self.url(&format!("/admin/bucket-types/{name}")))
            .header("Content-Type", "application/json")
            .send(format!("{{\"props\":{props}}}"))
            .unwrap();
        assert_eq!(created.status(), 201, "creating bucket type {name}");
        let activated = h
            .post(&self.url(&format!("/admin/bucket-types/{name}/activate")))
            .send_empty()
            .unwrap();
        assert_eq!(activated.status(), 204, "activating bucket type {name}");
    }
}

impl PbClient {
    /// Sends a ping and checks the answer: proof that the connection is still usable.
    pub fn ping(&mut self) {
        self.send(&Request::Ping);
        let (code, body) = self.recv();
        assert_eq!(code, MessageCode::PingResp.as_u8(), "ping answered with");
        assert!(body.is_empty());
    }

    /// Sends every request in one write, then reads one reply frame per request, in order.
    /// The replies must fit the socket buffers while the requests are still being written,
    /// so keep batches to a few hundred small requests.
    pub fn pipeline(&mut self, reqs: &[Request]) -> Vec<(u8, Bytes)> {
        let mut buf = BytesMut::new();
        for req in reqs {
            req.encode(&mut buf).expect("encode");
        }
        self.stream.write_all(&buf).unwrap();
        reqs.iter().map(|_| self.recv()).collect()
    }
}

/// A process's resident memory in KiB (`VmRSS`, Linux).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The highest resident memory of a process while it runs, sampled every few milliseconds.
/// (`VmHWM` is no substitute: memory the allocator hands back with `madvise` lowers the RSS
/// without the kernel recording the peak first, so `VmHWM` can even appear to fall.)
pub struct PeakRss {
    stop: Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

impl PeakRss {
    pub fn start(pid: u32) -> PeakRss {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak.max(rss_kib(pid))
        });
        PeakRss { stop, sampler }
    }

    /// Stops sampling; the peak in KiB.
    pub fn finish(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.sampler.join().expect("sampler")
    }
}

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// An `RpbPutReq` of a text value.
pub fn put_req(bucket: &str, key: &str, value: &str) -> RpbPutReq {
    RpbPutReq {
        bucket: b(bucket),
        key: Some(b(key)),
        content: RpbContent {
            value: b(value),
            content_type: Some(b("text/plain")),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn get_req(bucket: &str, key: &str) -> RpbGetReq {
    RpbGetReq {
        bucket: b(bucket),
        key: b(key),
        ..Default::default()
    }
}

impl TestNode {
    /// Sets fault-injection point `point` to `action` (`off` clears it); needs a build with
    /// the `failpoints` feature.
    pub fn set_failpoint(&self, point: &str, action: &str) {
        let resp = http()
            .put(&self.url(&format!("/admin/failpoints/{point}")))
            .send(action)
            .unwrap();
        assert_eq!(resp.status(), 204, "setting failpoint {point}");
    }

    /// `GET path` answered with JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let text = http()
            .get(&self.url(path))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}
