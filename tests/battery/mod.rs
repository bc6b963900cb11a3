//! The conformance battery: one set of checks against an echo server, written once and run
//! against every way of serving a handler (`echo_battery!(start)` generates the tests).
//! `start(config)` must return the address of a server echoing text and binary on any
//! path, configured with `config` (the subprotocol check relies on its `protocols`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::common::{bounded, connect, connect_with_response, raw_request};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use wsdriver::deflate::DeflateConfig;
use wsdriver::{CloseCode, CloseFrame, Config, Message};

/// The config battery clients connect with: permessage-deflate offered.
pub fn client_config() -> Config {
    Config::default().deflate(DeflateConfig::default())
}

/// The config every battery server is started with: the options every adapter must honour.
pub fn server_config() -> Config {
    Config::default()
        .deflate(DeflateConfig::default())
        .protocols(["echo.v2", "echo.v1"])
        .max_message_size(32 << 20)
        .extra_header(http::header::SERVER, http::HeaderValue::from_static("wsdriver-battery"))
        .origin_check(|origin| origin != Some("http://evil.example"))
}

async fn echo_one(addr: SocketAddr, message: Message) {
    let mut ws = connect(addr, "/any/path?x=1", &client_config()).await;
    ws.send(message.clone()).await.unwrap();
    let got = bounded(ws.recv()).await.unwrap().unwrap();
    assert_eq!(got.len(), message.len());
    assert!(got == message, "echo differs");
}

pub async fn text_multibyte(addr: SocketAddr) {
    echo_one(addr, Message::text("héllo wörld — ✓ 𝄞 ∑ 日本語")).await;
}

pub async fn binary_all_byte_values(addr: SocketAddr) {
    echo_one(addr, Message::binary((0..=255u8).collect::<Vec<_>>())).await;
}

pub async fn empty_messages(addr: SocketAddr) {
    echo_one(addr, Message::text("")).await;
    echo_one(addr, Message::binary(Bytes::new())).await;
}

pub async fn length_boundaries(addr: SocketAddr) {
    let mut ws = connect(addr, "/", &client_config()).await;
    for len in [125usize, 126, 127, 65535, 65536, 65537] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        ws.send(Message::binary(payload.clone())).await.unwrap();
        assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::binary(payload), "length {len}");
        let text = "é".repeat(len / 2) + if len % 2 == 1 { "x" } else { "" };
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text(text), "text length {len}");
    }
}

pub async fn sixteen_mib(addr: SocketAddr) {
    let payload: Vec<u8> = (0..16usize << 20).map(|i| (i % 253) as u8).collect();
    echo_one(addr, Message::binary(payload)).await;
}

pub async fn pipelined_in_order(addr: SocketAddr) {
    let ws = connect(addr, "/", &client_config()).await;
    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..1000 {
            tx.feed(Message::text(format!("message {i}"))).await.unwrap();
        }
        tx.flush().await.unwrap();
        tx
    });
    for i in 0..1000 {
        let got = bounded(rx.next()).await.unwrap().unwrap();
        assert_eq!(got, Message::text(format!("message {i}")));
    }
    drop(sender.await.unwrap());
}

pub async fn subprotocol_selection(addr: SocketAddr) {
    let offered = client_config().protocols(["x.unknown", "echo.v1", "echo.v2"]);
    let (ws, response) = connect_with_response(addr, "/", &offered).await;
    assert_eq!(ws.protocol().as_deref(), Some("echo.v1"), "client preference order");
    assert_eq!(response.headers()["sec-websocket-protocol"], "echo.v1");
    let (ws, response) = connect_with_response(addr, "/", &client_config().protocols(["nope"])).await;
    assert_eq!(ws.protocol(), None);
    assert!(response.headers().get("sec-websocket-protocol").is_none());
}

pub async fn close_with_code_and_reason(addr: SocketAddr) {
    let mut ws = connect(addr, "/", &client_config()).await;
    ws.close(CloseCode::from(4001), "done here").await.unwrap();
    let got = bounded(ws.recv()).await.unwrap().unwrap();
    assert_eq!(got, Message::Close(Some(CloseFrame { code: CloseCode::from(4001), reason: "".into() })));
    assert!(bounded(ws.recv()).await.is_none(), "the stream ends after the close handshake");
    assert_eq!(ws.close_status().unwrap().0, 4001);
}

