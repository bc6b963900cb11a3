//! The standalone server, the embedded default: accepts TCP connections, reads the
//! HTTP/1.1 upgrade request itself, and runs a [`Handler`] (or a closure) per connection.
//! No web framework needed. With TLS ([`Server::tls`]) and HTTP/2 (feature `http2`: RFC
//! 8441's extended CONNECT, on hyper's HTTP/2 server, `http2.rs`) as options.

#[cfg(feature = "http2")]
mod http2;

use crate::acceptor::{Acceptor, first_bytes};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::handler::{Handler, connection_task, serve};
use crate::handshake::{HandshakeError, http1, server as hs};
use crate::meter::PeerAddr;
use crate::protocol::Role;
use crate::shutdown::Shutdown;
use crate::stream::Stream;
use crate::websocket::WebSocket;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::{Request, Response};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

/// Performs the server side of the opening handshake on `io`: reads the request (within
/// the configured time, size and header-count limits), validates it, and answers 101, or
/// the precise error status with a short reason, in which case the error is returned.
///
/// ```
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (mut client, server) = tokio::io::duplex(4096);
/// let accepting = tokio::spawn(async move { wsdriver::accept(server, &wsdriver::Config::default()).await });
/// client.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
/// let mut answer = String::new();
/// client.read_to_string(&mut answer).await.unwrap();
/// assert!(answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
/// assert!(accepting.await.unwrap().is_err());
/// # }
/// ```
///
/// # Errors
///
/// [`Error::Handshake`] for a request refused (after answering it) or not received in time,
/// [`Error::Io`] when the stream fails.
///
/// # Cancel safety
///
/// Cancelled, the stream is dropped with the half-read request.
// Not an `async fn`, whose parameters would be kept twice in the future.
#[allow(clippy::manual_async_fn)]
pub fn accept<IO>(io: IO, config: &Config) -> impl Future<Output = Result<(WebSocket<IO>, Request<()>)>> + Send + '_
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // An invalid config is refused in the handshake (500); its timeout must not overflow
    // before that.
    accept_until(io, config, tokio::time::Instant::now() + config.handshake_timeout.min(Config::MAX_DURATION), Hooks::default())
}

/// An application's check of an upgrade request: see [`Server::authorize`].
type Authorize = dyn Fn(&mut Request<()>) -> std::result::Result<(), Box<Response<String>>> + Send + Sync;

/// An application's answer to a request that is not a WebSocket handshake: see
/// [`Server::fallback`].
type Fallback = dyn Fn(&Request<()>) -> Response<Bytes> + Send + Sync;

/// What a server adds to the handshake [`accept`] does alone.
#[derive(Default, Clone, Copy)]
struct Hooks<'a> {
    authorize: Option<&'a Authorize>,
    fallback: Option<&'a Fallback>,
    /// The client's address, put in the request's extensions as a [`PeerAddr`].
    peer: Option<SocketAddr>,
}

/// [`accept`], with the request's head read before `deadline`.
#[allow(clippy::manual_async_fn)] // as `accept`
fn accept_until<'a, IO>(
    mut io: IO,
    config: &'a Config,
    deadline: tokio::time::Instant,
    hooks: Hooks<'a>,
) -> impl Future<Output = Result<(WebSocket<IO>, Request<()>)>> + Send + 'a
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Kept small, as it is part of every connection's memory while its request has not
    // come: nothing but the stream and the read is alive across the first await, the rare
    // rejection writes from a box of its own, and the 101 is queued on the socket.
    async move {
        let started = std::time::Instant::now();
        let mut buf = BytesMut::new();
        let read = http1::read_head(&mut io, &mut buf, config.max_header_bytes, |b| http1::parse_request(b, config.max_headers));
        // A refusal is the handshake's error, answered with its own response, or with the
        // application's (`Server::authorize`).
        let (error, refusal) = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(mut request)) => {
                if let Some(peer) = hooks.peer {
                    request.extensions_mut().insert(PeerAddr(peer));
                }
                let accepted = hs::accept(&request, config);
                if let (Err(HandshakeError::NotUpgrade), Some(answer)) = (&accepted, hooks.fallback) {
                    // Not a WebSocket handshake: the application's answer, not a refusal.
                    Box::pin(reject(io, answer(&request), config.close_timeout)).await;
                    return Err(HandshakeError::NotUpgrade.into());
                }
                match accepted {
                    Ok(accepted) => match hooks.authorize.map(|check| check(&mut request)) {
                        Some(Err(refusal)) => (HandshakeError::Refused(refusal.status()), Some(refusal)),
                        _ => return Ok((opened(io, config, accepted, buf, &request, started)?, request)),
                    },
                    Err(e) => (e, None),
                }
            }
            Ok(Err(Error::Handshake(e))) => (e, None),
            Ok(Err(e)) => return Err(e),
            Err(_) => (HandshakeError::Timeout, None),
        };
        if !matches!(error, HandshakeError::ConnectionClosed) {
            crate::meter::rejected("standalone", error.status().as_u16());
            let response = refusal.map_or_else(|| error.response(), |refusal| *refusal);
            Box::pin(reject(io, response, config.close_timeout)).await;
        }
        Err(error.into())
    }
}

