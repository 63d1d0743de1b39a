//! Objects over HTTP: GET/HEAD, PUT/POST and DELETE of `.../keys/K` (and POST to `.../keys`),
//! with Riak's headers — X-Riak-Vclock, X-Riak-Meta-*, X-Riak-Index-*, Link, ETag,
//! Last-Modified — its conditional requests, and siblings as `300 Multiple Choices`.

use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use rill_core::bkey::{BKey, Bucket};
use rill_core::object::{Content, Link, Metadata, RiakObject};
use rill_core::vclock::VClock;
use rill_node::request::{
    DeleteOptions, DeleteOutcome, GetOptions, GetResponse, PutOptions, PutRequest,
};

use super::params::Params;
use super::route::{BucketRef, Family};
use super::{Api, HttpError, body, bucket_of};

const META_PREFIX: &str = "x-riak-meta-";
const INDEX_PREFIX: &str = "x-riak-index-";
const VCLOCK: &str = "x-riak-vclock";
/// `X-Riak-If-Not-Modified: <vclock>`: write only if the stored clock is still that one.
const IF_NOT_MODIFIED: &str = "x-riak-if-not-modified";

/// Dispatches an object request by method. `key` is `None` for a POST that asks the server to
/// choose the key.
pub(crate) async fn handle(
    api: &Api,
    bref: BucketRef,
    key: Option<Bytes>,
    method: Method,
    req: Request,
) -> Result<Response, HttpError> {
    let bucket = bucket_of(&bref)?;
    let params = Params::parse(req.uri().query());
    match (method, key) {
        (Method::GET | Method::HEAD, Some(key)) => {
            get(
                api,
                &bref,
                BKey::new(bucket, key).map_err(bad)?,
                &params,
                req.headers(),
            )
            .await
        }
        (Method::PUT | Method::POST, key) => put(api, &bref, bucket, key, &params, req).await,
        (Method::DELETE, Some(key)) => {
            delete(
                api,
                BKey::new(bucket, key).map_err(bad)?,
                &params,
                req.headers(),
            )
            .await
        }
        _ => Err(HttpError::status(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        )),
    }
}

async fn get(
    api: &Api,
    bref: &BucketRef,
    bkey: BKey,
    params: &Params,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    match api.node.get(&bkey, &get_options(params)?).await? {
        GetResponse::Found(obj) => {
            if let Some(vtag) = params.get("vtag") {
                let Some(c) = obj
                    .contents
                    .iter()
                    .find(|c| c.meta.vtag.as_ref() == vtag.as_bytes())
                else {
                    return Err(HttpError::status(StatusCode::NOT_FOUND, "not found"));
                };
                return Ok(single(bref, &obj.vclock, c, StatusCode::OK));
            }
            if obj.contents.len() > 1 {
                return Ok(siblings(api, bref, &obj, headers));
            }
            let c = &obj.contents[0];
            if not_modified(headers, c) {
                return Ok(Response::builder()
                    .status(StatusCode::NOT_MODIFIED)
                    .header(VCLOCK, vclock_header(&obj.vclock))
                    .header(header::ETAG, etag(c))
                    .body(Body::empty())
                    .expect("valid headers"));
            }
            Ok(single(bref, &obj.vclock, c, StatusCode::OK))
        }
        GetResponse::NotFound { tombstone } => {
            let mut b = Response::builder()
                .status(StatusCode::NOT_FOUND)
                .header(header::CONTENT_TYPE, "text/plain");
            if let Some(clock) = tombstone {
                b = b.header(VCLOCK, vclock_header(&clock));
            }
            Ok(b.body(Body::from("not found\n")).expect("valid headers"))
        }
        GetResponse::Unchanged => Ok(Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("valid headers")),
    }
}

