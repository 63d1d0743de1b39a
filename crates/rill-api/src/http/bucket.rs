//! Bucket-level resources over HTTP: key and bucket listing (streamed), bucket and bucket-type
//! properties, the legacy `/riak/B` resource, and preference lists.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use rill_core::bkey::BKey;
use rill_node::coord::KeyChunks;
use rill_node::{NodeError, NodeResult};
use serde_json::{Value, json};

use super::params::Params;
use super::route::BucketRef;
use super::{Api, HttpError, body, bucket_of, respond};

const JSON: &str = "application/json";
/// Largest properties document accepted.
const PROPS_BODY_MAX: usize = 1024 * 1024;

/// `GET .../keys?keys=true|stream`.
pub(crate) fn list_keys(
    api: &Api,
    bref: &BucketRef,
    params: &Params,
) -> Result<Response, HttpError> {
    let bucket = bucket_of(bref)?;
    let per_chunk = match params.get("keys") {
        Some("true") => false,
        Some("stream") => true,
        _ => {
            return Err(HttpError::bad_request(
                "keys parameter must be true or stream",
            ));
        }
    };
    let chunks = until(api.node.list_keys(&bucket)?, deadline(params)?);
    Ok(stream_json(chunks, "keys", per_chunk))
}

/// The chunks of a listing, ending with a timeout error once `deadline` passes.
fn until(
    chunks: KeyChunks,
    deadline: Option<tokio::time::Instant>,
) -> impl futures::Stream<Item = NodeResult<Vec<Bytes>>> + Send + 'static {
    futures::stream::unfold(Some(chunks), move |rx| async move {
        let mut rx = rx?;
        let next = match deadline {
            None => rx.recv().await,
            Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                Ok(next) => next,
                // Dropping the channel stops the scan behind it.
                Err(_) => return Some((Err(NodeError::Timeout), None)),
            },
        };
        next.map(|item| (item, Some(rx)))
    })
}

/// `GET /types/T/buckets?buckets=true|stream`, `/buckets?buckets=...`.
pub(crate) fn list_buckets(
    api: &Api,
    btype: &Bytes,
    params: &Params,
) -> Result<Response, HttpError> {
    let btype = std::str::from_utf8(btype)
        .map_err(|_| HttpError::bad_request("bucket type must be UTF-8"))?;
    let per_chunk = match params.get("buckets") {
        Some("true") => false,
        Some("stream") => true,
        _ => {
            return Err(HttpError::bad_request(
                "buckets parameter must be true or stream",
            ));
        }
    };
    let chunks = until(api.node.list_buckets(btype)?, deadline(params)?);
    Ok(stream_json(chunks, "buckets", per_chunk))
}

/// When a listing must have finished: `timeout` (ms) from now. One still running then ends
/// with an error (a broken transfer the client sees), never a silently short list.
fn deadline(params: &Params) -> Result<Option<tokio::time::Instant>, HttpError> {
    Ok(params.timeout()?.map(|t| tokio::time::Instant::now() + t))
}

/// Streams listing chunks as JSON: one `{"field":[...]}` object per chunk (`stream`), or a single
/// object assembled on the wire (`true`). Either way nothing is buffered whole; an error in the
/// middle ends the body early, which the client sees as a broken transfer.
fn stream_json(
    chunks: impl futures::Stream<Item = NodeResult<Vec<Bytes>>> + Send + 'static,
    field: &'static str,
    per_chunk: bool,
) -> Response {
    let mut first = true;
    let body = chunks.map(move |chunk| {
        let names = chunk.map_err(std::io::Error::other)?;
        let names: Vec<String> = names
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        let text = if per_chunk {
            json!({ field: names }).to_string()
        } else {
            let inner = serde_json::to_string(&names).expect("strings serialize");
            let inner = &inner[1..inner.len() - 1];
            let sep = if first || inner.is_empty() { "" } else { "," };
            first = first && inner.is_empty();
            format!("{sep}{inner}")
        };
        Ok::<_, std::io::Error>(Bytes::from(text))
    });
    let body = if per_chunk {
        Body::from_stream(body)
    } else {
        let open =
            futures::stream::once(async move { Ok(Bytes::from(format!("{{\"{field}\":["))) });
        let close = futures::stream::once(async { Ok(Bytes::from_static(b"]}")) });
        Body::from_stream(open.chain(body).chain(close))
    };
    respond(StatusCode::OK, JSON, body)
}

/// `GET .../props`.
pub(crate) fn get_props(api: &Api, bref: &BucketRef) -> Result<Response, HttpError> {
    let bucket = bucket_of(bref)?;
    let props = api.node.metadata().bucket_props(&bucket)?;
    let body = props.to_json(Some(&String::from_utf8_lossy(&bucket.name)));
    Ok(respond(StatusCode::OK, JSON, body.to_string()))
}

