//! The client: options reach the server, the server's answer is validated, refusals and
//! redirects are reported with what the server said, and sends made before the
//! connection is open are queued.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use common::{Echo, bounded};
use http::{HeaderValue, StatusCode, header};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wsdriver::client::{ClientBuilder, connect};
use wsdriver::frame::FrameHeader;
use wsdriver::handshake::{HandshakeError, accept_key};
use wsdriver::{Config, Error, Message, ReadyState, Server};

/// A fake server: answers the first request on each connection with `answer(key)`, one
/// byte per char (so `\u{81}` is the byte 0x81), and keeps the connection open; returns
/// what the client sent after its request.
async fn fake_server(answer: fn(&str) -> String) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8];
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let key = text.lines().find_map(|l| l.strip_prefix("sec-websocket-key: ")).unwrap_or("").trim().to_owned();
                let bytes: Vec<u8> = answer(&key).chars().map(|c| c as u8).collect();
                stream.write_all(&bytes).await.unwrap();
                let mut rest = vec![0u8; 1 << 16];
                while let Ok(n) = stream.read(&mut rest).await {
                    if n == 0 || tx.send(rest[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn handshake_error(result: Result<impl Sized, Error>) -> HandshakeError {
    match result {
        Err(Error::Handshake(e)) => e,
        Err(other) => panic!("expected a handshake error, got {other}"),
        Ok(_) => panic!("expected a handshake error, got a connection"),
    }
}

#[tokio::test]
async fn options_reach_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::from_listener(listener).config(Config::default().protocols(["b.v1"]));
    tokio::spawn(server.serve(move |request| {
        let _ = seen_tx.send((request.uri().to_string(), request.headers().clone()));
        Echo
    }));
    let (mut ws, response) = ClientBuilder::new(format!("ws://{addr}/room/7?user=ana"))
        .protocols(["a.v2", "b.v1"])
        .header(header::AUTHORIZATION, HeaderValue::from_static("Bearer secret"))
        .header(header::ORIGIN, HeaderValue::from_static("https://app.example"))
        .connect()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(ws.protocol().as_deref(), Some("b.v1"));
    let (uri, headers) = bounded(seen.recv()).await.unwrap();
    assert_eq!(uri, "/room/7?user=ana");
    assert_eq!(headers["authorization"], "Bearer secret");
    assert_eq!(headers["origin"], "https://app.example");
    assert_eq!(headers["sec-websocket-protocol"], "a.v2, b.v1");
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("hi"));
}

/// Credentials in the URL go out as `Authorization: Basic`, percent-decoded; `Host` names
/// the host alone.
#[tokio::test]
async fn url_credentials_become_basic_authorization() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(Server::from_listener(listener).serve(move |request| {
        let _ = seen_tx.send(request.headers().clone());
        Echo
    }));
    let (_ws, _) = connect(format!("ws://ann%40home:p%3Ass@{addr}/")).await.unwrap();
    let headers = bounded(seen.recv()).await.unwrap();
    assert_eq!(headers["host"], addr.to_string());
    // base64 of "ann@home:p:ss"
    assert_eq!(headers["authorization"], "Basic YW5uQGhvbWU6cDpzcw==");
}

#[tokio::test]
async fn ipv6_literals_and_default_paths() {
    let listener = TcpListener::bind("[::1]:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(Server::from_listener(listener).serve(|_| Echo));
    let (mut ws, _) = connect(format!("ws://[::1]:{port}")).await.unwrap();
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::binary(vec![1, 2, 3]));
}

