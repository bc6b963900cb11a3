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

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
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
    Serve { acceptor: Acceptor::new(listener), service, limits: Limits::from(&Config::default()), invalid: None, graceful: None, tls: None }
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
    /// TLS for every connection, if set.
    tls: Option<Tls>,
}

/// The TLS acceptor [`Serve::tls`] sets.
#[cfg(feature = "tls")]
type Tls = tokio_rustls::TlsAcceptor;
/// Without the `tls` feature, never set.
#[cfg(not(feature = "tls"))]
type Tls = std::convert::Infallible;

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
    /// What an HTTP/2 stream may buffer for a peer that does not read.
    write_buffer_high_water: usize,
}

impl From<&Config> for Limits {
    fn from(config: &Config) -> Self {
        Self {
            handshake_timeout: config.handshake_timeout,
            max_header_bytes: config.max_header_bytes,
            max_headers: config.max_headers,
            write_buffer_high_water: config.write_buffer_high_water,
        }
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

    /// Serves HTTPS: every connection starts with a TLS handshake (rustls), which must
    /// complete within [`Config::handshake_timeout`] as the request's head must, then
    /// speaks HTTP/2 if ALPN chose `h2` (WebSockets as RFC 8441 extended CONNECTs, as
    /// browsers open them over HTTP/2) and HTTP/1.1 otherwise. A `config` whose
    /// `alpn_protocols` is empty offers `h2` and `http/1.1`; set them to `http/1.1` alone
    /// for HTTP/1.1 only.
    ///
    /// ```no_run
    /// # async fn run(chain: Vec<wsdriver::rustls::pki_types::CertificateDer<'static>>, key: wsdriver::rustls::pki_types::PrivateKeyDer<'static>) -> std::io::Result<()> {
    /// use hyper::body::{Bytes, Incoming};
    /// use wsdriver::rustls;
    ///
    /// let app = tower::service_fn(|_request: http::Request<Incoming>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<Bytes>::from("hello")))
    /// });
    /// let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    /// let tls = rustls::ServerConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()
    ///     .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
    ///     .map_err(std::io::Error::other)?;
    /// let listener = wsdriver::bind("127.0.0.1:9443").await?;
    /// wsdriver::adapter::hyper::serve(listener, app).tls(tls).await
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: rustls::ServerConfig) -> Self {
        self.tls = Some(ws_core::stream::tls_acceptor(config, true));
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
        let Serve { mut acceptor, service, limits, invalid, graceful, tls } = self;
        let (mut signal, graceful) = match graceful {
            // The HTTP connections in flight hold a receiver each: sending tells them to
            // finish their requests and close, and the sender sees them all gone.
            Some(Graceful { signal, shutdown, deadline }) => (signal, Some((shutdown, deadline, watch::channel(()).0))),
            None => (Box::pin(std::future::pending()) as Pin<Box<dyn Future<Output = ()> + Send>>, None),
        };
        Box::pin(async move {
            if let Some(error) = invalid {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, error));
            }
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = acceptor.accept() => accepted?,
                    () = &mut signal => break,
                };
                // Its first bytes, the TLS handshake and the first request, all before
                // one deadline. Until the first bytes, the task holds the stream, the
                // deadline and a few handles only.
                let deadline = Instant::now() + limits.handshake_timeout;
                let served = Served {
                    peer,
                    deadline,
                    limits,
                    service: service.clone(),
                    shutdown: graceful.as_ref().map(|(shutdown, ..)| shutdown.clone()),
                    stop: graceful.as_ref().map(|(.., http)| http.subscribe()),
                };
                #[allow(clippy::clone_on_copy)] // `Copy` only without the `tls` feature
                let tls = tls.clone();
                tokio::spawn(async move {
                    let mut stop = served.stop.clone();
                    let stream = tokio::select! {
                        stream = ws_core::first_bytes(stream, deadline) => stream,
                        () = stopped(&mut stop) => None, // nothing asked yet: nothing to finish
                    };
                    let Some(stream) = stream else { return };
                    match tls {
                        #[cfg(feature = "tls")]
                        Some(tls) => Box::pin(served.over_tls(stream, tls)).await,
                        _ => Box::pin(served.sniffed(stream)).await,
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

/// Resolves once the graceful shutdown starts; never without one.
async fn stopped(stop: &mut Option<watch::Receiver<()>>) {
    match stop {
        Some(stop) => {
            let _ = stop.changed().await;
        }
        None => std::future::pending().await,
    }
}

/// One accepted connection, and what serving it needs.
struct Served<S> {
    peer: SocketAddr,
    /// When its first request (its head, on HTTP/1.1) must have arrived.
    deadline: Instant,
    limits: Limits,
    service: S,
    /// The graceful shutdown's: what upgraded WebSockets are watched by, and its signal.
    shutdown: Option<Shutdown>,
    stop: Option<watch::Receiver<()>>,
}

impl<S, B> Served<S>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// The TLS handshake, before the deadline, then HTTP/2 if ALPN chose `h2`, HTTP/1.1
    /// otherwise.
    #[cfg(feature = "tls")]
    async fn over_tls(self, stream: TcpStream, tls: tokio_rustls::TlsAcceptor) {
        let mut stop = self.stop.clone();
        let accepted = tokio::select! {
            accepted = tokio::time::timeout_at(self.deadline, tls.accept(stream)) => accepted,
            () = stopped(&mut stop) => return,
        };
        match accepted {
            Ok(Ok(stream)) => {
                let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                self.connection(stream, http2).await;
            }
            Ok(Err(error)) => tracing::debug!(%error, peer = %self.peer, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
        }
    }

    /// HTTP/2 if the client opens with its preface (prior knowledge), HTTP/1.1 otherwise.
    async fn sniffed(self, stream: TcpStream) {
        let mut stop = self.stop.clone();
        let sniffed = tokio::select! {
            sniffed = tokio::time::timeout_at(self.deadline, ws_core::http2::sniff_http2(stream)) => sniffed,
            () = stopped(&mut stop) => return,
        };
        match sniffed {
            Ok(Ok((http2, stream))) => self.connection(stream, http2).await,
            Ok(Err(error)) => tracing::debug!(%error, peer = %self.peer, "http connection failed"),
            Err(_) => tracing::debug!(peer = %self.peer, "no request before the handshake timeout"),
        }
    }

    /// HTTP/1.1 with upgrades, or HTTP/2 with extended CONNECT, over `io`. Closed at the
    /// deadline if no request has arrived by then; finished gracefully on the shutdown's
    /// signal.
    async fn connection<I>(self, io: I, http2: bool)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Served { peer, deadline, limits, service, shutdown, stop } = self;
        let requested = Arc::new(AtomicBool::new(false));
        // Every request carries the client's address (for the WebSocket's span) and the
        // Shutdown (what it upgrades is watched).
        let service = {
            let (requested, service) = (Arc::clone(&requested), TowerToHyperService::new(service));
            service_fn(move |mut request: Request<Incoming>| {
                requested.store(true, Ordering::Relaxed);
                if let Some(shutdown) = &shutdown {
                    request.extensions_mut().insert(shutdown.clone());
                }
                request.extensions_mut().insert(PeerAddr(peer));
                service.call(request)
            })
        };
        let io = TokioIo::new(io);
        let served = if http2 {
            let connection =
                ws_core::http2::server_builder(limits.max_header_bytes, limits.write_buffer_high_water).serve_connection(io, service);
            drive(connection, deadline, &requested, stop).await
        } else {
            let connection = http1_builder(limits, deadline).serve_connection(io, service).with_upgrades();
            drive(connection, deadline, &requested, stop).await
        };
        match served {
            Some(Err(error)) => tracing::debug!(%error, %peer, "http connection failed"),
            Some(Ok(())) => {}
            None => tracing::debug!(%peer, "no request before the handshake timeout"),
        }
    }
}

/// A hyper connection that can be told to finish.
trait GracefulConnection: Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulConnection for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, B> GracefulConnection for hyper::server::conn::http2::Connection<I, S, TokioExecutor>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self);
    }
}

/// Runs `connection` to its end: `None` if no request arrived by `deadline` (it is
/// dropped then), told to finish when the graceful shutdown starts.
async fn drive<C: GracefulConnection>(
    connection: C,
    deadline: Instant,
    requested: &AtomicBool,
    mut stop: Option<watch::Receiver<()>>,
) -> Option<Result<(), hyper::Error>> {
    let mut connection = std::pin::pin!(connection);
    let (mut due, mut finishing) = (true, false);
    loop {
        tokio::select! {
            served = connection.as_mut() => return Some(served),
            () = tokio::time::sleep_until(deadline), if due => {
                if !requested.load(Ordering::Relaxed) {
                    return None;
                }
                due = false;
            }
            () = stopped(&mut stop), if !finishing => {
                finishing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
