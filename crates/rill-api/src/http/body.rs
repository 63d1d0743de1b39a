//! Reading a request body into memory within the request memory budget and the read deadline.
//!
//! A body is taken chunk by chunk as hyper delivers it, into a [`BudgetedBuf`] that grows with
//! the bytes that arrived (a declared `Content-Length` only caps the growth); while the budget
//! is spent the next chunk is not asked for, so hyper stops reading the socket and TCP pushes
//! back on the client. A body whose declared length exceeds the limit or the whole budget is
//! refused before any of it is read. The bytes stay charged (the returned [`Lease`]) until the
//! handler drops them with its answer. A body not complete by the request's deadline is
//! answered 408 and the connection closed.
//!
//! A body refused before it was all read (413, 408) is discarded for up to [`LINGER`] before
//! the answer goes out, so that a client still sending reads the answer instead of a reset
//! connection; discarded bytes cost no memory.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use http::{StatusCode, header};
use hyper::body::Body as _;

use super::conn::RequestClock;
use super::{Api, HttpError};
use crate::budget::{BudgetedBuf, Lease};
use crate::client_limits::REQUEST_FREE_BYTES;

/// How long a refused body is discarded before the refusal is sent.
const LINGER: Duration = Duration::from_secs(1);

/// A request's body and the budget it holds.
pub(crate) struct ReadBody {
    pub(crate) bytes: Bytes,
    /// Given back when the request has been served.
    pub(crate) _lease: Lease,
}

/// Reads `req`'s whole body, at most `max` bytes (413 beyond).
pub(crate) async fn read(api: &Api, req: Request, max: usize) -> Result<ReadBody, HttpError> {
    let clock = req.extensions().get::<Arc<RequestClock>>().cloned();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let budget = &api.config.clients.budget;
    let mut body = req.into_body();
    let result = match declared {
        Some(len) if len > max => Err(too_large(len, max)),
        Some(len) if len > budget.capacity() + REQUEST_FREE_BYTES => Err(HttpError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            budget.refuse(len).to_string(),
        )),
        _ => {
            let collect = collect(api, &mut body, declared.unwrap_or(max), max);
            match &clock {
                Some(clock) => tokio::time::timeout_at(clock.deadline(), collect)
                    .await
                    .unwrap_or_else(|_| {
                        clock.expire();
                        Err(timed_out(api))
                    }),
                None => collect.await,
            }
        }
    };
    // However the body failed, past the deadline it is the deadline's answer.
    let result = match result {
        Err(_) if clock.as_ref().is_some_and(|c| c.expired()) => Err(timed_out(api)),
        other => other,
    };
    if result.is_err() {
        let discard = async { while let Ok(Some(_)) = next_chunk(&mut body).await {} };
        let _ = tokio::time::timeout(LINGER, discard).await;
    }
    if let Some(clock) = clock {
        clock.finished();
    }
    result
}

fn timed_out(api: &Api) -> HttpError {
    let secs = api.config.clients.read_timeout.as_secs_f64();
    HttpError::status(
        StatusCode::REQUEST_TIMEOUT,
        format!("request not received within {secs} s"),
    )
}

async fn collect(
    api: &Api,
    body: &mut Body,
    upto: usize,
    max: usize,
) -> Result<ReadBody, HttpError> {
    let budget = &api.config.clients.budget;
    let Some(first) = next_chunk(body).await? else {
        return Ok(ReadBody {
            bytes: Bytes::new(),
            _lease: budget.lease(),
        });
    };
    if body.is_end_stream() {
        // The whole body in one chunk (the usual small request): no copy.
        if first.len() > max {
            return Err(too_large(first.len(), max));
        }
        let mut lease = budget.lease();
        lease
            .resize(first.len().saturating_sub(REQUEST_FREE_BYTES))
            .await
            .map_err(|e| HttpError::status(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
        return Ok(ReadBody {
            bytes: first,
            _lease: lease,
        });
    }
    let mut buf = BudgetedBuf::new(budget, REQUEST_FREE_BYTES);
    let mut chunk = Some(first);
    while let Some(data) = chunk {
        if buf.len() + data.len() > max {
            return Err(too_large(buf.len() + data.len(), max));
        }
        buf.reserve(data.len(), upto.min(max))
            .await
            .map_err(|e| HttpError::status(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
        buf.bytes_mut().extend_from_slice(&data);
        drop(data);
        chunk = next_chunk(body).await?;
    }
    let (bytes, lease) = buf.into_parts();
    Ok(ReadBody {
        bytes,
        _lease: lease,
    })
}

/// The next data chunk of a body (trailers are skipped), or `None` at its end.
async fn next_chunk(body: &mut Body) -> Result<Option<Bytes>, HttpError> {
    loop {
        let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        match frame {
            None => return Ok(None),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    return Ok(Some(data));
                }
            }
            Some(Err(e)) => {
                return Err(HttpError::bad_request(format!(
                    "request body could not be read: {e}"
                )));
            }
        }
    }
}

fn too_large(len: usize, max: usize) -> HttpError {
    HttpError::status(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body of {len} bytes exceeds the limit of {max} bytes"),
    )
}
