//! Hub members on in-process pipes, for the backplane tests.

use super::bounded;
use tokio::io::DuplexStream;
use wsdriver::hub::{Hub, Member};
use wsdriver::{Config, Message, Role, WebSocket};

/// A registered server side (its reader running, to answer control frames) and the client
/// that reads what it is sent.
pub fn member(hub: &Hub) -> (Member, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 << 10);
    let server = WebSocket::from_raw(a, Role::Server, &Config::default());
    let member = hub.register(server.connection());
    tokio::spawn(async move {
        let mut server = server;
        while server.recv().await.is_some() {}
    });
    (member, WebSocket::from_raw(b, Role::Client, &Config::default()))
}

/// The next message the client reads, within the tests' bound.
pub async fn next(client: &mut WebSocket<DuplexStream>) -> Message {
    bounded(client.recv()).await.unwrap().unwrap()
}