/// The socket of an accepted handshake: the 101 first in its write queue (written at
/// once, as a fresh connection's send buffer takes it whole, or with the first frames),
/// its metrics started, and the connection's span told the path and subprotocol.
fn opened<IO>(
    io: IO,
    config: &Config,
    accepted: hs::Accepted,
    leftover: BytesMut,
    request: &Request<()>,
    started: std::time::Instant,
) -> Result<WebSocket<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut response = BytesMut::new();
    http1::write_response(&accepted.response, &[], &mut response);
    let socket = WebSocket::from_upgraded(io, Role::Server, config, accepted.negotiated, leftover);
    socket.write_first(&response)?;
    socket.meter("standalone", started);
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("path", request.uri().path());
        socket.protocol().map(|protocol| span.record("protocol", protocol));
    }
    Ok(socket)
}

/// Answers a rejected handshake with `response`, then closes the stream; best effort,
/// within `timeout`: the peer may already be gone.
async fn reject<IO: AsyncWrite + Unpin, B: AsRef<[u8]>>(mut io: IO, response: Response<B>, timeout: Duration) {
    tracing::debug!(status = %response.status(), "rejecting websocket handshake");
    let mut out = BytesMut::new();
    http1::write_response(&response, response.body().as_ref(), &mut out);
    let _ = tokio::time::timeout(timeout, async {
        io.write_all(&out).await?;
        io.shutdown().await
    })
    .await;
}

/// What every connection of a server shares.
struct Serving<F> {
    config: Config,
    authorize: Option<Box<Authorize>>,
    fallback: Option<Box<Fallback>>,
    shutdown: Option<Shutdown>,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
    f: F,
}

/// How a connection goes on once its first bytes (and its TLS handshake) are in.
enum Transport {
    /// The HTTP/1.1 upgrade, read here.
    Http1(Stream),
    /// HTTP/2: hyper's server, each extended CONNECT a WebSocket.
    #[cfg(feature = "http2")]
    Http2(http2::Io),
}

impl<F> Serving<F> {
    /// The TLS handshake if there is one, and which HTTP the client speaks: HTTP/2 if
    /// ALPN chose `h2`, or without TLS if it opens with HTTP/2's preface; `None` if the
    /// connection failed or the deadline passed first.
    async fn transport(&self, stream: TcpStream, peer: SocketAddr, deadline: tokio::time::Instant) -> Option<Transport> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let stream = match tokio::time::timeout_at(deadline, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return None;
                }
            };
            #[cfg(feature = "http2")]
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                return Some(Transport::Http2(Box::new(stream)));
            }
            return Some(Transport::Http1(Stream::Tls(Box::new(stream.into()))));
        }
        #[cfg(feature = "http2")]
        if http2::may_be_preface(&stream).await {
            return http2::prior_knowledge(stream, peer, deadline).await.map(Transport::Http2);
        }
        let _ = (peer, deadline);
        Some(Transport::Http1(Stream::Plain(stream)))
    }
}