async fn put(
    api: &Api,
    bref: &BucketRef,
    bucket: Bucket,
    key: Option<Bytes>,
    params: &Params,
    req: Request,
) -> Result<Response, HttpError> {
    let generated = key.is_none();
    let key = key.unwrap_or_else(|| api.node.generate_key());
    let bkey = BKey::new(bucket, key).map_err(bad)?;
    let headers = req.headers().clone();
    let headers = &headers;
    let Some(ctype) = headers.get(header::CONTENT_TYPE) else {
        return Err(HttpError::bad_request(
            "Missing Content-Type request header",
        ));
    };
    // Held until the write has been answered: the value's bytes stay charged to the budget.
    let body = body::read(api, req, api.config.max_body).await?;
    let value = body.bytes.clone();
    let if_not_modified = headers.get(IF_NOT_MODIFIED).map(parse_vclock).transpose()?;
    let context = match (&if_not_modified, headers.get(VCLOCK)) {
        (Some(expected), _) => expected.clone(),
        (None, Some(v)) => parse_vclock(v)?,
        (None, None) => VClock::new(),
    };
    let (content_type, charset) = split_content_type(ctype)?;
    let meta = Metadata {
        content_type,
        charset,
        content_encoding: header_bytes(headers, header::CONTENT_ENCODING.as_str()),
        vtag: api.node.generate_vtag(),
        last_modified_us: api.node.now_us(),
        usermeta: usermeta_from(headers),
        links: links_from(headers)?,
        indexes: indexes_from(headers)?,
        deleted: false,
    };
    let return_body = params.flag("returnbody")?.unwrap_or(false);
    let opts = put_options(params, headers, return_body)?;
    if let Some(expected) = headers.get(header::IF_MATCH) {
        check_if_match(api, &bkey, expected).await?;
    }
    let req = PutRequest {
        bkey: bkey.clone(),
        context,
        content: Content {
            meta,
            value,
            dot: None,
        },
    };
    let stored = api.node.put(req, &opts).await?.object;
    let status = if generated {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = match stored.filter(|_| return_body) {
        Some(obj) if obj.contents.len() > 1 => siblings(api, bref, &obj, headers),
        Some(obj) => single(bref, &obj.vclock, &obj.contents[0], status),
        None if generated => Response::builder()
            .status(StatusCode::CREATED)
            .body(Body::empty())
            .expect("valid"),
        None => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .expect("valid"),
    };
    if generated {
        let location = object_path(bref.family, &bkey.bucket, &bkey.key);
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(resp)
}

/// `If-Match: "vtag"`: the write goes ahead only if the stored object has that entity tag.
async fn check_if_match(api: &Api, bkey: &BKey, expected: &HeaderValue) -> Result<(), HttpError> {
    let current = api.node.get(bkey, &GetOptions::default()).await?;
    let matches = match current {
        GetResponse::Found(obj) => obj
            .contents
            .iter()
            .any(|c| expected == "*" || expected.as_bytes() == etag_bytes(c).as_slice()),
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(HttpError::status(
            StatusCode::PRECONDITION_FAILED,
            "Precondition Failed",
        ))
    }
}

async fn delete(
    api: &Api,
    bkey: BKey,
    params: &Params,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    let status = match api
        .node
        .delete(&bkey, &delete_options(params, headers)?)
        .await?
    {
        DeleteOutcome::Deleted => StatusCode::NO_CONTENT,
        DeleteOutcome::NotFound => StatusCode::NOT_FOUND,
    };
    Ok(Response::builder()
        .status(status)
        .body(Body::empty())
        .expect("valid"))
}

/// What a GET's query asks of the read. A tombstone's clock is always asked for: a 404 carries
/// it, so a client can write over the delete without a sibling.
fn get_options(params: &Params) -> Result<GetOptions, HttpError> {
    Ok(GetOptions {
        r: params.quorum("r")?,
        pr: params.quorum("pr")?,
        basic_quorum: params.flag("basic_quorum")?,
        notfound_ok: params.flag("notfound_ok")?,
        deleted_vclock: true,
        timeout: params.timeout()?,
        ..GetOptions::default()
    })
}

/// What a PUT's query and headers ask of the write. `return_body` is the client's
/// `returnbody`; an `If-Match` write asks for the stored object too.
fn put_options(
    params: &Params,
    headers: &HeaderMap,
    return_body: bool,
) -> Result<PutOptions, HttpError> {
    Ok(PutOptions {
        w: params.quorum("w")?,
        dw: params.quorum("dw")?,
        pw: params.quorum("pw")?,
        return_body: return_body || headers.contains_key(header::IF_MATCH),
        if_none_match: headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == "*"),
        if_not_modified: headers.contains_key(IF_NOT_MODIFIED),
        timeout: params.timeout()?,
        ..PutOptions::default()
    })
}

/// What a DELETE's query and headers ask of the delete: its quorums, and the clock the client
/// read, if it sent one.
fn delete_options(params: &Params, headers: &HeaderMap) -> Result<DeleteOptions, HttpError> {
    Ok(DeleteOptions {
        rw: params.quorum("rw")?,
        r: params.quorum("r")?,
        w: params.quorum("w")?,
        pr: params.quorum("pr")?,
        pw: params.quorum("pw")?,
        dw: params.quorum("dw")?,
        vclock: headers.get(VCLOCK).map(parse_vclock).transpose()?,
        timeout: params.timeout()?,
        ..DeleteOptions::default()
    })
}

/// One sibling as a full response: value as body, metadata as headers.
fn single(bref: &BucketRef, vclock: &VClock, c: &Content, status: StatusCode) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header(VCLOCK, vclock_header(vclock));
    let headers = b.headers_mut().expect("builder has no error yet");
    content_headers(bref, c, headers);
    b.body(Body::from(c.value.clone())).expect("valid headers")
}

