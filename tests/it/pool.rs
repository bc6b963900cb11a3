//! The client pool against two echo servers (the echo example as processes): one is
//! killed under load and started again. No message the pool accepted is lost, the
//! survivor carries the load meanwhile, and the dead server's members come back.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common::{EchoProcess, free_addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use wsdriver::client::{Balance, ClientBuilder, PoolBuilder, Received, Reconnect};
use wsdriver::{CloseCode, Message};

/// Each message: an 8-byte id, then padding.
fn message(id: u64) -> Message {
    let mut data = id.to_be_bytes().to_vec();
    data.resize(128, b'.');
    Message::binary(data)
}

fn id(message: &Message) -> Option<u64> {
    Some(u64::from_be_bytes(message.as_bytes().get(..8)?.try_into().ok()?))
}

/// Receives until `done` says so; returns how many messages with an id from `from` on
/// each member delivered meanwhile, and marks every id seen.
async fn receive_until(
    pool: &mut wsdriver::client::ClientPool,
    seen: &mut Vec<bool>,
    from: u64,
    mut done: impl FnMut(&[u64]) -> bool,
) -> Vec<u64> {
    let mut per_member = vec![0u64; pool.size()];
    while !done(&per_member) {
        let Received { member, message, .. } = pool.recv().await.expect("the pool's stream ended");
        let id = id(&message).expect("an id") as usize;
        if seen.len() <= id {
            seen.resize(id + 1, false);
        }
        seen[id] = true;
        if id as u64 >= from {
            per_member[member] += 1;
        }
    }
    per_member
}

async fn kill_one_of_two(balance: Balance) {
    let (a, b) = (free_addr(), free_addr());
    let mut server_a = EchoProcess::start(a);
    let _server_b = EchoProcess::start(b);
    // Members 0 and 2 on server a, 1 and 3 on b.
    let mut pool = PoolBuilder::new([ClientBuilder::new(format!("ws://{a}/")), ClientBuilder::new(format!("ws://{b}/"))])
        .size(4)
        .balance(balance)
        .reconnect(Reconnect::default().delays(Duration::from_millis(20), Duration::from_millis(200)))
        .track(id)
        .build();

    // Sends until told to stop; counts the sends the pool accepted.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let sender = pool.sender();
    let sending = tokio::spawn({
        let (stop, accepted) = (stop.clone(), accepted.clone());
        async move {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                sender.send(message(next)).await.expect("the pool takes the send");
                next += 1;
                accepted.store(next, Ordering::Relaxed);
            }
        }
    });

    let mut seen = Vec::new();
    let test = async {
        // Every member carries messages.
        let before = receive_until(&mut pool, &mut seen, 0, |m| m.iter().all(|&n| n >= 500)).await;
        assert!(before.iter().all(|&n| n >= 500));

        server_a.kill();
        // The survivor takes the load: 5,000 messages sent after the kill come back, all
        // from b's members (a's still deliver echoes that had reached this process).
        let killed_at = accepted.load(Ordering::Relaxed);
        let during = receive_until(&mut pool, &mut seen, killed_at, |m| m.iter().sum::<u64>() >= 5_000).await;
        assert_eq!(during[0] + during[2], 0, "a was down: {during:?}");

        // Server a comes back on its address: its members reconnect and carry messages.
        let _server_a = EchoProcess::start(a);
        let back_at = accepted.load(Ordering::Relaxed);
        receive_until(&mut pool, &mut seen, back_at, |m| m[0] >= 500 && m[2] >= 500).await;

        // Every send the pool accepted comes back, at least once.
        stop.store(true, Ordering::Relaxed);
        sending.await.expect("the sender task");
        let sent = accepted.load(Ordering::Relaxed) as usize;
        seen.resize(seen.len().max(sent), false);
        let mut missing = seen[..sent].iter().filter(|s| !**s).count();
        while missing > 0 {
            let received = pool.recv().await.expect("the pool's stream ended");
            let id = id(&received.message).expect("an id") as usize;
            if id < sent && !seen[id] {
                seen[id] = true;
                missing -= 1;
            }
        }
        assert_eq!(pool.unconfirmed(), 0);
        sent
    };
    let sent = tokio::time::timeout(Duration::from_secs(60), test).await.expect("the pool test finished in time");
    assert!(sent > 10_000, "only {sent} messages sent");
    pool.close(CloseCode::NORMAL, "done").await.expect("a clean close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_survives_a_killed_server_without_losing_a_message() {
    kill_one_of_two(Balance::RoundRobin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_buffered_survives_a_killed_server_without_losing_a_message() {
    kill_one_of_two(Balance::LeastBuffered).await;
}

/// Without members the pool's sends wait for one; closing the pool ends them.
#[tokio::test]
async fn close_ends_sends_waiting_for_a_member() {
    let addr = free_addr(); // nothing listens
    let pool = ClientBuilder::new(format!("ws://{addr}/"))
        .pool(2)
        .reconnect(Reconnect::default().delays(Duration::from_millis(10), Duration::from_millis(50)))
        .build();
    let sender = pool.sender();
    let waiting = tokio::spawn(async move { sender.send(Message::text("never")).await });
    assert_eq!(pool.open_members(), 0);
    pool.close(CloseCode::NORMAL, "").await.expect("closing a pool that never connected");
    let result = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the send ended").expect("the task");
    assert!(matches!(result, Err(wsdriver::Error::Closed)), "{result:?}");
}

/// The pool's `before_attempt` rebuilds each member's builder before every attempt: here
/// it points members made for an address where nothing listens at the echo server.
#[tokio::test]
async fn before_attempt_rebuilds_each_members_request() {
    let (dead, live) = (free_addr(), free_addr());
    let _server = EchoProcess::start(live);
    let members_seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let mut pool = ClientBuilder::new(format!("ws://{dead}/"))
        .pool(2)
        .before_attempt({
            let members_seen = members_seen.clone();
            move |member, builder| {
                members_seen.lock().unwrap().insert(member);
                async move { builder.url(format!("ws://{live}/")) }
            }
        })
        .build();
    pool.send(message(7)).await.unwrap();
    let received = tokio::time::timeout(Duration::from_secs(10), pool.recv()).await.expect("an echo in time").unwrap();
    assert_eq!(id(&received.message), Some(7));
    // Both members attempted through the hook, each with its own index.
    let both_open = async {
        while pool.open_members() < 2 {
            pool.send(message(8)).await.unwrap();
            pool.recv().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(10), both_open).await.expect("both members open in time");
    assert_eq!(*members_seen.lock().unwrap(), std::collections::BTreeSet::from([0, 1]));
    pool.close(CloseCode::NORMAL, "").await.unwrap();
}
