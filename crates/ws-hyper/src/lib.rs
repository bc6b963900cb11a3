//! wsdriver on hyper 1: [`upgrade`] a request yourself, or put a [`WebSocketLayer`] in a
//! tower stack to serve every upgrade request with a [`Handler`].
//!
//! A thin bridge: the handshake and the protocol are ws-core's; this crate only hands
//! hyper's upgraded connection to the core's driver.
//!
//! Both ways of opening a WebSocket are accepted: the HTTP/1.1 upgrade (RFC 6455), and on
//! HTTP/2 an extended CONNECT (RFC 8441; serve with hyper's `http2::Builder` and
//! `enable_connect_protocol()`), answered with `200` instead of `101`. The handler cannot
//! tell them apart.
//!
//! ```no_run
//! use http_body_util::Full;
//! use hyper::{Request, Response, body::{Bytes, Incoming}};
//! use wsdriver::{Config, Connection, Handler, Message};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
//! }
//!
//! async fn route(mut request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
//!     match wsdriver::adapter::hyper::upgrade(&mut request, &Config::default()) {
//!         Ok((response, upgrade)) => {
//!             upgrade.serve(Echo); // a task serves the socket once hyper hands it over
//!             Ok(response.map(|_| Full::default()))
//!         }
//!         Err(rejection) => Ok(rejection.response().map(Full::from)),
//!     }
//! }
//! ```
//!
//! # Authentication before the upgrade
//!
//! The route sees the request before anything is upgraded: check a token or a cookie
//! there, answer 401 without calling [`upgrade`], and build the handler from what the
//! check found.
//!
//! ```no_run
//! use http_body_util::Full;
//! use hyper::{Request, Response, StatusCode, body::{Bytes, Incoming}, header};
//! use wsdriver::{Config, Connection, Handler, Message};
//!
//! struct Greeter(String);
//! impl Handler for Greeter {
//!     async fn on_open(&mut self, ws: &Connection) { let _ = ws.send_text(format!("hello, {}", self.0)).await; }
//!     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
//! }
//!
//! fn user_of(request: &Request<Incoming>) -> Option<String> {
//!     let token = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
//!     (token == "letmein").then(|| "alice".to_owned())
//! }
//!
//! async fn route(mut request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
//!     let Some(user) = user_of(&request) else {
//!         let mut refused = Response::new(Full::from("a bearer token is required\n"));
//!         *refused.status_mut() = StatusCode::UNAUTHORIZED;
//!         refused.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
//!         return Ok(refused);
//!     };
//!     match wsdriver::adapter::hyper::upgrade(&mut request, &Config::default()) {
//!         Ok((response, upgrade)) => {
//!             upgrade.serve(Greeter(user));
//!             Ok(response.map(|_| Full::default()))
//!         }
//!         Err(rejection) => Ok(rejection.response().map(Full::from)),
//!     }
//! }
//! ```

mod layer;
mod serve;

pub use layer::{WebSocketLayer, WebSocketService};
pub use serve::{Serve, serve};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::Empty;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;
use ws_core::handshake::{HandshakeError, Negotiated, server};
use ws_core::meter::{self, PeerAddr};
use ws_core::shutdown::Shutdown;
use ws_core::{Config, Error, Handler, Role, WebSocket};

/// A WebSocket over hyper's upgraded connection.
pub type HyperWebSocket = WebSocket<TokioIo<Upgraded>>;

/// Validates an upgrade request (RFC 6455 §4.2) and prepares the upgrade.
///
/// Returns the 101 response to send, and a future that resolves to the socket once hyper
/// has sent it and handed the connection over. A rejected request gets a
/// [`HandshakeError`], whose [`response`](HandshakeError::response) carries the right
/// status (400, 403, 405, 426) and a short reason. The server must be built with upgrades
/// enabled (hyper's `serve_connection(..).with_upgrades()`).
///
/// If the request's extensions hold a [`Shutdown`] (as they do under [`serve`] with a
/// graceful shutdown, or behind an axum `Extension` layer), the socket is watched by it.
pub fn upgrade<B>(request: &mut Request<B>, config: &Config) -> Result<(Response<Empty<Bytes>>, UpgradeFut), HandshakeError> {
    upgrade_as(request, config, "hyper")
}

/// [`upgrade`], with metrics and the connection's span labelled `adapter`.
pub(crate) fn upgrade_as<B>(
    request: &mut Request<B>,
    config: &Config,
    adapter: &'static str,
) -> Result<(Response<Empty<Bytes>>, UpgradeFut), HandshakeError> {
    let accepted = accept(request, config).inspect_err(|e| meter::rejected(adapter, e.status().as_u16()))?;
    let span = meter::span(adapter, peer_addr(request.extensions()), Some(request.uri().path()), accepted.negotiated.protocol.as_deref());
    let mut upgrade = UpgradeFut::new(hyper::upgrade::on(&mut *request), config.clone(), accepted.negotiated).instrument(adapter, span);
    if let Some(shutdown) = request.extensions().get::<Shutdown>() {
        upgrade = upgrade.watched_by(shutdown.clone());
    }
    Ok((accepted.response.map(|()| Empty::new()), upgrade))
}

/// Validates an HTTP/1.1 upgrade (RFC 6455) or, on HTTP/2, an extended CONNECT (RFC 8441).
fn accept<B>(request: &Request<B>, config: &Config) -> Result<server::Accepted, HandshakeError> {
    if request.method() != http::Method::CONNECT {
        return server::accept(request, config);
    }
    server::validate_extended_connect(request.method(), request.version(), connect_protocol(request.extensions()), request.headers())?;
    server::respond_extended_connect(request.headers(), config)
}

