//! The async driver under [`WebSocket`](crate::WebSocket): it moves bytes between a stream
//! and the sans-IO [`Protocol`](crate::protocol::Protocol), and nothing else.
//!
//! - [`io`]: the I/O driver, one per connection, owning the stream, the protocol and the
//!   buffers: reads, parses ahead (bounded), writes, ends the transport, and finishes the
//!   connection, the same way however it ends.
//! - [`shared`]: what a connection's handles share (the socket, its split halves, every
//!   [`Connection`](crate::Connection)): the driver behind one lock, the wake-up fan, the
//!   timer flag.
//! - [`fan`]: every task waiting on the connection, woken together.
//! - [`timer`]: the keepalive and close deadlines of all connections on a thread, served
//!   by one task.
//!
//! Whoever polls drives: the reader, a handler's pending callback, a sender waiting on
//! backpressure, a task awaiting a pong, the finisher of a dropped socket. Every poll does
//! all the work there is (timers first), so a deadline fires whoever is waiting.

pub(crate) mod fan;
pub(crate) mod io;
pub(crate) mod shared;
pub(crate) mod timer;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream a WebSocket runs on: TCP, TLS, an upgraded HTTP connection, an in-memory
/// pipe. Implemented for every `AsyncRead + AsyncWrite + Unpin + Send + 'static` type.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}