#[tokio::test]
async fn a_refusal_carries_status_headers_and_body() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Server::from_listener(listener).config(Config::default().allowed_origins(["https://good.example"])).serve(|_| Echo));
    let result = ClientBuilder::new(format!("ws://{addr}/"))
        .header(header::ORIGIN, HeaderValue::from_static("https://evil.example"))
        .connect()
        .await;
    match handshake_error(result) {
        HandshakeError::UnexpectedStatus { status, headers, body } => {
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
            assert_eq!(&body[..], b"origin not allowed\n");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn redirects_are_reported_not_followed() {
    let (addr, _) =
        fake_server(|_| "HTTP/1.1 301 Moved Permanently\r\nLocation: ws://elsewhere.example/\r\nContent-Length: 0\r\n\r\n".into()).await;
    match handshake_error(connect(format!("ws://{addr}/")).await) {
        HandshakeError::Redirect { status, location } => assert_eq!((status.as_u16(), location.as_str()), (301, "ws://elsewhere.example/")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_servers_answer_is_validated() {
    let (addr, _) = fake_server(|_| {
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: d3JvbmcK\r\n\r\n".into()
    })
    .await;
    assert_eq!(handshake_error(connect(format!("ws://{addr}/")).await), HandshakeError::InvalidAccept);

    let (addr, _) = fake_server(|key| {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: never.offered\r\n\r\n",
            accept_key(key.as_bytes())
        )
    })
    .await;
    let result = ClientBuilder::new(format!("ws://{addr}/")).protocols(["a"]).connect().await;
    assert_eq!(handshake_error(result), HandshakeError::UnofferedProtocol("never.offered".into()));

    let (addr, _) = fake_server(|key| {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            accept_key(key.as_bytes())
        )
    })
    .await;
    assert!(matches!(handshake_error(connect(format!("ws://{addr}/")).await), HandshakeError::UnofferedExtension(_)));
}

#[tokio::test]
async fn a_silent_server_hits_the_handshake_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let (_stream, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await
    });
    let result =
        ClientBuilder::new(format!("ws://{addr}/")).config(Config::default().handshake_timeout(Duration::from_millis(200))).connect().await;
    assert_eq!(handshake_error(result), HandshakeError::Timeout);
}

#[tokio::test]
async fn every_frame_gets_a_fresh_masking_key() {
    let (addr, mut received) = fake_server(|key| {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key.as_bytes())
        )
    })
    .await;
    let (mut ws, _) = connect(format!("ws://{addr}/")).await.unwrap();
    for _ in 0..8 {
        ws.send(Message::text("same payload")).await.unwrap();
    }
    let mut wire = Vec::new();
    let mut keys = Vec::new();
    while keys.len() < 8 {
        wire.extend(bounded(received.recv()).await.unwrap());
        while let Some((h, n)) = FrameHeader::decode(&wire).unwrap() {
            if wire.len() < n + h.payload_len as usize {
                break;
            }
            keys.push(h.mask.expect("client frames are masked"));
            wire.drain(..n + h.payload_len as usize);
        }
    }
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 8, "masking keys repeat");
}

#[tokio::test]
async fn sends_before_open_are_queued_and_sent_on_open() {
    let addr = common::start_server(Config::default(), || Echo).await;
    let mut ws = ClientBuilder::new(format!("ws://{addr}/")).open();
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    for i in 0..3 {
        ws.send(Message::text(format!("early {i}"))).await.unwrap();
    }
    for i in 0..3 {
        assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text(format!("early {i}")));
    }
    assert_eq!(ws.ready_state(), ReadyState::Open);
}

#[tokio::test]
async fn a_failed_open_is_reported_on_the_stream() {
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port(); // now closed
    let mut ws = ClientBuilder::new(format!("ws://127.0.0.1:{port}/")).open();
    assert!(matches!(bounded(ws.recv()).await, Some(Err(Error::Io(_)))));
    assert!(bounded(ws.recv()).await.is_none());
    assert!(ws.send(Message::text("late")).await.is_err());
}

/// A socket whose open fails drops what was queued: a send waiting at the high-water
/// mark fails instead of waiting forever, and later sends fail at once.
#[tokio::test]
async fn a_failed_open_fails_the_sends_waiting_on_its_queue() {
    use futures_util::FutureExt;
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port(); // now closed
    let config = Config::default().write_buffer_high_water(1024);
    let mut ws = ClientBuilder::new(format!("ws://127.0.0.1:{port}/")).config(config).open();
    let conn = ws.connection();
    // Queued while connecting, past the high-water mark: the next send has to wait.
    conn.send_binary(vec![0u8; 2048]).now_or_never().unwrap().unwrap();
    let mut waiting = Box::pin(conn.send_text("waits for room"));
    assert!((&mut waiting).now_or_never().is_none(), "the second send waits");
    assert!(matches!(bounded(ws.recv()).await, Some(Err(Error::Io(_)))));
    assert!(matches!(bounded(waiting).await, Err(Error::Closed)));
    assert_eq!(conn.buffered_amount(), 0, "what was queued is dropped");
    assert!(matches!(conn.send_text("late").now_or_never(), Some(Err(Error::Closed))));
    assert!(bounded(ws.recv()).await.is_none());
}

#[tokio::test]
async fn invalid_urls() {
    for url in ["http://example.com/", "example.com:80", "ws:///path"] {
        assert!(matches!(connect(url).await, Err(Error::InvalidUrl(_))), "{url}");
    }
}

#[tokio::test]
async fn a_masked_frame_from_the_server_fails_with_1002() {
    let (addr, mut received) = fake_server(|key| {
        // A valid handshake followed by a masked text frame, which a server may not send.
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key.as_bytes())
        );
        answer.push_str("\u{81}\u{81}\0\0\0\0x");
        answer
    })
    .await;
    let (mut ws, _) = connect(format!("ws://{addr}/")).await.unwrap();
    assert!(matches!(bounded(ws.recv()).await, Some(Err(Error::Protocol(wsdriver::ProtocolError::MaskedFrame)))));
    // The client failed the connection with a (masked) Close 1002.
    let wire = bounded(received.recv()).await.unwrap();
    let (h, n) = FrameHeader::decode(&wire).unwrap().unwrap();
    let mut payload = wire[n..n + h.payload_len as usize].to_vec();
    wsdriver::mask::apply_mask(&mut payload, h.mask.unwrap(), 0);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
}
