//! The client over HTTP/2 (`ClientBuilder::http2`): WebSockets of one builder and its
//! clones share one HTTP/2 connection per origin (h2c by prior knowledge for `ws://`,
//! ALPN `h2` for `wss://`), and the client falls back to HTTP/1.1 where a server has no
//! HTTP/2 or does not allow extended CONNECT.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common::{self, bounded};
use http::{Request, Version};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use wsdriver::client::{ClientBuilder, ClientStream};
use wsdriver::meter::PeerAddr;
use wsdriver::{Config, Connection, Handler, Message, Server, WebSocket};

/// Says which HTTP version it came over and from which client address, then echoes.
struct Report(Option<SocketAddr>);

impl Handler for Report {
    async fn on_open(&mut self, ws: &Connection) {
        let peer = self.0.map_or_else(|| "?".to_owned(), |p| p.to_string());
        let _ = ws.send_text(format!("{:?} from {peer}", ws.http_version())).await;
    }

    async fn on_message(&mut self, ws: &Connection, message: Message) {
        let _ = ws.send(message).await;
    }
}

/// The standalone server with [`Report`], over TLS when given a config.
async fn standalone(tls: Option<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = Server::from_listener(listener);
    if let Some(tls) = tls {
        server = server.tls(tls);
    }
    tokio::spawn(server.serve(|request| Report(request.extensions().get::<PeerAddr>().map(|p| p.0))));
    addr
}

/// Connects with `builder` (a clone), reads the server's report, and checks an echo.
async fn report(builder: &ClientBuilder) -> (WebSocket<ClientStream>, String) {
    let (mut ws, _) = bounded(builder.clone().connect()).await.unwrap();
    let report = match bounded(ws.recv()).await.unwrap().unwrap() {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected the report, got {other:?}"),
    };
    ws.send(Message::text("échos")).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("échos"));
    (ws, report)
}

#[tokio::test]
async fn sockets_of_one_builder_share_one_http2_connection() {
    let addr = standalone(None).await;
    let builder = ClientBuilder::new(format!("ws://{addr}/")).http2(true);
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(report(&builder).await);
    }
    let first = &sockets[0].1;
    assert!(first.starts_with("HTTP/2.0 from "), "{first}");
    assert!(sockets.iter().all(|(ws, report)| report == first && ws.http_version() == Version::HTTP_2), "one connection");
    // A builder of its own has a connection of its own.
    let (_, other) = report(&ClientBuilder::new(format!("ws://{addr}/")).http2(true)).await;
    assert!(other.starts_with("HTTP/2.0 from ") && &other != first, "{other} vs {first}");
    // Without `http2`, HTTP/1.1.
    let (ws, plain) = report(&ClientBuilder::new(format!("ws://{addr}/"))).await;
    assert!(plain.starts_with("HTTP/1.1 from ") && ws.http_version() == Version::HTTP_11, "{plain}");
}

#[tokio::test]
async fn wss_chooses_http2_by_alpn() {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)
        .unwrap();
    let addr = standalone(Some(tls)).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(generated.cert.der().clone()).unwrap();
    let builder = ClientBuilder::new(format!("wss://localhost:{}/", addr.port())).root_certificates(roots);
    let (_, over_http2) = report(&builder.clone().http2(true)).await;
    assert!(over_http2.starts_with("HTTP/2.0 from "), "{over_http2}");
    let (_, over_http1) = report(&builder).await;
    assert!(over_http1.starts_with("HTTP/1.1 from "), "{over_http1}");
}

#[tokio::test]
async fn falls_back_to_http1_where_the_server_has_no_http2() {
    // actix-web's server: no h2c, and no extended CONNECT on its HTTP/2.
    let addr = common::servers::start("actix", Config::default()).await;
    let builder = ClientBuilder::new(format!("ws://{addr}/")).http2(true);
    for _ in 0..2 {
        let (mut ws, _) = bounded(builder.clone().connect()).await.unwrap();
        assert_eq!(ws.http_version(), Version::HTTP_11);
        ws.send(Message::text("over HTTP/1.1")).await.unwrap();
        assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("over HTTP/1.1"));
    }
}

#[tokio::test]
async fn falls_back_to_http1_where_extended_connect_is_not_allowed() {
    // hyper-util's server speaks HTTP/1.1 and HTTP/2 (h2c), without
    // SETTINGS_ENABLE_CONNECT_PROTOCOL: it resets the extended CONNECT's stream.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = tower::service_fn(|mut request: Request<Incoming>| async move {
        Ok::<_, Infallible>(match wsdriver::adapter::hyper::upgrade(&mut request, &Config::default()) {
            Ok((response, upgrade)) => {
                upgrade.serve(Report(None));
                response.map(|_| Full::<Bytes>::default())
            }
            Err(rejection) => rejection.response().map(Full::from),
        })
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let service = TowerToHyperService::new(service);
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
            });
        }
    });
    let builder = ClientBuilder::new(format!("ws://{addr}/")).http2(true);
    for _ in 0..2 {
        let (ws, report) = report(&builder).await;
        assert_eq!(report, "HTTP/1.1 from ?");
        assert_eq!(ws.http_version(), Version::HTTP_11);
    }
}
