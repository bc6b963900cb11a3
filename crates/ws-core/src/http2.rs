//! What the servers and the client share of HTTP/2: telling HTTP/2 with prior knowledge
//! from HTTP/1.1 by a connection's first bytes (and handing the bytes read back to the
//! server that parses them), its limits, and hyper's HTTP/2 server set up with them.
//!
//! An HTTP/2 client without TLS (h2c, RFC 9113 §3.3) opens with a fixed 24-byte preface;
//! no HTTP/1.1 request starts with it (the `PRI` method is reserved for it).

use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
pub const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The streams (WebSockets, and a server's other requests) one HTTP/2 connection may have
/// open at once.
pub const HTTP2_MAX_STREAMS: u32 = 100;

/// What one HTTP/2 stream may receive before its reader takes it: a WebSocket that stops
/// reading (its peer does not read the answers) holds at most this much unread.
pub const HTTP2_STREAM_WINDOW: u32 = 256 << 10;

/// What one HTTP/2 connection may receive before its readers take it: every stream's
/// window, so streams that stop reading never take the window of the ones beside them.
pub const HTTP2_CONNECTION_WINDOW: u32 = HTTP2_STREAM_WINDOW * HTTP2_MAX_STREAMS;

/// hyper's HTTP/2 server as every server here runs it: RFC 8441's extended CONNECT, the
/// header list bounded by `max_header_bytes` (the config's), [`HTTP2_MAX_STREAMS`],
/// receive windows that let no stream starve the others, and a stream's send buffer
/// bounded by `write_buffer_high_water` (the config's).
#[cfg(feature = "http2")]
pub fn server_builder(
    max_header_bytes: usize,
    write_buffer_high_water: usize,
) -> hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .enable_connect_protocol()
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
        .max_send_buf_size(write_buffer_high_water);
    builder
}

/// Reads from `io` until its first bytes are HTTP/2's preface, or cannot be: whether
/// they are, and the stream with every byte read put back in front.
///
/// Reads at most 24 bytes; a peer that stalls stalls this too (bound it with a timeout).
pub async fn sniff_http2<T: AsyncRead + Unpin>(mut io: T) -> io::Result<(bool, Rewind<T>)> {
    let mut read = BytesMut::with_capacity(HTTP2_PREFACE.len());
    while read.len() < HTTP2_PREFACE.len() && HTTP2_PREFACE.starts_with(&read) {
        if io.read_buf(&mut read).await? == 0 {
            break;
        }
    }
    Ok((read.starts_with(HTTP2_PREFACE), Rewind::new(read.freeze(), io)))
}

/// A stream whose first reads return `prefix`, bytes already read from it.
#[derive(Debug)]
pub struct Rewind<T> {
    prefix: Bytes,
    io: T,
}

impl<T> Rewind<T> {
    /// `io`, with `prefix` read first.
    pub fn new(prefix: Bytes, io: T) -> Self {
        Self { prefix, io }
    }

    /// The stream underneath (the prefix not yet read, if any, is lost).
    pub fn into_inner(self) -> T {
        self.io
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn sniffed(input: &[u8]) -> (bool, Vec<u8>) {
        let (http2, mut io) = sniff_http2(input).await.unwrap();
        let mut replayed = Vec::new();
        io.read_to_end(&mut replayed).await.unwrap();
        (http2, replayed)
    }

    #[tokio::test]
    async fn tells_the_preface_and_replays_every_byte() {
        let mut h2 = HTTP2_PREFACE.to_vec();
        h2.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        assert_eq!(sniffed(&h2).await, (true, h2.clone()));
        let h1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(sniffed(h1).await, (false, h1.to_vec()));
        assert_eq!(sniffed(b"PRI * HTTP/1.1\r\n").await, (false, b"PRI * HTTP/1.1\r\n".to_vec()));
        assert_eq!(sniffed(b"PRI *").await, (false, b"PRI *".to_vec()), "an early end");
    }

    #[tokio::test]
    async fn a_preface_in_pieces_is_still_one() {
        let (client, server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut client = client;
            for piece in HTTP2_PREFACE.chunks(5) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let (http2, mut io) = sniff_http2(server).await.unwrap();
        assert!(http2);
        drop(writer.await.unwrap());
        let mut replayed = Vec::new();
        io.read_to_end(&mut replayed).await.unwrap();
        assert_eq!(replayed, HTTP2_PREFACE);
    }
}
