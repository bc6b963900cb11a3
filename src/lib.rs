//! wsdriver: an RFC 6455 WebSocket server and client. One protocol core ([`ws_core`]),
//! thin adapters for the Rust servers people run, and one [`Handler`] API on all of them.
//!
//! This crate only re-exports; see [`ws_core`] for the protocol and the standalone server.
#![doc = include_str!("../README.md")]

pub use ws_core::*;
