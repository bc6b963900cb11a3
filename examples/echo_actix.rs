//! Echo server on actix-web 4, on every path, with one worker per core. On SIGINT or
//! SIGTERM it stops accepting, closes every WebSocket with 1001, then stops (actix-web's
//! own signal handling is off: it would stop the workers under the WebSockets).
//!
//! `cargo run --release --example echo_actix -- [ADDR]` (default `127.0.0.1:9001`).

#[path = "shared/echo.rs"]
mod shared;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use shared::{Echo, SHUTDOWN_DEADLINE, config, init_logging, listen_addr, shutdown_signal};
use std::sync::LazyLock;
use wsdriver::Config;
use wsdriver::shutdown::Shutdown;

static CONFIG: LazyLock<Config> = LazyLock::new(config);

async fn echo(request: HttpRequest, payload: web::Payload) -> Result<HttpResponse, actix_web::Error> {
    wsdriver::adapter::actix::serve(&request, payload, &CONFIG, Echo)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    // actix-web reads the request: the handshake's time limit is set on it (its header
    // size and count limits are its own, 128 KiB and 96).
    let shutdown = Shutdown::new();
    let app_shutdown = shutdown.clone();
    let server = HttpServer::new(move || App::new().app_data(app_shutdown.clone()).default_service(web::to(echo)))
        .client_request_timeout(CONFIG.handshake_timeout)
        .disable_signals()
        .bind(listen_addr())?;
    for addr in server.addrs() {
        println!("echo (actix-web) listening on ws://{addr}");
    }
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        shutdown_signal().await;
        wsdriver::adapter::actix::stop(&handle, &shutdown, SHUTDOWN_DEADLINE).await;
    });
    server.await
}
