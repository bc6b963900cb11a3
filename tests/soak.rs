//! Soak: thousands of connections echoing on loopback for a bounded time, then all
//! closed, in waves, against the echo example's process. After every wave the server's
//! file descriptors are back to the baseline (no leaked socket or task holding one), and
//! its memory after the last wave is where it was after the first (no growth per wave).
//!
//! CI runs a short form; `SOAK_CONNECTIONS=10000 SOAK_SECS=60 SOAK_WAVES=5 cargo test
//! --release --test soak` is the long one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{EchoProcess, free_addr};
use std::time::{Duration, Instant};
use wsdriver::client::ClientBuilder;
use wsdriver::{CloseCode, Message};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One wave: `connections` clients echo for `secs`, then close; returns messages echoed.
async fn wave(addr: std::net::SocketAddr, connections: u64, secs: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..connections {
        tasks.spawn(async move {
            let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/soak/{i}")).connect().await.unwrap();
            let mut echoed = 0u64;
            let payload = Message::text(format!("connection {i} says hello ").repeat(4));
            while Instant::now() < deadline {
                ws.send(payload.clone()).await.unwrap();
                let got = tokio::time::timeout(Duration::from_secs(30), ws.recv()).await.unwrap().unwrap().unwrap();
                assert_eq!(got, payload);
                echoed += 1;
            }
            ws.close(CloseCode::NORMAL, "done").await.unwrap();
            while let Some(message) = tokio::time::timeout(Duration::from_secs(30), ws.recv()).await.unwrap() {
                message.unwrap();
            }
            echoed
        });
    }
    let mut total = 0;
    while let Some(echoed) = tasks.join_next().await {
        total += echoed.unwrap();
    }
    total
}

/// Waits (bounded) until the server holds `fds` descriptors again.
async fn settle_fds(server: &EchoProcess, fds: usize) {
    let start = Instant::now();
    while server.fds() != fds {
        assert!(start.elapsed() < Duration::from_secs(20), "server holds {} descriptors, baseline {fds}", server.fds());
        tokio::time::sleep(Duration::from_millis(20)).await; // polling the server's state, bounded
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_echo_then_close_without_leaks() {
    let connections = env("SOAK_CONNECTIONS", 2000);
    let secs = env("SOAK_SECS", 2);
    let waves = env("SOAK_WAVES", 3).max(2);
    let addr = free_addr();
    let server = EchoProcess::start(addr);
    wave(addr, 20, 0).await; // warm up the runtime and the allocator
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline_fds = server.fds();
    let mut rss = Vec::new();
    for n in 0..waves {
        let echoed = wave(addr, connections, secs).await;
        assert!(echoed >= connections, "wave {n}: only {echoed} messages echoed");
        settle_fds(&server, baseline_fds).await;
        rss.push(server.rss_kib());
        eprintln!(
            "soak wave {n}: {connections} connections, {echoed} messages echoed, server RSS {} KiB, {} fds",
            rss[n as usize],
            server.fds()
        );
    }
    let (first, last) = (rss[0], rss[rss.len() - 1]);
    assert!(last <= first + first / 10 + 2048, "server memory grew from {first} KiB to {last} KiB across waves");
}