/// `PUT .../props` (and `PUT /riak/B`): body `{"props":{...}}`.
pub(crate) async fn set_props(
    api: &Api,
    bref: &BucketRef,
    req: Request,
) -> Result<Response, HttpError> {
    let bucket = bucket_of(bref)?;
    let patch = props_body(api, req).await?;
    api.node.metadata().set_bucket_props(&bucket, &patch)?;
    Ok(respond(StatusCode::NO_CONTENT, "text/plain", Body::empty()))
}

/// `DELETE .../props`: back to the bucket type's properties.
pub(crate) fn reset_props(api: &Api, bref: &BucketRef) -> Result<Response, HttpError> {
    let bucket = bucket_of(bref)?;
    api.node.metadata().reset_bucket_props(&bucket)?;
    Ok(respond(StatusCode::NO_CONTENT, "text/plain", Body::empty()))
}

/// `GET /types/T/props`.
pub(crate) fn get_type_props(api: &Api, btype: &Bytes) -> Result<Response, HttpError> {
    let name = type_name(btype)?;
    let (props, _) = api.node.metadata().type_props(name)?;
    let body = props.to_json(None);
    Ok(respond(StatusCode::OK, JSON, body.to_string()))
}

/// `PUT /types/T/props`: update an existing type.
pub(crate) async fn set_type_props(
    api: &Api,
    btype: &Bytes,
    req: Request,
) -> Result<Response, HttpError> {
    let name = type_name(btype)?.to_string();
    let patch = props_body(api, req).await?;
    api.node.metadata().update_type(&name, &patch)?;
    Ok(respond(StatusCode::NO_CONTENT, "text/plain", Body::empty()))
}

/// `GET /riak/B`: the legacy bucket resource — props (unless `props=false`) and, with
/// `keys=true`, the keys.
pub(crate) async fn legacy_bucket(
    api: &Api,
    bref: &BucketRef,
    params: &Params,
) -> Result<Response, HttpError> {
    if params.get("keys") == Some("stream") {
        return list_keys(api, bref, params);
    }
    let bucket = bucket_of(bref)?;
    let mut out = serde_json::Map::new();
    if params.get("props") != Some("false") {
        let props = api.node.metadata().bucket_props(&bucket)?;
        let name = String::from_utf8_lossy(&bucket.name);
        out.insert("props".into(), props.to_json(Some(&name))["props"].clone());
    }
    if params.get("keys") == Some("true") {
        // The legacy resource answers in one JSON document; keys are gathered from the stream.
        let mut rx = api.node.list_keys(&bucket)?;
        let mut keys = Vec::new();
        while let Some(chunk) = rx.recv().await {
            for k in chunk? {
                keys.push(Value::String(String::from_utf8_lossy(&k).into_owned()));
            }
        }
        out.insert("keys".into(), Value::Array(keys));
    }
    Ok(respond(
        StatusCode::OK,
        JSON,
        Value::Object(out).to_string(),
    ))
}

/// `GET .../keys/K/preflist`.
pub(crate) fn preflist(api: &Api, bref: &BucketRef, key: Bytes) -> Result<Response, HttpError> {
    let bucket = bucket_of(bref)?;
    let props = api.node.metadata().bucket_props(&bucket)?;
    let bkey = BKey::new(bucket, key).map_err(|e| HttpError::bad_request(e.to_string()))?;
    let list: Vec<Value> = api
        .node
        .preflist(&bkey, props.n_val)
        .into_iter()
        .map(|e| json!({ "partition": e.partition, "node": e.node.to_string(), "primary": e.primary }))
        .collect();
    Ok(respond(
        StatusCode::OK,
        JSON,
        json!({ "preflist": list }).to_string(),
    ))
}

/// Reads a `{"props":{...}}` body and returns the inner object.
pub(crate) async fn props_body(api: &Api, req: Request) -> Result<Value, HttpError> {
    let raw = body::read(api, req, PROPS_BODY_MAX).await?;
    let v: Value = serde_json::from_slice(&raw.bytes)
        .map_err(|e| HttpError::bad_request(format!("Malformed JSON properties: {e}")))?;
    match v.get("props") {
        Some(p @ Value::Object(_)) => Ok(p.clone()),
        _ => Err(HttpError::bad_request(
            "JSON object must contain a \"props\" object",
        )),
    }
}

fn type_name(btype: &Bytes) -> Result<&str, HttpError> {
    std::str::from_utf8(btype).map_err(|_| HttpError::bad_request("bucket type must be UTF-8"))
}