/// `300 Multiple Choices`: the sibling vtags as text, or every sibling as `multipart/mixed`
/// when the client accepts it.
fn siblings(api: &Api, bref: &BucketRef, obj: &RiakObject, req_headers: &HeaderMap) -> Response {
    let wants_multipart = req_headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("multipart/mixed"));
    let b = Response::builder()
        .status(StatusCode::MULTIPLE_CHOICES)
        .header(VCLOCK, vclock_header(&obj.vclock));
    if !wants_multipart {
        let mut body = String::from("Siblings:\n");
        for c in &obj.contents {
            body.push_str(&String::from_utf8_lossy(&c.meta.vtag));
            body.push('\n');
        }
        return b
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(body))
            .expect("valid headers");
    }
    let boundary = String::from_utf8_lossy(&api.node.generate_vtag()).into_owned();
    let mut body = BytesMut::new();
    for c in &obj.contents {
        body.put_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        let mut h = HeaderMap::new();
        content_headers(bref, c, &mut h);
        for (name, value) in &h {
            body.put_slice(canonical_header_name(name.as_str()).as_bytes());
            body.put_slice(b": ");
            body.put_slice(value.as_bytes());
            body.put_slice(b"\r\n");
        }
        body.put_slice(b"\r\n");
        body.put_slice(&c.value);
    }
    body.put_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    b.header(
        header::CONTENT_TYPE,
        format!("multipart/mixed; boundary={boundary}"),
    )
    .body(Body::from(body.freeze()))
    .expect("valid headers")
}

/// The headers that describe one sibling's metadata.
fn content_headers(bref: &BucketRef, c: &Content, h: &mut HeaderMap) {
    let m = &c.meta;
    let mut ctype = String::from_utf8_lossy(&m.content_type).into_owned();
    if let Some(cs) = &m.charset {
        ctype.push_str("; charset=");
        ctype.push_str(&String::from_utf8_lossy(cs));
    }
    insert(h, header::CONTENT_TYPE.as_str(), ctype.as_bytes());
    if let Some(enc) = &m.content_encoding {
        insert(h, header::CONTENT_ENCODING.as_str(), enc);
    }
    insert(h, header::ETAG.as_str(), &etag_bytes(c));
    let modified = UNIX_EPOCH + Duration::from_micros(m.last_modified_us);
    insert(
        h,
        header::LAST_MODIFIED.as_str(),
        httpdate::fmt_http_date(modified).as_bytes(),
    );
    let bucket = Bucket {
        btype: bref.btype.clone(),
        name: bref.name.clone(),
    };
    let mut links = vec![format!(
        "<{}>; rel=\"up\"",
        bucket_path(bref.family, &bucket)
    )];
    for l in &m.links {
        let target = Bucket {
            btype: bref.btype.clone(),
            name: l.bucket.clone(),
        };
        links.push(format!(
            "<{}>; riaktag=\"{}\"",
            object_path(bref.family, &target, &l.key),
            utf8_percent_encode(&String::from_utf8_lossy(&l.tag), NON_ALPHANUMERIC)
        ));
    }
    insert(h, header::LINK.as_str(), links.join(", ").as_bytes());
    for (k, v) in &m.usermeta {
        let name = format!(
            "{META_PREFIX}{}",
            String::from_utf8_lossy(k).to_ascii_lowercase()
        );
        insert(h, &name, v);
    }
    // One header per index field, values joined as Riak does (indexes are kept sorted).
    for group in m.indexes.chunk_by(|a, b| a.0 == b.0) {
        let values: Vec<String> = group
            .iter()
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        let field = String::from_utf8_lossy(&group[0].0).to_ascii_lowercase();
        insert(
            h,
            &format!("{INDEX_PREFIX}{field}"),
            values.join(", ").as_bytes(),
        );
    }
    if m.deleted {
        insert(h, "x-riak-deleted", b"true");
    }
}

