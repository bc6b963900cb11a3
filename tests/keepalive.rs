//! Keepalive: a peer that stops answering is detected, reported and dropped; a live one
//! is pinged and kept. Runs on tokio's paused clock, so the intervals cost no real time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

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
