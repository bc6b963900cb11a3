//! [`serve`]: an HTTP/1.1 server on hyper for a service that upgrades WebSockets, with the
//! limits the open internet needs, which hyper's own builder leaves off or loose.
//!
//! hyper reads a request before any adapter sees it, so the handshake's limits must be set
//! on hyper: without a timer, hyper has no header-read timeout at all (a client that
//! trickles its request holds the connection for good), and it accepts heads of up to
//! ~400 KiB. Here, from the same [`Config`] the WebSockets use: the request's head must
//! arrive within [`Config::handshake_timeout`] (431 beyond [`Config::max_header_bytes`]
//! or [`Config::max_headers`]), and nothing is allocated for a connection before its
//! request starts (hyper reserves 8 KiB per connection before its first read; 10,000
//! clients connecting at once would leave 80 MiB of freed buffers behind).
//!
//! Every request carries the client's address in its extensions, as a
//! [`PeerAddr`](ws_core::meter::PeerAddr), for the WebSocket's tracing span.
//!
//! With a graceful shutdown ([`Serve::with_graceful_shutdown`]), every request carries the
//! server's [`Shutdown`] in its extensions, so the WebSockets the service upgrades
//! ([`upgrade`](crate::upgrade), [`WebSocketLayer`](crate::WebSocketLayer), ws-axum's
//! extractor) are watched by it, and the whole server, HTTP and WebSockets, winds down on
//! the signal.

use futures_util::FutureExt;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use ws_core::meter::PeerAddr;
use ws_core::shutdown::Shutdown;
use ws_core::{Acceptor, Config};

/// Errors a service may fail with.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper's smallest read buffer limit.
const MIN_BUF_SIZE: usize = 8192;

/// Serves `service` on `listener`: HTTP/1.1 with upgrades, the handshake limits of
/// [`Serve::config`] (by default [`Config::default`]'s), and an accept loop that survives
/// running out of descriptors ([`Acceptor`]). Await it (it runs until the listener fails
/// or the graceful shutdown signal completes).
///
/// Any tower service of requests will do: an axum `Router`, a stack with a
/// [`WebSocketLayer`](crate::WebSocketLayer), a `tower::service_fn`.
///
/// ```no_run
/// use http_body_util::Full;
/// use hyper::body::{Bytes, Incoming};
/// use wsdriver::{Config, Connection, Handler, Message};
/// use wsdriver::adapter::hyper::{WebSocketLayer, serve};
///
/// struct Echo;
/// impl Handler for Echo {
///     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let config = Config::default();
/// let app = tower::ServiceBuilder::new()
///     .layer(WebSocketLayer::new(|_request: &http::Request<()>| Echo).config(config.clone()))
///     .service_fn(|_request: http::Request<Incoming>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::from("not a websocket")))
///     });
/// let listener = wsdriver::bind("127.0.0.1:9001").await?;
/// let ctrl_c = async { let _ = tokio::signal::ctrl_c().await; };
/// serve(listener, app).config(&config).with_graceful_shutdown(ctrl_c, std::time::Duration::from_secs(10)).await
/// # }
/// ```
///
/// Bind the listener with [`wsdriver::bind`](ws_core::bind): its listen backlog of 4,096, rather than the
/// 128 of `TcpListener::bind`, takes a burst of reconnecting clients without making them
/// wait a second per dropped SYN.
pub fn serve<S>(listener: TcpListener, service: S) -> Serve<S> {
    Serve { acceptor: Acceptor::new(listener), service, limits: Limits::from(&Config::default()), invalid: None, graceful: None }
}

/// The server [`serve`] returns: set it up, then await it.
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<S> {
    acceptor: Acceptor,
    service: S,
    limits: Limits,
    /// Why the config given to [`Serve::config`] cannot work, if it cannot.
    invalid: Option<ws_core::config::ConfigError>,
    graceful: Option<Graceful>,
}

/// What a graceful shutdown needs: the signal that starts it, the WebSockets it closes,
/// and how long it waits for them and for the HTTP connections in flight.
struct Graceful {
    signal: Pin<Box<dyn Future<Output = ()> + Send>>,
    shutdown: Shutdown,
    deadline: Duration,
}

/// hyper's HTTP/1.1 server with the handshake's limits, the request's head due by
/// `deadline`.
fn http1_builder(limits: Limits, deadline: Instant) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(deadline.saturating_duration_since(Instant::now()))
        .max_buf_size(limits.max_header_bytes.max(MIN_BUF_SIZE))
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    builder
}

/// What hyper must enforce while it reads a handshake.
#[derive(Debug, Clone, Copy)]
struct Limits {
    handshake_timeout: Duration,
    max_header_bytes: usize,
    max_headers: usize,
}

impl From<&Config> for Limits {
    fn from(config: &Config) -> Self {
        Self { handshake_timeout: config.handshake_timeout, max_header_bytes: config.max_header_bytes, max_headers: config.max_headers }
    }
}