/// Appends a header, skipping names or values that HTTP cannot carry (stored metadata may have
/// come over PB with bytes no header allows).
fn insert(h: &mut HeaderMap, name: &str, value: &[u8]) {
    match (
        http::HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_bytes(value),
    ) {
        (Ok(n), Ok(v)) => {
            h.append(n, v);
        }
        _ => tracing::debug!(
            name,
            "metadata not representable as an HTTP header; omitted"
        ),
    }
}

fn canonical_header_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut cs = part.chars();
            match cs.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + cs.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn etag_bytes(c: &Content) -> Vec<u8> {
    let mut v = Vec::with_capacity(c.meta.vtag.len() + 2);
    v.push(b'"');
    v.extend_from_slice(&c.meta.vtag);
    v.push(b'"');
    v
}

fn etag(c: &Content) -> HeaderValue {
    HeaderValue::from_bytes(&etag_bytes(c)).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// `If-None-Match` (entity tag) and `If-Modified-Since` on a GET.
fn not_modified(headers: &HeaderMap, c: &Content) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH) {
        return inm.as_bytes() == etag_bytes(c).as_slice() || inm == "*";
    }
    if let Some(since) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    {
        let modified = UNIX_EPOCH + Duration::from_secs(c.meta.last_modified_us / 1_000_000);
        return modified <= since;
    }
    false
}

fn vclock_header(v: &VClock) -> HeaderValue {
    HeaderValue::from_str(&B64.encode(v.to_bytes())).expect("base64 is a valid header value")
}

/// A base64 clock header. An empty one is a fresh clock (a client that never read the object).
fn parse_vclock(v: &HeaderValue) -> Result<VClock, HttpError> {
    if v.as_bytes().trim_ascii().is_empty() {
        return Ok(VClock::new());
    }
    B64.decode(v.as_bytes())
        .ok()
        .and_then(|raw| VClock::from_bytes(&raw).ok())
        .ok_or_else(|| HttpError::bad_request("Invalid X-Riak-Vclock header"))
}

/// `text/plain; charset=utf-8` → (`text/plain`, `utf-8`).
fn split_content_type(v: &HeaderValue) -> Result<(Bytes, Option<Bytes>), HttpError> {
    let s = v
        .to_str()
        .map_err(|_| HttpError::bad_request("Content-Type header is not valid text"))?;
    let mut parts = s.split(';');
    let ctype = parts.next().unwrap_or("").trim();
    if ctype.is_empty() {
        return Err(HttpError::bad_request(
            "Missing Content-Type request header",
        ));
    }
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("charset"))
            .then(|| Bytes::copy_from_slice(v.trim().trim_matches('"').as_bytes()))
    });
    Ok((Bytes::copy_from_slice(ctype.as_bytes()), charset))
}

fn header_bytes(h: &HeaderMap, name: &str) -> Option<Bytes> {
    h.get(name).map(|v| Bytes::copy_from_slice(v.as_bytes()))
}

