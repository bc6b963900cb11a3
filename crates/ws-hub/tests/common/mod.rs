//! What the hub's tests share: members on in-process pipes, and reading what they are sent.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tokio::io::DuplexStream;
use ws_core::{Config, Role, WebSocket};
use ws_hub::{Hub, Member};

/// A registered server side and the client that reads what it is sent.
pub fn member(hub: &Hub) -> (Member, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 << 10);
    let server = WebSocket::from_raw(a, Role::Server, &Config::default());
    let client = WebSocket::from_raw(b, Role::Client, &Config::default());
    let member = hub.register(server.connection());
    // The server socket's reader must run for the connection to answer control frames.
    tokio::spawn(async move {
        let mut server = server;
        while server.recv().await.is_some() {}
    });
    (member, client)
}

/// The next message, which must be text, within 10 s.
pub async fn next_text(client: &mut WebSocket<DuplexStream>) -> String {
    let message = tokio::time::timeout(Duration::from_secs(10), client.recv()).await.expect("timed out").unwrap().unwrap();
    message.as_text().expect("a text message").to_owned()
}
