//! Backpressure: a peer that never reads cannot grow the server's memory past the write
//! buffer's high-water mark; sending waits, and a non-waiting send reports "full".
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use common::bounded;
use futures_util::FutureExt;
use wsdriver::{Config, Error, Message, Role, WebSocket};

#[tokio::test]
async fn a_peer_that_never_reads() {
    let high_water = 64 << 10;
    let (a, b) = tokio::io::duplex(16 << 10);
    let mut server = WebSocket::from_raw(a, Role::Server, &Config::default().write_buffer_high_water(high_water));
    let conn = server.connection();
    let driver = tokio::spawn(async move { while let Some(Ok(_)) = server.recv().await {} });

    let chunk = vec![7u8; 4096];
    let mut sent = 0usize;
    loop {
        match conn.try_send(Message::binary(chunk.clone())) {
            Ok(()) => sent += 1,
            Err(Error::Full) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 1000, "never reported full");
        assert!(conn.buffered_amount() < high_water + chunk.len() + 14);
    }
    // What the pipe holds plus what we buffer: nothing beyond the high-water mark.
    assert!(sent * chunk.len() <= high_water + (16 << 10) + chunk.len(), "{sent} chunks accepted");
    // A waiting send waits.
    let mut pending = Box::pin(conn.send_binary(chunk.clone()));
    assert!((&mut pending).now_or_never().is_none());

    // Once the peer reads, the waiting send completes and everything arrives in order.
    let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
    let reader = tokio::spawn(async move {
        for _ in 0..=sent {
            assert_eq!(client.recv().await.unwrap().unwrap().len(), 4096);
        }
    });
    bounded(pending).await.unwrap();
    bounded(reader).await.unwrap();
    driver.abort();
}
