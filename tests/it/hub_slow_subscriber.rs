//! A subscriber that stops reading never stalls a broadcast nor grows memory: what it has
//! not taken stays in the room's bounded ring, its write buffer stops at the high-water
//! mark, and once it falls a ring behind the slow policy drops the oldest broadcasts or
//! closes it with 1013. A subscriber that keeps up gets everything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::bounded;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wsdriver::hub::{Hub, Member, SlowPolicy};
use wsdriver::{CloseCode, Config, Message};

const HIGH_WATER: usize = 16 << 10;
const MESSAGE: usize = 4096;
const COUNT: u32 = 4000; // 16 MiB per subscriber: far more than the socket buffers hold
const RING: usize = 256;
/// The publisher lets the fast subscriber be at most this many messages behind, well
/// within the ring: a subscriber that keeps up is not the one this test is about.
const PACE: u32 = 64;

/// A server whose connections register with `hub` and join "room"; the members come out
/// of `members` in connection order.
async fn server(hub: Hub) -> (SocketAddr, mpsc::UnboundedReceiver<Member>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let config = Config::default().write_buffer_high_water(HIGH_WATER);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (mut ws, _) = wsdriver::accept(tcp, &config).await.unwrap();
            let member = hub.register(ws.connection());
            member.join("room");
            tx.send(member).unwrap();
            tokio::spawn(async move { while ws.recv().await.is_some() {} });
        }
    });
    (addr, rx)
}

fn numbered(seq: u32) -> Vec<u8> {
    let mut payload = vec![0u8; MESSAGE];
    payload[..4].copy_from_slice(&seq.to_be_bytes());
    payload
}

fn seq_of(message: &Message) -> u32 {
    let Message::Binary(b) = message else { panic!("unexpected {message:?}") };
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Connects a fast subscriber (reading everything into a task) and a slow one (not read
/// until the test says so), then broadcasts `COUNT` numbered messages.
async fn broadcast_past_a_slow_subscriber(policy: SlowPolicy) -> (Member, wsdriver::WebSocket<wsdriver::client::ClientStream>, Vec<u32>) {
    let hub = Hub::builder().queue_capacity(RING).slow_policy(policy).build();
    let (addr, mut members) = server(hub.clone()).await;
    let (mut fast, _) = bounded(wsdriver::client::connect(format!("ws://{addr}/"))).await.unwrap();
    let _fast_member = members.recv().await.unwrap();
    let (slow, _) = bounded(wsdriver::client::connect(format!("ws://{addr}/"))).await.unwrap();
    let slow_member = members.recv().await.unwrap();

    let (progress, mut fast_count) = tokio::sync::watch::channel(0u32);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < COUNT as usize {
            seen.push(seq_of(&fast.recv().await.unwrap().unwrap()));
            progress.send_replace(seen.len() as u32);
        }
        seen
    });
    for seq in 0..COUNT {
        if seq >= PACE {
            bounded(fast_count.wait_for(|n| *n >= seq - PACE)).await.unwrap();
        }
        hub.broadcast("room", numbered(seq));
        // The slow subscriber's memory stays bounded throughout.
        assert!(slow_member.connection().buffered_amount() <= HIGH_WATER + MESSAGE + 16);
    }
    let fast_seen = bounded(reader).await.unwrap();
    (slow_member, slow, fast_seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_the_newest_and_stalls_nobody() {
    let (slow_member, mut slow, fast_seen) = broadcast_past_a_slow_subscriber(SlowPolicy::DropOldest).await;
    assert_eq!(fast_seen, (0..COUNT).collect::<Vec<_>>(), "the fast subscriber got everything, in order");

    // Now it reads: what it gets is in order, ends with the newest, and is exactly what
    // was not dropped.
    let mut got = Vec::new();
    while got.last() != Some(&(COUNT - 1)) {
        got.push(seq_of(&bounded(slow.recv()).await.unwrap().unwrap()));
    }
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
    let dropped = slow_member.dropped();
    assert!(dropped > 0, "the slow subscriber fell a ring behind");
    assert_eq!(got.len() as u64 + dropped, u64::from(COUNT), "what it missed is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_policy_closes_the_slow_subscriber_with_1013() {
    let policy = SlowPolicy::Close(CloseCode::TRY_AGAIN_LATER);
    let (slow_member, mut slow, fast_seen) = broadcast_past_a_slow_subscriber(policy).await;
    assert_eq!(fast_seen, (0..COUNT).collect::<Vec<_>>());
    assert_eq!(slow_member.dropped(), 0);
    let mut last = None;
    let close = loop {
        match bounded(slow.recv()).await.unwrap().unwrap() {
            Message::Close(frame) => break frame.unwrap(),
            message => {
                let seq = seq_of(&message);
                assert!(last.is_none_or(|l| l + 1 == seq), "nothing skipped before the close");
                last = Some(seq);
            }
        }
    };
    assert_eq!(close.code, CloseCode::TRY_AGAIN_LATER);
    assert!(last.unwrap_or(0) < COUNT - 1, "closed before the end");
}

/// Large broadcasts past a member that never reads: the hub keeps no more than the ring's
/// byte budget alive (plus the one broadcast the stuck member's pump is queuing), however
/// many the ring could hold by count; once the member reads, it gets the newest in order
/// and what it lost is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_member_keeps_no_more_than_the_ring_byte_budget_alive() {
    const BIG: usize = 64 << 10;
    const BUDGET: usize = 1 << 20;
    const SENT: u32 = 400; // 25 MiB of broadcasts
    // What one broadcast holds: its frame (payload and a 10-byte header) and its message.
    const COST: usize = 2 * BIG + 10;
    let hub = Hub::builder().queue_capacity(4096).max_ring_bytes(BUDGET).build();
    let (addr, mut members) = server(hub.clone()).await;
    let (mut stuck, _) = bounded(wsdriver::client::connect(format!("ws://{addr}/"))).await.unwrap();
    let member = members.recv().await.unwrap();
    for seq in 0..SENT {
        let mut payload = vec![0u8; BIG];
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        hub.broadcast("room", payload);
        let retained = hub.retained_bytes();
        assert!(retained <= BUDGET + COST, "{retained} bytes kept alive after {seq} broadcasts");
        assert!(member.connection().buffered_amount() <= HIGH_WATER + BIG + 16);
    }
    let mut got = Vec::new();
    while got.last() != Some(&(SENT - 1)) {
        got.push(seq_of(&bounded(stuck.recv()).await.unwrap().unwrap()));
    }
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!(member.dropped() > 0, "the ring let broadcasts go that the member had not taken");
    assert_eq!(got.len() as u64 + member.dropped(), u64::from(SENT), "what it missed is counted");
}