/// Messages sent in fragments (continuation frames, a ping between two of them) arrive
/// whole, text and binary, the fragments' boundaries anywhere (inside a UTF-8 sequence
/// too).
pub async fn fragmented_messages(addr: SocketAddr) {
    use tokio::io::AsyncWriteExt;
    use wsdriver::frame::OpCode;
    let text = "fragmenté ✓ ".repeat(5_000);
    let binary: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for size in [1usize, 7, 1000, 65_536] {
        let mut stream = crate::common::raw_stream(addr).await;
        for (opcode, payload) in [(OpCode::Text, text.as_bytes()), (OpCode::Binary, &binary[..])] {
            let mut frames = Vec::new();
            let pieces: Vec<&[u8]> = payload.chunks(size).collect();
            for (i, piece) in pieces.iter().enumerate() {
                let opcode = if i == 0 { opcode } else { OpCode::Continuation };
                frames.extend(crate::common::client_frame(opcode, i + 1 == pieces.len(), piece));
                if i == 1 {
                    frames.extend(crate::common::client_frame(OpCode::Ping, true, b"between"));
                }
            }
            stream.write_all(&frames).await.unwrap();
        }
        let mut ws = wsdriver::WebSocket::from_raw(stream, wsdriver::Role::Client, &Config::default().max_message_size(1 << 20));
        // Each ping is answered when it arrives, before the message around it ends.
        let (mut pongs, mut data) = (0, Vec::new());
        while data.len() < 2 {
            match bounded(ws.recv()).await.unwrap().unwrap() {
                Message::Pong(payload) => {
                    assert_eq!(&payload[..], b"between");
                    pongs += 1;
                }
                message => {
                    assert!(pongs > data.len(), "a ping's answer waited for the message around it ({size}-byte fragments)");
                    data.push(message)
                }
            }
        }
        assert_eq!(pongs, 2, "{size}-byte fragments");
        assert!(data[0] == Message::text(text.clone()), "text in {size}-byte fragments");
        assert!(data[1] == Message::binary(binary.clone()), "binary in {size}-byte fragments");
    }
}

/// Over HTTP/2: the extra response headers, the origin check (403 on the stream) and the
/// message size limit (1009) hold as over HTTP/1.1.
pub async fn config_options_apply_over_http2(addr: SocketAddr) {
    let (_ws, response) = connect_with_response(addr, "/", &client_config()).await;
    assert_eq!(response.headers()["server"], "wsdriver-battery");
    let evil = client_config().extra_header(http::header::ORIGIN, http::HeaderValue::from_static("http://evil.example"));
    let refused = wsdriver::client::ClientBuilder::new(format!("ws://{addr}/")).config(evil).http2(true).connect().await;
    match refused {
        Err(wsdriver::Error::Handshake(wsdriver::handshake::HandshakeError::UnexpectedStatus { status, .. })) => {
            assert_eq!(status, 403)
        }
        other => panic!("expected a 403, got {:?}", other.map(|(_, response)| response)),
    }
    let mut ws = connect(addr, "/", &client_config()).await;
    ws.send(Message::binary(vec![0u8; (32 << 20) + 1])).await.unwrap();
    match bounded(ws.recv()).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::MESSAGE_TOO_BIG),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
}

/// The server answers a Close with the same code (any reason).
pub async fn close_code_is_echoed(addr: SocketAddr) {
    let mut ws = connect(addr, "/", &client_config()).await;
    ws.close(CloseCode::from(4001), "done here").await.unwrap();
    match bounded(ws.recv()).await.unwrap().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, 4001),
        other => panic!("{other:?}"),
    }
    assert!(bounded(ws.recv()).await.is_none(), "the stream ends after the close handshake");
}

pub async fn ping_is_answered(addr: SocketAddr) {
    let ws = connect(addr, "/", &client_config()).await;
    let conn = ws.connection();
    let (_tx, mut rx) = ws.split();
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
    bounded(conn.send_ping("x".repeat(125))).await.unwrap();
    reader.abort();
}