fn usermeta_from(h: &HeaderMap) -> Vec<(Bytes, Bytes)> {
    h.iter()
        .filter_map(|(n, v)| {
            let key = n.as_str().strip_prefix(META_PREFIX)?;
            Some((
                Bytes::copy_from_slice(key.as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            ))
        })
        .collect()
}

/// `X-Riak-Index-NAME_bin: a, b` / `X-Riak-Index-NAME_int: 1`: sorted, de-duplicated pairs.
fn indexes_from(h: &HeaderMap) -> Result<Vec<(Bytes, Bytes)>, HttpError> {
    let mut out = Vec::new();
    for (n, v) in h {
        let Some(field) = n.as_str().strip_prefix(INDEX_PREFIX) else {
            continue;
        };
        let is_int = field.ends_with("_int");
        if !is_int && !field.ends_with("_bin") {
            return Err(HttpError::bad_request(format!(
                "Could not parse index fields: {field} must end in _bin or _int"
            )));
        }
        let text = v
            .to_str()
            .map_err(|_| HttpError::bad_request("Could not parse index fields: not text"))?;
        for value in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if is_int && value.parse::<i64>().is_err() {
                return Err(HttpError::bad_request(format!(
                    "Could not parse index fields: {field} value {value} is not an integer"
                )));
            }
            out.push((
                Bytes::copy_from_slice(field.as_bytes()),
                Bytes::copy_from_slice(value.as_bytes()),
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Parses `Link: </buckets/b/keys/k>; riaktag="t", </riak/b/k>; riaktag="u"`, skipping the
/// `rel="up"` link to the bucket itself.
fn links_from(h: &HeaderMap) -> Result<Vec<Link>, HttpError> {
    let mut out = Vec::new();
    for v in h.get_all(header::LINK) {
        let text = v
            .to_str()
            .map_err(|_| HttpError::bad_request("Invalid Link header"))?;
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((target, rest)) = entry.strip_prefix('<').and_then(|e| e.split_once('>'))
            else {
                return Err(HttpError::bad_request(format!(
                    "Invalid Link header: {entry}"
                )));
            };
            let Some(tag) = rest.split(';').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim() == "riaktag").then(|| v.trim().trim_matches('"').to_string())
            }) else {
                continue;
            };
            let segs: Vec<&str> = target.split('/').filter(|s| !s.is_empty()).collect();
            let (bucket, key) = match segs.as_slice() {
                ["riak", b, k]
                | ["buckets", b, "keys", k]
                | ["types", _, "buckets", b, "keys", k] => (*b, *k),
                _ => {
                    return Err(HttpError::bad_request(format!(
                        "Invalid Link header: {entry}"
                    )));
                }
            };
            let dec = |s: &str| Bytes::from(percent_decode_str(s).collect::<Vec<u8>>());
            out.push(Link {
                bucket: dec(bucket),
                key: dec(key),
                tag: dec(&tag),
            });
        }
    }
    Ok(out)
}

pub(crate) fn enc(b: &[u8]) -> String {
    percent_encoding::percent_encode(b, NON_ALPHANUMERIC).to_string()
}

/// The URL of a bucket in the family the client used (Riak writes default-type buckets as
/// `/buckets/B` even when addressed through `/types/default`).
pub(crate) fn bucket_path(family: Family, b: &Bucket) -> String {
    match family {
        Family::Typed if !b.is_default_type() => {
            format!("/types/{}/buckets/{}", enc(&b.btype), enc(&b.name))
        }
        Family::Typed | Family::Buckets => format!("/buckets/{}", enc(&b.name)),
        Family::Legacy => format!("/riak/{}", enc(&b.name)),
    }
}

fn object_path(family: Family, b: &Bucket, key: &[u8]) -> String {
    match family {
        Family::Legacy => format!("/riak/{}/{}", enc(&b.name), enc(key)),
        _ => format!("{}/keys/{}", bucket_path(family, b), enc(key)),
    }
}

fn bad(e: impl std::fmt::Display) -> HttpError {
    HttpError::bad_request(e.to_string())
}

#[cfg(test)]
mod tests {
    use rill_core::props::Quorum;

    use super::*;

    #[test]
    fn content_type_and_charset_are_split() {
        let (ct, cs) =
            split_content_type(&HeaderValue::from_static("text/plain; charset=utf-8")).unwrap();
        assert_eq!(ct.as_ref(), b"text/plain");
        assert_eq!(cs.as_deref(), Some(&b"utf-8"[..]));
        let (ct, cs) = split_content_type(&HeaderValue::from_static("application/json")).unwrap();
        assert_eq!(ct.as_ref(), b"application/json");
        assert!(cs.is_none());
    }

    fn link(bucket: &str, key: &str, tag: &str) -> Link {
        Link {
            bucket: Bytes::copy_from_slice(bucket.as_bytes()),
            key: Bytes::copy_from_slice(key.as_bytes()),
            tag: Bytes::copy_from_slice(tag.as_bytes()),
        }
    }

    #[test]
    fn links_parse_from_all_url_families() {
        let mut h = HeaderMap::new();
        h.append(
            header::LINK,
            HeaderValue::from_static(
                "</riak/b>; rel=\"up\", </riak/b1/k1>; riaktag=\"t1\", \
                 </buckets/b2/keys/k%202>; riaktag=\"t2\"",
            ),
        );
        h.append(
            header::LINK,
            HeaderValue::from_static(
                "</types/ty/buckets/b%2F3/keys/k3>; riaktag=t%203, </buckets/b4/keys/k4>; rel=\"x\"",
            ),
        );
        assert_eq!(
            links_from(&h).unwrap(),
            [
                link("b1", "k1", "t1"),
                link("b2", "k 2", "t2"),
                link("b/3", "k3", "t 3"),
            ],
            "bucket, key and tag of each family; links without a riaktag are skipped"
        );
        for bad in [
            "garbage; riaktag=\"x\"",
            "</riak/b/k/extra>; riaktag=\"x\"",
            "</buckets/b/k>; riaktag=\"x\"",
            "<riak/b/k; riaktag=\"x\"",
        ] {
            h.insert(header::LINK, HeaderValue::from_static(bad));
            assert!(links_from(&h).is_err(), "{bad}");
        }
    }

    fn assert_bad_request<T: std::fmt::Debug>(r: Result<T, HttpError>, message: &str) {
        match r {
            Err(HttpError::Status(StatusCode::BAD_REQUEST, m)) => assert_eq!(m, message),
            other => panic!("expected 400 {message:?}, got {other:?}"),
        }
    }

    fn index(field: &str, value: &str) -> (Bytes, Bytes) {
        (
            Bytes::copy_from_slice(field.as_bytes()),
            Bytes::copy_from_slice(value.as_bytes()),
        )
    }

    #[test]
    fn indexes_are_sorted_de_duplicated_and_validated() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-riak-index-age_int",
            HeaderValue::from_static("42, 7, 42,,"),
        );
        h.append("x-riak-index-age_int", HeaderValue::from_static("7"));
        h.insert("x-riak-index-name_bin", HeaderValue::from_static("bob, al"));
        assert_eq!(
            indexes_from(&h).unwrap(),
            [
                index("age_int", "42"),
                index("age_int", "7"),
                index("name_bin", "al"),
                index("name_bin", "bob"),
            ]
        );
        h.insert("x-riak-index-age_int", HeaderValue::from_static("old"));
        assert_bad_request(
            indexes_from(&h),
            "Could not parse index fields: age_int value old is not an integer",
        );
        let mut h = HeaderMap::new();
        h.insert("x-riak-index-nosuffix", HeaderValue::from_static("1"));
        assert_bad_request(
            indexes_from(&h),
            "Could not parse index fields: nosuffix must end in _bin or _int",
        );
    }

    #[test]
    fn header_names_are_canonicalised_for_multipart() {
        assert_eq!(canonical_header_name("x-riak-meta-foo"), "X-Riak-Meta-Foo");
        assert_eq!(canonical_header_name("etag"), "Etag");
    }

    fn content(vtag: &str, last_modified_us: u64) -> Content {
        Content::new(
            Bytes::from_static(b"v"),
            Metadata {
                vtag: Bytes::copy_from_slice(vtag.as_bytes()),
                last_modified_us,
                ..Metadata::default()
            },
        )
    }

    #[test]
    fn if_none_match_and_if_modified_since_decide_not_modified() {
        // 2001-09-09T01:46:40Z, and half a second later.
        let c = content("vt", 1_000_000_000_500_000);
        let with = |name: header::HeaderName, v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(v));
            not_modified(&h, &c)
        };
        assert!(!not_modified(&HeaderMap::new(), &c));
        assert!(with(header::IF_NONE_MATCH, "\"vt\""));
        assert!(with(header::IF_NONE_MATCH, "*"));
        assert!(!with(header::IF_NONE_MATCH, "\"other\""));
        assert!(!with(header::IF_NONE_MATCH, "vt"), "the tag is quoted");
        assert!(
            with(header::IF_MODIFIED_SINCE, "Sun, 09 Sep 2001 01:46:40 GMT"),
            "same second"
        );
        assert!(with(
            header::IF_MODIFIED_SINCE,
            "Sun, 09 Sep 2001 01:46:41 GMT"
        ));
        assert!(!with(
            header::IF_MODIFIED_SINCE,
            "Sun, 09 Sep 2001 01:46:39 GMT"
        ));
        assert!(
            !with(header::IF_MODIFIED_SINCE, "yesterday"),
            "unparsable: ignored"
        );
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Sun, 09 Sep 2001 01:46:41 GMT"),
        );
        assert!(!not_modified(&h, &c), "If-None-Match takes precedence");
    }

    #[test]
    fn etags_are_the_quoted_vtag() {
        assert_eq!(etag(&content("abc", 0)), "\"abc\"");
        assert_eq!(etag(&content("a\nb", 0)), "\"\"", "no header can carry it");
    }

    #[test]
    fn vclock_headers_round_trip_and_an_empty_one_is_a_fresh_clock() {
        let mut clock = VClock::new();
        clock.increment(rill_core::vclock::Actor(*b"actor-01"), 100);
        let h = vclock_header(&clock);
        assert_eq!(parse_vclock(&h).unwrap(), clock);
        assert_eq!(
            parse_vclock(&HeaderValue::from_static("  ")).unwrap(),
            VClock::new()
        );
        assert_bad_request(
            parse_vclock(&HeaderValue::from_static("not base64!")),
            "Invalid X-Riak-Vclock header",
        );
        assert_bad_request(
            parse_vclock(&HeaderValue::from_static("AAAA")),
            "Invalid X-Riak-Vclock header",
        );
    }

    fn query(q: &str) -> Params {
        Params::parse(Some(q))
    }

    #[test]
    fn a_gets_query_sets_each_read_option() {
        let o = get_options(&query(
            "r=2&pr=quorum&basic_quorum=true&notfound_ok=false&timeout=1500",
        ))
        .unwrap();
        assert_eq!(o.r, Some(Quorum::N(2)));
        assert_eq!(o.pr, Some(Quorum::Quorum));
        assert_eq!(o.basic_quorum, Some(true));
        assert_eq!(o.notfound_ok, Some(false));
        assert_eq!(o.timeout, Some(Duration::from_millis(1500)));
        assert!(o.deleted_vclock, "a 404 carries the tombstone's clock");
        let o = get_options(&query("notfound_ok=true&basic_quorum=false")).unwrap();
        assert_eq!((o.notfound_ok, o.basic_quorum), (Some(true), Some(false)));
        let o = get_options(&Params::parse(None)).unwrap();
        assert_eq!(
            (o.r, o.pr, o.basic_quorum, o.notfound_ok),
            (None, None, None, None)
        );
        assert_eq!(o.timeout, None);
        assert!(o.deleted_vclock);
        assert_bad_request(
            get_options(&query("pr=most")),
            "pr query parameter must be an integer or one of the following words: 'one', \
             'quorum', 'all' or 'default'",
        );
    }

    #[test]
    fn a_puts_query_and_headers_set_each_write_option() {
        let mut h = HeaderMap::new();
        let o = put_options(&query("w=one&dw=all&pw=default&timeout=20"), &h, false).unwrap();
        assert_eq!(o.w, Some(Quorum::One));
        assert_eq!(o.dw, Some(Quorum::All));
        assert_eq!(o.pw, Some(Quorum::Default));
        assert_eq!(o.timeout, Some(Duration::from_millis(20)));
        assert!(!o.return_body && !o.if_none_match && !o.if_not_modified);
        assert!(put_options(&query(""), &h, true).unwrap().return_body);
        // Only `If-None-Match: *` asks for "no object yet".
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(!put_options(&query(""), &h, false).unwrap().if_none_match);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(put_options(&query(""), &h, false).unwrap().if_none_match);
        h.insert(
            IF_NOT_MODIFIED,
            HeaderValue::from_static("a85hYGBgzGDKBVIcypz/fgaUHjTNYEpk"),
        );
        assert!(put_options(&query(""), &h, false).unwrap().if_not_modified);
        let o = put_options(&query(""), &h, false).unwrap();
        assert!(!o.return_body, "no If-Match, no returnbody");
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(put_options(&query(""), &h, false).unwrap().return_body);
        assert_bad_request(
            put_options(&query("dw=x"), &h, false),
            "dw query parameter must be an integer or one of the following words: 'one', \
             'quorum', 'all' or 'default'",
        );
        assert_bad_request(
            put_options(&query("timeout=soon"), &h, false),
            "timeout query parameter must be an integer (milliseconds)",
        );
    }

    #[test]
    fn a_deletes_query_and_clock_set_each_delete_option() {
        let mut clock = VClock::new();
        clock.increment(rill_core::vclock::Actor(*b"actor-01"), 100);
        let mut h = HeaderMap::new();
        h.insert(VCLOCK, vclock_header(&clock));
        let o = delete_options(
            &query("rw=one&r=2&w=3&pr=all&pw=quorum&dw=default&timeout=7"),
            &h,
        )
        .unwrap();
        assert_eq!(
            [o.rw, o.r, o.w, o.pr, o.pw, o.dw],
            [
                Some(Quorum::One),
                Some(Quorum::N(2)),
                Some(Quorum::N(3)),
                Some(Quorum::All),
                Some(Quorum::Quorum),
                Some(Quorum::Default),
            ]
        );
        assert_eq!(o.vclock, Some(clock));
        assert_eq!(o.timeout, Some(Duration::from_millis(7)));
        let o = delete_options(&Params::parse(None), &HeaderMap::new()).unwrap();
        assert_eq!([o.rw, o.r, o.w, o.pr, o.pw, o.dw], [None; 6]);
        assert_eq!((o.vclock, o.timeout), (None, None));
        h.insert(VCLOCK, HeaderValue::from_static("not base64!"));
        assert_bad_request(
            delete_options(&query(""), &h),
            "Invalid X-Riak-Vclock header",
        );
    }

    #[test]
    fn content_types_need_a_type_and_take_a_quoted_charset() {
        let (ct, cs) = split_content_type(&HeaderValue::from_static(
            "text/html; q=1; Charset=\"latin1\"",
        ))
        .unwrap();
        assert_eq!(ct.as_ref(), b"text/html");
        assert_eq!(cs.as_deref(), Some(&b"latin1"[..]));
        assert_bad_request(
            split_content_type(&HeaderValue::from_static(" ; charset=utf-8")),
            "Missing Content-Type request header",
        );
    }

    #[test]
    fn usermeta_is_read_from_meta_headers_only() {
        let mut h = HeaderMap::new();
        h.insert("x-riak-meta-colour", HeaderValue::from_static("red"));
        h.insert("x-riak-index-a_bin", HeaderValue::from_static("x"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(usermeta_from(&h), [index("colour", "red")]);
        assert_eq!(
            header_bytes(&h, "content-type").as_deref(),
            Some(&b"text/plain"[..])
        );
        assert_eq!(header_bytes(&h, "content-encoding"), None);
    }

    #[test]
    fn paths_follow_the_family_the_client_used() {
        let typed = Bucket::new(&b"t y"[..], &b"b/1"[..]).unwrap();
        let default = Bucket::default_type(&b"b"[..]).unwrap();
        assert_eq!(
            bucket_path(Family::Typed, &typed),
            "/types/t%20y/buckets/b%2F1"
        );
        assert_eq!(bucket_path(Family::Typed, &default), "/buckets/b");
        assert_eq!(bucket_path(Family::Buckets, &typed), "/buckets/b%2F1");
        assert_eq!(bucket_path(Family::Legacy, &typed), "/riak/b%2F1");
        assert_eq!(
            object_path(Family::Typed, &typed, b"k 1"),
            "/types/t%20y/buckets/b%2F1/keys/k%201"
        );
        assert_eq!(
            object_path(Family::Buckets, &default, b"k"),
            "/buckets/b/keys/k"
        );
        assert_eq!(object_path(Family::Legacy, &default, b"k"), "/riak/b/k");
    }

    #[test]
    fn content_headers_describe_the_sibling() {
        let bref = BucketRef {
            btype: Bytes::from_static(b"default"),
            name: Bytes::from_static(b"b"),
            family: Family::Buckets,
        };
        let c = Content::new(
            Bytes::from_static(b"v"),
            Metadata {
                content_type: Bytes::from_static(b"text/plain"),
                charset: Some(Bytes::from_static(b"utf-8")),
                content_encoding: Some(Bytes::from_static(b"gzip")),
                vtag: Bytes::from_static(b"vt"),
                last_modified_us: 1_000_000_000_500_000,
                usermeta: vec![index("Colour", "red"), index("bad", "a\nb")],
                links: vec![link("b2", "k 2", "t t")],
                indexes: vec![
                    index("a_bin", "x"),
                    index("a_bin", "y"),
                    index("n_int", "1"),
                ],
                deleted: true,
            },
        );
        let mut h = HeaderMap::new();
        content_headers(&bref, &c, &mut h);
        let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(
            get("content-type").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(get("content-encoding").as_deref(), Some("gzip"));
        assert_eq!(get("etag").as_deref(), Some("\"vt\""));
        assert_eq!(
            get("last-modified").as_deref(),
            Some("Sun, 09 Sep 2001 01:46:40 GMT")
        );
        assert_eq!(
            get("link").as_deref(),
            Some("</buckets/b>; rel=\"up\", </buckets/b2/keys/k%202>; riaktag=\"t%20t\"")
        );
        assert_eq!(get("x-riak-meta-colour").as_deref(), Some("red"));
        assert_eq!(get("x-riak-meta-bad"), None, "not representable: left out");
        assert_eq!(get("x-riak-index-a_bin").as_deref(), Some("x, y"));
        assert_eq!(get("x-riak-index-n_int").as_deref(), Some("1"));
        assert_eq!(get("x-riak-deleted").as_deref(), Some("true"));

        let plain = content("vt", 0);
        let mut h = HeaderMap::new();
        content_headers(&bref, &plain, &mut h);
        assert_eq!(h.get("content-encoding"), None);
        assert_eq!(
            h.get("x-riak-deleted"),
            None,
            "only a tombstone says deleted"
        );
        assert!(
            !h.get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .contains("charset")
        );
    }
}
