//! A tower [`Layer`] that serves WebSocket upgrade requests with a [`Handler`] and passes
//! every other request to the inner service unchanged.

use crate::upgrade_as;
use futures_util::future::{Either, Ready, ready};
use http::{Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;
use ws_core::{Config, Handler};

/// Serves WebSocket upgrades with a handler from `make_handler`, which sees the upgrade
/// request's head; everything else goes to the inner service.
///
/// Requests with `Upgrade: websocket` are answered here: 101 and the handler, or the
/// handshake's error status. The inner service's response body must be buildable from a
/// `String` (the error reason), as `axum::body::Body` and `http_body_util::Full<Bytes>`
/// are.
///
/// ```
/// use wsdriver::{Connection, Handler, Message};
/// use wsdriver::adapter::hyper::WebSocketLayer;
///
/// struct Echo;
/// impl Handler for Echo {
///     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
/// }
///
/// let layer = WebSocketLayer::new(|_request: &http::Request<()>| Echo)
///     .config(wsdriver::Config::default().protocols(["chat"]));
/// ```
pub struct WebSocketLayer<F> {
    make_handler: Arc<F>,
    config: Arc<Config>,
    authorize: Option<Arc<Authorize>>,
}

/// An application's check of an upgrade request: see [`WebSocketLayer::authorize`].
type Authorize = dyn Fn(&mut Request<()>) -> Result<(), Box<Response<String>>> + Send + Sync;

impl<F> WebSocketLayer<F> {
    /// Serves upgrades with the handler `make_handler` returns for each.
    pub fn new(make_handler: F) -> Self {
        Self { make_handler: Arc::new(make_handler), config: Arc::new(Config::default()), authorize: None }
    }

    /// Checks each upgrade request before it is upgraded, as
    /// [`Server::authorize`](ws_core::Server::authorize) does: `Err(response)` answers
    /// with that response (a 401, a 403) and no handler is made; what the check puts in
    /// the request's extensions, `make_handler` sees.
    ///
    /// ```
    /// use wsdriver::http::{Request, Response, StatusCode};
    /// use wsdriver::adapter::hyper::WebSocketLayer;
    /// use wsdriver::{Connection, Handler, Message};
    ///
    /// struct Greeter(String);
    /// impl Handler for Greeter {
    ///     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
    /// }
    ///
    /// let layer = WebSocketLayer::new(|request: &Request<()>| Greeter(request.extensions().get::<String>().cloned().unwrap_or_default()))
    ///     .authorize(|request| match request.headers().get("authorization").map(|v| v == "Bearer letmein") {
    ///         Some(true) => {
    ///             request.extensions_mut().insert("alice".to_owned());
    ///             Ok(())
    ///         }
    ///         _ => {
    ///             let mut refused = Response::new("a bearer token is required\n".to_owned());
    ///             *refused.status_mut() = StatusCode::UNAUTHORIZED;
    ///             Err(Box::new(refused))
    ///         }
    ///     });
    /// ```
    pub fn authorize<C>(mut self, check: C) -> Self
    where
        C: Fn(&mut Request<()>) -> Result<(), Box<Response<String>>> + Send + Sync + 'static,
    {
        self.authorize = Some(Arc::new(check));
        self
    }

    /// Sets the options and limits for every connection.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Arc::new(config);
        self
    }
}

impl<F> Clone for WebSocketLayer<F> {
    fn clone(&self) -> Self {
        Self { make_handler: self.make_handler.clone(), config: self.config.clone(), authorize: self.authorize.clone() }
    }
}

impl<S, F> Layer<S> for WebSocketLayer<F> {
    type Service = WebSocketService<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        WebSocketService { inner, make_handler: self.make_handler.clone(), config: self.config.clone(), authorize: self.authorize.clone() }
    }
}

/// The service [`WebSocketLayer`] wraps around an inner service.
pub struct WebSocketService<S, F> {
    inner: S,
    make_handler: Arc<F>,
    config: Arc<Config>,
    authorize: Option<Arc<Authorize>>,
}

impl<S: Clone, F> Clone for WebSocketService<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            make_handler: self.make_handler.clone(),
            config: self.config.clone(),
            authorize: self.authorize.clone(),
        }
    }
}

impl<S, F, H, ReqBody, ResBody> Service<Request<ReqBody>> for WebSocketService<S, F>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    F: Fn(&Request<()>) -> H,
    H: Handler,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<ResBody>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if !crate::is_websocket_request(&request) {
            return Either::Left(self.inner.call(request));
        }
        let mut head = head_of(&request);
        if let Some(Err(refused)) = self.authorize.as_ref().map(|check| check(&mut head)) {
            ws_core::meter::rejected("tower", refused.status().as_u16());
            return Either::Right(ready(Ok(refused.map(ResBody::from))));
        }
        let response = match upgrade_as(&mut request, &self.config, "tower") {
            Ok((response, upgrade)) => {
                upgrade.serve((self.make_handler)(&head));
                response.map(|_| ResBody::from(String::new()))
            }
            Err(rejection) => rejection.response().map(ResBody::from),
        };
        Either::Right(ready(Ok(response)))
    }
}

/// The request's head, without its body, for the handler factory: its extensions too
/// (the client's [`PeerAddr`](ws_core::meter::PeerAddr) from [`serve`](crate::serve),
/// what earlier layers added).
fn head_of<B>(request: &Request<B>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.version_mut() = request.version();
    *head.headers_mut() = request.headers().clone();
    *head.extensions_mut() = request.extensions().clone();
    head
}