pub async fn rejects_bad_handshakes(addr: SocketAddr) {
    let headers = "Host: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let answer = raw_request(addr, format!("GET / HTTP/1.1\r\n{headers}Sec-WebSocket-Version: 8\r\n\r\n").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("sec-websocket-version: 13\r\n"), "{answer}");
    let answer =
        raw_request(addr, format!("POST / HTTP/1.1\r\n{headers}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    let answer =
        raw_request(addr, b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
            .await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("missing sec-websocket-key"), "{answer}");
}

/// A client that sends without ever reading: the server's echoes back up, its sends wait
/// at the write buffer's high-water mark, it stops reading, and TCP (or HTTP/2's flow
/// control) pushes back on the client. Unbounded buffering would let the client write all
/// 256 MiB.
pub async fn a_client_that_never_reads_is_backpressured(addr: SocketAddr) {
    use tokio::io::AsyncWriteExt;
    let mut stream = crate::common::raw_stream(addr).await;
    let frame = crate::common::client_frame(wsdriver::frame::OpCode::Binary, true, &vec![0x5a; 64 << 10]);
    let mut written = 0usize;
    while written < 256 << 20 {
        match tokio::time::timeout(std::time::Duration::from_secs(2), stream.write_all(&frame)).await {
            Ok(result) => result.unwrap(),
            Err(_) => break, // stalled: the server stopped reading
        }
        written += frame.len();
    }
    assert!(written < 64 << 20, "the server accepted {} MiB from a client that never reads", written >> 20);
}

/// The config's options hold on this server: extra response headers, the origin check,
/// the message size limit.
pub async fn config_options_apply(addr: SocketAddr) {
    let (_ws, response) = connect_with_response(addr, "/", &client_config()).await;
    assert_eq!(response.headers()["server"], "wsdriver-battery");

    let request = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\n\r\n";
    let answer = raw_request(addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");

    use tokio::io::AsyncWriteExt;
    let mut stream = crate::common::raw_client(addr).await;
    // Only the header of a frame one byte over the limit: the announcement is enough.
    let over = wsdriver::frame::FrameHeader {
        fin: true,
        rsv: 0,
        opcode: wsdriver::frame::OpCode::Binary,
        mask: Some([1; 4]),
        payload_len: (32 << 20) + 1,
    };
    let mut header = [0u8; wsdriver::frame::MAX_HEADER_LEN];
    let n = over.encode(&mut header);
    stream.write_all(&header[..n]).await.unwrap();
    assert_eq!(crate::common::read_close(&mut stream).await, Some(1009));
}

/// permessage-deflate is negotiated, and compressible and incompressible messages of
/// every size class survive it, on both sides.
pub async fn deflate_round_trips(addr: SocketAddr) {
    let (mut ws, response) = connect_with_response(addr, "/", &client_config()).await;
    let extensions = response.headers().get("sec-websocket-extensions").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(extensions.starts_with("permessage-deflate"), "not negotiated: {extensions:?}");
    let json: String = (0..20_000).map(|i| format!("{{\"id\":{i},\"name\":\"user {i}\",\"online\":true}},")).collect();
    let noise: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for message in [Message::text("tiny"), Message::text(json.clone()), Message::binary(noise), Message::text(json)] {
        ws.send(message.clone()).await.unwrap();
        assert!(bounded(ws.recv()).await.unwrap().unwrap() == message, "deflate round trip differs");
    }
}

/// [`graceful_shutdown`] on server `kind`, its connections watched by a new `Shutdown`.
pub async fn graceful_shutdown_of(kind: &str) {
    let shutdown = wsdriver::shutdown::Shutdown::new();
    let watching = shutdown.clone();
    let make = move || crate::common::Watching(watching.clone(), crate::common::Echo);
    let addr = crate::common::servers::start_with(kind, server_config(), make).await;
    bounded(graceful_shutdown(addr, shutdown)).await;
}

/// Graceful shutdown: every open connection gets 1001 Going Away; those that answer
/// close cleanly, one that never answers is dropped at the deadline, one that hangs up
/// instead of answering counts as dropped too, and the count says so.
pub async fn graceful_shutdown(addr: SocketAddr, shutdown: wsdriver::shutdown::Shutdown) {
    use tokio::io::AsyncWriteExt;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut ws = connect(addr, "/", &client_config()).await;
        // An echo: the handler is past on_open, so the connection is watched.
        ws.send(Message::text("watched?")).await.unwrap();
        assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("watched?"));
        clients.push(tokio::spawn(async move {
            let mut close = None;
            while let Some(Ok(message)) = ws.recv().await {
                if let Message::Close(frame) = message {
                    close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
            }
            close
        }));
    }
    let mut raw = Vec::new();
    for _ in 0..2 {
        let mut stream = crate::common::raw_client(addr).await;
        stream.write_all(&crate::common::client_frame(wsdriver::frame::OpCode::Text, true, b"watched?")).await.unwrap();
        assert_eq!(crate::common::read_frame(&mut stream).await.map(|(_, payload)| payload), Some(b"watched?".to_vec()));
        raw.push(stream);
    }
    let (mut silent, mut hangs_up) = (raw.remove(0), raw.remove(0));
    let hanging_up = tokio::spawn(async move {
        let code = crate::common::read_close(&mut hangs_up).await;
        drop(hangs_up); // no Close in answer
        code
    });
    assert_eq!(shutdown.open_connections(), 4);
    let dropped = shutdown.shutdown(std::time::Duration::from_millis(500)).await;
    assert_eq!(dropped, 2, "the silent client and the one that hung up");
    assert_eq!(hanging_up.await.unwrap(), Some(1001));
    for client in clients {
        assert_eq!(client.await.unwrap(), Some((1001, "server shutting down".to_owned())));
    }
    assert_eq!(crate::common::read_close(&mut silent).await, Some(1001));
    crate::common::assert_eof(&mut silent).await;
    assert_eq!(shutdown.open_connections(), 0);
}

/// A handler whose `on_close` waits on `release`, reporting when it starts waiting.
struct SlowToClose {
    closing: tokio::sync::mpsc::UnboundedSender<u16>,
    release: tokio::sync::watch::Receiver<bool>,
}

impl wsdriver::Handler for SlowToClose {
    async fn on_message(&mut self, ws: &wsdriver::Connection, message: Message) {
        let _ = ws.send(message).await;
    }
    async fn on_close(&mut self, _ws: &wsdriver::Connection, code: CloseCode, _reason: &str) {
        let _ = self.closing.send(code.into());
        let _ = self.release.wait_for(|released| *released).await;
    }
}

/// A graceful shutdown returns only once every handler's `on_close` has run, not when the
/// close handshake is over.
pub async fn graceful_shutdown_waits_for_on_close(kind: &str) {
    let shutdown = wsdriver::shutdown::Shutdown::new();
    let (closing_tx, mut closing) = tokio::sync::mpsc::unbounded_channel();
    let (release_tx, release) = tokio::sync::watch::channel(false);
    let watching = shutdown.clone();
    let make = move || crate::common::Watching(watching.clone(), SlowToClose { closing: closing_tx.clone(), release: release.clone() });
    let addr = crate::common::servers::start_with(kind, server_config(), make).await;
    let mut ws = connect(addr, "/", &client_config()).await;
    ws.send(Message::text("watched?")).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("watched?"));

    let shutting_down = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { shutdown.shutdown(std::time::Duration::from_secs(10)).await })
    };
    assert!(matches!(bounded(ws.recv()).await, Some(Ok(Message::Close(Some(f)))) if f.code == 1001));
    assert!(bounded(ws.recv()).await.is_none(), "the close handshake completes");
    assert_eq!(bounded(closing.recv()).await, Some(1001));
    // The close handshake is over and on_close is running: the connection still counts.
    assert_eq!(shutdown.open_connections(), 1);
    assert!(!shutting_down.is_finished(), "shutdown returned while on_close was running");
    release_tx.send(true).unwrap();
    assert_eq!(bounded(shutting_down).await.unwrap(), 0, "nothing dropped");
    assert_eq!(shutdown.open_connections(), 0);
}

