//! A minimal HTTP/1.1 keep-alive client for Riak's HTTP API: one request in flight on one TCP
//! connection.
//!
//! Hand-rolled over a tokio `TcpStream` rather than hyper's pooled client because a benchmark
//! worker wants exactly one pinned connection to one server, with reconnects under its own
//! control, and only needs a few fixed request shapes; the response head is parsed by `httparse`
//! (already in the build through hyper). Bodies framed by `Content-Length`, by chunked encoding
//! or by connection close are all understood, so it works against Riak's own servers too.

use bytes::{Buf, Bytes, BytesMut};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ClientError, DtFetched, DtUpdate, Fetched, MAP_COUNTER, MAP_REGISTER, Namespace};
use crate::bench::options::PropsSetup;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted: Riak's 50 MiB object limit with room for multipart framing.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Headers parsed per response.
const MAX_HEADERS: usize = 64;
/// Characters left unescaped in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An open HTTP connection.
pub struct HttpConn {
    stream: TcpStream,
    host: String,
    read: BytesMut,
    write: Vec<u8>,
    /// The server announced it closes the connection after its last response.
    closed: bool,
}

/// A response, reduced to what the benchmark looks at.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub vclock: Option<Bytes>,
    pub body: Bytes,
    /// The server closes the connection after this response.
    pub close: bool,
}

impl HttpConn {
    /// Connects to `target`.
    pub async fn connect(target: &str) -> Result<HttpConn, ClientError> {
        let stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            stream,
            host: target.to_owned(),
            read: BytesMut::with_capacity(8 * 1024),
            write: Vec::with_capacity(8 * 1024),
            closed: false,
        })
    }

    /// Whether the server said it will close the connection; the caller reconnects.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Sends one request and reads its response.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &[u8])],
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        self.write.clear();
        write_request(&mut self.write, method, path, &self.host, headers, body);
        self.stream.write_all(&self.write).await?;
        loop {
            if let Some(resp) = parse_response(&mut self.read, false)? {
                self.closed = resp.close;
                return Ok(resp);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return match parse_response(&mut self.read, true)? {
                    Some(resp) => {
                        self.closed = true;
                        Ok(resp)
                    }
                    None => Err(ClientError::Connection(
                        "server closed the connection".into(),
                    )),
                };
            }
        }
    }

    pub async fn get(&mut self, ns: &Namespace, key: &Bytes) -> Result<Fetched, ClientError> {
        let resp = self.send("GET", &object_path(ns, key), &[], None).await?;
        match resp.status {
            // 300: siblings; the vclock covers them all.
            200 | 300 => Ok(Fetched {
                found: true,
                vclock: resp.vclock,
            }),
            404 => Ok(Fetched {
                found: false,
                vclock: resp.vclock,
            }),
            _ => Err(status_error(&resp)),
        }
    }

    pub async fn put(
        &mut self,
        ns: &Namespace,
        key: &Bytes,
        value: Bytes,
        vclock: Option<Bytes>,
    ) -> Result<(), ClientError> {
        let mut headers: Vec<(&str, &[u8])> = vec![("Content-Type", b"application/octet-stream")];
        if let Some(v) = &vclock {
            headers.push(("X-Riak-Vclock", v));
        }
        let resp = self
            .send("PUT", &object_path(ns, key), &headers, Some(&value))
            .await?;
        expect_success(&resp)
    }

    /// Returns whether the key existed.
    pub async fn delete(&mut self, ns: &Namespace, key: &Bytes) -> Result<bool, ClientError> {
        let resp = self
            .send("DELETE", &object_path(ns, key), &[], None)
            .await?;
        match resp.status {
            404 => Ok(false),
            _ => expect_success(&resp).map(|()| true),
        }
    }

    /// `POST .../datatypes/K` with Riak's JSON operation, without `returnbody`.
    pub async fn dt_update(
        &mut self,
        ns: &Namespace,
        key: &Bytes,
        update: &DtUpdate,
    ) -> Result<(), ClientError> {
        let body = dt_op_json(update).to_string();
        let headers: [(&str, &[u8]); 1] = [("Content-Type", b"application/json")];
        let resp = self
            .send(
                "POST",
                &datatype_path(ns, key),
                &headers,
                Some(body.as_bytes()),
            )
            .await?;
        expect_success(&resp)
    }

    pub async fn dt_fetch(
        &mut self,
        ns: &Namespace,
        key: &Bytes,
    ) -> Result<DtFetched, ClientError> {
        let resp = self.send("GET", &datatype_path(ns, key), &[], None).await?;
        match resp.status {
            200 => dt_fetched(&resp.body),
            404 => Ok(DtFetched {
                found: false,
                len: 0,
            }),
            _ => Err(status_error(&resp)),
        }
    }

    /// From `GET /types/T/props`.
    pub async fn type_datatype(&mut self, name: &str) -> Result<Option<String>, ClientError> {
        let path = format!("/types/{}/props", encode(name.as_bytes()));
        let resp = self.send("GET", &path, &[], None).await?;
        expect_success(&resp)?;
        let v: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|e| {
            ClientError::Server(format!("bucket type properties are not JSON: {e}"))
        })?;
        Ok(v["props"]["datatype"].as_str().map(str::to_owned))
    }

    pub async fn set_bucket_props(
        &mut self,
        ns: &Namespace,
        props: &PropsSetup,
    ) -> Result<(), ClientError> {
        let body = serde_json::json!({ "props": props_json(props) }).to_string();
        let path = format!("{}/props", bucket_path(ns));
        let headers: [(&str, &[u8]); 1] = [("Content-Type", b"application/json")];
        let resp = self
            .send("PUT", &path, &headers, Some(body.as_bytes()))
            .await?;
        expect_success(&resp)
    }
}

