//! Headless Chromium over HTTPS and HTTP/2: on the standalone server, hyper, tower and
//! axum, each serving TLS with ALPN `h2` and a certificate made here, Chromium loads
//! `https://127.0.0.1:PORT/` and opens `wss://127.0.0.1:PORT/ws` from that page. The
//! server records, from its side, the client address of the page's request, and the
//! WebSocket's handler reports the HTTP version it came over (`HTTP/2.0` only for an
//! extended CONNECT on an HTTP/2 stream) and its client address: the page's connection.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use wsdriver::meter::PeerAddr;
use wsdriver::{Config, Connection, Handler, Message, Server};

const PAGE: &str = "<!doctype html><link rel=icon href=\"data:,\"><title>wsdriver over HTTP/2</title><p>wsdriver\n";

/// Reports the HTTP version and the client's address (from its request), then echoes.
struct Report {
    peer: Option<SocketAddr>,
}

impl Report {
    fn of<B>(request: &Request<B>) -> Self {
        Self { peer: wsdriver::adapter::hyper::peer_addr(request.extensions()) }
    }
}

impl Handler for Report {
    async fn on_open(&mut self, ws: &Connection) {
        let peer = self.peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        let _ = ws.send_text(format!("{:?} from {peer}", ws.http_version())).await;
    }

    async fn on_message(&mut self, ws: &Connection, message: Message) {
        let _ = ws.send(message).await;
    }
}

/// A self-signed certificate for 127.0.0.1: the server's TLS config (ALPN left to the
/// server, which offers `h2` and `http/1.1`) and the certificate's PEM for Chromium.
pub(crate) fn tls() -> (rustls::ServerConfig, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)
        .unwrap();
    (config, generated.cert.pem())
}

/// The page for a plain `GET`, a WebSocket for the rest (a `GET` upgrade or a `CONNECT`).
fn is_page<B>(request: &Request<B>) -> bool {
    request.method() == Method::GET && !request.headers().contains_key(http::header::UPGRADE)
}

/// The client addresses of the page's requests, as the server saw them.
pub(crate) type Pages = Arc<Mutex<Vec<SocketAddr>>>;

/// Records the page request's client address and answers with the page.
fn page<B>(request: &Request<B>, pages: &Pages) -> Response<String> {
    if let Some(peer) = wsdriver::adapter::hyper::peer_addr(request.extensions()) {
        pages.lock().unwrap().push(peer);
    }
    Response::builder().header(http::header::CONTENT_TYPE, "text/html; charset=utf-8").body(PAGE.to_owned()).unwrap()
}

/// Starts server `kind` over TLS on a free loopback port with `config`, serving the page
/// at `/` and WebSockets at `/ws`.
pub(crate) async fn start(kind: &str, tls: rustls::ServerConfig, pages: Pages, config: Config) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match kind {
        "standalone" => {
            let server = Server::from_listener(listener).config(config).tls(tls).fallback(move |request| page(request, &pages));
            tokio::spawn(server.serve(Report::of));
        }
        "hyper" => {
            let upgrade_config = Arc::new(config.clone());
            let service = tower::service_fn(move |mut request: Request<Incoming>| {
                let response = if is_page(&request) {
                    page(&request, &pages).map(Full::<Bytes>::from)
                } else {
                    match wsdriver::adapter::hyper::upgrade(&mut request, &upgrade_config) {
                        Ok((response, upgrade)) => {
                            upgrade.serve(Report::of(&request));
                            response.map(|_| Full::default())
                        }
                        Err(rejection) => rejection.response().map(Full::from),
                    }
                };
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(wsdriver::adapter::hyper::serve(listener, service).config(&config).tls(tls).into_future());
        }
        "tower" => {
            let service = tower::ServiceBuilder::new().layer(wsdriver::adapter::hyper::WebSocketLayer::new(Report::of)).service_fn(
                move |request: Request<Incoming>| {
                    let response = if is_page(&request) {
                        page(&request, &pages).map(Full::<Bytes>::from)
                    } else {
                        let mut response = Response::new(Full::from("not found\n"));
                        *response.status_mut() = StatusCode::NOT_FOUND;
                        response
                    };
                    async move { Ok::<_, Infallible>(response) }
                },
            );
            tokio::spawn(wsdriver::adapter::hyper::serve(listener, service).config(&config).tls(tls).into_future());
        }
        "axum" => {
            use axum::routing::{any, get};
            let app =
                axum::Router::new().route("/", get(move |request: axum::extract::Request| async move { page(&request, &pages) })).route(
                    "/ws",
                    any(|peer: Option<axum::Extension<PeerAddr>>, ws: wsdriver::adapter::axum::WebSocketUpgrade| async move {
                        ws.serve(Report { peer: peer.map(|axum::Extension(PeerAddr(peer))| peer) })
                    }),
                );
            tokio::spawn(wsdriver::adapter::axum::serve(listener, app).config(&config).tls(tls).into_future());
        }
        other => panic!("unknown server {other}"),
    }
    addr
}

async fn chromium_over_http2(kind: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop");
    for needed in [dir.join("node_modules/playwright-core"), "/usr/bin/chromium".into()] {
        assert!(needed.exists(), "{} is not installed: run interop/install.sh (scripts/test-all does)", needed.display());
    }
    let (config, pem) = tls();
    let pages = Pages::default();
    let addr = start(kind, config, pages.clone(), Config::default()).await;
    let cert = std::env::temp_dir().join(format!("wsdriver-h2-{}-{}.pem", std::process::id(), addr.port()));
    std::fs::write(&cert, pem).unwrap();
    let mut command = tokio::process::Command::new("node");
    command
        .arg(dir.join("browser_http2.js"))
        .arg(format!("https://{addr}/"))
        .arg(format!("wss://{addr}/ws"))
        .arg(&cert)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output()).await.expect("chromium timed out").expect("node runs");
    let _ = std::fs::remove_file(&cert);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chromium against {kind} failed:\n{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"page: h2"), "the page did not come over HTTP/2:\n{stdout}");
    let pages = pages.lock().unwrap().clone();
    assert_eq!(pages.len(), 1, "one page request: {pages:?}");
    let expected = format!("ws: HTTP/2.0 from {}", pages[0]);
    assert!(
        lines.contains(&expected.as_str()),
        "the WebSocket was not an extended CONNECT on the page's connection ({expected}):\n{stdout}"
    );
    assert!(lines.contains(&"echo: ok"), "{stdout}");
}

macro_rules! chromium_over_http2 {
    ($($name:ident: $kind:literal),*) => {$(
        #[tokio::test]
        #[ignore = "needs Node and Chromium (interop/install.sh)"]
        async fn $name() {
            chromium_over_http2($kind).await;
        }
    )*};
}

chromium_over_http2!(on_standalone: "standalone", on_hyper: "hyper", on_tower: "tower", on_axum: "axum");
