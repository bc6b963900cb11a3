//! wsdriver: an RFC 6455 WebSocket server and client. One protocol core ([`ws_core`]),
//! thin adapters for the Rust servers people run, and one [`Handler`] API on all of them.
//!
//! Write a handler once: it receives websocket-driver's events (`on_open`, `on_message`,
//! `on_error`, `on_close`) with a [`Connection`] to send through, and runs unchanged on
//! the standalone [`Server`], on hyper, as a tower layer, on axum, on actix-web, and on
//! the client.
//!
//! ```no_run
//! use wsdriver::prelude::*;
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     async fn on_message(&mut self, ws: &Connection, message: Message) {
//!         let _ = ws.send(message).await;
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     Server::bind("127.0.0.1:9001").await?.serve(|_request| Echo).await
//! }
//! ```
//!
//! # Features
//!
//! The defaults are the client and permessage-deflate; every server adapter, the hub and
//! metrics are features of their own:
//!
//! ```toml
//! [dependencies]
//! wsdriver = { version = "0.1", default-features = false, features = ["axum", "hub"] }
//! ```
//!
//! | feature | what it adds | default |
//! | --- | --- | --- |
//! | `client` | [`connect`](client::connect), [`ClientBuilder`](client::ClientBuilder) (ws:// and wss:// with rustls), the reconnecting client | yes |
//! | `deflate` | permessage-deflate (RFC 7692) on servers and the client | yes |
//! | `hyper` | [`adapter::hyper`](adapter/hyper/index.html): `upgrade`, the tower `WebSocketLayer`, `serve` with the handshake's limits | |
//! | `axum` | [`adapter::axum`](adapter/axum/index.html): the `WebSocketUpgrade` extractor | |
//! | `actix` | [`adapter::actix`](adapter/actix/index.html): `handle`, `serve` and `stop` for actix-web 4 | |
//! | `hub` | [`hub`](hub/index.html): rooms, presence, broadcasts encoded once | |
//! | `redis` | the hub's Redis backplane | |
//! | `metrics` | [`meter`]: connections, messages, bytes, errors and handshakes through the `metrics` facade | |
//!
//! # Where to start
//!
//! - [`Handler`] and [`Connection`]: the event API and the handle to send through.
//! - [`Config`]: every limit and timer, with defaults safe on the open internet.
//! - [`Server`]: the standalone server; [`axum`](adapter/axum/index.html), [`actix`](adapter/actix/index.html), [`hyper`](adapter/hyper/index.html): the
//!   adapters, each page with its own guide.
//! - [`WebSocket`]: a connection as a `Stream` and `Sink` of [`Message`]s, for code that
//!   prefers to drive it itself.
//! - [`client`]: connecting, TLS, reconnecting with backoff.
//! - [`shutdown`]: graceful shutdown (1001 to every connection, a deadline).
//! - [`hub`](hub/index.html): rooms and broadcast, across processes with Redis.
//! - [`meter`]: metrics, and the tracing span each connection runs in.
//!
//! The [`prelude`] brings the common names in with a glob import that cannot clash with
//! the framework crates.

pub use ws_core::*;

/// The `http` crate (1.x), whose types the API takes and returns: requests, headers and
/// status codes (`ClientBuilder::header`, a refused handshake's status).
pub use http;

/// The names most programs use, for a glob import of just those:
///
/// ```
/// use wsdriver::prelude::*;
///
/// struct Echo;
///
/// impl Handler for Echo {
///     async fn on_message(&mut self, ws: &Connection, message: Message) {
///         let _ = ws.send(message).await;
///     }
///
///     async fn on_close(&mut self, _ws: &Connection, code: CloseCode, _reason: &str) {
///         assert_ne!(code, CloseCode::PROTOCOL_ERROR);
///     }
/// }
///
/// let _config = Config::default().max_message_size(1 << 20);
/// ```
pub mod prelude {
    #[cfg(feature = "client")]
    pub use ws_core::client::{ClientBuilder, Reconnect, connect};
    pub use ws_core::{CloseCode, Config, Connection, Error, Handler, Message, PreparedMessage, Server, WebSocket};
}

/// The server adapters, one module per framework, each with its crate's guide. They live
/// here rather than at the root so that `use wsdriver::*` cannot shadow the framework
/// crates' own names (`axum::Router` stays axum's):
///
/// ```
/// use wsdriver::*;
///
/// let _router: axum::Router = axum::Router::new(); // the framework's crate
/// let _extractor: Option<adapter::axum::WebSocketUpgrade> = None; // the adapter
/// let _config = Config::default();
/// ```
pub mod adapter {
    #[cfg(feature = "hyper")]
    #[doc(inline)]
    pub use ws_hyper as hyper;

    #[cfg(feature = "axum")]
    #[doc(inline)]
    pub use ws_axum as axum;

    #[cfg(feature = "actix")]
    #[doc(inline)]
    pub use ws_actix as actix;
}

#[cfg(feature = "hub")]
#[doc(inline)]
pub use ws_hub as hub;

// The README's snippets are compiled and run as doctests against this crate's public API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