/// Only the properties that were given.
fn props_json(props: &PropsSetup) -> serde_json::Map<String, serde_json::Value> {
    [("n_val", props.n_val), ("r", props.r), ("w", props.w)]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name.to_owned(), v.into())))
        .collect()
}

/// Riak's JSON for an update: `{"increment": n}`, `{"add": m}` / `{"add_all": [...]}`, and
/// for maps `{"update": {"visits_counter": {"increment": 1}, "last_register": "..."}}`.
/// Members are text in JSON; the bench's own are hex, so the lossy conversion never bites.
fn dt_op_json(update: &DtUpdate) -> serde_json::Value {
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    match update {
        DtUpdate::Increment(n) => serde_json::json!({ "increment": n }),
        DtUpdate::AddMembers(members) => match members.as_slice() {
            [one] => serde_json::json!({ "add": text(one) }),
            many => serde_json::json!({ "add_all": many.iter().map(text).collect::<Vec<_>>() }),
        },
        DtUpdate::Map { register } => serde_json::json!({ "update": {
            format!("{MAP_COUNTER}_counter"): { "increment": 1 },
            format!("{MAP_REGISTER}_register"): text(register),
        }}),
    }
}

/// A fetched value's size: `value` is a set's member list, a map's field object or a counter's
/// number.
fn dt_fetched(body: &[u8]) -> Result<DtFetched, ClientError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ClientError::Server(format!("data type value is not JSON: {e}")))?;
    let len = match &v["value"] {
        serde_json::Value::Array(members) => members.len(),
        serde_json::Value::Object(fields) => fields.len(),
        _ => 0,
    };
    Ok(DtFetched { found: true, len })
}

fn expect_success(resp: &Response) -> Result<(), ClientError> {
    if (200..300).contains(&resp.status) {
        Ok(())
    } else {
        Err(status_error(resp))
    }
}

/// A server error naming the status and the start of the body.
fn status_error(resp: &Response) -> ClientError {
    let text = String::from_utf8_lossy(&resp.body);
    let text: String = text.trim().chars().take(200).collect();
    ClientError::Server(format!("HTTP {}: {text}", resp.status))
}

