//! The client's way to the server: straight, or through a proxy. HTTP proxies are asked
//! for a tunnel with `CONNECT` (for `ws://` too, never a forwarded request), SOCKS5
//! proxies through hyper-util's `SocksV5`; which proxy a URL takes, from the environment
//! or one set on the builder, is hyper-util's proxy matcher's answer.

use crate::error::{Error, Result};
use crate::handshake::http1;
use bytes::BytesMut;
use http::{HeaderValue, Uri};
use hyper_util::client::legacy::connect::proxy::SocksV5;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower::ServiceExt;

/// The most a proxy's answer to `CONNECT` may take, head and headers.
const MAX_PROXY_ANSWER: usize = 16 << 10;

/// Why a proxy did not open the way to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The HTTP proxy answered `CONNECT` with another status than 2xx (407: it wants
    /// credentials, or others than those given).
    #[error("the proxy refused the tunnel: {status}")]
    Refused {
        /// The proxy's status (its status line: code and reason).
        status: http::StatusCode,
    },
    /// The SOCKS5 proxy refused, failed to authenticate us, or could not reach the server.
    #[error("socks5 proxy: {0}")]
    Socks(String),
    /// A proxy URL this client cannot use (its scheme is not `http`, `socks5` or
    /// `socks5h`, or it has no host), without its credentials.
    #[error("unusable proxy url {0}")]
    InvalidUrl(String),
    /// The proxy's answer to `CONNECT` was not HTTP, or it sent data before the tunnel
    /// was used.
    #[error("the proxy's answer to CONNECT is not valid: {0}")]
    BadAnswer(String),
}

/// Which proxy, if any, the builder's connections take.
#[derive(Clone, Debug, Default)]
pub(super) enum Proxies {
    /// `ALL_PROXY`, `HTTPS_PROXY` (for `wss://`), `HTTP_PROXY` (for `ws://`, unless
    /// running as a CGI script) and `NO_PROXY`, read at each connection.
    #[default]
    Environment,
    /// One proxy for every connection, whatever the environment says.
    Fixed(Arc<Matcher>),
    /// Straight to the server.
    Direct,
    /// A proxy URL given to the builder that no connection can use (credentials left
    /// out): every connection fails with it, rather than going straight.
    Invalid(Arc<str>),
}

impl Proxies {
    /// A proxy for every connection: `http://[user:password@]host[:port]`,
    /// `socks5://…` (the proxy's DNS is not used) or `socks5h://…` (the proxy resolves
    /// the server's name).
    pub(super) fn fixed(url: &str) -> Self {
        let usable = url.parse::<Uri>().ok().filter(|uri| {
            uri.host().is_some_and(|h| !h.is_empty()) && matches!(uri.scheme_str(), None | Some("http" | "socks5" | "socks5h"))
        });
        match usable {
            Some(_) => Proxies::Fixed(Arc::new(Matcher::builder().all(url.to_owned()).build())),
            None => Proxies::Invalid(without_credentials(url).into()),
        }
    }

    /// The proxy a connection to `host:port` takes; `secure` for `wss://`.
    fn intercept(&self, host: &str, port: u16, secure: bool) -> Option<Intercept> {
        let target = Uri::builder()
            .scheme(if secure { "https" } else { "http" })
            .authority(authority(host, port))
            .path_and_query("/")
            .build()
            .ok()?;
        match self {
            Proxies::Environment => Matcher::from_env().intercept(&target),
            Proxies::Fixed(matcher) => matcher.intercept(&target),
            Proxies::Direct | Proxies::Invalid(_) => None,
        }
    }

    /// A TCP connection to `host:port`: straight, or tunnelled through the proxy.
    pub(super) async fn connect(&self, host: &str, port: u16, secure: bool) -> Result<TcpStream> {
        if let Proxies::Invalid(url) = self {
            return Err(ProxyError::InvalidUrl(url.to_string()).into());
        }
        let Some(proxy) = self.intercept(host, port, secure) else {
            return Ok(TcpStream::connect((host, port)).await?);
        };
        let uri = proxy.uri();
        tracing::debug!(proxy = %redacted(uri), %host, port, "connecting through a proxy");
        match uri.scheme_str() {
            Some("http") => http_connect(uri, proxy.basic_auth(), host, port).await,
            Some(scheme @ ("socks5" | "socks5h")) => socks5(uri, proxy.raw_auth(), scheme == "socks5", host, port).await,
            _ => Err(ProxyError::InvalidUrl(redacted(uri)).into()),
        }
    }
}

