//! wsdriver on actix-web 4, in the style of actix-ws: a handler takes the `HttpRequest`
//! and its `web::Payload`, and answers with the response [`handle`] or [`serve`] returns.
//!
//! The same ws-core driver runs here as everywhere: actix's request payload becomes the
//! socket's input, and a bounded channel feeding the streaming response body its output,
//! so a client that stops reading stops the writer (backpressure), through the same
//! high-water mark as on every other server. Works with multi-worker `HttpServer`s: each
//! connection stays on the worker that accepted it.
//!
//! ```no_run
//! use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
//! use wsdriver::{Config, Connection, Handler, Message};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
//! }
//!
//! async fn echo(req: HttpRequest, body: web::Payload) -> Result<HttpResponse, actix_web::Error> {
//!     wsdriver::adapter::actix::serve(&req, body, &Config::default(), Echo)
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! HttpServer::new(|| App::new().route("/ws", web::get().to(echo)))
//!     // actix-web reads the request: the handshake's time limit is set on it.
//!     .client_request_timeout(Config::default().handshake_timeout)
//!     .bind("127.0.0.1:9001")?
//!     .run()
//!     .await
//! # }
//! ```
//!
//! WebSockets here open with the HTTP/1.1 upgrade only: actix-web's HTTP/2 server has no
//! extended CONNECT (RFC 8441), so a browser that reaches actix-web over HTTP/2 opens its
//! WebSocket on a separate HTTP/1.1 connection. For WebSockets over HTTP/2, use the hyper
//! or axum adapter.
//!
//! # Authentication before the upgrade
//!
//! Check the request in the route, before [`handle`]: a refused one gets 401 and no
//! handler is made; an accepted one is upgraded, and its handler built from what the check
//! found and what was negotiated ([`offered_protocols`] lists what the client asked for).
//!
//! ```no_run
//! use actix_web::{HttpRequest, HttpResponse, web};
//! use wsdriver::{Config, Connection, Handler, Message};
//!
//! struct Greeter(String);
//! impl Handler for Greeter {
//!     async fn on_open(&mut self, ws: &Connection) { let _ = ws.send_text(format!("hello, {}", self.0)).await; }
//!     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
//! }
//!
//! async fn chat(req: HttpRequest, body: web::Payload) -> Result<HttpResponse, actix_web::Error> {
//!     let token = req.headers().get("authorization").and_then(|v| v.to_str().ok());
//!     if token != Some("Bearer letmein") {
//!         return Ok(HttpResponse::Unauthorized().insert_header(("www-authenticate", "Bearer")).body("a bearer token is required\n"));
//!     }
//!     let (response, socket) = wsdriver::adapter::actix::handle(&req, body, &Config::default())?;
//!     actix_web::rt::spawn(wsdriver::serve(socket, Greeter("alice".into())));
//!     Ok(response)
//! }
//! ```
//!
//! # Graceful shutdown
//!
//! actix-web's own signal handling stops its workers without closing the WebSockets they
//! serve (their clients see 1006). Turn it off, give the app a [`Shutdown`] (every socket
//! [`handle`] or [`serve`] upgrades is then watched by it), and on the signal call
//! [`stop`]: it stops accepting, closes every WebSocket with 1001 and waits for them, then
//! stops the server.
//!
//! ```no_run
//! # use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
//! # use wsdriver::{Config, Connection, Handler, Message};
//! # struct Echo;
//! # impl Handler for Echo { async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; } }
//! # async fn echo(req: HttpRequest, body: web::Payload) -> Result<HttpResponse, actix_web::Error> { wsdriver::adapter::actix::serve(&req, body, &Config::default(), Echo) }
//! use std::time::Duration;
//! use wsdriver::shutdown::Shutdown;
//!
//! # async fn run() -> std::io::Result<()> {
//! let shutdown = Shutdown::new();
//! let app_shutdown = shutdown.clone();
//! let server = HttpServer::new(move || App::new().app_data(app_shutdown.clone()).route("/ws", web::get().to(echo)))
//!     .client_request_timeout(Config::default().handshake_timeout)
//!     .disable_signals()
//!     .bind("127.0.0.1:9001")?
//!     .run();
//! let handle = server.handle();
//! actix_web::rt::spawn(async move {
//!     let _ = actix_web::rt::signal::ctrl_c().await;
//!     wsdriver::adapter::actix::stop(&handle, &shutdown, Duration::from_secs(10)).await;
//! });
//! server.await
//! # }
//! ```

mod io;
mod pipe;

pub use io::ActixIo;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use std::time::Duration;
use ws_core::handshake::{HandshakeError, server};
use ws_core::meter;
use ws_core::shutdown::Shutdown;
use ws_core::{Config, Handler, Role, WebSocket};

/// A WebSocket on an actix-web connection.
pub type ActixWebSocket = WebSocket<ActixIo>;

/// Why a request was not upgraded; as an actix error it answers with the status and reason
/// of the handshake failure (400, 403, 405, 426 with `Sec-WebSocket-Version: 13`).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Rejection(pub HandshakeError);

impl ResponseError for Rejection {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status().as_u16()).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn error_response(&self) -> HttpResponse {
        let response = self.0.response();
        let mut builder = HttpResponse::build(self.status_code());
        for (name, value) in response.headers() {
            builder.append_header((name.as_str(), value.as_bytes()));
        }
        builder.body(response.into_body())
    }
}

