//! wsdriver: an RFC 6455 WebSocket server and client. One protocol core ([`ws_core`]),
//! thin adapters for the Rust servers people run, and one [`Handler`] API on all of them.
//!
//! This crate only re-exports: the core at the root, each adapter crate and the hub as a
//! module behind the cargo feature of the same name (all on by default), with that
//! crate's documentation.
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

#[cfg(feature = "hyper")]
#[doc(inline)]
pub use ws_hyper as hyper;

#[cfg(feature = "axum")]
#[doc(inline)]
pub use ws_axum as axum;

#[cfg(feature = "actix")]
#[doc(inline)]
pub use ws_actix as actix;

#[cfg(feature = "hub")]
#[doc(inline)]
pub use ws_hub as hub;
