//! Graceful shutdown as each server documents it: on the signal the server stops
//! accepting, closes every WebSocket with 1001, and returns once they are closed. The
//! standalone server in-process, every echo example as a process killed with SIGINT, and
//! axum's own `serve` with an `Extension` layer. (The battery checks the `Shutdown`
//! itself on every server: drop counts, waiting for `on_close`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use common::{Echo, bounded, connect};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use wsdriver::{Config, Message, Server};

#[tokio::test]
async fn stops_accepting_closes_with_1001_and_returns() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (signal_tx, signal_rx) = tokio::sync::oneshot::channel::<()>();
    let server = Server::from_listener(listener)
        .with_graceful_shutdown(
            async {
                let _ = signal_rx.await;
            },
            Duration::from_secs(5),
        )
        .serve(|_| Echo);
    let served = tokio::spawn(server);

    let mut ws = connect(addr, "/", &Config::default()).await;
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("before"));

    signal_tx.send(()).unwrap();
    match bounded(ws.recv()).await.unwrap().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, 1001),
        other => panic!("{other:?}"),
    }
    assert!(bounded(ws.recv()).await.is_none());
    bounded(served).await.unwrap().unwrap();
    // The listener is gone: new connections are refused.
    assert!(TcpStream::connect(addr).await.is_err());
}

/// Each echo example, killed with SIGINT while clients are connected: every client sees
/// 1001 Going Away and its close handshake completes, and the process exits cleanly.
#[tokio::test]
async fn every_echo_example_closes_with_1001_on_sigint() {
    for name in ["echo", "echo_hyper", "echo_tower", "echo_axum", "echo_actix"] {
        let addr = common::free_addr();
        let mut process = common::EchoProcess::start_example(name, addr);
        let mut clients = Vec::new();
        for i in 0..8 {
            let mut ws = connect(addr, &format!("/client/{i}"), &Config::default()).await;
            ws.send(Message::text("open")).await.unwrap();
            assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("open"), "{name}");
            clients.push(ws);
        }
        let status = std::process::Command::new("kill").args(["-INT", &process.0.id().to_string()]).status().unwrap();
        assert!(status.success());
        for mut ws in clients {
            match bounded(ws.recv()).await {
                Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, 1001, "{name}"),
                other => panic!("{name}: expected a 1001 Close, got {other:?}"),
            }
            assert!(bounded(ws.recv()).await.is_none(), "{name}: the close handshake completes");
        }
        let exited = bounded(tokio::task::spawn_blocking(move || process.0.wait())).await.unwrap().unwrap();
        assert!(exited.success(), "{name} exited with {exited}");
    }
}

/// axum's own `serve`, with the `Shutdown` given to the extractor by an `Extension`
/// layer, as ws-axum's docs show: its WebSockets get 1001 beside axum's graceful stop.
#[tokio::test]
async fn axum_serve_with_an_extension_layer() {
    use axum::{Extension, Router};
    use wsdriver::adapter::axum::WebSocketUpgrade;
    use wsdriver::shutdown::Shutdown;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let app = Router::new().fallback(|ws: WebSocketUpgrade| async { ws.serve(Echo) }).layer(Extension(shutdown.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop_rx.await;
    });
    let server = tokio::spawn(std::future::IntoFuture::into_future(server));
    let mut ws = connect(addr, "/", &Config::default()).await;
    ws.send(Message::text("open")).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("open"));
    assert_eq!(shutdown.open_connections(), 1, "the extractor watches what it upgrades");

    stop_tx.send(()).unwrap();
    bounded(server).await.unwrap().unwrap(); // axum stops accepting, its HTTP connections end
    let closing = tokio::spawn(async move { shutdown.shutdown(Duration::from_secs(5)).await });
    assert!(matches!(bounded(ws.recv()).await, Some(Ok(Message::Close(Some(f)))) if f.code == 1001));
    assert!(bounded(ws.recv()).await.is_none());
    assert_eq!(bounded(closing).await.unwrap(), 0);
}
