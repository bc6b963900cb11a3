//! wsdriver: an RFC 6455 WebSocket server and client. One protocol core ([`ws_core`]),
//! thin adapters for the Rust servers people run, and one [`Handler`] API on all of them.
//!
//! This crate only re-exports: the core at the root, each adapter as a module behind the
//! cargo feature of the same name (all on by default).
#![doc = include_str!("../README.md")]

pub use ws_core::*;

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
