//! wsdriver on axum 0.8: the [`WebSocketUpgrade`] extractor, in the style of axum's own,
//! serving a stream (`on_upgrade`) or a [`Handler`] (`serve`).
//!
//! ```no_run
//! use axum::{Router, response::Response, routing::any};
//! use wsdriver::adapter::axum::WebSocketUpgrade;
//! use wsdriver::{Connection, Handler, Message};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
//! }
//!
//! async fn chat(ws: WebSocketUpgrade) -> Response {
//!     ws.protocols(["chat"]).serve(Echo)
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new().route("/chat", any(chat));
//! let listener = wsdriver::bind("127.0.0.1:9001").await?;
//! // axum::serve, with the handshake's time and size limits: see `serve`.
//! wsdriver::adapter::axum::serve(listener, app).config(&wsdriver::Config::default()).await
//! # }
//! ```

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use hyper::upgrade::OnUpgrade;
use std::future::Future;
use std::net::SocketAddr;
use ws_core::handshake::{HandshakeError, server};
use ws_core::meter;
use ws_core::shutdown::Shutdown;
use ws_core::{Config, Error, Handler};
use ws_hyper::UpgradeFut;

pub use ws_hyper::HyperWebSocket as WebSocket;
/// Serves an axum `Router` as [`axum::serve()`] does, with the limits a WebSocket server on the
/// open internet needs, which `axum::serve` does not set: a request's head must arrive
/// within [`Config::handshake_timeout`], within [`Config::max_header_bytes`] and
/// [`Config::max_headers`] (431 beyond), and a silent connection costs no buffer.
///
/// ```no_run
/// # use axum::{Router, response::Response, routing::any};
/// # use wsdriver::adapter::axum::WebSocketUpgrade;
/// # async fn chat(ws: WebSocketUpgrade) -> Response { ws.on_upgrade(|_socket| async {}) }
/// # async fn run() -> std::io::Result<()> {
/// let app = Router::new().route("/chat", any(chat));
/// let listener = wsdriver::bind("127.0.0.1:9001").await?;
/// wsdriver::adapter::axum::serve(listener, app).config(&wsdriver::Config::default()).await
/// # }
/// ```
pub use ws_hyper::{Serve, serve};

/// Extracts a WebSocket upgrade request; rejects anything else with a precise status.
///
/// Options can be set per route ([`WebSocketUpgrade::config`],
/// [`WebSocketUpgrade::protocols`]) before answering with
/// [`WebSocketUpgrade::on_upgrade`] or [`WebSocketUpgrade::serve`].
///
/// A [`Shutdown`] in the request's extensions (put there by [`serve`] with a graceful
/// shutdown, or by an `Extension(shutdown)` layer under `axum::serve`) watches the socket.
pub struct WebSocketUpgrade {
    headers: HeaderMap,
    on_upgrade: OnUpgrade,
    config: Config,
    /// Set by [`WebSocketUpgrade::protocols`]: applied over whatever `config` says, in
    /// whichever order the two were called.
    protocols: Option<Vec<String>>,
    on_failed: Option<Box<dyn FnOnce(Error) + Send>>,
    shutdown: Option<Shutdown>,
    /// For the connection's span: the request's URI and the client's address.
    uri: http::Uri,
    peer: Option<SocketAddr>,
    /// An extended CONNECT on HTTP/2 (RFC 8441), not an HTTP/1.1 upgrade.
    extended_connect: bool,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Why [`WebSocketUpgrade`] rejected a request; its response has the status and reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebSocketUpgradeRejection {
    /// Not a valid WebSocket handshake (400, 403, 405, 426 ...).
    #[error(transparent)]
    Handshake(HandshakeError),
    /// The connection cannot be upgraded: the server was not built with upgrades, or the
    /// request is not HTTP/1.1.
    #[error("connection is not upgradable")]
    ConnectionNotUpgradable,
}

impl WebSocketUpgradeRejection {
    /// The status the rejection answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Handshake(e) => e.status(),
            Self::ConnectionNotUpgradable => StatusCode::UPGRADE_REQUIRED,
        }
    }
}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Handshake(e) => e.response().map(Body::from),
            Self::ConnectionNotUpgradable => (self.status(), "connection is not upgradable\n").into_response(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // The checks that need no config run now, so a bad request is rejected like any
        // failed extractor; the origin, subprotocol and extensions wait for the route's
        // config, in `respond`.
        let rejected = |rejection: WebSocketUpgradeRejection| {
            meter::rejected("axum", rejection.status().as_u16());
            rejection
        };
        let extended_connect = parts.method == http::Method::CONNECT;
        if extended_connect {
            let protocol = ws_hyper::connect_protocol(&parts.extensions);
            server::validate_extended_connect(&parts.method, parts.version, protocol, &parts.headers)
        } else {
            server::validate_request(&parts.method, parts.version, &parts.headers)
        }
        .map_err(|e| rejected(WebSocketUpgradeRejection::Handshake(e)))?;
        let on_upgrade =
            parts.extensions.remove::<OnUpgrade>().ok_or_else(|| rejected(WebSocketUpgradeRejection::ConnectionNotUpgradable))?;
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0).or_else(|| ws_hyper::peer_addr(&parts.extensions));
        Ok(Self {
            headers: parts.headers.clone(),
            on_upgrade,
            config: Config::default(),
            protocols: None,
            on_failed: None,
            shutdown: parts.extensions.get::<Shutdown>().cloned(),
            uri: parts.uri.clone(),
            peer,
            extended_connect,
        })
    }
}