/// One connection's task: its request's first bytes, the handshake, then `f`'s future.
///
/// Until the first bytes arrive the task holds only the stream and its deadline: the
/// handshake's state (see [`connection_task`]) is allocated once there is a request to
/// read, and freed before the next task runs, so 10,000 clients connecting at once leave
/// no 10,000 freed handshakes scattered between the connections that stay.
fn accepted_task<F, Fut>(stream: TcpStream, peer: SocketAddr, serving: Arc<Serving<F>>) -> impl Future<Output = ()> + Send
where
    F: Fn(WebSocket<Stream>, Request<()>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + serving.config.handshake_timeout;
    first_bytes(stream, deadline).then(move |stream| {
        connection_task(async move {
            let Some(stream) = stream else {
                tracing::debug!(%peer, error = %Error::from(HandshakeError::Timeout), "handshake failed");
                return None;
            };
            // Without the `http2` feature the match has one arm.
            #[allow(clippy::infallible_destructuring_match)]
            let stream = match serving.transport(stream, peer, deadline).await? {
                Transport::Http1(stream) => stream,
                #[cfg(feature = "http2")]
                Transport::Http2(io) => {
                    http2::serve(io, peer, deadline, serving).await;
                    return None;
                }
            };
            let hooks = Hooks { authorize: serving.authorize.as_deref(), fallback: serving.fallback.as_deref(), peer: Some(peer) };
            match accept_until(stream, &serving.config, deadline, hooks).await {
                Ok((socket, request)) => {
                    if let Some(shutdown) = &serving.shutdown {
                        shutdown.watch(&socket.connection());
                    }
                    Some((serving.f)(socket, request))
                }
                Err(error) => {
                    tracing::debug!(%peer, %error, "handshake failed");
                    None
                }
            }
        })
    })
}

/// The signal that starts a graceful shutdown.
type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A standalone WebSocket server on a TCP listener.
///
/// ```no_run
/// use wsdriver::{Connection, Handler, Message, Server};
/// struct Echo;
/// impl Handler for Echo {
///     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
/// }
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// Server::bind("127.0.0.1:9001").await?.serve(|_request| Echo).await
/// # }
/// ```
pub struct Server {
    acceptor: Acceptor,
    config: Config,
    authorize: Option<Box<Authorize>>,
    fallback: Option<Box<Fallback>>,
    graceful: Option<Graceful>,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// What a graceful shutdown needs: the signal that starts it, the connections it closes,
/// and how long it waits for them.
struct Graceful {
    signal: Signal,
    shutdown: Shutdown,
    deadline: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("acceptor", &self.acceptor).field("config", &self.config).finish_non_exhaustive()
    }
}