/// Validates the upgrade request and returns the 101 response with the socket, a
/// `Stream` and `Sink` of messages (its `connection()` is a cloneable sender). Spawn the
/// task that uses the socket, and return the response.
///
/// If the app has a [`Shutdown`] in its data (`App::app_data(shutdown)`, or as
/// `web::Data<Shutdown>`), the socket is watched by it.
pub fn handle(request: &HttpRequest, payload: web::Payload, config: &Config) -> Result<(HttpResponse, ActixWebSocket), Rejection> {
    let started = std::time::Instant::now();
    let accepted = server::accept_parts(&method_of(request), version_of(request), &headers_of(request), config).map_err(|e| {
        meter::rejected("actix", e.status().as_u16());
        Rejection(e)
    })?;
    let (io, body) = ActixIo::new(payload);
    let mut builder = HttpResponse::build(StatusCode::SWITCHING_PROTOCOLS);
    builder.upgrade("websocket");
    for (name, value) in accepted.response.headers() {
        if name != http::header::UPGRADE && name != http::header::CONNECTION {
            builder.append_header((name.as_str(), value.as_bytes()));
        }
    }
    let socket = WebSocket::from_upgraded(io, Role::Server, config, accepted.negotiated, Default::default());
    socket.meter("actix", started);
    let shutdown = request.app_data::<Shutdown>().or_else(|| request.app_data::<web::Data<Shutdown>>().map(|data| data.get_ref()));
    if let Some(shutdown) = shutdown {
        shutdown.watch(&socket.connection());
    }
    Ok((builder.streaming(body), socket))
}

/// Stops an actix-web server gracefully, WebSockets included: stops accepting, closes
/// every WebSocket `shutdown` watches with 1001 and waits up to `deadline` for their close
/// handshakes and handlers, then stops the server (gracefully, within its own
/// `shutdown_timeout`). Returns how many WebSockets were dropped ([`Shutdown::shutdown`]).
///
/// Call it from the application's own signal handling, with actix-web's turned off
/// (`HttpServer::disable_signals`): see the [crate docs](crate#graceful-shutdown).
///
/// # Cancel safety
///
/// As [`Shutdown::shutdown`]: await it to the end.
pub async fn stop(handle: &actix_web::dev::ServerHandle, shutdown: &Shutdown, deadline: Duration) -> usize {
    handle.pause().await;
    let dropped = shutdown.shutdown(deadline).await;
    tracing::info!(dropped, "websockets closed; stopping the server");
    handle.stop(true).await;
    dropped
}

/// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in its order of
/// preference: to pick a [`Config::protocols`] or refuse the request before upgrading.
///
/// ```
/// use actix_web::test::TestRequest;
///
/// let request = TestRequest::default().insert_header(("sec-websocket-protocol", "chat.v2, chat.v1")).to_http_request();
/// assert_eq!(wsdriver::adapter::actix::offered_protocols(&request), ["chat.v2", "chat.v1"]);
/// ```
pub fn offered_protocols(request: &HttpRequest) -> Vec<String> {
    let headers = headers_of(request);
    ws_core::handshake::header_tokens(&headers, &http::header::SEC_WEBSOCKET_PROTOCOL).map(str::to_owned).collect()
}

/// Validates the upgrade request, serves the connection with `handler` on this worker,
/// and returns the 101 response.
///
/// The handler is built before the request is validated; to build it only for a request
/// that is accepted (or from what was negotiated), call [`handle`] and spawn
/// [`wsdriver::serve`](ws_core::serve) with the socket it returns.
///
/// # Panics
///
/// Outside actix-web's runtime (it spawns the connection's task on the worker).
pub fn serve<H: Handler>(
    request: &HttpRequest,
    payload: web::Payload,
    config: &Config,
    handler: H,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, socket) = handle(request, payload, config)?;
    let span = meter::span("actix", request.peer_addr(), Some(request.path()), socket.protocol().as_deref());
    let task = async move {
        ws_core::serve(socket, handler).await;
    };
    // The span costs the connection's task a few words only when a subscriber wants it.
    if span.is_disabled() {
        actix_web::rt::spawn(task);
    } else {
        actix_web::rt::spawn(tracing::Instrument::instrument(task, span));
    }
    Ok(response)
}

// actix-web 4 speaks `http` 0.2; the core speaks `http` 1. The handshake only needs the
// method, the version and the headers, copied across by their bytes.

fn method_of(request: &HttpRequest) -> Method {
    Method::from_bytes(request.method().as_str().as_bytes()).unwrap_or(Method::GET)
}

fn version_of(request: &HttpRequest) -> Version {
    use actix_web::http::Version as V;
    match request.version() {
        V::HTTP_09 => Version::HTTP_09,
        V::HTTP_10 => Version::HTTP_10,
        V::HTTP_2 => Version::HTTP_2,
        V::HTTP_3 => Version::HTTP_3,
        _ => Version::HTTP_11,
    }
}

fn headers_of(request: &HttpRequest) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_str().as_bytes()), HeaderValue::from_bytes(value.as_bytes())) {
            headers.append(name, value);
        }
    }
    headers
}
