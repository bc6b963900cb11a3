//! Authentication before the upgrade, on axum: a request without a valid token is answered
//! `401 Unauthorized` and never becomes a WebSocket; an accepted one is greeted by name and
//! echoed.
//!
//! Where the token comes from, in the order checked:
//! - `Authorization: Bearer TOKEN`, for clients that can set headers (servers, CLIs);
//! - a `session=TOKEN` cookie, for browser pages on the same site (the browser sends it
//!   with the upgrade request; check the `Origin` too, with `Config::allowed_origins`);
//! - `?token=TOKEN` in the URL, for browser pages on another site, which cannot set
//!   headers on a WebSocket. URLs end up in logs: prefer short-lived, single-use tokens.
//!
//! Tokens are `TOKEN:USER` pairs in `AUTH_TOKENS` (comma-separated; default
//! `letmein:alice`). A real server would verify a signed token or look a session up.
//!
//! `cargo run --example auth -- [ADDR]` (default `127.0.0.1:9001`), then
//! `cargo run --example client -- ws://127.0.0.1:9001/?token=letmein`.

#[path = "shared/echo.rs"]
mod shared;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shared::{Echo, SHUTDOWN_DEADLINE, config, init_logging, listen_addr, shutdown_signal};
use std::collections::HashMap;
use std::sync::Arc;
use wsdriver::adapter::axum::{WebSocketUpgrade, serve};
use wsdriver::{Connection, Handler, Message};

/// Who a token belongs to.
type Users = Arc<HashMap<String, String>>;

#[derive(Deserialize)]
struct Params {
    token: Option<String>,
}

/// The token the request carries, from the first place that has one.
fn token<'a>(headers: &'a HeaderMap, params: &'a Params) -> Option<&'a str> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let cookie = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| pair.trim().strip_prefix("session="))
    };
    bearer.or_else(cookie).or(params.token.as_deref())
}

async fn upgrade(State(users): State<Users>, headers: HeaderMap, Query(params): Query<Params>, ws: WebSocketUpgrade) -> Response {
    let Some(user) = token(&headers, &params).and_then(|t| users.get(t)) else {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a valid token is required\n").into_response();
    };
    ws.config(config()).serve(Greeter { user: user.clone() })
}

/// Greets the authenticated user, then echoes.
struct Greeter {
    user: String,
}

impl Handler for Greeter {
    async fn on_open(&mut self, ws: &Connection) {
        let _ = ws.send_text(format!("hello, {}", self.user)).await;
    }

    async fn on_message(&mut self, ws: &Connection, message: Message) {
        Echo.on_message(ws, message).await;
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    let pairs = std::env::var("AUTH_TOKENS").unwrap_or_else(|_| "letmein:alice".to_owned());
    let users: Users = Arc::new(
        pairs.split(',').filter_map(|pair| pair.split_once(':')).map(|(token, user)| (token.to_owned(), user.to_owned())).collect(),
    );
    let listener = wsdriver::bind(listen_addr()).await?;
    println!("auth (axum) listening on ws://{}", listener.local_addr()?);
    let app = Router::new().fallback(upgrade).with_state(users);
    serve(listener, app).config(&config()).with_graceful_shutdown(shutdown_signal(), SHUTDOWN_DEADLINE).await
}