impl<S> std::fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve").field("acceptor", &self.acceptor).field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl<S> Serve<S> {
    /// Takes the handshake's limits from `config`: a request's head must arrive within
    /// [`Config::handshake_timeout`] of the connection (the connection is closed
    /// otherwise), and may not exceed [`Config::max_header_bytes`] or
    /// [`Config::max_headers`] (431). The WebSocket options themselves are the upgrading
    /// service's. A config that fails [`Config::validate`] makes the server fail at once
    /// with [`io::ErrorKind::InvalidInput`].
    pub fn config(mut self, config: &Config) -> Self {
        self.invalid = config.validate().err();
        self.limits = Limits::from(config);
        self
    }

    /// Shuts down gracefully when `signal` completes: stops accepting, sends 1001 Going
    /// Away to every WebSocket the service upgraded, lets the HTTP requests in flight
    /// finish, waits up to `deadline` for both, drops what remains, and then the server's
    /// future returns. As the standalone server's
    /// [`with_graceful_shutdown`](ws_core::Server::with_graceful_shutdown).
    pub fn with_graceful_shutdown(self, signal: impl Future<Output = ()> + Send + 'static, deadline: Duration) -> Self {
        self.graceful_shutdown(Shutdown::new(), signal, deadline)
    }

    /// As [`Serve::with_graceful_shutdown`], with WebSockets watched by `shutdown`, which
    /// may watch other servers' connections too (all are closed together).
    pub fn graceful_shutdown(mut self, shutdown: Shutdown, signal: impl Future<Output = ()> + Send + 'static, deadline: Duration) -> Self {
        self.graceful = Some(Graceful { signal: Box::pin(signal), shutdown, deadline });
        self
    }
}

impl<S, B> IntoFuture for Serve<S>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let Serve { mut acceptor, service, limits, invalid, graceful } = self;
        let (mut signal, graceful) = match graceful {
            // The HTTP connections in flight hold a receiver each: sending tells them to
            // finish their request and close, and the sender sees them all gone.
            Some(Graceful { signal, shutdown, deadline }) => (signal, Some((shutdown, deadline, watch::channel(()).0))),
            None => (Box::pin(std::future::pending()) as Pin<Box<dyn Future<Output = ()> + Send>>, None),
        };
        let service = TowerToHyperService::new(service);
        Box::pin(async move {
            if let Some(error) = invalid {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, error));
            }
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = acceptor.accept() => accepted?,
                    () = &mut signal => break,
                };
                // Its first bytes, then hyper with the handshake's limits, all before one
                // deadline. Until the request starts, the task holds the stream and the
                // deadline only.
                let deadline = Instant::now() + limits.handshake_timeout;
                let service = service.clone();
                let Some((shutdown, _, http)) = &graceful else {
                    tokio::spawn(ws_core::first_bytes(stream, deadline).then(move |stream| async move {
                        let Some(stream) = stream else { return };
                        // Every request carries the client's address, for the WebSocket's span.
                        let service = service_fn(move |mut request: Request<Incoming>| {
                            request.extensions_mut().insert(PeerAddr(peer));
                            service.call(request)
                        });
                        let served = http1_builder(limits, deadline).serve_connection(TokioIo::new(stream), service).with_upgrades();
                        if let Err(error) = served.await {
                            tracing::debug!(%error, "http connection failed");
                        }
                    }));
                    continue;
                };
                let (shutdown, mut stop) = (shutdown.clone(), http.subscribe());
                tokio::spawn(async move {
                    let stream = tokio::select! {
                        stream = ws_core::first_bytes(stream, deadline) => stream,
                        _ = stop.changed() => None, // nothing asked yet: nothing to finish
                    };
                    let Some(stream) = stream else { return };
                    // Every request carries the Shutdown (what it upgrades is watched) and
                    // the client's address.
                    let service = service_fn(move |mut request: Request<Incoming>| {
                        request.extensions_mut().insert(shutdown.clone());
                        request.extensions_mut().insert(PeerAddr(peer));
                        service.call(request)
                    });
                    let connection = http1_builder(limits, deadline).serve_connection(TokioIo::new(stream), service).with_upgrades();
                    let mut connection = std::pin::pin!(connection);
                    let served = tokio::select! {
                        served = connection.as_mut() => served,
                        _ = stop.changed() => {
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    };
                    if let Err(error) = served {
                        tracing::debug!(%error, "http connection failed");
                    }
                });
            }
            drop(acceptor);
            if let Some((shutdown, deadline, http)) = graceful {
                let _ = http.send(());
                let (dropped, http) = tokio::join!(shutdown.shutdown(deadline), tokio::time::timeout(deadline, http.closed()));
                tracing::info!(dropped, http_cut_off = http.is_err(), "server shut down");
            }
            Ok(())
        })
    }
}