/// `host:port`, with an IPv6 literal in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// A URL as given, without what stands between `://` and `@` (credentials).
fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}://…@{}", &url[..start], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// The proxy's URL without its credentials, for messages and logs.
fn redacted(uri: &Uri) -> String {
    let host = uri.host().unwrap_or("");
    match (uri.scheme_str(), uri.port_u16()) {
        (Some(scheme), Some(port)) => format!("{scheme}://{host}:{port}"),
        (Some(scheme), None) => format!("{scheme}://{host}"),
        _ => host.to_owned(),
    }
}

/// The proxy's own address (port 80 for `http`, 1080 for SOCKS when the URL has none).
fn proxy_addr(uri: &Uri, default_port: u16) -> Result<(String, u16)> {
    let host = uri.host().ok_or_else(|| ProxyError::InvalidUrl(redacted(uri)))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Ok((host.to_owned(), uri.port_u16().unwrap_or(default_port)))
}

/// A tunnel to `host:port` through the HTTP proxy at `uri` (RFC 9110 §9.3.6).
async fn http_connect(uri: &Uri, auth: Option<&HeaderValue>, host: &str, port: u16) -> Result<TcpStream> {
    let (proxy_host, proxy_port) = proxy_addr(uri, 80)?;
    let mut stream = TcpStream::connect((proxy_host.as_str(), proxy_port)).await?;
    let target = authority(host, port);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    if let Some(auth) = auth {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(auth.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).await?;
    let mut buf = BytesMut::new();
    let answer =
        http1::read_head(&mut stream, &mut buf, MAX_PROXY_ANSWER, |b| http1::parse_response(b, 64)).await.map_err(|e| match e {
            Error::Handshake(e) => ProxyError::BadAnswer(e.to_string()).into(),
            other => other,
        })?;
    if !answer.status().is_success() {
        return Err(ProxyError::Refused { status: answer.status() }.into());
    }
    if !buf.is_empty() {
        // Nothing may come before the client's first bytes (the TLS hello, the request).
        return Err(ProxyError::BadAnswer(format!("{} bytes after the answer's head", buf.len())).into());
    }
    Ok(stream)
}

/// A connection to `host:port` through the SOCKS5 proxy at `uri` (RFC 1928; RFC 1929
/// username and password); with `local_dns`, the server's name is resolved here and the
/// proxy is given its address.
async fn socks5(uri: &Uri, auth: Option<(&str, &str)>, local_dns: bool, host: &str, port: u16) -> Result<TcpStream> {
    let (proxy_host, proxy_port) = proxy_addr(uri, 1080)?;
    let proxy = Uri::builder()
        .scheme("http")
        .authority(authority(&proxy_host, proxy_port))
        .path_and_query("/")
        .build()
        .map_err(|_| ProxyError::InvalidUrl(redacted(uri)))?;
    let tcp = tower::service_fn(move |_proxy: Uri| {
        let proxy_host = proxy_host.clone();
        async move { TcpStream::connect((proxy_host.as_str(), proxy_port)).await.map(TokioIo::new) }
    });
    let mut socks = SocksV5::new(proxy, tcp);
    if let Some((user, password)) = auth {
        socks = socks.with_auth(user.to_owned(), password.to_owned());
    }
    let server = if local_dns {
        // Resolved here, without blocking the runtime: the proxy gets an address.
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: no address")))?;
        authority(&addr.ip().to_string(), port)
    } else {
        authority(host, port)
    };
    let target = Uri::builder()
        .scheme("http")
        .authority(server)
        .path_and_query("/")
        .build()
        .map_err(|e| Error::InvalidUrl(format!("{host}:{port}: {e}")))?;
    let stream = socks.oneshot(target).await.map_err(|e| ProxyError::Socks(e.to_string()))?;
    Ok(stream.into_inner())
}