impl WebSocketUpgrade {
    /// Sets the options and limits for this connection. Subprotocols set with
    /// [`WebSocketUpgrade::protocols`] are kept, before or after this call.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the subprotocols supported, in place of [`Config::protocols`] of the config
    /// (whether [`WebSocketUpgrade::config`] is called before or after).
    ///
    /// ```
    /// # use wsdriver::{Config, Connection, Handler, Message};
    /// # struct Chat;
    /// # impl Handler for Chat { async fn on_message(&mut self, _: &Connection, _: Message) {} }
    /// use axum::response::Response;
    /// use wsdriver::adapter::axum::WebSocketUpgrade;
    ///
    /// async fn chat(ws: WebSocketUpgrade) -> Response {
    ///     // Both orders select "chat.v2" for a client offering it.
    ///     ws.protocols(["chat.v2"]).config(Config::default().max_message_size(1 << 20)).serve(Chat)
    /// }
    /// ```
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols = Some(protocols.into_iter().map(Into::into).collect());
        self
    }

    /// The subprotocol the response will select: the first the client offered that is
    /// supported (by [`WebSocketUpgrade::protocols`] or the config), if any. A handler can
    /// refuse a client that offers none of its protocols before upgrading.
    pub fn selected_protocol(&self) -> Option<&str> {
        server::select_protocol(&self.headers, self.protocols.as_ref().unwrap_or(&self.config.protocols))
    }

    /// Runs `callback` with the error if the connection cannot be upgraded after the 101
    /// was sent (the client went away, or the server was not built with upgrades), as
    /// axum's extractor does; without it, the failure is logged at debug level.
    pub fn on_failed_upgrade<C: FnOnce(Error) + Send + 'static>(mut self, callback: C) -> Self {
        self.on_failed = Some(Box::new(callback));
        self
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn offered_protocols(&self) -> impl Iterator<Item = &str> {
        ws_core::handshake::header_tokens(&self.headers, &http::header::SEC_WEBSOCKET_PROTOCOL)
    }

    /// Answers 101 and runs `callback` with the socket once the connection is upgraded.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (it spawns the connection's task).
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.upgrade_with(|upgrade| upgrade.spawn(callback))
    }

    /// Answers 101 and serves the connection with `handler`.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (it spawns the connection's task).
    pub fn serve<H: Handler>(self, handler: H) -> Response {
        self.upgrade_with(|upgrade| upgrade.serve(handler))
    }

    /// Finishes the handshake with the route's config and subprotocols, hands the upgrade
    /// to `start`, and returns the 101; or the rejection's response.
    fn upgrade_with(self, start: impl FnOnce(UpgradeFut)) -> Response {
        match self.accept() {
            Ok((response, upgrade)) => {
                start(upgrade);
                response
            }
            Err(e) => {
                meter::rejected("axum", e.status().as_u16());
                WebSocketUpgradeRejection::Handshake(e).into_response()
            }
        }
    }

    /// The 101 response and the upgrade.
    fn accept(self) -> Result<(Response, UpgradeFut), HandshakeError> {
        let mut config = self.config;
        if let Some(protocols) = self.protocols {
            config.protocols = protocols;
        }
        let accepted = match self.extended_connect {
            true => server::respond_extended_connect(&self.headers, &config)?,
            false => server::respond(&self.headers, &config)?,
        };
        let span = meter::span("axum", self.peer, Some(self.uri.path()), accepted.negotiated.protocol.as_deref());
        let mut upgrade = UpgradeFut::new(self.on_upgrade, config, accepted.negotiated).instrument("axum", span);
        if let Some(shutdown) = self.shutdown {
            upgrade = upgrade.watched_by(shutdown);
        }
        if let Some(on_failed) = self.on_failed {
            upgrade = upgrade.on_failed(on_failed);
        }
        Ok((accepted.response.map(|()| Body::empty()), upgrade))
    }
}
