//! Riak's HTTP API (port 8098), served by hyper with axum's request and response types.
//!
//! The listener admits at most its connection limit (the next client gets a 503 and is
//! closed) and serves each connection itself ([`conn`]), so that a client that starts a request
//! and stalls is closed after the read timeout while idle keep-alive connections stay open.
//! Request bodies are read within the request memory budget ([`body`]).
//!
//! One handler receives every request: [`route::parse`] turns the raw path into the addressed
//! [`route::Resource`], and [`dispatch`] picks the operation by resource and method. Each
//! operation lives in the module named for what it serves (objects, buckets and props, ops
//! endpoints, administration). Errors from the node are turned into Riak's status codes and
//! plain-text bodies in one place, [`error_response`].

mod admin;
mod body;
mod bucket;
mod cluster;
mod conn;
mod datatype;
mod object;
mod ops;
mod params;
pub mod route;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use rill_core::bkey::Bucket;
use rill_net::Listener;
use rill_node::{Node, NodeError};
use tokio::sync::watch;

use crate::client_limits::ClientLimits;

use route::{BucketRef, Resource};

/// Settings of the HTTP listener.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Serve `/admin/...` to non-loopback peers too (off by default).
    pub admin_remote: bool,
    /// Largest request body accepted, in bytes (the object size limit plus headers' worth).
    pub max_body: usize,
    /// The node's client limits, shared with the PB listener.
    pub clients: Arc<ClientLimits>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            admin_remote: false,
            max_body: 51 * 1024 * 1024,
            clients: Arc::default(),
        }
    }
}

/// What a client past the connection limit is told before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain\r\nContent-Length: 38\r\nConnection: close\r\n\r\n\
too many connections: try again later\n";

pub(crate) struct Api {
    pub(crate) node: Node,
    pub(crate) config: HttpConfig,
}

/// Serves the HTTP API on `listener` until `shutdown` resolves; then lets the requests in
/// flight finish, closes every connection, and returns.
pub async fn serve(
    mut listener: Box<dyn Listener>,
    node: Node,
    config: HttpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let api = Arc::new(Api { node, config });
    let limit = api.config.clients.http.clone();
    let refusal = Bytes::from_static(TOO_MANY_CONNECTIONS);
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            (stream, peer, slot) = limit.accept(&mut *listener, &refusal) => {
                let api = api.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    conn::serve_connection(api, stream, peer, stopped).await;
                    drop(slot);
                });
            }
        }
    }
    let _ = stop.send(true);
    limit.all_closed().await;
    Ok(())
}

async fn handle(api: &Api, peer: SocketAddr, req: Request) -> Response {
    api.node.stats().http_requests.inc();
    let resource = route::parse(req.uri().path());
    let mut resp = match dispatch(api, peer, resource, req).await {
        Ok(r) => r,
        Err(e) => {
            api.node.stats().errors.inc();
            error_response(&e)
        }
    };
    resp.headers_mut().insert(
        header::SERVER,
        HeaderValue::from_static(concat!("Rill/", env!("CARGO_PKG_VERSION"))),
    );
    resp
}

async fn dispatch(
    api: &Api,
    peer: SocketAddr,
    resource: Resource,
    req: Request,
) -> Result<Response, HttpError> {
    let method = req.method().clone();
    let params = params::Params::parse(req.uri().query());
    match (resource, method) {
        (Resource::Ping, Method::GET | Method::HEAD) => Ok(ops::ping()),
        (Resource::Stats, Method::GET) => Ok(ops::stats(api)),
        (Resource::Root, Method::GET) => Ok(ops::resource_map(&req)),
        (Resource::Object { bucket, key }, m) => {
            object::handle(api, bucket, Some(key), m, req).await
        }
        (Resource::Keys { bucket }, Method::POST) => {
            object::handle(api, bucket, None, Method::POST, req).await
        }
        (
            Resource::Datatype {
                bucket,
                key: Some(key),
            },
            Method::GET,
        ) => datatype::fetch(api, &bucket, key, &params).await,
        (Resource::Datatype { bucket, key }, Method::POST) => {
            datatype::update(api, &bucket, key, &params, req).await
        }
        (Resource::Counter { bucket, key }, Method::GET) => {
            datatype::counter_get(api, &bucket, key, &params).await
        }
        (Resource::Counter { bucket, key }, Method::POST) => {
            datatype::counter_update(api, &bucket, key, &params, req).await
        }
        (Resource::Keys { bucket }, Method::GET) => bucket::list_keys(api, &bucket, &params),
        (Resource::LegacyBucket { bucket }, Method::POST) => {
            object::handle(api, bucket, None, Method::POST, req).await
        }
        (Resource::LegacyBucket { bucket }, Method::GET) => {
            bucket::legacy_bucket(api, &bucket, &params).await
        }
        (Resource::LegacyBucket { bucket } | Resource::BucketProps { bucket }, Method::PUT) => {
            bucket::set_props(api, &bucket, req).await
        }
        (Resource::BucketProps { bucket }, Method::GET) => bucket::get_props(api, &bucket),
        (Resource::BucketProps { bucket }, Method::DELETE) => bucket::reset_props(api, &bucket),
        (Resource::TypeProps { btype }, Method::GET) => bucket::get_type_props(api, &btype),
        (Resource::TypeProps { btype }, Method::PUT) => {
            bucket::set_type_props(api, &btype, req).await
        }
        (Resource::Buckets { btype }, Method::GET) => bucket::list_buckets(api, &btype, &params),
        (Resource::Preflist { bucket, key }, Method::GET) => bucket::preflist(api, &bucket, key),
        (Resource::AdminTypes { name, activate }, m) => {
            check_admin_peer(api, peer)?;
            admin::handle(api, name, activate, m, req).await
        }
        (Resource::AdminCluster { op }, m) => {
            check_admin_peer(api, peer)?;
            cluster::handle(api, &op, m, req).await
        }
        (Resource::AdminFailpoint { name }, m) => {
            check_admin_peer(api, peer)?;
            admin::failpoint(api, &name, m, req).await
        }
        (Resource::NotFound, _) => Err(HttpError::status(StatusCode::NOT_FOUND, "not found")),
        _ => Err(HttpError::status(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        )),
    }
}

