//! The same chat on actix-web 4: same page, same handler, same hub.
//!
//! `cargo run --example chat_actix -- [ADDR] [--redis URL]` (default `127.0.0.1:8080`).

mod room;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use room::{Chat, Options, PAGE, config, init_logging};
use wsdriver::hub::Hub;

struct State {
    hub: Hub,
    server: String,
    config: wsdriver::Config,
}

async fn chat(request: HttpRequest, payload: web::Payload, state: web::Data<State>) -> Result<HttpResponse, actix_web::Error> {
    wsdriver::adapter::actix::serve(&request, payload, &state.config, Chat::new(state.hub.clone(), state.server.clone()))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    let options = Options::from_args();
    // One hub for every worker: actix-web runs one single-threaded runtime per core.
    let hub = options.hub();
    let listener = std::net::TcpListener::bind(&options.addr)?;
    let server = listener.local_addr()?.to_string();
    println!("chat (actix-web) on http://{server}/ with {}", options.describe());
    let config = config();
    // actix-web reads the request: the handshake's time limit is set on it.
    let request_timeout = config.handshake_timeout;
    let state = web::Data::new(State { hub, server, config });
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/", web::get().to(|| async { HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE) }))
            .route("/ws", web::get().to(chat))
    })
    .client_request_timeout(request_timeout)
    .listen(listener)?
    .run()
    .await
}
