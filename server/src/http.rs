//! HTTP on the relay's port, plain or TLS alike, through hyper (HTTP/1.1)
//! and axum: `GET|HEAD /healthz` (whether the relay can serve,
//! [`crate::health`]), `GET|HEAD /metrics`, the web client
//! ([`crate::web`]) on every other path, and the websocket upgrade.
//!
//! A request whose `Upgrade` header names `websocket` is a websocket
//! handshake on whatever path it names; it never reaches a page. It is
//! checked (`GET`, HTTP/1.1, `Connection: upgrade`,
//! `Sec-WebSocket-Version: 13`, a `Sec-WebSocket-Key`, and the subprotocol
//! `caucus.v1` offered; otherwise `400` and a line saying what is missing),
//! takes a connection slot (otherwise `503`), and is answered `101` here.
//! hyper then hands the socket over, and the connection's task runs it with
//! tokio-tungstenite ([`crate::conn`]), holding the slot until it closes.
//!
//! Every response carries the same security headers ([`SECURITY_HEADERS`]).
//! Nothing here logs a request's path, query or headers: an invite's or a
//! session's secrets must never reach a log.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use caucus_protocol::wire::{ErrorCode, SUBPROTOCOL};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tower::ServiceExt;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::health::{Health, Readiness};
use crate::hub::Hub;
use crate::limits::Ticket;
use crate::store::Store;

/// The longest request head accepted, in bytes (hyper's smallest buffer).
const MAX_HEAD: usize = 8192;

/// The headers of every HTTP response. The policy lets the page load its
/// own scripts, WebAssembly, styles, images and manifest, and talk to its
/// own origin only (the relay's websocket); it allows no inline script, no
/// other origin, no framing, no form and no `<base>`.
pub(crate) const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// What every connection's requests share.
pub(crate) struct Shared {
    /// The relay.
    pub(crate) hub: Arc<Hub>,
    /// Its store, for its health.
    pub(crate) store: Store,
    /// What `/healthz` reports besides the store.
    pub(crate) health: Arc<Health>,
    /// Websocket connection slots (`--max-connections`).
    pub(crate) slots: Arc<Semaphore>,
    /// Becomes `true` when the relay shuts down.
    pub(crate) stop: watch::Receiver<bool>,
}

/// A websocket upgrade answered `101`, for its connection's task to run
/// once hyper hands over the socket.
struct Accepted {
    upgrade: OnUpgrade,
    permit: OwnedSemaphorePermit,
    id: u64,
}

/// Where a request's handler leaves an [`Accepted`] websocket for the task
/// of the connection it came on (a request extension).
#[derive(Clone)]
struct Handoff(mpsc::Sender<Accepted>);

/// The relay's routes and headers, built once and shared by every
/// connection.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let web = crate::web::routes(&shared.hub.config.web);
    let mut router = Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .fallback_service(web)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            upgrade_or_next,
        ))
        .with_state(shared);
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
    router
}

/// Serve one accepted connection (after TLS, if any): HTTP requests until
/// it closes, shuts down or upgrades; then, for an upgrade, the websocket.
/// `ticket` holds the connection's place among its address's connections
/// until it ends.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    router: Router,
    stream: S,
    peer: SocketAddr,
    ticket: Ticket,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let hub = shared.hub.clone();
    // A fresh receiver: one that has seen the stop already still sees it.
    let stop = shared.stop.clone();
    // HTTP in a box of its own, gone once the socket is upgraded: an idle
    // websocket keeps nothing of hyper's. Both phases are boxed in
    // statements of their own, since `Box::pin(f).await` would keep room
    // for `f` here as well (docs/performance.md, seventh run).
    let http = Box::pin(http(shared, router, stream));
    let Some(Upgraded { ws, permit, id }) = http.await else {
        return;
    };
    tracing::debug!(conn = id, %peer, "connection");
    let websocket = Box::pin(crate::conn::serve(hub, ws, id, stop, ticket));
    websocket.await;
    drop(permit);
}

/// A websocket handed over by hyper, on the socket it was accepted on.
struct Upgraded<S> {
    ws: WebSocketStream<S>,
    permit: OwnedSemaphorePermit,
    id: u64,
}

