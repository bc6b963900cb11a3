//! The two halves of a [`WebSocket`], for a reader and a writer in different tasks.

use super::{WebSocket, impl_sink};
use crate::close::CloseCode;
use crate::connection::Connection;
use crate::driver::Transport;
use crate::driver::shared::Shared;
use crate::error::Result;
use crate::message::Message;
use crate::utf8::Utf8Bytes;
use futures_core::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The sending half of a [`WebSocket`] (see [`WebSocket::split`]).
pub struct SplitSink<S: Transport> {
    shared: Arc<Shared<S>>,
}

impl<S: Transport> SplitSink<S> {
    pub(super) fn new(shared: Arc<Shared<S>>) -> Self {
        shared.add_handle();
        Self { shared }
    }

    /// A cheap, cloneable handle for sending from other tasks.
    pub fn connection(&self) -> Connection {
        Connection::new(self.shared.clone())
    }
}

impl<S: Transport> Drop for SplitSink<S> {
    fn drop(&mut self) {
        self.shared.drop_handle();
    }
}

impl_sink!(SplitSink);

/// The receiving half of a [`WebSocket`] (see [`WebSocket::split`]).
pub struct SplitStream<S: Transport> {
    socket: WebSocket<S>,
}

impl<S: Transport> SplitStream<S> {
    pub(super) fn new(socket: WebSocket<S>) -> Self {
        Self { socket }
    }

    /// Receives the next message; `None` once the connection is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`WebSocket::recv`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        self.socket.recv().await
    }

    /// See [`WebSocket::close_status`].
    pub fn close_status(&self) -> Option<(CloseCode, Utf8Bytes)> {
        self.socket.close_status()
    }
}

impl<S: Transport> Stream for SplitStream<S> {
    type Item = Result<Message>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.socket).poll_next(cx)
    }
}
