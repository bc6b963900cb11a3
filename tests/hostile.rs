//! Hostile input against each echo example's process (the standalone server and every
//! adapter), one server at a time: a ping flood from a peer that never reads, a message in
//! a thousand one-byte fragments, floods of Close frames, and 10,000 connections opened
//! and abandoned in the middle of their handshake. After each, the server still echoes,
//! holds no descriptor more than before, and its resident memory stays within a bound
//! that a leak of a few hundred bytes per connection would break.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{EchoProcess, bounded, client_frame, free_addr, growth_per_wave, raw_client, raw_client_small_window, read_frame};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsdriver::Message;
use wsdriver::frame::{FrameHeader, OpCode};

/// Resident memory a server may gain over the whole suite: 10,000 abandoned handshakes
/// leaking 2 KiB each would pass it.
const RSS_GROWTH_LIMIT_KIB: u64 = 16 << 10;

/// The server echoes a message for a fresh client, and closes the connection with it (the
/// server closes the TCP connection first, so its descriptor is gone on return).
async fn still_echoes(addr: SocketAddr) {
    let (mut ws, _) = bounded(wsdriver::client::connect(format!("ws://{addr}/still"))).await.unwrap();
    ws.send(Message::text("still there?")).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("still there?"));
    ws.close(wsdriver::CloseCode::NORMAL, "bye").await.unwrap();
    while bounded(ws.recv()).await.is_some() {}
}

/// A peer that floods pings and never reads: the server keeps reading it (the whole flood
/// is written) without queuing a pong per ping.
async fn ping_flood(addr: SocketAddr) {
    let mut peer = raw_client_small_window(addr).await;
    let ping = client_frame(OpCode::Ping, true, b"are you there");
    let flood: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 200_000).collect();
    bounded(peer.write_all(&flood)).await.unwrap();
}

/// One message in 1,000 one-byte fragments comes back whole.
async fn one_byte_fragments(addr: SocketAddr) {
    let mut peer = raw_client(addr).await;
    let payload: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut wire = Vec::new();
    for (i, byte) in payload.iter().enumerate() {
        let opcode = if i == 0 { OpCode::Text } else { OpCode::Continuation };
        wire.extend(client_frame(opcode, i == payload.len() - 1, &[*byte]));
    }
    bounded(peer.write_all(&wire)).await.unwrap();
    // The echo may itself come fragmented only if the server chose so: take frames until
    // the whole payload is back.
    let mut echoed = Vec::new();
    while echoed.len() < payload.len() {
        let (opcode, data) = read_frame(&mut peer).await.expect("the echo");
        assert!(matches!(opcode, OpCode::Text | OpCode::Continuation), "{opcode:?}");
        echoed.extend(data);
    }
    assert_eq!(echoed, payload);
}

/// Peers that send a Close and then a thousand more, data frames between them: each gets
/// at most one frame back, a Close (the server's answer; a reset for the data it left
/// unread may overtake it), and the connection ends.
async fn close_floods(addr: SocketAddr) {
    let mut peers = tokio::task::JoinSet::new();
    for _ in 0..50 {
        peers.spawn(async move {
            let mut peer = raw_client(addr).await;
            let mut wire = Vec::new();
            for i in 0..1000u16 {
                wire.extend(client_frame(OpCode::Close, true, &1000u16.to_be_bytes()));
                if i % 10 == 0 {
                    wire.extend(client_frame(OpCode::Text, true, b"after close"));
                }
            }
            // The server may close while this is still being written.
            let _ = peer.write_all(&wire).await;
            let mut answer = Vec::new();
            let _ = bounded(peer.read_to_end(&mut answer)).await; // to the end, or a reset
            if !answer.is_empty() {
                let (header, n) = FrameHeader::decode(&answer).unwrap().expect("a whole frame");
                assert_eq!(header.opcode, OpCode::Close);
                assert_eq!(answer[n..n + 2], 1000u16.to_be_bytes());
                assert_eq!(answer.len(), n + header.payload_len as usize, "one frame only");
            }
        });
    }
    while let Some(peer) = peers.join_next().await {
        peer.unwrap();
    }
}

/// 10,000 connections, 500 at a time, each sending part of a handshake and going away.
async fn abandoned_handshakes(addr: SocketAddr) {
    let partial = b"GET /abandoned HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upg";
    for _ in 0..20 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..500 {
            batch.spawn(async move {
                let mut stream = bounded(TcpStream::connect(addr)).await.unwrap();
                stream.write_all(partial).await.unwrap();
                drop(stream);
            });
        }
        while let Some(done) = batch.join_next().await {
            done.unwrap();
        }
    }
}

/// One server at a time: each loads both cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn hostile(example: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let addr = free_addr();
    let server = EchoProcess::start_example(example, addr);
    still_echoes(addr).await; // warms the runtime and the allocator
    let fds = server.fds();
    let rss = server.rss_kib();
    let check = |what: &'static str| {
        let server = &server;
        async move {
            let started = std::time::Instant::now();
            still_echoes(addr).await;
            server.settle_fds(fds).await;
            let grown = server.rss_kib().saturating_sub(rss);
            eprintln!("{example} after {what}: {} fds, RSS +{grown} KiB (settled in {:?})", server.fds(), started.elapsed());
            assert!(grown <= RSS_GROWTH_LIMIT_KIB, "{example}: RSS grew {grown} KiB after {what}");
        }
    };
    let timed = std::time::Instant::now();
    ping_flood(addr).await;
    eprintln!("{example}: ping flood in {:?}", timed.elapsed());
    check("a ping flood").await;
    one_byte_fragments(addr).await;
    check("1,000 one-byte fragments").await;
    let timed = std::time::Instant::now();
    close_floods(addr).await;
    eprintln!("{example}: close floods in {:?}", timed.elapsed());
    check("close floods").await;
    // Rounds until the allocator settles (what many handshakes at once took, it keeps),
    // then the median growth per round: a leak of 100 bytes per connection adds 1 MB to
    // every round; a trim or a step moves one round only.
    let timed = std::time::Instant::now();
    abandoned_handshakes(addr).await;
    eprintln!("{example}: 10,000 abandoned handshakes in {:?}", timed.elapsed());
    check("10,000 abandoned handshakes").await;
    let mut rss = Vec::new();
    for _ in 0..6 {
        abandoned_handshakes(addr).await;
        check("10,000 more abandoned handshakes").await;
        rss.push(server.rss_kib());
    }
    let trend = growth_per_wave(&rss[2..]);
    assert!(trend <= 1024.0, "{example}: RSS grows {trend:.0} KiB per 10,000 abandoned handshakes: {rss:?} KiB");
}

macro_rules! hostile {
    ($($example:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $example() {
            hostile(stringify!($example)).await;
        }
    )*};
}

hostile!(echo, echo_hyper, echo_tower, echo_axum, echo_actix);
