//! Every way of serving a handler, each started in-process on a free loopback port with a
//! given config and handler: what the battery, the interop and the event tests run
//! against.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::Echo;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use wsdriver::{Config, Handler};

/// The ways of serving, by name: `standalone`, `hyper`, `tower`, `axum`, `actix`.
pub const ALL: [&str; 5] = ["standalone", "hyper", "tower", "axum", "actix"];

/// Starts the echo server `kind` with `config`.
pub async fn start(kind: &str, config: Config) -> SocketAddr {
    start_with(kind, config, || Echo).await
}

/// Starts server `kind` with `config`, serving each connection with a handler from `make`.
pub async fn start_with<H, M>(kind: &str, config: Config, make: M) -> SocketAddr
where
    H: Handler,
    M: Fn() -> H + Send + Sync + 'static,
{
    let make = Arc::new(make);
    match kind {
        "standalone" => super::start_server(config, move || make()).await,
        "hyper" => hyper(config, make).await,
        "tower" => tower(config, make).await,
        "axum" => axum(config, make).await,
        "actix" => actix(config, make).await,
        other => panic!("unknown server {other}"),
    }
}

/// Serves `service` with the hardened hyper server (`wsdriver::adapter::hyper::serve`) and the
/// handshake limits of `config`.
async fn hyper_server<S>(config: &Config, service: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(wsdriver::adapter::hyper::serve(listener, service).config(&handshake_limits(config)).into_future());
    addr
}

/// Only the handshake's limits of `config`, which the HTTP server enforces: the rest is
/// the WebSocket's, checked at each upgrade (so a test can start an HTTP server with a
/// WebSocket config that fails validation).
fn handshake_limits(config: &Config) -> Config {
    Config::default().handshake_timeout(config.handshake_timeout).max_request_headers(config.max_header_bytes, config.max_headers)
}

async fn hyper<H: Handler, M: Fn() -> H + Send + Sync + 'static>(config: Config, make: Arc<M>) -> SocketAddr {
    let config = Arc::new(config);
    let route = {
        let config = config.clone();
        tower::service_fn(move |mut request: Request<Incoming>| {
            let response = match wsdriver::adapter::hyper::upgrade(&mut request, &config) {
                Ok((response, upgrade)) => {
                    upgrade.serve(make());
                    response.map(|_| Full::default())
                }
                Err(rejection) => rejection.response().map(Full::from),
            };
            async move { Ok::<_, Infallible>(response) }
        })
    };
    hyper_server(&config, route).await
}

async fn tower<H: Handler, M: Fn() -> H + Send + Sync + 'static>(config: Config, make: Arc<M>) -> SocketAddr {
    let limits = config.clone();
    let service = ServiceBuilder::new()
        .layer(wsdriver::adapter::hyper::WebSocketLayer::new(move |_: &Request<()>| make()).config(config))
        .service_fn(|_request: Request<Incoming>| async {
            let mut response = Response::new(Full::from("not a websocket\n"));
            *response.status_mut() = StatusCode::NOT_FOUND;
            Ok::<_, Infallible>(response)
        });
    hyper_server(&limits, service).await
}

async fn axum<H: Handler, M: Fn() -> H + Send + Sync + 'static>(config: Config, make: Arc<M>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = config.clone();
    let app = axum::Router::new().fallback(move |ws: wsdriver::adapter::axum::WebSocketUpgrade| {
        let config = config.clone();
        let handler = make();
        async move { ws.config(config).serve(handler) }
    });
    tokio::spawn(wsdriver::adapter::axum::serve(listener, app).config(&handshake_limits(&limits)).into_future());
    addr
}

async fn actix<H: Handler, M: Fn() -> H + Send + Sync + 'static>(config: Config, make: Arc<M>) -> SocketAddr {
    use actix_web::{App, HttpRequest, HttpServer, web};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let request_timeout = config.handshake_timeout;
    let config = web::Data::new(config);
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            HttpServer::new(move || {
                let make = make.clone();
                App::new().app_data(config.clone()).default_service(web::to(
                    move |request: HttpRequest, payload: web::Payload, config: web::Data<Config>| {
                        let handler = make();
                        async move { wsdriver::adapter::actix::serve(&request, payload, &config, handler) }
                    },
                ))
            })
            .workers(2)
            .client_request_timeout(request_timeout)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap()
        })
    });
    addr
}