/// `/types/T/buckets/B` or, for the default type, `/buckets/B`.
fn bucket_path(ns: &Namespace) -> String {
    let bucket = encode(&ns.bucket);
    match &ns.bucket_type {
        Some(t) => format!("/types/{}/buckets/{bucket}", encode(t)),
        None => format!("/buckets/{bucket}"),
    }
}

fn object_path(ns: &Namespace, key: &[u8]) -> String {
    format!("{}/keys/{}", bucket_path(ns), encode(key))
}

fn datatype_path(ns: &Namespace, key: &[u8]) -> String {
    format!("{}/datatypes/{}", bucket_path(ns), encode(key))
}

/// Percent-encodes a path segment; names are bytes, any that are not UTF-8 are escaped byte
/// for byte.
fn encode(segment: &[u8]) -> String {
    match std::str::from_utf8(segment) {
        Ok(s) => utf8_percent_encode(s, SEGMENT).to_string(),
        Err(_) => segment.iter().map(|b| format!("%{b:02X}")).collect(),
    }
}

/// Appends one HTTP/1.1 request to `out`.
fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &[u8])],
    body: Option<&[u8]>,
) {
    out.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n").as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(body) = body {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

/// How a response body is delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// The parts of a response head the client uses.
struct Head {
    status: u16,
    len: usize,
    framing: Framing,
    vclock: Option<Bytes>,
    close: bool,
}

fn protocol_error(what: impl std::fmt::Display) -> ClientError {
    ClientError::Connection(format!("bad HTTP response: {what}"))
}

/// Parses the head at the start of `buf`; `None` until it is complete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf).map_err(protocol_error)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial if buf.len() > MAX_HEAD => {
            return Err(protocol_error("head too large"));
        }
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.unwrap_or(0);
    let mut close = resp.version == Some(0);
    let mut length = None;
    let mut chunked = false;
    let mut vclock = None;
    for h in resp.headers.iter() {
        let value = h.value;
        if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(value).map_err(protocol_error)?;
            length = Some(text.trim().parse::<usize>().map_err(protocol_error)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with(b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            close = v == b"close" || (close && v != b"keep-alive");
        } else if h.name.eq_ignore_ascii_case("x-riak-vclock") {
            vclock = Some(Bytes::copy_from_slice(value));
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    if let Framing::Length(n) = framing
        && n > MAX_BODY
    {
        return Err(protocol_error(format!("body of {n} bytes is too large")));
    }
    Ok(Some(Head {
        status,
        len,
        framing,
        vclock,
        close,
    }))
}

/// Takes one complete response off the front of `buf`, or returns `None` if more bytes are
/// needed. `eof` says the peer has closed, which completes a body delimited by the close.
/// Interim (1xx) responses are skipped.
pub fn parse_response(buf: &mut BytesMut, eof: bool) -> Result<Option<Response>, ClientError> {
    loop {
        let Some(head) = parse_head(buf)? else {
            return Ok(None);
        };
        let rest = &buf[head.len..];
        let (body, consumed) = match head.framing {
            Framing::Empty => (Bytes::new(), 0),
            Framing::Length(n) if rest.len() >= n => (Bytes::copy_from_slice(&rest[..n]), n),
            Framing::Length(_) => return Ok(None),
            Framing::Chunked => match decode_chunked(rest)? {
                Some((body, consumed)) => (Bytes::from(body), consumed),
                None => return Ok(None),
            },
            Framing::UntilClose if eof => (Bytes::copy_from_slice(rest), rest.len()),
            Framing::UntilClose if rest.len() > MAX_BODY => {
                return Err(protocol_error("unbounded body too large"));
            }
            Framing::UntilClose => return Ok(None),
        };
        buf.advance(head.len + consumed);
        if (100..200).contains(&head.status) {
            continue;
        }
        return Ok(Some(Response {
            status: head.status,
            vclock: head.vclock,
            body,
            close: head.close || head.framing == Framing::UntilClose,
        }));
    }
}

/// Decodes a chunked body at the start of `buf`: the body and the bytes it took, or `None` if
/// it is not complete yet. Trailers are skipped.
fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ClientError> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let (line, size) = match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete(v)) => v,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(protocol_error("bad chunk size")),
        };
        pos += line;
        let size = usize::try_from(size)
            .ok()
            .filter(|s| body.len().saturating_add(*s) <= MAX_BODY)
            .ok_or_else(|| protocol_error("chunked body too large"))?;
        if size == 0 {
            return Ok(skip_trailers(&buf[pos..]).map(|n| (body, pos + n)));
        }
        let Some(chunk) = buf.get(pos..pos + size + 2) else {
            return Ok(None);
        };
        if &chunk[size..] != b"\r\n" {
            return Err(protocol_error("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&chunk[..size]);
        pos += size + 2;
    }
}

/// Length of the trailer section ending with an empty line, or `None` if incomplete.
fn skip_trailers(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let end = buf[pos..].windows(2).position(|w| w == b"\r\n")?;
        pos += end + 2;
        if end == 0 {
            return Some(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], eof: bool) -> Result<Option<Response>, ClientError> {
        let mut buf = BytesMut::from(input);
        parse_response(&mut buf, eof)
    }

    #[test]
    fn content_length_response_with_vclock() {
        let raw =
            b"HTTP/1.1 200 OK\r\nX-Riak-Vclock: a85hYGBg\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1";
        let mut buf = BytesMut::from(&raw[..]);
        let resp = parse_response(&mut buf, false).unwrap().unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.vclock.as_deref(), Some(&b"a85hYGBg"[..]));
        assert_eq!(&resp.body[..], b"hello");
        assert!(!resp.close);
        assert_eq!(
            &buf[..],
            b"HTTP/1.1",
            "the next response's bytes stay buffered"
        );
    }

    #[test]
    fn every_prefix_of_a_response_is_incomplete() {
        let raw = b"HTTP/1.1 404 Object Not Found\r\nContent-Length: 10\r\n\r\nnot found\n";
        for cut in 0..raw.len() {
            assert_eq!(parse_all(&raw[..cut], false).unwrap(), None, "cut {cut}");
        }
        assert_eq!(parse_all(raw, false).unwrap().unwrap().status, 404);
    }

    #[test]
    fn no_content_has_no_body_even_with_bytes_following() {
        let raw = b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200";
        let mut buf = BytesMut::from(&raw[..]);
        let resp = parse_response(&mut buf, false).unwrap().unwrap();
        assert_eq!((resp.status, resp.body.len()), (204, 0));
        assert_eq!(&buf[..], b"HTTP/1.1 200");
    }

    #[test]
    fn chunked_body_is_reassembled_and_trailers_skipped() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-T: 1\r\n\r\nrest";
        let mut buf = BytesMut::from(&raw[..]);
        let resp = parse_response(&mut buf, false).unwrap().unwrap();
        assert_eq!(&resp.body[..], b"abcdefg");
        assert_eq!(&buf[..], b"rest");
        for cut in 0..raw.len() - 4 {
            assert_eq!(parse_all(&raw[..cut], false).unwrap(), None, "cut {cut}");
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        let bad_size = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse_all(bad_size, false).unwrap_err().is_connection());
        let bad_end = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc";
        assert!(parse_all(bad_end, false).is_err());
    }

    #[test]
    fn body_until_close_completes_at_eof() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(parse_all(raw, false).unwrap(), None);
        let resp = parse_all(raw, true).unwrap().unwrap();
        assert_eq!(&resp.body[..], b"all of it");
        assert!(resp.close);
    }

    #[test]
    fn connection_close_is_reported() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert!(parse_all(raw, false).unwrap().unwrap().close);
        let keep = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
        assert!(!parse_all(keep, false).unwrap().unwrap().close);
    }

    #[test]
    fn interim_responses_are_skipped() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse_all(raw, false).unwrap().unwrap().status, 204);
    }

    #[test]
    fn garbage_and_oversize_are_errors_not_panics() {
        assert!(parse_all(b"SPDY/9 nonsense\r\n\r\n", false).is_err());
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n";
        assert!(parse_all(huge, false).is_err());
        let bad_len = b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n";
        assert!(parse_all(bad_len, false).is_err());
        let endless_head = vec![b'a'; MAX_HEAD + 10];
        let mut with_status = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        with_status.extend(endless_head);
        assert!(parse_all(&with_status, false).is_err());
    }

    #[test]
    fn requests_are_framed_with_host_and_length() {
        let mut out = Vec::new();
        let headers: [(&str, &[u8]); 1] = [("X-Riak-Vclock", b"abc=")];
        write_request(
            &mut out,
            "PUT",
            "/buckets/b/keys/1",
            "h:1",
            &headers,
            Some(b"xy"),
        );
        assert_eq!(
            out,
            b"PUT /buckets/b/keys/1 HTTP/1.1\r\nHost: h:1\r\nX-Riak-Vclock: abc=\r\nContent-Length: 2\r\n\r\nxy"
        );
        out.clear();
        write_request(&mut out, "GET", "/ping", "h:1", &[], None);
        assert_eq!(out, b"GET /ping HTTP/1.1\r\nHost: h:1\r\n\r\n");
    }

    #[test]
    fn paths_encode_names_and_types() {
        let ns = Namespace {
            bucket: Bytes::from_static(b"my bucket/1"),
            bucket_type: None,
        };
        assert_eq!(
            object_path(&ns, b"k~1"),
            "/buckets/my%20bucket%2F1/keys/k~1"
        );
        let typed = Namespace {
            bucket: Bytes::from_static(b"b"),
            bucket_type: Some(Bytes::from_static(b"t")),
        };
        assert_eq!(object_path(&typed, b"\xff"), "/types/t/buckets/b/keys/%FF");
        assert_eq!(bucket_path(&typed), "/types/t/buckets/b");
    }

    #[test]
    fn only_given_props_are_sent() {
        let props = PropsSetup {
            n_val: Some(3),
            r: None,
            w: Some(2),
        };
        assert_eq!(
            serde_json::Value::Object(props_json(&props)),
            serde_json::json!({"n_val": 3, "w": 2})
        );
    }

    #[test]
    fn data_type_operations_are_riaks_json() {
        assert_eq!(
            dt_op_json(&DtUpdate::Increment(1)),
            serde_json::json!({"increment": 1})
        );
        assert_eq!(
            dt_op_json(&DtUpdate::AddMembers(vec![Bytes::from_static(b"ab")])),
            serde_json::json!({"add": "ab"})
        );
        assert_eq!(
            dt_op_json(&DtUpdate::AddMembers(vec![
                Bytes::from_static(b"a"),
                Bytes::from_static(b"b")
            ])),
            serde_json::json!({"add_all": ["a", "b"]})
        );
        assert_eq!(
            dt_op_json(&DtUpdate::Map {
                register: Bytes::from_static(b"v")
            }),
            serde_json::json!({"update": {
                "visits_counter": {"increment": 1},
                "last_register": "v"
            }})
        );
        let typed = Namespace {
            bucket: Bytes::from_static(b"b"),
            bucket_type: Some(Bytes::from_static(b"sets")),
        };
        assert_eq!(
            datatype_path(&typed, b"0"),
            "/types/sets/buckets/b/datatypes/0"
        );
    }

    #[test]
    fn fetched_values_are_measured() {
        let set = br#"{"type":"set","value":["a","b","c"],"context":"x"}"#;
        assert_eq!(
            dt_fetched(set).unwrap(),
            DtFetched {
                found: true,
                len: 3
            }
        );
        let map = br#"{"type":"map","value":{"visits_counter":2,"last_register":"v"}}"#;
        assert_eq!(dt_fetched(map).unwrap().len, 2);
        let counter = br#"{"type":"counter","value":7}"#;
        assert_eq!(
            dt_fetched(counter).unwrap(),
            DtFetched {
                found: true,
                len: 0
            }
        );
        assert!(!dt_fetched(b"not json").unwrap_err().is_connection());
    }
}
