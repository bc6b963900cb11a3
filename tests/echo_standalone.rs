//! The conformance battery against the standalone server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod battery;
mod common;

use wsdriver::{Config, Connection, Handler, Message};

struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ws: &Connection, message: Message) {
        ws.send(message).await.unwrap();
    }
}

async fn start(config: Config) -> std::net::SocketAddr {
    common::start_server(config, || Echo).await
}

echo_battery!(start);
