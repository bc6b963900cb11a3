//! The client (websocket-driver's `make-client`): connect to `ws://` and `wss://` URLs,
//! with the same [`WebSocket`] stream, the same [`Handler`](crate::Handler) events and the
//! same [`Config`] as a server.
//!
//! ```no_run
//! use wsdriver::{Message, client};
//! # #[tokio::main] async fn main() -> Result<(), wsdriver::Error> {
//! let (mut ws, _response) = client::connect("ws://127.0.0.1:9001/chat").await?;
//! ws.send(Message::text("hello")).await?;
//! while let Some(message) = ws.recv().await {
//!     println!("{:?}", message?);
//! }
//! # Ok(()) }
//! ```

#[cfg(feature = "http2")]
mod http2;
mod pool;
mod proxy;
mod reconnect;

pub use pool::{Balance, ClientPool, PoolBuilder, PoolSender, Received};
pub use proxy::ProxyError;
pub use reconnect::{Reconnect, ReconnectHandle, ReconnectingClient};
/// The client's connection: TCP, TLS over TCP, or a stream of an HTTP/2 connection.
pub type ClientStream = crate::stream::Stream;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::handshake::{HandshakeError, Negotiated, client as hs, http1};
use crate::protocol::Role;
use crate::websocket::WebSocket;
use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Response, Uri, header};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The start of a refused answer's body kept for [`HandshakeError::UnexpectedStatus`].
const BODY_START: usize = 4096;

/// A client WebSocket.
pub type ClientWebSocket = WebSocket<ClientStream>;

/// Connects to `url` (`ws://host[:port]/path?query` or `wss://…`) with the default
/// options; returns the socket and the server's 101 response.
///
/// # Errors
///
/// As [`ClientBuilder::connect`].
///
/// # Cancel safety
///
/// Not cancel safe in the sense of resuming: cancelled, the half-made connection is
/// dropped; connect again.
pub async fn connect(url: impl AsRef<str>) -> Result<(ClientWebSocket, Response<()>)> {
    ClientBuilder::new(url).connect().await
}

/// Options for a client connection.
///
/// ```no_run
/// use std::time::Duration;
/// use wsdriver::{Config, client::ClientBuilder};
/// # #[tokio::main] async fn main() -> Result<(), wsdriver::Error> {
/// let (ws, response) = ClientBuilder::new("wss://example.com/feed")
///     .config(Config::default().protocols(["feed.v2"]).max_message_size(1 << 20))
///     .header(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer token"))
///     .connect_timeout(Duration::from_secs(5))
///     .connect()
///     .await?;
/// assert_eq!(ws.protocol().as_deref(), Some("feed.v2"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    url: String,
    config: Config,
    connect_timeout: Duration,
    tls: TlsOptions,
    proxies: proxy::Proxies,
    /// With HTTP/2 asked for: the connections this builder and its clones share.
    #[cfg(feature = "http2")]
    http2: Option<http2::Connections>,
}

#[derive(Clone, Default)]
struct TlsOptions {
    config: Option<Arc<rustls::ClientConfig>>,
    roots: Option<rustls::RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder").field("url", &self.url).field("config", &self.config).finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A client for `url`, with the default options.
    pub fn new(url: impl AsRef<str>) -> Self {
        Self {
            url: url.as_ref().to_owned(),
            config: Config::default(),
            connect_timeout: Duration::from_secs(10),
            tls: TlsOptions::default(),
            proxies: proxy::Proxies::default(),
            #[cfg(feature = "http2")]
            http2: None,
        }
    }

