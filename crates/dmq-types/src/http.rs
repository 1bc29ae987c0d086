//! Every HTTP error is the JSON of SPEC §3 (`{"error": CODE, "message": …}`), including the
//! answers the web framework gives on its own (body over the limit, wrong content type, a body
//! its extractors cannot read): [`json_errors`] rewrites any 4xx/5xx that is not JSON.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use axum::http::{HeaderValue, Response, StatusCode};
use axum::middleware::Next;
use futures::StreamExt;

/// How much of an oversized body is read and thrown away before the 413 goes out (see
/// [`refuse_oversized`]); past it the connection is closed without reading on.
pub const OVERSIZED_DRAIN_BYTES_MAX: u64 = 1 << 30;

/// The stable code for a framework error of `status`.
pub fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "INVALID_REQUEST",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        408 => "REQUEST_TIMEOUT",
        413 => "PAYLOAD_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        s if s >= 500 => "INTERNAL_ERROR",
        _ => "INVALID_REQUEST",
    }
}

/// Middleware (`axum::middleware::map_response`): a 4xx/5xx answer that is not JSON becomes the
/// JSON error with the same status, its text as the message; other headers are kept.
pub async fn json_errors(resp: Response<Body>) -> Response<Body> {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    } else {
        text
    };
    let json = serde_json::json!({"error": error_code(status), "message": message}).to_string();
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(json))
}

/// Middleware (`axum::middleware::from_fn`): a request whose `Content-Length` is over `limit`
/// is answered `413 PAYLOAD_TOO_LARGE` (JSON) without being parsed. A client that asked
/// `Expect: 100-continue` gets it before sending the body; any other client is already
/// sending, so the body is read and discarded first (up to [`OVERSIZED_DRAIN_BYTES_MAX`]) —
/// answering and closing while it still writes would make its kernel report a connection
/// reset instead of the answer. Bodies without a length are bounded by the extractors' limit.
pub async fn refuse_oversized(limit: u64, req: Request, next: Next) -> Response<Body> {
    let length = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(length) = length.filter(|l| *l > limit) else {
        return next.run(req).await;
    };
    let expects_continue = req
        .headers()
        .get(EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if !expects_continue && length <= OVERSIZED_DRAIN_BYTES_MAX {
        let mut body = req.into_body().into_data_stream();
        while let Some(Ok(_chunk)) = body.next().await {}
    }
    let json = serde_json::json!({
        "error": "PAYLOAD_TOO_LARGE",
        "message": format!("the request body of {length} bytes is over the limit of {limit} bytes"),
    })
    .to_string();
    let mut resp = Response::new(Body::from(json));
    *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
