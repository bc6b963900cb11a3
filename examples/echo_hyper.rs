//! Echo server on plain hyper 1: each request is upgraded with `ws_hyper::upgrade`,
//! served by `ws_hyper::serve` (hyper's HTTP/1.1 with the handshake's limits set). On
//! SIGINT or SIGTERM every WebSocket is closed with 1001 (the serve helper's `Shutdown`
//! reaches `upgrade` through the request's extensions).
//!
//! `cargo run --release --example echo_hyper -- [ADDR]` (default `127.0.0.1:9001`).

#[path = "shared/echo.rs"]
mod shared;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use shared::{Echo, SHUTDOWN_DEADLINE, config, init_logging, listen_addr, shutdown_signal};
use std::convert::Infallible;
use std::sync::LazyLock;
use wsdriver::Config;
use wsdriver::adapter::hyper::{serve as serve_http, upgrade};

static CONFIG: LazyLock<Config> = LazyLock::new(config);

async fn route(mut request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match upgrade(&mut request, &CONFIG) {
        Ok((response, upgrade)) => {
            upgrade.serve(Echo); // a task serves the socket once hyper hands it over
            response.map(|_| Full::default())
        }
        Err(rejection) => rejection.response().map(Full::from),
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    let listener = wsdriver::bind(listen_addr()).await?;
    println!("echo (hyper) listening on ws://{}", listener.local_addr()?);
    serve_http(listener, tower::service_fn(route)).config(&CONFIG).with_graceful_shutdown(shutdown_signal(), SHUTDOWN_DEADLINE).await
}