/// The `:protocol` pseudo-header of an extended CONNECT, as hyper passes it.
#[doc(hidden)] // for ws-axum
pub fn connect_protocol(extensions: &http::Extensions) -> Option<&str> {
    extensions.get::<hyper::ext::Protocol>().map(hyper::ext::Protocol::as_str)
}

/// Whether a request opens a WebSocket: an HTTP/1.1 upgrade, or an extended CONNECT on
/// HTTP/2.
pub(crate) fn is_websocket_request<B>(request: &Request<B>) -> bool {
    server::is_upgrade_request(request.headers()) || server::is_extended_connect(request.method(), connect_protocol(request.extensions()))
}

/// The client's address, if the server put it in the request's extensions ([`serve`]
/// does, as a [`PeerAddr`]).
#[doc(hidden)] // for ws-axum
pub fn peer_addr(extensions: &http::Extensions) -> Option<std::net::SocketAddr> {
    extensions.get::<PeerAddr>().map(|peer| peer.0)
}

/// Resolves to the [`HyperWebSocket`] once hyper hands the upgraded connection over.
///
/// Small (two words): it is usually captured by the connection's task, which lives as
/// long as the connection; the config and negotiated extensions wait in a box that is
/// freed once the socket is made.
#[must_use = "the socket is only available by awaiting the upgrade"]
pub struct UpgradeFut {
    on_upgrade: OnUpgrade,
    setup: Option<Box<Setup>>,
}

/// What the socket is made with once the connection is upgraded.
struct Setup {
    config: Config,
    negotiated: Negotiated,
    shutdown: Option<Shutdown>,
    on_failed: Option<Box<dyn FnOnce(Error) + Send>>,
    /// The metrics' label, and the span the connection's task runs in.
    adapter: &'static str,
    span: tracing::Span,
    /// When the handshake started, for its duration.
    started: Instant,
}

impl UpgradeFut {
    /// An upgrade whose handshake an adapter already validated with
    /// [`server::accept`], with what it negotiated.
    pub fn new(on_upgrade: OnUpgrade, config: Config, negotiated: Negotiated) -> Self {
        let setup = Setup {
            config,
            negotiated,
            shutdown: None,
            on_failed: None,
            adapter: "hyper",
            span: tracing::Span::none(),
            started: Instant::now(),
        };
        Self { on_upgrade, setup: Some(Box::new(setup)) }
    }

    /// Labels the connection's metrics with `adapter`, and runs its task in `span` (see
    /// [`wsdriver::meter`](ws_core::meter)).
    #[doc(hidden)] // for adapters
    pub fn instrument(mut self, adapter: &'static str, span: tracing::Span) -> Self {
        if let Some(setup) = self.setup.as_mut() {
            setup.adapter = adapter;
            setup.span = span;
        }
        self
    }

    /// The socket will be watched by `shutdown` ([`Shutdown::watch`]) from the moment it
    /// exists.
    pub fn watched_by(mut self, shutdown: Shutdown) -> Self {
        if let Some(setup) = self.setup.as_mut() {
            setup.shutdown = Some(shutdown);
        }
        self
    }

    /// Runs `callback` with the error if the upgrade fails (the client went away before
    /// hyper handed the connection over, or the server was not built with upgrades), in
    /// the task [`UpgradeFut::serve`] or [`UpgradeFut::spawn`] starts; without it, the
    /// failure is logged at debug level.
    pub fn on_failed<C: FnOnce(Error) + Send + 'static>(mut self, callback: C) -> Self {
        if let Some(setup) = self.setup.as_mut() {
            setup.on_failed = Some(Box::new(callback));
        }
        self
    }

    /// Spawns the connection's task: it awaits the upgrade and serves the socket with
    /// `handler` ([`wsdriver::serve`](ws_core::serve)). An upgrade that fails goes to
    /// [`UpgradeFut::on_failed`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn serve<H: Handler>(self, handler: H) {
        self.spawn(move |socket| ws_core::serve(socket, handler));
    }

    /// Spawns the connection's task: it awaits the upgrade and runs `callback` with the
    /// socket; the callback's output is dropped. An upgrade that fails goes to
    /// [`UpgradeFut::on_failed`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn spawn<F, Fut>(mut self, callback: F)
    where
        F: FnOnce(HyperWebSocket) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
    {
        let on_failed = self.setup.as_mut().and_then(|setup| setup.on_failed.take());
        let span = self.setup.as_mut().map_or_else(tracing::Span::none, |setup| std::mem::replace(&mut setup.span, tracing::Span::none()));
        meter::spawn(
            span,
            ws_core::connection_task(async move {
                match self.await {
                    Ok(socket) => Some(callback(socket)),
                    Err(error) => {
                        match on_failed {
                            Some(on_failed) => on_failed(error),
                            None => tracing::debug!(%error, "upgrade failed"),
                        }
                        None
                    }
                }
            }),
        );
    }
}

impl Future for UpgradeFut {
    type Output = Result<HyperWebSocket, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let upgraded = ready!(Pin::new(&mut self.on_upgrade).poll(cx)).map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let setup = self.setup.take().ok_or(Error::Closed)?;
        let Setup { config, negotiated, shutdown, adapter, started, .. } = *setup;
        let socket = WebSocket::from_upgraded(TokioIo::new(upgraded), Role::Server, &config, negotiated, BytesMut::new());
        socket.meter(adapter, started);
        if let Some(shutdown) = shutdown {
            shutdown.watch(&socket.connection());
        }
        Poll::Ready(Ok(socket))
    }
}
