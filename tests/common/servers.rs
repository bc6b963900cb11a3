//! Every way of serving a handler, each started in-process on a free loopback port with a
//! given config and handler: what the battery, the interop and the event tests run
//! against.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::Echo;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use wsdriver::{Config, Handler, serve};

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

/// Accepts connections and serves each with hyper's HTTP/1.1 and upgrades.
async fn hyper_accept_loop<S>(make_service: impl Fn() -> S + Send + 'static) -> SocketAddr
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Full<Bytes>>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = make_service();
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades());
        }
    });
    addr
}

async fn hyper<H: Handler, M: Fn() -> H + Send + Sync + 'static>(config: Config, make: Arc<M>) -> SocketAddr {
    let config = Arc::new(config);
    hyper_accept_loop(move || {
        let config = config.clone();
        let make = make.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let response = match wsdriver::hyper::upgrade(&mut request, &config) {
                Ok((response, socket)) => {
                    let handler = make();
                    tokio::spawn(async move { serve(socket.await.unwrap(), handler).await });
                    response.map(|_| Full::default())
                }
                Err(rejection) => rejection.response().map(Full::from),
            };
            async move { Ok::<_, Infallible>(response) }
        })
    })
    .await
}

async fn tower<H: Handler, M: Fn() -> H + Send + Sync + 'static>(config: Config, make: Arc<M>) -> SocketAddr {
    let service = ServiceBuilder::new()
        .layer(wsdriver::hyper::WebSocketLayer::new(move |_: &Request<()>| make()).config(config))
        .service_fn(|_request: Request<Incoming>| async {
            let mut response = Response::new(Full::from("not a websocket\n"));
            *response.status_mut() = StatusCode::NOT_FOUND;
            Ok::<_, Infallible>(response)
        });
    hyper_accept_loop(move || TowerToHyperService::new(service.clone())).await
}

async fn axum<H: Handler, M: Fn() -> H + Send + Sync + 'static>(config: Config, make: Arc<M>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |ws: wsdriver::axum::WebSocketUpgrade| {
        let config = config.clone();
        let handler = make();
        async move { ws.config(config).serve(handler) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn actix<H: Handler, M: Fn() -> H + Send + Sync + 'static>(config: Config, make: Arc<M>) -> SocketAddr {
    use actix_web::{App, HttpRequest, HttpServer, web};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = web::Data::new(config);
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            HttpServer::new(move || {
                let make = make.clone();
                App::new().app_data(config.clone()).default_service(web::to(
                    move |request: HttpRequest, payload: web::Payload, config: web::Data<Config>| {
                        let handler = make();
                        async move { wsdriver::actix::serve(&request, payload, &config, handler) }
                    },
                ))
            })
            .workers(2)
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
