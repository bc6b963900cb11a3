//! The hub's hooks: the application's say on who connects, who joins which room and what
//! is published, in one place whatever the server.

use crate::Present;
use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use ws_core::{CloseCode, Message};

type Hooked<T> = Pin<Box<dyn Future<Output = Result<T, Refusal>> + Send>>;
pub(crate) type ConnectHook = dyn Fn(ConnectRequest) -> Hooked<Bytes> + Send + Sync;
pub(crate) type JoinHook = dyn Fn(JoinRequest) -> Hooked<()> + Send + Sync;
pub(crate) type PublishHook = dyn Fn(PublishRequest) -> Hooked<Message> + Send + Sync;

/// Boxes an async hook.
pub(crate) fn boxed<A, T, F, Fut>(hook: F) -> Box<dyn Fn(A) -> Hooked<T> + Send + Sync>
where
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, Refusal>> + Send + 'static,
{
    Box::new(move |arg| Box::pin(hook(arg)))
}

/// Why a hook said no: an error for the caller, and possibly the close code and reason
/// the connection is closed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    code: Option<CloseCode>,
    reason: String,
}

impl Refusal {
    /// Refuses and closes the connection with `code` and `reason` (at most 123 bytes go
    /// out; an application code from 4000, or 1008 policy violation, say).
    pub fn close(code: CloseCode, reason: impl Into<String>) -> Self {
        Self { code: Some(code), reason: reason.into() }
    }

    /// Refuses, leaving the connection open: the caller gets the error and tells the
    /// client as it sees fit.
    pub fn error(reason: impl Into<String>) -> Self {
        Self { code: None, reason: reason.into() }
    }

    /// The close code, if the refusal closes the connection.
    pub fn code(&self) -> Option<CloseCode> {
        self.code
    }

    /// Why.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "{} (closed with {})", self.reason, u16::from(code)),
            None => f.write_str(&self.reason),
        }
    }
}

/// The upgrade request a connection came with, for the
/// [connect hook](crate::HubBuilder::on_connect): its URI (a `?token=`), its headers (a
/// cookie, `Authorization`, the protocols offered in `Sec-WebSocket-Protocol`) and the
/// subprotocol the server selected.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectRequest {
    /// The request's URI.
    pub uri: http::Uri,
    /// The request's headers.
    pub headers: http::HeaderMap,
    /// The subprotocol the server selected, if any.
    pub protocol: Option<String>,
}

impl ConnectRequest {
    /// The parts of `request` a hook looks at.
    pub fn new<B>(request: &http::Request<B>) -> Self {
        Self { uri: request.uri().clone(), headers: request.headers().clone(), protocol: None }
    }
}

impl<B> From<&http::Request<B>> for ConnectRequest {
    fn from(request: &http::Request<B>) -> Self {
        Self::new(request)
    }
}

impl From<&http::request::Parts> for ConnectRequest {
    fn from(parts: &http::request::Parts) -> Self {
        Self { uri: parts.uri.clone(), headers: parts.headers.clone(), protocol: None }
    }
}

/// A member asking to join a room, for the [join hook](crate::HubBuilder::on_join).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JoinRequest {
    /// Who (with what the connect hook, or [`Member::set_info`](crate::Member::set_info),
    /// said about it).
    pub who: Present,
    /// The room.
    pub room: String,
}

/// A member publishing to a room, for the [publish hook](crate::HubBuilder::on_publish).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PublishRequest {
    /// Who.
    pub who: Present,
    /// The room.
    pub room: String,
    /// What it publishes; the hook returns what is published instead (the same, or
    /// rewritten).
    pub message: Message,
}