/// Serve HTTP requests on `stream` until it closes, the relay shuts down,
/// or a websocket handshake is answered `101`: then the websocket, on
/// `stream` itself (TCP, or TLS over it), without hyper's wrapper. The head
/// of each request must arrive within the header timeout.
async fn http<S>(shared: Arc<Shared>, router: Router, stream: S) -> Option<Upgraded<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (handoff, mut accepted) = mpsc::channel(1);
    let handoff = Handoff(handoff);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(handoff.clone());
        router.clone().oneshot(request)
    });
    let config = &shared.hub.config;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header)
        .max_buf_size(MAX_HEAD);
    let connection = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut stop = shared.stop.clone();
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stop.changed() => {
            // Finish the request under way, if any, then close.
            connection.as_mut().graceful_shutdown();
            let _ = connection.as_mut().await;
        }
    }
    let Accepted {
        upgrade,
        permit,
        id,
    } = accepted.try_recv().ok()?;
    let parts = match upgrade.await.map(|u| u.downcast::<TokioIo<S>>()) {
        Ok(Ok(parts)) => parts,
        Ok(Err(_)) => {
            // hyper hands back the socket it was given, whose type is
            // `TokioIo<S>`: this cannot happen.
            tracing::error!(conn = id, "the upgraded socket is not the one accepted");
            return None;
        }
        Err(e) => {
            tracing::debug!(conn = id, error = %e, "handshake failed");
            return None;
        }
    };
    // What the client sent after its handshake, if anything, comes first:
    // copied, since taking the `Bytes` as a `Vec` would keep hyper's whole
    // read buffer (8 KiB) as the websocket's for its life.
    let ws = WebSocketStream::from_partially_read(
        parts.io.into_inner(),
        parts.read_buf.to_vec(),
        Role::Server,
        Some(crate::conn::ws_config(config)),
    )
    .await;
    Some(Upgraded { ws, permit, id })
}

impl Shared {
    /// Whether the relay can serve.
    fn readiness(&self) -> Readiness {
        self.health.readiness(self.store.healthy())
    }
}

/// `/healthz`, for a load balancer: `200 ok` when the relay can serve,
/// otherwise `503` and why.
async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let readiness = shared.readiness();
    let status = match readiness {
        Readiness::Ready => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", readiness.says()),
    )
        .into_response()
}

/// `/metrics`: the Prometheus text format.
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut body = shared.hub.metrics.render();
    shared.readiness().render(&mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// A websocket upgrade goes to [`websocket`] whatever its path; any other
/// request goes on to the routes.
async fn upgrade_or_next(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if has_token(request.headers(), &header::UPGRADE, "websocket") {
        websocket(&shared, request)
    } else {
        next.run(request).await
    }
}

/// Whether a comma-separated header holds `token` (ASCII case-insensitive).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The items of a comma-separated header, in all its lines.
fn tokens<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// A refused websocket handshake: `status` and a line of text.
fn refuse(status: StatusCode, why: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{why}\n"),
    )
        .into_response()
}

/// Check a websocket handshake, take a connection slot, leave the upgrade
/// for the connection's task, and answer `101 Switching Protocols` with
/// the subprotocol `caucus.v1`.
fn websocket(shared: &Shared, mut request: Request) -> Response {
    let bad = |why: &str| refuse(StatusCode::BAD_REQUEST, why.to_owned());
    let headers = request.headers();
    if request.method() != Method::GET {
        return bad("a websocket handshake is a GET");
    }
    if request.version() != Version::HTTP_11 {
        return bad("a websocket handshake needs HTTP/1.1");
    }
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return bad("a websocket handshake needs Connection: upgrade");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut refusal = bad("websocket version 13 required");
        refusal.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return refusal;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return bad("a websocket handshake needs Sec-WebSocket-Key");
    };
    // Subprotocol names are compared exactly (RFC 6455 11.5).
    if !tokens(headers, &header::SEC_WEBSOCKET_PROTOCOL).any(|p| p == SUBPROTOCOL) {
        return bad(&format!("subprotocol {SUBPROTOCOL} required"));
    }
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return bad("bad Sec-WebSocket-Key");
    };
    let Some(Handoff(handoff)) = request.extensions().get::<Handoff>().cloned() else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no connection to upgrade".into(),
        );
    };
    let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
        shared.hub.metrics.reject(ErrorCode::Overloaded);
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections".into(),
        );
    };
    let id = shared.hub.conn_id();
    let upgrade = hyper::upgrade::on(&mut request);
    if handoff
        .try_send(Accepted {
            upgrade,
            permit,
            id,
        })
        .is_err()
    {
        return bad("one websocket per connection");
    }
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::SEC_WEBSOCKET_ACCEPT, accept),
            (
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(SUBPROTOCOL),
            ),
        ],
        Body::empty(),
    )
        .into_response()
}
