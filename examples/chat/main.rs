//! A chat on axum 0.8: the page at `/`, the WebSocket at `/ws`, rooms in a `Hub`, and the
//! server's metrics at `/metrics` in Prometheus's text format.
//!
//! ```text
//! cargo run --example chat                       # http://127.0.0.1:8080, in-process rooms
//! cargo run --example chat -- 127.0.0.1:8081 --redis redis://127.0.0.1:6379/
//! ```
//!
//! Several processes started with the same `--redis` (or `REDIS_URL`) share their rooms,
//! their history and who is in them; `--presence-ttl SECONDS` (default 30) bounds how
//! long the members of a process that died still count.

mod room;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, Response};
use axum::routing::{any, get};
use metrics_exporter_prometheus::PrometheusBuilder;
use room::{Chat, Options, PAGE, config, init_logging};
use wsdriver::adapter::axum::WebSocketUpgrade;
use wsdriver::hub::Hub;

#[derive(Clone)]
struct App {
    hub: Hub,
    server: String,
}

async fn chat(State(app): State<App>, ws: WebSocketUpgrade) -> Response {
    ws.config(config()).serve(Chat::new(app.hub, app.server))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    let options = Options::from_args();
    let listener = wsdriver::bind(&options.addr).await?;
    let server = listener.local_addr()?.to_string();
    println!("chat (axum) on http://{server}/ with {}", options.describe());
    let app = App { hub: options.hub(), server };
    let prometheus = PrometheusBuilder::new().install_recorder().map_err(std::io::Error::other)?;
    wsdriver::meter::enable();
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/ws", any(chat))
        .route("/metrics", get(move || std::future::ready(prometheus.render())))
        .with_state(app);
    // axum::serve with the handshake's time and size limits; on Ctrl-C every member is
    // told 1001 Going Away.
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    wsdriver::adapter::axum::serve(listener, router)
        .config(&config())
        .with_graceful_shutdown(ctrl_c, std::time::Duration::from_secs(5))
        .await
}
