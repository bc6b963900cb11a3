//! The protocol core of wsdriver: RFC 6455 (WebSocket version 13).
//!
//! From the bottom up, one file per concept of the RFC: [`frame`] headers, [`mask`]ing,
//! incremental [`utf8`] validation, [`close`] codes, the [`handshake`] on `http` types, the
//! sans-IO [`protocol`] state machine, and on top the async driver ([`WebSocket`], a
//! [`Stream`](futures_core::Stream) and [`Sink`](futures_sink::Sink)), the cloneable
//! [`Connection`] handle, websocket-driver's [`Handler`] events, and a standalone
//! [`Server`].
//!
//! ```no_run
//! use wsdriver::{Connection, Handler, Message, Server};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     async fn on_message(&mut self, ws: &Connection, message: Message) {
//!         let _ = ws.send(message).await;
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! Server::bind("127.0.0.1:9001").await?.serve(|_request| Echo).await
//! # }
//! ```

pub mod acceptor;
#[cfg(feature = "client")]
pub mod client;
pub mod close;
pub mod config;
mod connection;
#[cfg(feature = "deflate")]
pub mod deflate;
mod driver;
pub mod error;
#[doc(hidden)] // the header parser under the handshakes; public for the fuzzers
pub mod extensions;
pub mod frame;
mod handler;
pub mod handshake;
#[doc(hidden)] // what the servers (ws-hyper's too) and the client share of HTTP/2
pub mod http2;
pub mod mask;
mod message;
pub mod meter;
mod pool;
mod prepared;
pub mod protocol;
mod server;
pub mod shutdown;
pub mod stream;
pub mod utf8;
mod websocket;
#[doc(hidden)] // the driver's write buffer; public for the fuzzers
pub mod write_buf;

pub use acceptor::{Acceptor, bind, first_bytes};
pub use close::{CloseCode, CloseFrame};
pub use config::Config;
pub use connection::Connection;
pub use driver::Transport;
pub use error::{Error, ProtocolError, Result};
pub use handler::{Handler, connection_task, serve};
pub use message::Message;
pub use prepared::PreparedMessage;
pub use protocol::{ReadyState, Role};
pub use server::{Server, accept};
pub use utf8::Utf8Bytes;
pub use websocket::{Attacher, SplitSink, SplitStream, WebSocket};

/// rustls, whose configurations the client's and the servers' TLS take.
#[cfg(feature = "tls")]
pub use rustls;
