//! Echo server on the standalone server (the embedded default).
//!
//! `cargo run --release --example echo -- [ADDR]` (default `127.0.0.1:9001`): echoes every
//! text and binary message, on any path.

use wsdriver::{Connection, Handler, Message, Server};

/// Sends every message back.
struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ws: &Connection, message: Message) {
        let _ = ws.send(message).await;
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let server = Server::bind(&addr).await?;
    println!("echo server listening on ws://{}", server.local_addr()?);
    server.serve(|_request| Echo).await
}