/// Protocol violations get the right close code and the connection closed, on this
/// server as on every other: the bad-input matrix of the frame layer.
pub async fn bad_frames_get_the_right_close_code(addr: SocketAddr) {
    use crate::common::{assert_eof, client_frame, raw_client, read_close};
    use tokio::io::AsyncWriteExt;
    use wsdriver::frame::OpCode;
    let mut reserved_bits = client_frame(OpCode::Text, true, b"x");
    reserved_bits[0] |= 0x20;
    let mut reserved_opcode = client_frame(OpCode::Binary, true, b"");
    reserved_opcode[0] = 0x80 | 0x5;
    let mut text = b"valid start ".to_vec();
    text.extend([0xED, 0xA0, 0x80]);
    text.extend(vec![b'x'; 500]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked frame", vec![0x81, 0x01, b'x'], 1002),
        ("reserved bits", reserved_bits, 1002),
        ("reserved opcode", reserved_opcode, 1002),
        ("fragmented ping", client_frame(OpCode::Ping, false, b""), 1002),
        ("ping over 125 bytes", vec![0x89, 0x80 | 126, 0, 126, 0, 0, 0, 0], 1002),
        ("continuation without start", client_frame(OpCode::Continuation, true, b"x"), 1002),
        ("invalid close code", client_frame(OpCode::Close, true, &1005u16.to_be_bytes()), 1002),
        ("close reason not utf-8", client_frame(OpCode::Close, true, &[0x03, 0xE8, 0xC3]), 1007),
        // Only the first 40 bytes of the frame are sent: the server must not wait for more.
        ("invalid utf-8, fail fast", client_frame(OpCode::Text, true, &text)[..40].to_vec(), 1007),
    ];
    for (what, bytes, code) in cases {
        let mut stream = raw_client(addr).await;
        stream.write_all(&bytes).await.unwrap();
        assert_eq!(read_close(&mut stream).await, Some(code), "{what}");
        assert_eof(&mut stream).await;
    }
}

