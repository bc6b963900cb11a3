//! A malformed or unacceptable opening handshake gets a precise HTTP status and a short
//! reason from the standalone server, never a panic or a hang.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use common::{bounded, raw_request};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsdriver::Config;

const GOOD_HEADERS: &str = "Host: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

async fn server(config: Config) -> std::net::SocketAddr {
    common::start_recorder(config, true).await.0
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[tokio::test]
async fn non_get_is_405_with_allow() {
    let addr = server(Config::default()).await;
    let answer = raw_request(addr, format!("POST / HTTP/1.1\r\n{GOOD_HEADERS}Sec-WebSocket-Version: 13\r\n\r\n").as_bytes()).await;
    assert_eq!(status_line(&answer), "HTTP/1.1 405 Method Not Allowed");
    assert!(answer.contains("allow: GET\r\n"), "{answer}");
    assert!(answer.contains("a websocket handshake is a GET"), "{answer}");
}

#[tokio::test]
async fn wrong_version_is_426_naming_13() {
    let addr = server(Config::default()).await;
    let answer = raw_request(addr, format!("GET / HTTP/1.1\r\n{GOOD_HEADERS}Sec-WebSocket-Version: 8\r\n\r\n").as_bytes()).await;
    assert_eq!(status_line(&answer), "HTTP/1.1 426 Upgrade Required");
    assert!(answer.contains("sec-websocket-version: 13\r\n"), "{answer}");
}

#[tokio::test]
async fn plain_http_is_426() {
    let addr = server(Config::default()).await;
    let answer = raw_request(addr, b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").await;
    assert_eq!(status_line(&answer), "HTTP/1.1 426 Upgrade Required");
    assert!(answer.contains("upgrade: websocket\r\n"), "{answer}");
}

#[tokio::test]
async fn malformed_upgrades_are_400_with_a_reason() {
    let addr = server(Config::default()).await;
    let cases = [
        (
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "missing sec-websocket-key",
        ),
        (
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "not 16 base64-encoded bytes",
        ),
        (
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "connection header does not include 'upgrade'",
        ),
        (
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "missing host",
        ),
        (
            "GET / HTTP/1.0\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "http/1.1 or later",
        ),
        ("\x16\x03\x01\x02\x00 not http\r\n\r\n", "malformed http request"),
    ];
    for (request, reason) in cases {
        let answer = raw_request(addr, request.as_bytes()).await;
        assert_eq!(status_line(&answer), "HTTP/1.1 400 Bad Request", "{request:?}");
        assert!(answer.contains(reason), "{request:?} -> {answer}");
    }
}

#[tokio::test]
async fn oversized_heads_are_431() {
    let addr = server(Config::default().max_request_headers(1024, 8)).await;
    let big = format!("GET / HTTP/1.1\r\n{GOOD_HEADERS}X-Big: {}\r\n\r\n", "a".repeat(2000));
    assert_eq!(status_line(&raw_request(addr, big.as_bytes()).await), "HTTP/1.1 431 Request Header Fields Too Large");
    let many: String = (0..9).map(|i| format!("X-{i}: 1\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert_eq!(status_line(&raw_request(addr, many.as_bytes()).await), "HTTP/1.1 431 Request Header Fields Too Large");
}

#[tokio::test]
async fn slowloris_is_cut_off_by_the_handshake_timeout() {
    let addr = server(Config::default().handshake_timeout(Duration::from_millis(300))).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.unwrap(); // never finished
    let mut answer = Vec::new();
    bounded(stream.read_to_end(&mut answer)).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408 Request Timeout"));
}

/// Admits `Bearer letmein` as alice; refuses anything else with 401.
fn check_token(request: &mut wsdriver::http::Request<()>) -> Result<(), Box<wsdriver::http::Response<String>>> {
    use wsdriver::http::{Response, StatusCode, header};
    if request.headers().get(header::AUTHORIZATION).is_none_or(|token| token != "Bearer letmein") {
        let mut refused = Response::new("a bearer token is required\n".to_owned());
        *refused.status_mut() = StatusCode::UNAUTHORIZED;
        refused.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
        return Err(Box::new(refused));
    }
    request.extensions_mut().insert(User("alice"));
    Ok(())
}

#[derive(Clone)]
struct User(&'static str);

/// Greets its user by name.
struct Greeter(User);

impl wsdriver::Handler for Greeter {
    async fn on_open(&mut self, ws: &wsdriver::Connection) {
        let _ = ws.send_text(format!("hello, {}", self.0.0)).await;
    }
    async fn on_message(&mut self, _: &wsdriver::Connection, _: wsdriver::Message) {}
}

/// A greeter for the user the check found, counting the handlers made.
fn greeter(
    made: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> impl Fn(&wsdriver::http::Request<()>) -> Greeter + Send + Sync + 'static {
    let made = made.clone();
    move |request| {
        made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Greeter(request.extensions().get::<User>().cloned().unwrap())
    }
}

/// A refused request gets the application's own 401 and no handler; an admitted one
/// reaches a handler made from what the check learned.
async fn refused_then_admitted(addr: std::net::SocketAddr, made: &std::sync::atomic::AtomicUsize) {
    use wsdriver::http::header;
    let answer = raw_request(addr, format!("GET / HTTP/1.1\r\n{GOOD_HEADERS}Sec-WebSocket-Version: 13\r\n\r\n").as_bytes()).await;
    assert_eq!(status_line(&answer), "HTTP/1.1 401 Unauthorized");
    assert!(answer.contains("www-authenticate: Bearer\r\n") && answer.ends_with("a bearer token is required\n"), "{answer}");
    let client = wsdriver::client::ClientBuilder::new(format!("ws://{addr}/"))
        .header(header::AUTHORIZATION, header::HeaderValue::from_static("Bearer letmein"));
    let (mut ws, _) = bounded(client.connect()).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), wsdriver::Message::text("hello, alice"));
    assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1, "a handler only for the admitted request");
}

/// `Server::authorize`, on the standalone server.
#[tokio::test]
async fn standalone_authorize_refuses_before_the_upgrade() {
    let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(wsdriver::Server::from_listener(listener).authorize(check_token).serve(greeter(&made)));
    refused_then_admitted(addr, &made).await;
}

/// `WebSocketLayer::authorize`, in a tower stack on hyper.
#[tokio::test]
async fn tower_authorize_refuses_before_the_upgrade() {
    use http_body_util::Full;
    let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = tower::ServiceBuilder::new()
        .layer(wsdriver::adapter::hyper::WebSocketLayer::new(greeter(&made)).authorize(check_token))
        .service_fn(|_request: wsdriver::http::Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(wsdriver::http::Response::new(Full::<bytes::Bytes>::from("not a websocket\n")))
        });
    tokio::spawn(std::future::IntoFuture::into_future(wsdriver::adapter::hyper::serve(listener, service)));
    refused_then_admitted(addr, &made).await;
}

/// `Server::fallback`: a plain request (a health check) gets the application's answer,
/// with the client's address, and the WebSocket upgrade on the same server goes on; a
/// server without a fallback answers 426.
#[tokio::test]
async fn standalone_fallback_answers_plain_requests() {
    use wsdriver::http::Response;
    use wsdriver::meter::PeerAddr;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let standalone = wsdriver::Server::from_listener(listener).fallback(|request| {
        let peer = request.extensions().get::<PeerAddr>().map(|p| p.0.ip().to_string()).unwrap_or_default();
        match request.uri().path() {
            "/healthz" => Response::new(format!("ok from {peer}\n")),
            _ => Response::builder().status(404).body("not here\n".to_owned()).unwrap(),
        }
    });
    tokio::spawn(standalone.serve(|_| common::Echo));
    let answer = raw_request(addr, b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").await;
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    assert!(answer.ends_with("\r\n\r\nok from 127.0.0.1\n"), "{answer}");
    let answer = raw_request(addr, b"GET /elsewhere HTTP/1.1\r\nHost: test\r\n\r\n").await;
    assert_eq!(status_line(&answer), "HTTP/1.1 404 Not Found");
    let mut ws = common::connect(addr, "/", &Config::default()).await;
    ws.send(wsdriver::Message::text("still a websocket")).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), wsdriver::Message::text("still a websocket"));

    let plain = server(Config::default()).await;
    let answer = raw_request(plain, b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").await;
    assert_eq!(status_line(&answer), "HTTP/1.1 426 Upgrade Required");
}
