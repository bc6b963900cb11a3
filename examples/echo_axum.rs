//! Echo server on axum 0.8, with the `WebSocketUpgrade` extractor on every path, served
//! by `wsdriver::adapter::axum::serve` (axum's own `serve` sets no handshake limits: see its docs),
//! which on SIGINT or SIGTERM closes every WebSocket with 1001.
//!
//! `cargo run --release --example echo_axum -- [ADDR]` (default `127.0.0.1:9001`).

#[path = "shared/echo.rs"]
mod shared;

use axum::Router;
use axum::response::Response;
use shared::{Echo, SHUTDOWN_DEADLINE, config, init_logging, listen_addr, shutdown_signal};
use wsdriver::adapter::axum::{WebSocketUpgrade, serve};

async fn echo(ws: WebSocketUpgrade) -> Response {
    ws.config(config()).serve(Echo)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    let listener = wsdriver::bind(listen_addr()).await?;
    println!("echo (axum) listening on ws://{}", listener.local_addr()?);
    serve(listener, Router::new().fallback(echo)).config(&config()).with_graceful_shutdown(shutdown_signal(), SHUTDOWN_DEADLINE).await
}
