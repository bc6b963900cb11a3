//! The byte stream a client's or a standalone server's WebSocket runs on: TCP, TLS over
//! TCP, or a stream of an HTTP/2 connection (RFC 8441).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A server's TLS acceptor for `config`; a config without ALPN protocols offers `h2`
/// (when the server speaks HTTP/2) and `http/1.1`.
#[cfg(feature = "tls")]
#[doc(hidden)] // the standalone server's and ws-hyper's
pub fn tls_acceptor(mut config: rustls::ServerConfig, http2: bool) -> tokio_rustls::TlsAcceptor {
    if config.alpn_protocols.is_empty() {
        if http2 {
            config.alpn_protocols.push(b"h2".to_vec());
        }
        config.alpn_protocols.push(b"http/1.1".to_vec());
    }
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

/// A stream of an HTTP/2 connection, opened by an extended CONNECT.
#[cfg(feature = "http2")]
pub type Http2Stream = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;

/// A WebSocket's connection: TCP (`ws://`), TLS over TCP (`wss://`), or one stream of an
/// HTTP/2 connection shared with other requests.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    /// `ws://` over HTTP/1.1.
    Plain(TcpStream),
    /// `wss://` over HTTP/1.1.
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
    /// Either scheme over HTTP/2: a stream of a connection other requests may share.
    #[cfg(feature = "http2")]
    Http2(Box<Http2Stream>),
}

macro_rules! delegate {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Stream::Plain($s) => $e,
            #[cfg(feature = "tls")]
            Stream::Tls($s) => $e,
            #[cfg(feature = "http2")]
            Stream::Http2($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        delegate!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        delegate!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        delegate!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}
