//! wsdriver: an RFC 6455 WebSocket server and client. One protocol core ([`ws_core`]),
//! thin adapters for the Rust servers people run, and one [`Handler`] API on all of them.
//!
//! This crate only re-exports: the core at the root, each adapter as a module behind the
//! cargo feature of the same name (all on by default).
#![doc = include_str!("../README.md")]

pub use ws_core::*;

/// The `http` crate (1.x), whose types the API takes and returns: requests, headers and
/// status codes (`ClientBuilder::header`, a refused handshake's status).
pub use http;

/// The names most programs use, for a glob import that cannot clash with the framework
/// crates (`use wsdriver::*` brings a module named `axum`, and so on):
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

/// hyper 1: `upgrade` a request, or serve upgrades with a tower `WebSocketLayer`.
#[cfg(feature = "hyper")]
pub mod hyper {
    pub use ws_hyper::*;
}

/// axum 0.8: the `WebSocketUpgrade` extractor.
#[cfg(feature = "axum")]
pub mod axum {
    pub use ws_axum::*;
}

/// actix-web 4: `handle` and `serve` from an `HttpRequest` and its `Payload`.
#[cfg(feature = "actix")]
pub mod actix {
    pub use ws_actix::*;
}

/// Broadcast: a hub of rooms with presence, frames encoded once, bounded queues for slow
/// subscribers, and (feature `redis`) a Redis backplane shared by several processes.
#[cfg(feature = "hub")]
pub mod hub {
    pub use ws_hub::*;
}