impl Server {
    /// Listens on `addr`, with a listen backlog of [`BACKLOG`](crate::acceptor::BACKLOG)
    /// ([`bind`](crate::bind)).
    ///
    /// # Errors
    ///
    /// As [`bind`](crate::bind).
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Ok(Self::from_listener(crate::acceptor::bind(addr).await?))
    }

    /// Serves on a listener bound elsewhere ([`bind`](crate::bind) makes one with a
    /// backlog fit for bursts of clients).
    pub fn from_listener(listener: TcpListener) -> Self {
        Self {
            acceptor: Acceptor::new(listener),
            config: Config::default(),
            authorize: None,
            fallback: None,
            graceful: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Checks each upgrade request before it is answered: `Err(response)` refuses it with
    /// that (boxed) response (a 401 with `WWW-Authenticate`, a 403), and no handler is made;
    /// `Ok(())` lets the handshake go on. What the check learns (the user a token names)
    /// can go into the request's extensions, which the handler's factory sees.
    ///
    /// ```no_run
    /// use wsdriver::http::{Response, StatusCode, header};
    /// use wsdriver::{Connection, Handler, Message, Server};
    ///
    /// #[derive(Clone)]
    /// struct User(String);
    ///
    /// struct Greeter(User);
    /// impl Handler for Greeter {
    ///     async fn on_open(&mut self, ws: &Connection) {
    ///         let _ = ws.send_text(format!("hello, {}", self.0.0)).await;
    ///     }
    ///     async fn on_message(&mut self, _: &Connection, _: Message) {}
    /// }
    ///
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// Server::bind("127.0.0.1:9001").await?
    ///     .authorize(|request| {
    ///         let token = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    ///         if token != Some("Bearer letmein") {
    ///             let mut refused = Response::new("a bearer token is required\n".to_owned());
    ///             *refused.status_mut() = StatusCode::UNAUTHORIZED;
    ///             refused.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
    ///             return Err(Box::new(refused));
    ///         }
    ///         request.extensions_mut().insert(User("alice".into()));
    ///         Ok(())
    ///     })
    ///     .serve(|request| Greeter(request.extensions().get::<User>().cloned().unwrap_or(User("?".into()))))
    ///     .await
    /// # }
    /// ```
    pub fn authorize<F>(mut self, check: F) -> Self
    where
        F: Fn(&mut Request<()>) -> std::result::Result<(), Box<Response<String>>> + Send + Sync + 'static,
    {
        self.authorize = Some(Box::new(check));
        self
    }

    /// Answers the requests that are not WebSocket handshakes (an HTTP/1.1 request without
    /// `Upgrade`, an HTTP/2 request other than CONNECT) with `answer`'s response (any body
    /// that converts into [`Bytes`]: a `String`, a `Vec<u8>`, a static slice) instead of
    /// 426 Upgrade Required: a load balancer's health check, or a small page (a browser
    /// that loaded it over HTTP/2 opens its WebSockets on the same connection). The
    /// request has the client's address as a [`PeerAddr`] extension; its body is not read.
    /// Over HTTP/1.1 the connection closes after the response.
    ///
    /// ```no_run
    /// use http::Response;
    /// use wsdriver::{Connection, Handler, Message, Server};
    /// struct Echo;
    /// impl Handler for Echo {
    ///     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
    /// }
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// Server::bind("127.0.0.1:9001")
    ///     .await?
    ///     .fallback(|request| match request.uri().path() {
    ///         "/healthz" => Response::new("ok\n".to_owned()),
    ///         _ => Response::builder().status(404).body("not found\n".to_owned()).unwrap_or_default(),
    ///     })
    ///     .serve(|_request| Echo)
    ///     .await
    /// # }
    /// ```
    pub fn fallback<F, B>(mut self, answer: F) -> Self
    where
        F: Fn(&Request<()>) -> Response<B> + Send + Sync + 'static,
        B: Into<Bytes>,
    {
        self.fallback = Some(Box::new(move |request| answer(request).map(Into::into)));
        self
    }

    /// Sets the options and limits for every connection.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Serves `wss://`: every connection starts with a TLS handshake (rustls), which must
    /// complete within [`Config::handshake_timeout`] as the request must. With the
    /// `http2` feature, a client that chooses `h2` by ALPN (browsers do, once they have an
    /// HTTP/2 connection to the origin) opens its WebSockets as extended CONNECTs on
    /// HTTP/2 streams. A `config` whose `alpn_protocols` is empty offers `h2` (with the
    /// `http2` feature) and `http/1.1`.
    ///
    /// ```no_run
    /// # use wsdriver::{Connection, Handler, Message, Server};
    /// # struct Echo;
    /// # impl Handler for Echo { async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; } }
    /// use wsdriver::rustls::{self, pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject}};
    ///
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// let chain = CertificateDer::pem_file_iter("cert.pem").and_then(|certs| certs.collect::<Result<Vec<_>, _>>());
    /// let key = PrivateKeyDer::from_pem_file("key.pem");
    /// let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    /// let tls = chain.and_then(|chain| Ok((chain, key?))).map_err(std::io::Error::other).and_then(|(chain, key)| {
    ///     rustls::ServerConfig::builder_with_provider(provider)
    ///         .with_safe_default_protocol_versions()
    ///         .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
    ///         .map_err(std::io::Error::other)
    /// })?;
    /// Server::bind("127.0.0.1:9443").await?.tls(tls).serve(|_| Echo).await
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: rustls::ServerConfig) -> Self {
        self.tls = Some(crate::stream::tls_acceptor(config, cfg!(feature = "http2")));
        self
    }

    /// Shuts down gracefully when `signal` completes: stops accepting, sends 1001 Going
    /// Away to every open connection, waits up to `deadline` for their close handshakes,
    /// drops the rest, and then `serve` returns.
    ///
    /// ```no_run
    /// # use wsdriver::{Connection, Handler, Message, Server};
    /// # struct Echo;
    /// # impl Handler for Echo { async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; } }
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// let ctrl_c = async { let _ = tokio::signal::ctrl_c().await; };
    /// Server::bind("127.0.0.1:9001").await?
    ///     .with_graceful_shutdown(ctrl_c, std::time::Duration::from_secs(10))
    ///     .serve(|_| Echo)
    ///     .await
    /// # }
    /// ```
    pub fn with_graceful_shutdown(self, signal: impl Future<Output = ()> + Send + 'static, deadline: Duration) -> Self {
        self.graceful_shutdown(Shutdown::new(), signal, deadline)
    }

    /// As [`Server::with_graceful_shutdown`], with connections watched by `shutdown`,
    /// which may watch other servers' connections too (all are closed together).
    pub fn graceful_shutdown(mut self, shutdown: Shutdown, signal: impl Future<Output = ()> + Send + 'static, deadline: Duration) -> Self {
        self.graceful = Some(Graceful { signal: Box::pin(signal), shutdown, deadline });
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.acceptor.local_addr()
    }

    /// Serves each connection with a fresh handler from `make_handler`, which sees the
    /// upgrade request (path, query, headers). Runs until the listener fails, or until a
    /// graceful shutdown completes. Fails at once, with [`io::ErrorKind::InvalidInput`], if
    /// the config does not pass [`Config::validate`].
    ///
    /// # Errors
    ///
    /// Only the listener's own failures ([`Acceptor::accept`](crate::Acceptor::accept)); a
    /// connection's failure ends that connection alone.
    ///
    /// # Cancel safety
    ///
    /// Cancelled, the server stops accepting; the connections already open go on in their own
    /// tasks (use a graceful shutdown to end them).
    pub async fn serve<H, F>(self, make_handler: F) -> io::Result<()>
    where
        H: Handler,
        F: Fn(&Request<()>) -> H + Send + Sync + 'static,
    {
        self.serve_sockets(move |socket, request| {
            let handler = make_handler(&request);
            async move {
                serve(socket, handler).await;
            }
        })
        .await
    }

    /// Serves each connection's socket with `f`, which receives it as a stream and sink
    /// with its upgrade request (over TCP, TLS or an HTTP/2 stream: see [`Stream`]): the form for code that drives the socket itself rather
    /// than through a [`Handler`] ([`Server::serve`]).
    ///
    /// Fails at once, with [`io::ErrorKind::InvalidInput`], if the config does not pass
    /// [`Config::validate`].
    ///
    /// # Errors
    ///
    /// As [`Server::serve`].
    pub async fn serve_sockets<F, Fut>(self, f: F) -> io::Result<()>
    where
        F: Fn(WebSocket<Stream>, Request<()>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.config.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (mut signal, shutdown) = match self.graceful {
            Some(Graceful { signal, shutdown, deadline }) => (signal, Some((shutdown, deadline))),
            None => (Box::pin(std::future::pending()) as Signal, None),
        };
        let serving = Arc::new(Serving {
            config: self.config,
            authorize: self.authorize,
            fallback: self.fallback,
            shutdown: shutdown.as_ref().map(|(shutdown, _)| shutdown.clone()),
            #[cfg(feature = "tls")]
            tls: self.tls,
            f,
        });
        let mut acceptor = self.acceptor;
        loop {
            let (stream, peer) = tokio::select! {
                accepted = acceptor.accept() => accepted?,
                () = &mut signal => break,
            };
            let span = crate::meter::span("standalone", Some(peer), None, None);
            crate::meter::spawn(span, accepted_task(stream, peer, serving.clone()));
        }
        drop(acceptor);
        if let Some((shutdown, deadline)) = shutdown {
            let dropped = shutdown.shutdown(deadline).await;
            tracing::info!(dropped, "websocket server shut down");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::tests::Echo;

    /// An open connection keeps its task for life: the task must be no larger than the
    /// handler's `serve` future plus a few words (the handshake and its result gone).
    #[tokio::test]
    async fn accepted_task_is_the_serve_future_and_little_more() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let serve_future = serve(WebSocket::from_raw(Stream::Plain(client), Role::Server, &Config::default()), Echo);
        let f = |socket, _request: Request<()>| async move {
            serve(socket, Echo).await;
        };
        let serving = Serving {
            config: Config::default(),
            authorize: None,
            fallback: None,
            shutdown: None,
            #[cfg(feature = "tls")]
            tls: None,
            f,
        };
        let task = accepted_task(stream, peer, Arc::new(serving));
        let (task, serve) = (std::mem::size_of_val(&task), std::mem::size_of_val(&serve_future));
        assert!(task <= serve + 64, "connection task {task} bytes, serve future {serve}");
    }
}