/// Administration is for operators on the node's own machine unless configured otherwise.
fn check_admin_peer(api: &Api, peer: SocketAddr) -> Result<(), HttpError> {
    if api.config.admin_remote || peer.ip().is_loopback() {
        Ok(())
    } else {
        Err(HttpError::status(
            StatusCode::FORBIDDEN,
            "administration is only served to loopback clients",
        ))
    }
}

/// A request failure: either the node's error or a protocol-level status with a message.
#[derive(Debug)]
pub(crate) enum HttpError {
    Node(NodeError),
    Status(StatusCode, String),
}

impl HttpError {
    pub(crate) fn status(code: StatusCode, msg: impl Into<String>) -> Self {
        HttpError::Status(code, msg.into())
    }
    pub(crate) fn bad_request(msg: impl Into<String>) -> Self {
        HttpError::Status(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl From<NodeError> for HttpError {
    fn from(e: NodeError) -> Self {
        HttpError::Node(e)
    }
}

/// Riak's status codes and plain-text error bodies.
fn error_response(e: &HttpError) -> Response {
    let (status, msg) = match e {
        HttpError::Status(s, m) => (*s, m.clone()),
        HttpError::Node(e) => (node_status(e), e.to_string()),
    };
    let mut body = msg;
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut resp = (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response();
    // Refused before its body was read (too large, too slow): the rest of the body is not
    // worth reading, so the connection ends with this answer.
    if matches!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn node_status(e: &NodeError) -> StatusCode {
    use rill_core::crdt::DtError;
    use rill_core::object::LimitError;
    match e {
        NodeError::UnknownBucketType(_)
        | NodeError::InactiveBucketType(_)
        | NodeError::NotFound => StatusCode::NOT_FOUND,
        NodeError::InvalidQuorum(_) | NodeError::InvalidProps(_) | NodeError::BadRequest(_) => {
            StatusCode::BAD_REQUEST
        }
        NodeError::Limit(LimitError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        NodeError::Limit(_) => StatusCode::BAD_REQUEST,
        // A remove without context of something absent is Riak's precondition failure.
        NodeError::Datatype(DtError::NotPresent(_) | DtError::FieldNotPresent(_)) => {
            StatusCode::PRECONDITION_FAILED
        }
        NodeError::Datatype(_) => StatusCode::BAD_REQUEST,
        // Riak answers a failed X-Riak-If-Not-Modified with 409, a failed If-None-Match with 412.
        NodeError::Modified => StatusCode::CONFLICT,
        NodeError::MatchFound => StatusCode::PRECONDITION_FAILED,
        // The quorum errors know Riak's status for each case (503 for unmet quorums).
        NodeError::GetQuorum(e) => status_or_500(e.http_status()),
        NodeError::PutQuorum(e) => status_or_500(e.http_status()),
        NodeError::Timeout
        | NodeError::ShuttingDown
        | NodeError::Storage(_)
        | NodeError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
        NodeError::Corrupt(_) | NodeError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn status_or_500(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Converts a URL's bucket reference into a checked bucket.
pub(crate) fn bucket_of(r: &BucketRef) -> Result<Bucket, HttpError> {
    Bucket::new(r.btype.clone(), r.name.clone()).map_err(|e| HttpError::bad_request(e.to_string()))
}

/// A response with a body and content type.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .expect("static headers are valid")
}
