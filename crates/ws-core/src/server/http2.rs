//! The standalone server's HTTP/2 (RFC 8441): hyper's HTTP/2 server with extended CONNECT
//! enabled, each `CONNECT` with `:protocol = websocket` a WebSocket on its own stream,
//! served by the same function as an HTTP/1.1 upgrade. Any other request gets the
//! server's fallback answer ([`Server::fallback`](super::Server::fallback)) if it has one,
//! or the status the HTTP/1.1 path would refuse it with.

use super::{Authorize, Serving};
use crate::handshake::{HandshakeError, server as hs};
use crate::http2::{HTTP2_PREFACE, sniff_http2};
use crate::meter::{self, PeerAddr};
use crate::protocol::Role;
use crate::stream::Stream;
use crate::websocket::WebSocket;
use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// An HTTP/2 connection's bytes: TLS, or TCP with the preface read back in front.
pub(super) type Io = Box<dyn IoStream>;

/// What an HTTP/2 connection runs over.
pub(super) trait IoStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoStream for T {}

/// Whether the connection's first bytes, already arrived, could be HTTP/2's preface (no
/// HTTP/1.1 request starts like it).
pub(super) async fn may_be_preface(stream: &TcpStream) -> bool {
    let mut first = [0; HTTP2_PREFACE.len()];
    match stream.peek(&mut first).await {
        Ok(n) => n > 0 && HTTP2_PREFACE.starts_with(&first[..n]),
        Err(_) => false,
    }
}

/// Reads the preface of a client that speaks HTTP/2 without TLS (prior knowledge), by
/// `deadline`: the stream with it put back, or `None` if it is not HTTP/2 after all.
pub(super) async fn prior_knowledge(stream: TcpStream, peer: SocketAddr, deadline: Instant) -> Option<Io> {
    match tokio::time::timeout_at(deadline, sniff_http2(stream)).await {
        Ok(Ok((true, stream))) => Some(Box::new(stream)),
        Ok(Ok((false, _))) => {
            tracing::debug!(%peer, "not an HTTP/2 preface");
            None
        }
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "connection failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake timed out");
            None
        }
    }
}

/// Serves an HTTP/2 connection until it ends: closed at `deadline` if no request came by
/// then, and told to finish (GOAWAY, its WebSockets closed by the shutdown) when the
/// server's graceful shutdown starts.
pub(super) async fn serve<F, Fut>(io: Io, peer: SocketAddr, deadline: Instant, serving: Arc<Serving<F>>)
where
    F: Fn(WebSocket<Stream>, Request<()>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let config = &serving.config;
    let builder = crate::http2::server_builder(config.max_header_bytes, config.write_buffer_high_water);
    let requested = Arc::new(AtomicBool::new(false));
    let service = {
        let (serving, requested) = (Arc::clone(&serving), Arc::clone(&requested));
        service_fn(move |request| {
            requested.store(true, Ordering::Relaxed);
            std::future::ready(Ok::<_, Infallible>(respond(request, peer, &serving)))
        })
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let shutdown = serving.shutdown.clone();
    let started = async {
        match &shutdown {
            Some(shutdown) => shutdown.started().await,
            None => std::future::pending().await,
        }
    };
    let mut started = std::pin::pin!(started);
    let (mut due, mut finishing) = (true, false);
    let served = loop {
        tokio::select! {
            served = connection.as_mut() => break served,
            () = tokio::time::sleep_until(deadline), if due => {
                if !requested.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "no request before the handshake timeout");
                    return;
                }
                due = false;
            }
            () = started.as_mut(), if !finishing => {
                finishing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(error) = served {
        tracing::debug!(%peer, %error, "http/2 connection failed");
    }
}

/// Answers one request: `200` and a task that serves the WebSocket once hyper hands the
/// stream over, or the refusal.
fn respond<F, Fut>(mut request: Request<Incoming>, peer: SocketAddr, serving: &Arc<Serving<F>>) -> Response<Full<Bytes>>
where
    F: Fn(WebSocket<Stream>, Request<()>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let started = std::time::Instant::now();
    request.extensions_mut().insert(PeerAddr(peer));
    if let Some(answer) = serving.fallback.as_deref().filter(|_| request.method() != http::Method::CONNECT) {
        return answer(&request.map(|_| ())).map(Full::new);
    }
    let protocol = request.extensions().get::<hyper::ext::Protocol>().map(hyper::ext::Protocol::as_str);
    let accepted = hs::validate_extended_connect(request.method(), request.version(), protocol, request.headers())
        .and_then(|()| hs::respond_extended_connect(request.headers(), &serving.config));
    let accepted = match accepted {
        Ok(accepted) => accepted,
        Err(error) => return refuse(error, None),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let mut request = request.map(|_| ());
    if let Some(Err(refusal)) = serving.authorize.as_deref().map(|check: &Authorize| check(&mut request)) {
        return refuse(HandshakeError::Refused(refusal.status()), Some(*refusal));
    }
    let span = meter::span("standalone", Some(peer), Some(request.uri().path()), accepted.negotiated.protocol.as_deref());
    let serving = Arc::clone(serving);
    let negotiated = accepted.negotiated;
    meter::spawn(
        span,
        crate::handler::connection_task(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    tracing::debug!(%error, "upgrade failed");
                    return None;
                }
            };
            let stream = Stream::Http2(Box::new(TokioIo::new(upgraded)));
            let socket = WebSocket::from_upgraded(stream, Role::Server, &serving.config, negotiated, BytesMut::new());
            socket.meter("standalone", started);
            if let Some(shutdown) = &serving.shutdown {
                shutdown.watch(&socket.connection());
            }
            Some((serving.f)(socket, request))
        }),
    );
    accepted.response.map(|()| Full::default())
}

/// A refused request's response, counted.
fn refuse(error: HandshakeError, refusal: Option<Response<String>>) -> Response<Full<Bytes>> {
    tracing::debug!(%error, "rejecting websocket handshake");
    meter::rejected("standalone", error.status().as_u16());
    refusal.unwrap_or_else(|| error.response()).map(|body| Full::new(Bytes::from(body)))
}
