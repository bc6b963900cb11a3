//! The client over HTTP/2 (RFC 8441): a WebSocket is an extended CONNECT on a stream of
//! an HTTP/2 connection, which the WebSockets a builder (and its clones) opens to one
//! origin share. hyper's HTTP/2 client underneath.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::handshake::{Negotiated, client as hs};
use crate::http2::{HTTP2_CONNECTION_WINDOW, HTTP2_STREAM_WINDOW};
use crate::stream::Stream;
use bytes::{Bytes, BytesMut};
use http::{Response, Uri};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncRead, AsyncWrite};

/// An origin: the scheme's security, host and port.
pub(super) type Origin = (bool, String, u16);

/// The HTTP/2 connections of a builder and its clones, one per origin, and the origins
/// found not to take WebSockets over HTTP/2.
#[derive(Clone, Default)]
pub(super) struct Connections(Arc<Mutex<HashMap<Origin, Entry>>>);

#[derive(Clone)]
enum Entry {
    /// A connection to share.
    Open(SendRequest<String>),
    /// The origin answered a WebSocket over HTTP/2 with an error: HTTP/1.1 from now on.
    Http1Only,
}

/// Why a WebSocket could not be opened over HTTP/2 where HTTP/1.1 may still work.
#[derive(Debug)]
pub(super) struct Unsupported(pub(super) String);

impl Connections {
    /// A live connection to `origin` to open another stream on, `Err` if the origin takes
    /// no WebSocket over HTTP/2.
    pub(super) fn get(&self, origin: &Origin) -> std::result::Result<Option<SendRequest<String>>, Unsupported> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(origin) {
            Some(Entry::Open(send)) if !send.is_closed() => Ok(Some(send.clone())),
            Some(Entry::Http1Only) => Err(Unsupported("known not to take WebSockets over HTTP/2".into())),
            _ => Ok(None),
        }
    }

    /// Starts HTTP/2 on `io` and keeps the connection for `origin`'s next WebSockets.
    pub(super) async fn handshake<T>(&self, origin: Origin, io: T, config: &Config) -> std::result::Result<SendRequest<String>, Unsupported>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .initial_stream_window_size(HTTP2_STREAM_WINDOW)
            .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
            .max_send_buf_size(config.write_buffer_high_water);
        let (send, connection) = builder.handshake(TokioIo::new(io)).await.map_err(|e| Unsupported(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "http/2 connection failed");
            }
        });
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(origin, Entry::Open(send.clone()));
        Ok(send)
    }

    /// Remembers that `origin` takes WebSockets over HTTP/1.1 only.
    pub(super) fn http1_only(&self, origin: Origin) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(origin, Entry::Http1Only);
    }
}

/// Opens a WebSocket on a new stream of `send`'s connection: the stream, the server's
/// answer, and what it agreed to. `Ok(Err(..))` when the server would not take the
/// extended CONNECT at the HTTP/2 level (it did not enable it, or reset the stream):
/// HTTP/1.1 may work. A refusal with a status is a [`HandshakeError`] like HTTP/1.1's.
pub(super) async fn open(
    send: &mut SendRequest<String>,
    uri: &Uri,
    config: &Config,
) -> Result<std::result::Result<(Stream, Response<()>, Negotiated, BytesMut), Unsupported>> {
    let request = hs::extended_connect_request(uri, config)?;
    let mut request = request.map(|()| String::new());
    request.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
    if send.ready().await.is_err() {
        return Ok(Err(Unsupported("the HTTP/2 connection closed".into())));
    }
    let mut response = match send.send_request(request).await {
        Ok(response) => response,
        Err(error) => return Ok(Err(Unsupported(error.to_string()))),
    };
    let body_start = if response.status().is_success() { Bytes::new() } else { body_start(&mut response).await };
    let negotiated = hs::validate_extended_connect_response(response.status(), response.headers(), body_start, config)?;
    let upgraded = hyper::upgrade::on(&mut response).await.map_err(|e| Error::Io(std::io::Error::other(e)))?;
    let stream = Stream::Http2(Box::new(TokioIo::new(upgraded)));
    Ok(Ok((stream, response.map(|_| ()), negotiated, BytesMut::new())))
}

/// What arrives of a refusal's body within a second, up to [`super::BODY_START`] bytes.
async fn body_start(response: &mut Response<hyper::body::Incoming>) -> Bytes {
    use http_body_util::BodyExt;
    let mut start = BytesMut::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while start.len() < super::BODY_START {
            match response.body_mut().frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        start.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
    })
    .await;
    start.truncate(super::BODY_START);
    start.freeze()
}