    /// The same options for another URL. A clone of a builder with
    /// [`ClientBuilder::http2`] shares its HTTP/2 connections, so WebSockets to several
    /// paths of one origin can run on one connection:
    ///
    /// ```no_run
    /// use wsdriver::client::ClientBuilder;
    /// # #[tokio::main] async fn main() -> Result<(), wsdriver::Error> {
    /// let client = ClientBuilder::new("wss://example.com/prices").http2(true);
    /// let (prices, _) = client.clone().connect().await?;
    /// let (news, _) = client.url("wss://example.com/news").connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn url(mut self, url: impl AsRef<str>) -> Self {
        url.as_ref().clone_into(&mut self.url);
        self
    }

    /// Opens WebSockets over HTTP/2 (RFC 8441's extended CONNECT) where the server takes
    /// them: `wss://` offers `h2` by ALPN and uses it if the server picks it, `ws://`
    /// speaks HTTP/2 from the first byte (prior knowledge). The WebSockets this builder and
    /// its clones open to one origin share one HTTP/2 connection, each on its own stream.
    ///
    /// Falls back to HTTP/1.1, on a new connection, when the server does not take a
    /// WebSocket over HTTP/2 (it did not enable extended CONNECT, or resets the stream),
    /// and keeps to HTTP/1.1 for that origin from then on. A refusal with a status (401,
    /// 404) is a refusal either way. Default off: HTTP/1.1 only.
    ///
    /// ```no_run
    /// use wsdriver::client::ClientBuilder;
    /// # #[tokio::main] async fn main() -> Result<(), wsdriver::Error> {
    /// let (ws, _response) = ClientBuilder::new("ws://127.0.0.1:9001/").http2(true).connect().await?;
    /// println!("over {:?}", ws.connection().http_version());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "http2")]
    pub fn http2(mut self, enabled: bool) -> Self {
        self.http2 = enabled.then(|| self.http2.take().unwrap_or_default());
        self
    }

    /// Sets the options and limits (subprotocols offered, extra headers, frame and
    /// message sizes, handshake and close timeouts, keepalive).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Offers these subprotocols, in order of preference.
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config = self.config.protocols(protocols);
        self
    }

    /// Adds a request header (Origin, Authorization, Cookie …).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.config = self.config.extra_header(name, value);
        self
    }

    /// Connects through this proxy, whatever the environment says:
    /// `http://[user:password@]host[:port]` (a `CONNECT` tunnel, for `ws://` as for
    /// `wss://`; the credentials go in `Proxy-Authorization: Basic`), `socks5://…` (the
    /// server's name resolved here) or `socks5h://…` (resolved by the proxy), with
    /// username and password authentication from the URL.
    ///
    /// Without this call, the client takes its proxy from the environment, as curl does:
    /// `HTTPS_PROXY` for `wss://`, `HTTP_PROXY` for `ws://` (not when running as a CGI
    /// script, where it could come from a request header), `ALL_PROXY` for both,
    /// lower-case names too, and none for the hosts `NO_PROXY` lists (names, `.suffix`es,
    /// addresses and CIDR ranges). [`ClientBuilder::no_proxy`] connects straight.
    ///
    /// A proxy's refusal is an [`Error::Proxy`], with the status it answered; so is a URL
    /// given here that cannot be used (another scheme, no host), for every connection,
    /// rather than connecting straight. `host:port` alone means `http://host:port`.
    ///
    /// ```no_run
    /// use wsdriver::client::ClientBuilder;
    /// # #[tokio::main] async fn main() -> Result<(), wsdriver::Error> {
    /// let (ws, _) = ClientBuilder::new("wss://example.com/feed")
    ///     .proxy("http://alice:secret@proxy.internal:3128")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn proxy(mut self, url: impl AsRef<str>) -> Self {
        self.proxies = proxy::Proxies::fixed(url.as_ref());
        self
    }

    /// Connects straight to the server, whatever the proxy environment variables say.
    pub fn no_proxy(mut self) -> Self {
        self.proxies = proxy::Proxies::Direct;
        self
    }

    /// How long the TCP connection and the TLS handshake may take. Default 10 s. The
    /// WebSocket handshake that follows is bounded by [`Config::handshake_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Uses this rustls configuration for `wss://`, instead of one built from the roots
    /// and identity below.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls.config = Some(config);
        self
    }

    /// Trusts these roots for `wss://` instead of the webpki roots (Mozilla's).
    pub fn root_certificates(mut self, roots: rustls::RootCertStore) -> Self {
        self.tls.roots = Some(roots);
        self
    }

    /// Presents this certificate chain and key to servers that ask for a client
    /// certificate.
    pub fn client_certificate(mut self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        self.tls.identity = Some((chain, Arc::new(key)));
        self
    }

    /// Connects and completes the opening handshake; returns the open socket and the
    /// server's 101 response. A refusal is a [`HandshakeError`]: a non-101 status with
    /// its headers and the start of its body, a redirect (reported, not followed), or an
    /// answer that fails validation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for a URL that is not `ws://` or `wss://` with a host;
    /// [`Error::Io`] when TCP fails or the connect timeout passes; [`Error::Proxy`] when
    /// the proxy refuses (its status) or fails; [`Error::Tls`] and [`Error::Io`] for TLS;
    /// [`Error::Handshake`] for a refusal or an answer that fails validation (its status,
    /// headers and the start of its body), or an invalid config.
    ///
    /// # Cancel safety
    ///
    /// Cancelled, the half-made connection is dropped; nothing is left running.
    pub async fn connect(self) -> Result<(ClientWebSocket, Response<()>)> {
        let started = std::time::Instant::now();
        let (stream, response, negotiated, leftover) = self.establish().await?;
        let socket = WebSocket::from_upgraded(stream, Role::Client, &self.config, negotiated, leftover);
        socket.meter("client", started);
        Ok((socket, response))
    }

    /// Returns a socket at once, still [`ReadyState::Connecting`](crate::ReadyState),
    /// and connects in the background: messages sent meanwhile are queued (up to the
    /// write buffer's high-water mark) and sent on open. If the connection fails, the
    /// socket's stream yields the error, then ends.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (it spawns the connecting task).
    pub fn open(self) -> ClientWebSocket {
        let socket = WebSocket::connecting(Role::Client, &self.config);
        let attacher = socket.attacher();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match self.establish().await {
                Ok((stream, _, negotiated, leftover)) => {
                    attacher.attach(stream, negotiated, leftover);
                    attacher.meter("client", started);
                }
                Err(error) => attacher.abort(error),
            }
        });
        socket
    }

    /// A client that reconnects whenever the connection is lost; see [`Reconnect`].
    pub fn reconnecting(self, policy: Reconnect) -> ReconnectingClient {
        ReconnectingClient::new(self, policy)
    }

    /// A pool of `members` reconnecting connections to this URL; see [`PoolBuilder`].
    pub fn pool(self, members: usize) -> PoolBuilder {
        PoolBuilder::new([self]).size(members)
    }

    /// TCP, TLS and the opening handshake: the stream, the server's answer (101, or 200
    /// over HTTP/2), what it negotiated, and any frames that arrived with the answer.
    /// Public for `wsdriver bench`, which writes its frames itself.
    #[doc(hidden)]
    pub async fn establish(&self) -> Result<(ClientStream, Response<()>, Negotiated, BytesMut)> {
        self.config.validate().map_err(HandshakeError::from)?;
        let uri: Uri = self.url.parse().map_err(|e| Error::InvalidUrl(format!("{}: {e}", self.url)))?;
        let (secure, default_port) = match uri.scheme_str() {
            Some("ws") => (false, 80),
            Some("wss") => (true, 443),
            _ => return Err(Error::InvalidUrl(format!("{}: the scheme must be ws or wss", self.url))),
        };
        let host = uri.host().ok_or_else(|| Error::InvalidUrl(format!("{}: no host", self.url)))?;
        // http::Uri keeps the brackets of an IPv6 literal.
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port = uri.port_u16().unwrap_or(default_port);

        #[cfg(feature = "http2")]
        if let Some(connections) = &self.http2 {
            let origin = (secure, host.to_owned(), port);
            match self.establish_http2(connections, origin.clone(), &uri).await? {
                Ok(established) => return Ok(established),
                Err(unsupported) => {
                    tracing::debug!(url = %self.url, reason = %unsupported.0, "no websocket over http/2: falling back to http/1.1");
                    connections.http1_only(origin);
                }
            }
        }
        let stream = self.transport(host, port, secure, false).await?;
        within(self.config.handshake_timeout, self.handshake(stream, &uri)).await
    }

    /// A WebSocket over HTTP/2: on a connection to the origin already open, or on a new
    /// one (`h2` by ALPN, or prior knowledge). `Ok(Err(..))` when HTTP/1.1 should be tried.
    #[cfg(feature = "http2")]
    async fn establish_http2(
        &self,
        connections: &http2::Connections,
        origin: http2::Origin,
        uri: &Uri,
    ) -> Result<std::result::Result<(ClientStream, Response<()>, Negotiated, BytesMut), http2::Unsupported>> {
        let timeout = self.config.handshake_timeout;
        match connections.get(&origin) {
            Ok(Some(mut send)) => match within(timeout, http2::open(&mut send, uri, &self.config)).await? {
                Ok(established) => return Ok(Ok(established)),
                // The connection went away: a new one.
                Err(unsupported) if send.is_closed() => tracing::debug!(reason = %unsupported.0, "http/2 connection lost"),
                Err(unsupported) => return Ok(Err(unsupported)),
            },
            Ok(None) => {}
            Err(unsupported) => return Ok(Err(unsupported)),
        }
        let (secure, host, port) = (origin.0, origin.1.clone(), origin.2);
        let stream = self.transport(&host, port, secure, true).await?;
        let mut send = match stream {
            ClientStream::Tls(tls) if tls.get_ref().1.alpn_protocol() != Some(b"h2") => {
                // The server chose HTTP/1.1: go on with it on this connection.
                return within(timeout, self.handshake(ClientStream::Tls(tls), uri)).await.map(Ok);
            }
            stream => match within(timeout, async { Ok(connections.handshake(origin, stream, &self.config).await) }).await? {
                Ok(send) => send,
                Err(unsupported) => return Ok(Err(unsupported)),
            },
        };
        within(timeout, http2::open(&mut send, uri, &self.config)).await
    }

    /// TCP to `host:port`, and TLS over it for `wss://` (offering `h2` by ALPN if
    /// `offer_http2`), within the connect timeout.
    async fn transport(&self, host: &str, port: u16, secure: bool, offer_http2: bool) -> Result<ClientStream> {
        tokio::time::timeout(self.connect_timeout, async {
            let tcp = self.proxies.connect(host, port, secure).await?;
            let _ = tcp.set_nodelay(true);
            if !secure {
                return Ok(ClientStream::Plain(tcp));
            }
            let name = ServerName::try_from(host.to_owned()).map_err(|e| Error::InvalidUrl(format!("{host}: {e}")))?;
            let mut config = self.build_tls_config()?;
            if offer_http2 && config.alpn_protocols.is_empty() {
                Arc::make_mut(&mut config).alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            }
            let connector = tokio_rustls::TlsConnector::from(config);
            Ok::<_, Error>(ClientStream::Tls(Box::new(connector.connect(name, tcp).await?.into())))
        })
        .await
        .map_err(|_| Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")))?
    }

    async fn handshake(&self, mut stream: ClientStream, uri: &Uri) -> Result<(ClientStream, Response<()>, Negotiated, BytesMut)> {
        let (request, key) = hs::request(uri, &self.config)?;
        let mut out = BytesMut::new();
        http1::write_request(&request, &mut out);
        stream.write_all(&out).await?;
        let mut buf = BytesMut::new();
        let max = self.config.max_header_bytes;
        let response = http1::read_head(&mut stream, &mut buf, max, |b| http1::parse_response(b, self.config.max_headers)).await?;
        let body = if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            Bytes::new()
        } else {
            read_body_start(&mut stream, &mut buf, &response).await
        };
        let negotiated = hs::validate_response(response.status(), response.headers(), body, &key, &self.config)?;
        Ok((stream, response, negotiated, buf))
    }

    fn build_tls_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        if let Some(config) = &self.tls.config {
            return Ok(config.clone());
        }
        let roots = self.tls.roots.clone().unwrap_or_else(|| rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let config = match &self.tls.identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain.clone(), key.clone_key()).map_err(|e| Error::Tls(e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// `open`, failed with [`HandshakeError::Timeout`] if it takes longer than `timeout`.
async fn within<T>(timeout: Duration, open: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(timeout, open).await.map_err(|_| HandshakeError::Timeout)?
}

/// Reads what arrives of a refused answer's body, up to its length and [`BODY_START`].
async fn read_body_start(stream: &mut ClientStream, buf: &mut BytesMut, response: &Response<()>) -> Bytes {
    let length = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let want = length.unwrap_or(BODY_START).min(BODY_START);
    // A body that never comes must not turn the refusal into a timeout.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while buf.len() < want {
            match stream.read_buf(buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    buf.split_to(buf.len().min(want)).freeze()
}