/// A peer that stops answering is pinged, then dropped after the pong timeout.
pub async fn keepalive_drops_a_silent_peer(addr: SocketAddr) {
    let mut stream = crate::common::raw_client(addr).await;
    let (opcode, _) = crate::common::read_frame(&mut stream).await.expect("a ping");
    assert_eq!(opcode, wsdriver::frame::OpCode::Ping);
    // Never answered: the server gives up and closes the connection.
    crate::common::assert_eof(&mut stream).await;
}

// ---- The connection keeps going while a handler waits, on every server ----

use crate::common::{Event, ProbeEnds, probes, servers};

/// The handler's next event.
async fn next_event(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Event {
    crate::common::bounded(events.recv()).await.expect("the handler's events")
}

/// A callback awaits its own ping's pong: the driver reads the pong while the callback
/// waits.
pub async fn a_pong_is_awaited_inside_on_message(kind: &str) {
    let addr = servers::start_with(kind, server_config(), || crate::common::PingInside).await;
    let mut ws = connect(addr, "/", &client_config()).await;
    ws.send(Message::text("ping me")).await.unwrap();
    loop {
        match bounded(ws.recv()).await.unwrap().unwrap() {
            Message::Ping(_) => continue, // answered by our driver
            other => {
                assert_eq!(other, Message::text("pong arrived"));
                break;
            }
        }
    }
}

/// A peer's Close is answered, and the connection closed, while a callback still waits;
/// `on_close` follows once the callback returns.
pub async fn a_close_is_answered_while_a_callback_waits(kind: &str) {
    use crate::common::{assert_eof, client_frame, raw_client, read_close};
    use tokio::io::AsyncWriteExt;
    use wsdriver::frame::OpCode;
    let (make, ProbeEnds { mut events, gate, .. }) = probes();
    let addr = servers::start_with(kind, server_config(), make).await;
    let mut peer = raw_client(addr).await;
    peer.write_all(&client_frame(OpCode::Text, true, b"hold")).await.unwrap();
    assert_eq!(next_event(&mut events).await, Event::Open);
    assert_eq!(next_event(&mut events).await, Event::Message(Message::text("hold")));
    peer.write_all(&client_frame(OpCode::Close, true, &4001u16.to_be_bytes())).await.unwrap();
    // Answered and closed with the callback still waiting on its gate.
    assert_eq!(read_close(&mut peer).await, Some(4001));
    assert_eof(&mut peer).await;
    assert!(events.try_recv().is_err(), "no event before the callback returns");
    gate.notify_one();
    assert_eq!(next_event(&mut events).await, Event::Close(4001, String::new()));
}

/// A message that arrives in the same read as the peer's Close still reaches
/// `on_message`, before `on_close`; the Close is answered.
pub async fn a_message_arriving_with_the_close_is_handed_out(kind: &str) {
    use crate::common::{assert_eof, client_frame, raw_client, read_close};
    use tokio::io::AsyncWriteExt;
    use wsdriver::frame::OpCode;
    let (make, ProbeEnds { mut events, .. }) = probes();
    let addr = servers::start_with(kind, server_config(), make).await;
    let mut peer = raw_client(addr).await;
    let mut last = client_frame(OpCode::Text, true, b"last words");
    last.extend_from_slice(&client_frame(OpCode::Close, true, &1000u16.to_be_bytes()));
    peer.write_all(&last).await.unwrap();
    assert_eq!(next_event(&mut events).await, Event::Open);
    assert_eq!(next_event(&mut events).await, Event::Message(Message::text("last words")));
    assert_eq!(next_event(&mut events).await, Event::Close(1000, String::new()));
    assert_eq!(read_close(&mut peer).await, Some(1000));
    assert_eof(&mut peer).await;
}

/// Messages that arrive while a callback waits are handed out after it, in order, one
/// at a time; a ping of the peer's is answered meanwhile.
pub async fn messages_wait_in_order_while_a_callback_waits(kind: &str) {
    let (make, ProbeEnds { mut events, gate, .. }) = probes();
    let addr = servers::start_with(kind, server_config(), make).await;
    let ws = connect(addr, "/", &client_config()).await;
    let conn = ws.connection();
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::text("hold")).await.unwrap();
    for i in 0..20 {
        tx.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    assert_eq!(next_event(&mut events).await, Event::Open);
    assert_eq!(next_event(&mut events).await, Event::Message(Message::text("hold")));
    // The server's driver answers while its handler holds.
    bounded(conn.send_ping("still there?")).await.unwrap();
    assert!(events.try_recv().is_err(), "nothing handed out while the callback waits");
    gate.notify_one();
    let mut echoed = Vec::new();
    while echoed.len() < 21 {
        if let Message::Text(text) = bounded(rx.next()).await.unwrap().unwrap() {
            echoed.push(text.to_string());
        }
    }
    let expected: Vec<String> = std::iter::once("hold".to_owned()).chain((0..20).map(|i| format!("m{i}"))).collect();
    assert_eq!(echoed, expected);
    for i in 0..20 {
        assert_eq!(next_event(&mut events).await, Event::Message(Message::text(format!("m{i}"))));
    }
}

/// The handler's events up to its close, its messages left out.
async fn events_but_messages_until_close(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
    let all = crate::common::events_until_close(events).await;
    all.into_iter().filter(|e| !matches!(e, Event::Message(_))).collect()
}

/// Floods `stream` with binary frames it never reads the answers to, until the server
/// stops reading; in its own task, aborted when the returned guard drops.
fn flood(mut stream: tokio::net::TcpStream) -> tokio::task::AbortHandle {
    use tokio::io::AsyncWriteExt;
    let frame = crate::common::client_frame(wsdriver::frame::OpCode::Binary, true, &vec![0x5a; 64 << 10]);
    tokio::spawn(async move {
        for _ in 0..4096 {
            if stream.write_all(&frame).await.is_err() {
                break;
            }
        }
        // Keep the connection (and its unread answers) until aborted.
        std::future::pending::<()>().await;
    })
    .abort_handle()
}

/// A handler blocked in a send to a peer that stopped reading is woken with an error
/// when the keepalive gives up on the peer, and the connection ends (1006).
pub async fn a_stuck_handler_is_ended_by_the_keepalive(kind: &str) {
    let ms = std::time::Duration::from_millis;
    let (make, ProbeEnds { mut events, mut stuck, .. }) = probes();
    let addr = servers::start_with(kind, server_config().keepalive(Some(ms(100)), ms(200)), make).await;
    let flooding = flood(crate::common::raw_client_small_window(addr).await);
    bounded(stuck.recv()).await.unwrap();
    let seen = events_but_messages_until_close(&mut events).await;
    assert_eq!(seen, [Event::Open, Event::Error("no pong within the keepalive timeout".into()), Event::Close(1006, String::new())]);
    flooding.abort();
}

/// A handler blocked in a send is woken with an error when the close handshake its
/// connection started times out, and the connection ends (1006).
pub async fn a_stuck_handler_is_ended_by_the_close_timeout(kind: &str) {
    let ms = std::time::Duration::from_millis;
    let (make, ProbeEnds { mut events, mut stuck, mut opened, .. }) = probes();
    let config = server_config().keepalive(None, ms(0)).close_timeout(ms(300));
    let addr = servers::start_with(kind, config, make).await;
    let flooding = flood(crate::common::raw_client_small_window(addr).await);
    let conn = bounded(opened.recv()).await.unwrap();
    bounded(stuck.recv()).await.unwrap();
    conn.close(CloseCode::NORMAL, "closing on a stuck handler").unwrap();
    let seen = events_but_messages_until_close(&mut events).await;
    assert_eq!(seen, [Event::Open, Event::Error("close handshake timed out".into()), Event::Close(1006, String::new())]);
    flooding.abort();
}

/// The peer's TCP connection ends in the middle of a message: one error, one close
/// (1006), and the server closes its side.
pub async fn eof_in_the_middle_of_a_message(kind: &str) {
    use tokio::io::AsyncWriteExt;
    let (make, ProbeEnds { mut events, .. }) = probes();
    let addr = servers::start_with(kind, server_config(), make).await;
    let mut peer = crate::common::raw_client(addr).await;
    let frame = crate::common::client_frame(wsdriver::frame::OpCode::Binary, true, &[7; 100]);
    peer.write_all(&frame[..30]).await.unwrap();
    peer.shutdown().await.unwrap();
    assert_eq!(next_event(&mut events).await, Event::Open);
    assert_eq!(next_event(&mut events).await, Event::Error("connection reset without a close frame".into()));
    assert_eq!(next_event(&mut events).await, Event::Close(1006, String::new()));
    crate::common::assert_eof(&mut peer).await;
    assert_eq!(next_event(&mut events).await, Event::Dropped, "nothing after the close");
}

/// A peer that floods pings and never reads: the server keeps reading (the flood is
/// written in full) while its write queue stays bounded (only the latest pong waits).
pub async fn a_ping_flood_from_a_peer_that_never_reads(kind: &str) {
    use tokio::io::AsyncWriteExt;
    const HIGH_WATER: usize = 16 << 10;
    let (make, ProbeEnds { mut opened, .. }) = probes();
    let addr = servers::start_with(kind, server_config().write_buffer_high_water(HIGH_WATER), make).await;
    let mut peer = crate::common::raw_client_small_window(addr).await;
    let conn = bounded(opened.recv()).await.unwrap();
    let ping = crate::common::client_frame(wsdriver::frame::OpCode::Ping, true, b"");
    let flood: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 500_000).collect();
    bounded(peer.write_all(&flood)).await.unwrap();
    // The flood is written in full: the server read it all, without queuing a pong each.
    let queued = conn.buffered_amount();
    assert!(queued <= HIGH_WATER + 2 + 125, "{queued} bytes queued for a peer that never reads");
    assert_eq!(conn.ready_state(), wsdriver::ReadyState::Open);
}

