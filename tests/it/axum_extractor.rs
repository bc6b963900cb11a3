//! ws-axum's `WebSocketUpgrade`: subprotocols set with `protocols` survive a later
//! `config`, `selected_protocol` tells the handler what the response will select, so it
//! can refuse a client that offers none of its protocols, and `on_failed_upgrade` hears of
//! an upgrade that fails after the 101.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::{Echo, bounded};
use tokio::net::TcpListener;
use wsdriver::Config;
use wsdriver::adapter::axum::WebSocketUpgrade;
use wsdriver::client::ClientBuilder;
use wsdriver::handshake::HandshakeError;

async fn start(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(wsdriver::adapter::axum::serve(listener, app).into_future());
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

/// A server built without upgrades (hyper's `serve_connection` without `with_upgrades`):
/// the 101 goes out, the upgrade fails, and `on_failed_upgrade` hears of it.
#[tokio::test]
async fn on_failed_upgrade_hears_of_an_upgrade_that_fails() {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    let failed_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(failed_tx)));
    let app = Router::new().fallback(move |ws: WebSocketUpgrade| {
        let failed_tx = failed_tx.lock().unwrap().take();
        async move {
            ws.on_failed_upgrade(move |error| {
                if let Some(tx) = failed_tx {
                    let _ = tx.send(error.to_string());
                }
            })
            .serve(Echo)
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        // No `.with_upgrades()`: hyper answers, then drops the connection's upgrade.
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), TowerToHyperService::new(app)).await;
    });
    let _ = ClientBuilder::new(format!("ws://{addr}/")).connect().await;
    let error = bounded(failed_rx).await.unwrap();
    assert!(!error.is_empty());
}
