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

/// Bearer tokens for every HTTP API (SPEC §11): `Authorization: Bearer <token>`, or the
/// console's `dmq_token` cookie (set by opening `/ui/?token=<token>` once, so a browser needs
/// no header). `/health` and `/health/ready` stay open, and so do the console's static files
/// (they hold no data; everything they show comes from `/ui/api/…`).
#[derive(Clone)]
pub struct BearerTokens {
    tokens: std::sync::Arc<Vec<(crate::security::Secret, String)>>,
}

impl std::fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerTokens")
            .field(
                "principals",
                &self.tokens.iter().map(|t| &t.1).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The principal (`User:admin`) the request's bearer token names, put in the request's
/// extensions by [`require_bearer`] for [`authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPrincipal(pub String);

/// The client's address, as [`crate::https::serve`] records it for every connection (plain or
/// TLS): what ACL hosts are matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// The authorizer's verdict on one HTTP call: `Err((error name, message))` refuses it with 403.
pub type HttpVerdict = Result<(), (String, String)>;

/// One HTTP call as [`authorize`] shows it to the decision function.
#[derive(Debug)]
pub struct HttpCall<'a> {
    pub principal: &'a str,
    /// The client's IP address, `*` when unknown.
    pub host: String,
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
}

/// Middleware inside [`require_bearer`]: a call that carries a principal (the cluster has
/// tokens) is put to `decide` (the node's ACLs, SPEC §11) and refused with 403 JSON when it
/// says no. Without tokens there is no principal and nothing to decide.
pub async fn authorize(
    decide: impl Fn(&HttpCall<'_>) -> HttpVerdict,
    req: Request,
    next: Next,
) -> Response<Body> {
    let Some(principal) = req.extensions().get::<HttpPrincipal>().cloned() else {
        return next.run(req).await;
    };
    let host = req
        .extensions()
        .get::<axum::extract::ConnectInfo<ClientAddr>>()
        .map_or_else(|| "*".to_string(), |c| c.0 .0.ip().to_string());
    let verdict = decide(&HttpCall {
        principal: &principal.0,
        host,
        method: req.method().as_str(),
        path: req.uri().path(),
        query: req.uri().query().unwrap_or(""),
    });
    match verdict {
        Ok(()) => next.run(req).await,
        Err((error, message)) => {
            let body = serde_json::json!({"error": error, "message": message});
            Response::builder()
                .status(StatusCode::FORBIDDEN)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Body::from(body.to_string()))
                .unwrap_or_default()
        }
    }
}

/// The console's cookie carrying a token.
pub const TOKEN_COOKIE: &str = "dmq_token";

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl BearerTokens {
    /// The tokens of a `security.http` section; `None` when HTTP is open.
    pub fn from_config(security: Option<&crate::security::SecurityConfig>) -> Option<BearerTokens> {
        let tokens: Vec<_> = security?
            .http
            .as_ref()?
            .tokens
            .iter()
            .filter(|t| !t.token.is_empty())
            .map(|t| (t.token.clone(), t.principal.clone()))
            .collect();
        (!tokens.is_empty()).then(|| BearerTokens {
            tokens: std::sync::Arc::new(tokens),
        })
    }

    /// The principal of `token`, if it is one of ours (compared in constant time).
    pub fn principal(&self, token: &str) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(t, _)| constant_time_eq(t.expose().as_bytes(), token.as_bytes()))
            .map(|(_, p)| p.as_str())
    }

    /// The token this cluster's own processes present to each other (the first one).
    pub fn internal(&self) -> &crate::security::Secret {
        &self.tokens[0].0
    }

    /// `Authorization` header value for [`BearerTokens::internal`].
    pub fn internal_header(&self) -> String {
        format!("Bearer {}", self.internal().expose())
    }
}

fn is_open_path(path: &str) -> bool {
    path == "/health"
        || path.starts_with("/health/")
        || path == "/ui"
        || (path.starts_with("/ui/") && !path.starts_with("/ui/api/"))
}

/// The token a request carries: the `Authorization: Bearer` header, else the console cookie.
fn presented_token(req: &Request) -> Option<String> {
    let headers = req.headers();
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == TOKEN_COOKIE).then(|| v.to_string())
        })
}

/// Middleware (`axum::middleware::from_fn`): `None` lets everything through; with tokens, a
/// request without a valid one gets 401 JSON (`UNAUTHENTICATED`), except the open paths.
/// `/ui/?token=<t>` with a valid token sets the console cookie.
pub async fn require_bearer(
    tokens: Option<BearerTokens>,
    mut req: Request,
    next: Next,
) -> Response<Body> {
    let Some(tokens) = tokens else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_string();
    if path == "/ui/" {
        let query_token = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token=").map(str::to_string))
        });
        if let Some(t) = query_token {
            if tokens.principal(&t).is_some() {
                let cookie = format!("{TOKEN_COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict");
                return Response::builder()
                    .status(StatusCode::SEE_OTHER)
                    .header(axum::http::header::LOCATION, "/ui/")
                    .header(axum::http::header::SET_COOKIE, cookie)
                    .body(Body::empty())
                    .unwrap_or_default();
            }
        }
    }
    if is_open_path(&path) {
        return next.run(req).await;
    }
    let presented = presented_token(&req);
    if let Some(p) = presented.as_deref().and_then(|t| tokens.principal(t)) {
        let principal = HttpPrincipal(p.to_string());
        req.extensions_mut().insert(principal);
        return next.run(req).await;
    }
    let message = if presented.is_some() {
        "the bearer token is not valid"
    } else {
        "this API needs Authorization: Bearer <token>"
    };
    let body = serde_json::json!({"error": "UNAUTHENTICATED", "message": message});
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(
            axum::http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        )
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}
