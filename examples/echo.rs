//! Echo server on the standalone server (the embedded default, no web framework).
//!
//! `cargo run --release --example echo -- [ADDR]` (default `127.0.0.1:9001`): echoes every
//! text and binary message, on any path. On SIGINT or SIGTERM it closes every connection
//! with 1001 and exits once they are closed.

#[path = "shared/echo.rs"]
mod shared;

use shared::{Echo, SHUTDOWN_DEADLINE, config, init_logging, listen_addr, shutdown_signal};
use wsdriver::Server;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    let server = Server::bind(listen_addr()).await?.config(config());
    println!("echo server listening on ws://{}", server.local_addr()?);
    server.with_graceful_shutdown(shutdown_signal(), SHUTDOWN_DEADLINE).serve(|_request| Echo).await
}