/// A client that trickles its handshake, a byte at a time, is cut off once the handshake
/// timeout passes: on every server, whoever reads the request.
pub async fn a_slowloris_handshake_is_closed_in_time(kind: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let timeout = std::time::Duration::from_millis(500);
    let addr = servers::start(kind, server_config().handshake_timeout(timeout)).await;
    let mut peer = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    let request = b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Slow: ";
    let mut answer = Vec::new();
    let mut sent = 0;
    // One byte every 50 ms, the head never finished: only the server's timeout ends this.
    let closed = loop {
        let byte = request.get(sent).copied().unwrap_or(b'a');
        if peer.write_all(&[byte]).await.is_err() {
            break true;
        }
        sent += 1;
        let mut buf = [0u8; 512];
        match tokio::time::timeout(std::time::Duration::from_millis(50), peer.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) if started.elapsed() < 10 * timeout => continue,
            Err(_) => break false,
        }
    };
    assert!(closed, "still open after {:?} of trickled handshake", started.elapsed());
    assert!(started.elapsed() < 4 * timeout, "closed after {:?}, the timeout is {timeout:?}", started.elapsed());
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// Generates one test per battery check that a client runs over HTTP/2 (extended
/// CONNECT) against the server kind `$kind`: messages of every size, fragmentation,
/// ping, close codes, subprotocols, permessage-deflate, the config's options, graceful
/// shutdown, and events while a callback waits.
#[macro_export]
macro_rules! echo_battery_http2 {
    ($kind:expr) => {
        async fn start(config: wsdriver::Config) -> std::net::SocketAddr {
            $crate::common::servers::start($kind, config).await
        }

        $crate::echo_battery!(@tests_http2 start; text_multibyte, binary_all_byte_values, empty_messages,
            length_boundaries, sixteen_mib, pipelined_in_order, fragmented_messages, subprotocol_selection,
            close_with_code_and_reason, close_code_is_echoed, ping_is_answered, deflate_round_trips,
            a_client_that_never_reads_is_backpressured, config_options_apply_over_http2);

        #[tokio::test]
        async fn graceful_shutdown() {
            $crate::common::HTTP2.scope(true, $crate::battery::graceful_shutdown_of($kind)).await;
        }

        $crate::echo_battery!(@with_kind_http2 $kind; a_pong_is_awaited_inside_on_message,
            a_close_is_answered_while_a_callback_waits, messages_wait_in_order_while_a_callback_waits,
            graceful_shutdown_waits_for_on_close);
    };
}

