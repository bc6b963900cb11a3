//! Echo server as a tower Layer: upgrade requests go to the echo handler, anything else to
//! the inner service (here, a 404). Served by hyper, through `ws_hyper::serve`, which on
//! SIGINT or SIGTERM closes every WebSocket with 1001.
//!
//! `cargo run --release --example echo_tower -- [ADDR]` (default `127.0.0.1:9001`).

#[path = "shared/echo.rs"]
mod shared;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use shared::{Echo, SHUTDOWN_DEADLINE, config, init_logging, listen_addr, shutdown_signal};
use std::convert::Infallible;
use tower::ServiceBuilder;
use wsdriver::adapter::hyper::{WebSocketLayer, serve};

async fn not_found(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::from("not found\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    let listener = wsdriver::bind(listen_addr()).await?;
    println!("echo (tower) listening on ws://{}", listener.local_addr()?);
    let config = config();
    let service =
        ServiceBuilder::new().layer(WebSocketLayer::new(|_request: &Request<()>| Echo).config(config.clone())).service_fn(not_found);
    serve(listener, service).config(&config).with_graceful_shutdown(shutdown_signal(), SHUTDOWN_DEADLINE).await
}
