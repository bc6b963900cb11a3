//! The standalone server's graceful shutdown: on the signal it stops accepting, closes
//! every connection with 1001, and `serve` returns once they are closed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

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