/// Generates one test per battery check against the server kind `$kind` (a name
/// [`servers::start_with`](crate::common::servers::start_with) knows).
#[macro_export]
macro_rules! echo_battery {
    ($kind:expr) => {
        async fn start(config: wsdriver::Config) -> std::net::SocketAddr {
            $crate::common::servers::start($kind, config).await
        }

        $crate::echo_battery!(@tests start; text_multibyte, binary_all_byte_values, empty_messages,
            length_boundaries, sixteen_mib, pipelined_in_order, fragmented_messages, subprotocol_selection,
            close_with_code_and_reason, ping_is_answered, rejects_bad_handshakes,
            a_client_that_never_reads_is_backpressured, config_options_apply, deflate_round_trips,
            bad_frames_get_the_right_close_code);

        #[tokio::test]
        async fn graceful_shutdown() {
            $crate::battery::graceful_shutdown_of($kind).await;
        }

        $crate::echo_battery!(@with_kind $kind; a_pong_is_awaited_inside_on_message,
            a_close_is_answered_while_a_callback_waits, messages_wait_in_order_while_a_callback_waits,
            a_message_arriving_with_the_close_is_handed_out,
            a_stuck_handler_is_ended_by_the_keepalive, a_stuck_handler_is_ended_by_the_close_timeout,
            eof_in_the_middle_of_a_message, a_ping_flood_from_a_peer_that_never_reads,
            a_slowloris_handshake_is_closed_in_time, graceful_shutdown_waits_for_on_close);

        #[tokio::test]
        async fn keepalive_drops_a_silent_peer() {
            let ms = std::time::Duration::from_millis;
            let addr = start($crate::battery::server_config().keepalive(Some(ms(100)), ms(200))).await;
            $crate::common::bounded($crate::battery::keepalive_drops_a_silent_peer(addr)).await;
        }
    };
    (@with_kind $kind:expr; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                $crate::common::bounded($crate::battery::$check($kind)).await;
            }
        )*
    };
    (@tests $start:expr; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let addr = $start($crate::battery::server_config()).await;
                $crate::common::bounded($crate::battery::$check(addr)).await;
            }
        )*
    };
    // The checks a client runs through `connect`, over HTTP/2 (extended CONNECT).
    (@tests_http2 $start:expr; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let addr = $start($crate::battery::server_config()).await;
                $crate::common::HTTP2.scope(true, $crate::common::bounded($crate::battery::$check(addr))).await;
            }
        )*
    };
    (@with_kind_http2 $kind:expr; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                $crate::common::HTTP2.scope(true, $crate::common::bounded($crate::battery::$check($kind))).await;
            }
        )*
    };
    // The same checks against a server that needs an outside program: ignored by a plain
    // `cargo test`, run by `scripts/test-all` with `--include-ignored`.
    (@tests_needing $why:literal; $start:expr; $($check:ident),*) => {
        $(
            #[tokio::test]
            #[ignore = $why]
            async fn $check() {
                let addr = $start($crate::battery::server_config()).await;
                $crate::common::bounded($crate::battery::$check(addr)).await;
            }
        )*
    };
}
