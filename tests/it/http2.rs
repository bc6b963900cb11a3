//! WebSockets over HTTP/2 (RFC 8441): on the standalone server, hyper, tower and axum, an
//! extended CONNECT on an HTTP/2 stream opens the same WebSocket an HTTP/1.1 upgrade
//! does, several of them share one connection, and one stream's failure leaves its
//! siblings open. The client side is hyper's own HTTP/2 client, and Node's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common::bounded;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use wsdriver::{CloseCode, Config, Connection, Handler, Message, Role, WebSocket};

/// Says which HTTP version it was opened over, then echoes.
struct Echo;

impl Handler for Echo {
    async fn on_open(&mut self, ws: &Connection) {
        let _ = ws.send_text(format!("{:?}", ws.http_version())).await;
    }

    async fn on_message(&mut self, ws: &Connection, message: Message) {
        let _ = ws.send(message).await;
    }
}

/// Serves `service` over HTTP/2 only (prior knowledge), with extended CONNECT enabled.
async fn h2_server<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder.enable_connect_protocol();
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// Server `kind`: `standalone`, `hyper`, `tower` and `axum` as the other tests start them
/// (the standalone server and the serve helper, each telling HTTP/2 by its preface), or
/// `hyper_http2`, an application's own hyper HTTP/2 server upgrading with `upgrade`.
async fn start(kind: &str) -> SocketAddr {
    if kind != "hyper_http2" {
        return crate::common::servers::start_with(kind, Config::default().protocols(["chat"]), || Echo).await;
    }
    h2_server(tower::service_fn(|mut request: Request<Incoming>| async move {
        Ok::<_, Infallible>(match wsdriver::adapter::hyper::upgrade(&mut request, &Config::default().protocols(["chat"])) {
            Ok((response, upgrade)) => {
                upgrade.serve(Echo);
                response.map(|_| Full::<Bytes>::default())
            }
            Err(rejection) => rejection.response().map(Full::from),
        })
    }))
    .await
}

/// An HTTP/2 connection to `addr`, with prior knowledge.
async fn h2_connect(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    send
}

/// Opens a WebSocket on a new stream of `send`'s connection: the response and the stream.
async fn open(
    send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
) -> (Response<Incoming>, TokioIo<hyper::upgrade::Upgraded>) {
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}/"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "chat")
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .body(Empty::new())
        .unwrap();
    bounded(send.ready()).await.unwrap();
    let mut response = bounded(send.send_request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{response:?}");
    let upgraded = bounded(hyper::upgrade::on(&mut response)).await.unwrap();
    (response, TokioIo::new(upgraded))
}

async fn echoes(ws: &mut WebSocket<TokioIo<hyper::upgrade::Upgraded>>, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text(text));
    let big = Bytes::from(vec![7u8; 200_000]); // past the initial flow-control window
    ws.send(Message::Binary(big.clone())).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::Binary(big));
}

async fn three_streams_one_failing(kind: &str) {
    let addr = start(kind).await;
    let mut send = h2_connect(addr).await;
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let (response, stream) = open(&mut send, addr).await;
        assert_eq!(response.headers()["sec-websocket-protocol"], "chat", "{kind}");
        assert!(response.headers().get("sec-websocket-accept").is_none(), "{kind}: no accept key over HTTP/2");
        assert!(response.headers().get("content-length").is_none(), "{kind}: a 200 without Content-Length");
        let mut ws = WebSocket::from_raw(stream, Role::Client, &Config::default());
        assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("HTTP/2.0"), "{kind}: the handler can ask");
        sockets.push(ws);
    }
    // A third stream breaks the protocol (an unmasked frame): the server fails it alone.
    let (_, mut broken) = open(&mut send, addr).await;
    broken.write_all(&[0x81, 0x01, b'x']).await.unwrap();
    let mut failed = WebSocket::from_raw(broken, Role::Client, &Config::default());
    assert_eq!(bounded(failed.recv()).await.unwrap().unwrap(), Message::text("HTTP/2.0"));
    // The server fails that stream: its 1002 Close (then it ends its half of the stream),
    // or the stream's reset should the peer's reset overtake it.
    match bounded(failed.recv()).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::PROTOCOL_ERROR, "{kind}"),
        Some(Err(wsdriver::Error::Io(_))) | None => {}
        other => panic!("{kind}: expected the stream failed, got {other:?}"),
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        echoes(ws, &format!("{kind} stream {i}")).await;
    }
    for mut ws in sockets {
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        while let Some(message) = bounded(ws.recv()).await {
            message.unwrap();
        }
        assert_eq!(ws.close_status().map(|(code, _)| code), Some(CloseCode::NORMAL), "{kind}");
    }
}

/// A socket whose client never reads stalls alone: the server stops reading it once its
/// echoes back up, and the input it leaves unread cannot take the connection's
/// flow-control window from the sockets beside it.
async fn a_stalled_stream_leaves_its_siblings_flowing(kind: &str) {
    let addr = start(kind).await;
    let mut send = h2_connect(addr).await;
    let (_, mut stalled) = open(&mut send, addr).await;
    let frame = crate::common::client_frame(wsdriver::frame::OpCode::Binary, true, &vec![0x5a; 64 << 10]);
    let mut written = 0usize;
    while written < 16 << 20 {
        match tokio::time::timeout(std::time::Duration::from_millis(500), stalled.write_all(&frame)).await {
            Ok(result) => result.unwrap(),
            Err(_) => break, // stalled: the server stopped reading this stream
        }
        written += frame.len();
    }
    assert!(written < 16 << 20, "{kind}: the server took {} MiB from a stream that never reads", written >> 20);
    let (_, stream) = open(&mut send, addr).await;
    let mut sibling = WebSocket::from_raw(stream, Role::Client, &Config::default());
    assert_eq!(bounded(sibling.recv()).await.unwrap().unwrap(), Message::text("HTTP/2.0"), "{kind}");
    echoes(&mut sibling, &format!("{kind}: beside a stalled stream")).await;
    drop(stalled);
}

/// Node's built-in HTTP/2 client (nghttp2) opens three WebSockets on one session
/// (`interop/node_http2_client.js`).
async fn node_http2_client(kind: &str) {
    let addr = start(kind).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/node_http2_client.js");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(script)
        .arg(format!("http://{addr}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output =
        tokio::time::timeout(std::time::Duration::from_secs(60), command.output()).await.expect("node timed out").expect("node runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "node against {kind} failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 4, "{stdout}");
}

macro_rules! on_every_http2_server {
    ($($module:ident: $kind:literal),*) => {$(
        mod $module {
            #[tokio::test]
            async fn websockets_share_an_http2_connection_and_fail_alone() {
                super::three_streams_one_failing($kind).await;
            }

            #[tokio::test]
            async fn a_stalled_stream_leaves_its_siblings_flowing() {
                super::a_stalled_stream_leaves_its_siblings_flowing($kind).await;
            }

            #[tokio::test]
            #[ignore = "needs Node (interop/install.sh)"]
            async fn node_http2_client() {
                super::node_http2_client($kind).await;
            }
        }
    )*};
}

// Not named after the frameworks: a module `axum` here would shadow the crate.
on_every_http2_server!(
    on_standalone: "standalone",
    on_hyper: "hyper",
    on_tower: "tower",
    on_axum: "axum",
    on_hyper_own_builder: "hyper_http2"
);
