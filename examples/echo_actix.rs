//! Echo server on actix-web 4, on every path, with one worker per core.
//!
//! `cargo run --release --example echo_actix -- [ADDR]` (default `127.0.0.1:9001`).

#[path = "shared/echo.rs"]
mod shared;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use shared::{Echo, config, init_logging, listen_addr};
use std::sync::LazyLock;
use wsdriver::Config;

static CONFIG: LazyLock<Config> = LazyLock::new(config);

async fn echo(request: HttpRequest, payload: web::Payload) -> Result<HttpResponse, actix_web::Error> {
    wsdriver::actix::serve(&request, payload, &CONFIG, Echo)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    // actix-web reads the request: the handshake's time limit is set on it (its header
    // size and count limits are its own, 32 KiB and 96).
    let server = HttpServer::new(|| App::new().default_service(web::to(echo)))
        .client_request_timeout(CONFIG.handshake_timeout)
        .bind(listen_addr())?;
    for addr in server.addrs() {
        println!("echo (actix-web) listening on ws://{addr}");
    }
    server.run().await
}
