//! Keepalive: a peer that stops answering is detected, reported and dropped; a live one
//! is pinged and kept. Runs on tokio's paused clock, so the intervals cost no real time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use common::{Event, Recorder};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use wsdriver::{Config, Message, ReadyState, Role, WebSocket, serve};

const BOUND: Duration = Duration::from_secs(3600);

fn config() -> Config {
    Config::default().keepalive(Some(Duration::from_secs(10)), Duration::from_secs(5))
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_declared_dead() {
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(serve(WebSocket::from_raw(a, Role::Server, &config()), Recorder { events: tx, echo: false }));
    let started = tokio::time::Instant::now();
    let (code, _) = tokio::time::timeout(BOUND, server).await.unwrap().unwrap();
    assert_eq!(u16::from(code), 1006);
    // Pinged after 10 s of silence, declared dead 5 s later.
    assert_eq!(started.elapsed().as_secs(), 15);
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert_eq!(
        seen,
        [Event::Open, Event::Error("no pong within the keepalive timeout".into()), Event::Close(1006, String::new()), Event::Dropped]
    );
    // The peer got the ping (an unmasked, empty Ping frame), then the end of the stream.
    let mut wire = Vec::new();
    b.read_to_end(&mut wire).await.unwrap();
    assert_eq!(wire, [0x89, 0x00]);
}

#[tokio::test(start_paused = true)]
async fn a_live_peer_is_pinged_and_kept() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let mut server = WebSocket::from_raw(a, Role::Server, &config());
    let conn = server.connection();
    tokio::spawn(async move { while let Some(Ok(_)) = server.recv().await {} });
    let mut client = WebSocket::from_raw(b, Role::Client, &Config::default().keepalive(None, Duration::ZERO));
    let mut pings = 0;
    let watch = async {
        while let Some(Ok(message)) = client.recv().await {
            if matches!(message, Message::Ping(_)) {
                pings += 1;
            }
        }
    };
    // Watch for 105 s of paused time: one ping each 10 s of silence, each answered by the
    // client automatically.
    let _ = tokio::time::timeout(Duration::from_secs(105), watch).await;
    assert_eq!(pings, 10);
    assert_eq!(conn.ready_state(), ReadyState::Open);
}

/// Two 16 KiB messages from a peer that never reads its echoes: the first echo fills the
/// write queue past its 1 KiB high-water mark, the second waits.
async fn two_echoes_too_many(peer: &mut tokio::io::DuplexStream) {
    use tokio::io::AsyncWriteExt;
    let frame = common::client_frame(wsdriver::frame::OpCode::Binary, true, &[1; 16 << 10]);
    peer.write_all(&frame).await.unwrap();
    peer.write_all(&frame).await.unwrap();
}

/// The handler's events after it opened, skipping its messages.
fn events_after_messages(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if !matches!(e, Event::Message(_)) {
            seen.push(e);
        }
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn a_handler_blocked_in_a_send_is_woken_by_the_keepalive() {
    let (a, mut peer) = tokio::io::duplex(4096);
    let config = config().write_buffer_high_water(1024);
    let (make, mut ends) = common::probes();
    let server = tokio::spawn(serve(WebSocket::from_raw(a, Role::Server, &config), make()));
    two_echoes_too_many(&mut peer).await;
    ends.stuck.recv().await.unwrap();
    let started = tokio::time::Instant::now();
    let (code, _) = tokio::time::timeout(BOUND, server).await.unwrap().unwrap();
    assert_eq!(u16::from(code), 1006);
    // Pinged after 10 s without input, given up on 5 s later: the blocked send fails.
    assert_eq!(started.elapsed().as_secs(), 15);
    assert_eq!(
        events_after_messages(&mut ends.events),
        [Event::Open, Event::Error("no pong within the keepalive timeout".into()), Event::Close(1006, String::new()), Event::Dropped]
    );
}

#[tokio::test(start_paused = true)]
async fn a_handler_blocked_in_a_send_is_woken_by_the_close_timeout() {
    let (a, mut peer) = tokio::io::duplex(4096);
    let config = Config::default().keepalive(None, Duration::ZERO).write_buffer_high_water(1024);
    let (make, mut ends) = common::probes();
    let socket = WebSocket::from_raw(a, Role::Server, &config);
    let conn = socket.connection();
    let server = tokio::spawn(serve(socket, make()));
    two_echoes_too_many(&mut peer).await;
    ends.stuck.recv().await.unwrap();
    let started = tokio::time::Instant::now();
    conn.close(wsdriver::CloseCode::NORMAL, "").unwrap();
    let (code, _) = tokio::time::timeout(BOUND, server).await.unwrap().unwrap();
    assert_eq!(u16::from(code), 1006);
    // The default close timeout: 5 s for a Close the peer never answers.
    assert_eq!(started.elapsed().as_secs(), 5);
    assert_eq!(
        events_after_messages(&mut ends.events),
        [Event::Open, Event::Error("close handshake timed out".into()), Event::Close(1006, String::new()), Event::Dropped]
    );
}
