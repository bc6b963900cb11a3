//! A config whose limits cannot work is refused with a clear error where it is used: the
//! standalone server and the hyper serve helper do not start, every adapter answers its
//! handshakes 500, the client does not connect and the reconnecting client gives up at
//! once. Nothing panics later.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use common::{Echo, bounded, free_addr, raw_request, servers};
use std::future::IntoFuture;
use std::time::Duration;
use tokio::net::TcpListener;
use wsdriver::client::{ClientBuilder, Reconnect};
use wsdriver::config::ConfigError;
use wsdriver::deflate::DeflateConfig;
use wsdriver::handshake::HandshakeError;
use wsdriver::{Config, Error, Server};

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A keepalive that could never time out: what `Duration::MAX` as "never" would mean.
fn endless_pong_timeout() -> Config {
    Config::default().keepalive(Some(Duration::from_secs(20)), Duration::MAX)
}

#[test]
fn each_nonsensical_limit_is_named() {
    let cases: [(Config, &str); 9] = [
        (endless_pong_timeout(), "pong_timeout"),
        (Config::default().max_message_size(usize::MAX), "max_message_size"),
        (Config::default().max_frame_size(0), "max_frame_size"),
        (Config::default().handshake_timeout(Duration::ZERO), "handshake_timeout"),
        (Config::default().keepalive(Some(Duration::ZERO), Duration::from_secs(1)), "ping_interval"),
        (Config::default().max_request_headers(usize::MAX, 64), "max_header_bytes"),
        (Config::default().max_request_headers(16 << 10, usize::MAX), "max_headers"),
        (Config::default().deflate(DeflateConfig::default().max_window_bits(8, 15)), "deflate.server_max_window_bits"),
        (Config::default().deflate(DeflateConfig::default().level(10)), "deflate.level"),
    ];
    for (config, option) in cases {
        let error = config.validate().expect_err(option);
        let named = match &error {
            ConfigError::Zero { option }
            | ConfigError::TooLarge { option, .. }
            | ConfigError::TooLong { option, .. }
            | ConfigError::OutOfRange { option, .. } => *option,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(named, option, "{error}");
        assert!(error.to_string().contains(option), "{error}");
    }
    // Zero where it means something: drop at once, wait on every send.
    let config = Config::default().close_timeout(Duration::ZERO).write_buffer_high_water(0);
    assert_eq!(config.validate(), Ok(()));
}

#[tokio::test]
async fn the_standalone_server_does_not_start() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = bounded(Server::from_listener(listener).config(endless_pong_timeout()).serve(|_| Echo)).await;
    let error = served.expect_err("an invalid config must not serve");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("pong_timeout"), "{error}");
}

#[tokio::test]
async fn the_hyper_serve_helper_does_not_start() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = tower::service_fn(|_request: http::Request<hyper::body::Incoming>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    });
    let config = Config::default().max_request_headers(0, 64);
    let error = bounded(wsdriver::adapter::hyper::serve(listener, service).config(&config).into_future()).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("max_header_bytes"), "{error}");
}

/// Where the HTTP server is the framework's, the WebSocket config is checked at each
/// upgrade: the handshake is answered 500 (the fault is the server's), not served.
#[tokio::test]
async fn every_adapter_answers_500() {
    for kind in servers::ALL.into_iter().filter(|kind| *kind != "standalone") {
        let addr = servers::start(kind, endless_pong_timeout()).await;
        let answer = raw_request(addr, UPGRADE).await;
        assert!(answer.starts_with("HTTP/1.1 500 "), "{kind}: {answer}");
    }
}

#[tokio::test]
async fn the_client_does_not_connect() {
    // Nothing listens there: a config error, not a refused connection, shows it was
    // checked first.
    let result = ClientBuilder::new(format!("ws://{}/", free_addr())).config(endless_pong_timeout()).connect().await;
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::Config(ConfigError::TooLong { option: "pong_timeout", .. })))),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_reconnecting_client_gives_up_at_once() {
    let client = ClientBuilder::new(format!("ws://{}/", free_addr()))
        .config(endless_pong_timeout())
        // Retried, a failure would wait a minute: giving up must not.
        .reconnecting(Reconnect::default().delays(Duration::from_secs(60), Duration::from_secs(60)))
        .serve(Echo);
    let result = bounded(client.finished()).await;
    assert!(matches!(result, Err(Error::Handshake(HandshakeError::Config(_)))), "{result:?}");
}
