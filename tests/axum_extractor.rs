//! ws-axum's `WebSocketUpgrade`: subprotocols set with `protocols` survive a later
//! `config`, and `selected_protocol` tells the handler what the response will select, so
//! it can refuse a client that offers none of its protocols.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::{Echo, bounded};
use tokio::net::TcpListener;
use wsdriver::Config;
use wsdriver::axum::WebSocketUpgrade;
use wsdriver::client::ClientBuilder;
use wsdriver::handshake::HandshakeError;

async fn start(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(wsdriver::axum::serve(listener, app).into_future());
    format!("ws://{addr}/")
}

async fn selected(url: &str, offered: &[&str]) -> Option<String> {
    let (ws, _) = bounded(ClientBuilder::new(url).protocols(offered.iter().copied()).connect()).await.unwrap();
    ws.protocol()
}

#[tokio::test]
async fn protocols_survive_config_in_either_order() {
    let before = start(Router::new().fallback(|ws: WebSocketUpgrade| async move {
        ws.protocols(["chat.v2"]).config(Config::default().max_message_size(1 << 20)).serve(Echo)
    }))
    .await;
    let after = start(Router::new().fallback(|ws: WebSocketUpgrade| async move {
        ws.config(Config::default().protocols(["other"])).protocols(["chat.v2"]).serve(Echo)
    }))
    .await;
    for url in [&before, &after] {
        assert_eq!(selected(url, &["chat.v1", "chat.v2"]).await.as_deref(), Some("chat.v2"), "{url}");
        assert_eq!(selected(url, &["other"]).await, None, "{url}");
    }
}

#[tokio::test]
async fn selected_protocol_lets_a_handler_require_one() {
    let url = start(Router::new().fallback(|ws: WebSocketUpgrade| async move {
        let ws = ws.protocols(["chat.v2"]);
        if ws.selected_protocol().is_none() {
            return (StatusCode::BAD_REQUEST, "offer chat.v2\n").into_response();
        }
        let response: Response = ws.serve(Echo);
        response
    }))
    .await;
    assert_eq!(selected(&url, &["chat.v2"]).await.as_deref(), Some("chat.v2"));
    match ClientBuilder::new(&url).protocols(["chat.v1"]).connect().await {
        Err(wsdriver::Error::Handshake(HandshakeError::UnexpectedStatus { status, body, .. })) => {
            assert_eq!((status, &body[..]), (http::StatusCode::BAD_REQUEST, &b"offer chat.v2\n"[..]));
        }
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
}
