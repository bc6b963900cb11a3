//! Soak: thousands of connections echoing on loopback for a bounded time, then all
//! closed, in waves, against each echo example's process (the standalone server and every
//! adapter), one at a time. After every wave the server's file descriptors are back to the
//! baseline (no leaked socket, nor a task holding one), and memory does not grow wave after
//! wave: the allocator's settling moves it up and down, a leak of a few hundred bytes per
//! connection adds the same amount every wave, and fails this (it found one).
//!
//! CI runs a short form; `SOAK_CONNECTIONS=10000 SOAK_SECS=60 SOAK_WAVES=8 cargo test
//! --release --test soak` is the long one, and `SOAK_SERVER=path/to/binary` soaks another
//! echo server for comparison.
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

/// One soak at a time: each loads both cores, and memory readings need a quiet machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn soak(example: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let connections = env("SOAK_CONNECTIONS", 2000);
    let secs = env("SOAK_SECS", 1);
    let waves = env("SOAK_WAVES", 6).max(4);
    let addr = free_addr();
    let server = EchoProcess::start_example(example, addr);
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
    // A leak grows memory by the same amount every wave; a settling allocator moves up and
    // down. Fail when each of the last three waves added more than 256 KiB.
    let grew = rss.windows(2).rev().take(3).all(|w| w[1] > w[0] + 256);
    assert!(!grew, "{example}: memory grew in each of the last three waves: {rss:?} KiB");
}

macro_rules! soak {
    ($($example:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $example() {
            soak(stringify!($example)).await;
        }
    )*};
}

soak!(echo, echo_hyper, echo_tower, echo_axum, echo_actix);
