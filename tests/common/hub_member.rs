//! Hub members on in-process pipes, for the backplane tests.

use super::bounded;
use tokio::io::DuplexStream;
use wsdriver::hub::{Hub, HubError, Member};
use wsdriver::{Config, Connection, Message, Role, WebSocket};

/// A registered server side (its reader running, to answer control frames) and the client
/// that reads what it is sent.
pub fn member(hub: &Hub) -> (Member, WebSocket<DuplexStream>) {
    let (connection, client) = pipe();
    (hub.register(connection), client)
}

/// As [`member`], through the hub's connect hook, with the upgrade `request`.
pub async fn member_via(hub: &Hub, request: &http::Request<()>) -> Result<(Member, WebSocket<DuplexStream>), HubError> {
    let (connection, client) = pipe();
    Ok((bounded(hub.connect(connection, request)).await?, client))
}

/// A server side on an in-process pipe, its reader running (to answer control frames),
/// and the client at the other end.
fn pipe() -> (Connection, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 << 10);
    let server = WebSocket::from_raw(a, Role::Server, &Config::default());
    let connection = server.connection();
    tokio::spawn(async move {
        let mut server = server;
        while server.recv().await.is_some() {}
    });
    (connection, WebSocket::from_raw(b, Role::Client, &Config::default()))
}

/// The next message the client reads, within the tests' bound.
pub async fn next(client: &mut WebSocket<DuplexStream>) -> Message {
    bounded(client.recv()).await.unwrap().unwrap()
}
