//! Metrics and tracing: what every server (the standalone one and each adapter) reports
//! about its WebSockets.
//!
//! # Metrics
//!
//! With the `metrics` feature, connections report through the [`metrics`](https://docs.rs/metrics) crate's facade
//! to whatever recorder the application installs (Prometheus, StatsD, OpenTelemetry...),
//! once it calls [`enable`] after installing it; until then, or without the feature,
//! nothing is recorded and nothing is paid. Every metric carries an `adapter` label:
//! `standalone`, `hyper`, `tower`, `axum`, `actix` or `client`.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `wsdriver_connections_opened_total` | counter | adapter | handshakes completed |
//! | `wsdriver_connections_closed_total` | counter | adapter, code | connections ended, by the close code `on_close` sees (1006 without a Close frame) |
//! | `wsdriver_connections_open` | gauge | adapter | connections open now |
//! | `wsdriver_messages_received_total` | counter | adapter | text and binary messages received |
//! | `wsdriver_messages_sent_total` | counter | adapter | text and binary messages queued to send |
//! | `wsdriver_bytes_received_total` | counter | adapter | bytes read from the stream after the handshake (frames, as compressed) |
//! | `wsdriver_bytes_sent_total` | counter | adapter | bytes written to the stream after the handshake |
//! | `wsdriver_buffered_bytes` | gauge | adapter | bytes queued and not yet written, all connections together, as of each write |
//! | `wsdriver_handshakes_rejected_total` | counter | adapter, status | opening handshakes refused, by HTTP status |
//! | `wsdriver_errors_total` | counter | adapter, kind | errors that ended a connection: `protocol`, `io`, `reset` (the stream ended without a Close frame), `close_timeout`, `keepalive_timeout`, `handshake`, `other` |
//! | `wsdriver_handshake_duration_seconds` | histogram | adapter | from the request's first byte (standalone) or the upgrade call (adapters) or the connect (client) to the open socket |
//!
//! ```
//! // The application picks the recorder; metrics-exporter-prometheus, for example:
//! // let prometheus = PrometheusBuilder::new().install_recorder()?;
//! wsdriver::meter::enable();
//! ```
//!
//! # Tracing
//!
//! Each connection a server spawns runs in a `websocket` span at INFO level, with the
//! fields `adapter`, `peer` (the client's address, where the server knows it: the
//! standalone server, [`ws_hyper::serve`](https://docs.rs/ws-hyper), axum's `ConnectInfo`,
//! actix-web), `path` and `protocol` (the subprotocol), so everything a handler logs is
//! attributed to its connection.

use crate::close::CloseCode;
use crate::error::Error;
use std::future::Future;
use std::net::SocketAddr;

/// The client address a server puts in a request's extensions, for the connection's
/// span. `ws_hyper::serve` and the standalone [`Server`](crate::Server) insert it (an
/// application's hooks and handlers may read it); axum's `ConnectInfo<SocketAddr>` is
/// read too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The span a server's connection task runs in: see the [module docs](self#tracing).
#[doc(hidden)] // for adapters
pub fn span(adapter: &'static str, peer: Option<SocketAddr>, path: Option<&str>, protocol: Option<&str>) -> tracing::Span {
    use tracing::field::{Empty, display};
    let span = tracing::info_span!("websocket", adapter, peer = Empty, path = Empty, protocol = Empty);
    if !span.is_disabled() {
        peer.map(|peer| span.record("peer", display(peer)));
        path.map(|path| span.record("path", path));
        protocol.map(|protocol| span.record("protocol", protocol));
    }
    span
}

/// Spawns a connection's task on tokio, in `span` when a subscriber listens to it: a
/// connection pays for its span (a few words in its task) only then.
#[doc(hidden)] // for adapters
pub fn spawn<F: Future<Output = ()> + Send + 'static>(span: tracing::Span, task: F) {
    use tracing::Instrument;
    if span.is_disabled() {
        tokio::spawn(task);
    } else {
        tokio::spawn(task.instrument(span));
    }
}

/// Counts a refused opening handshake.
#[doc(hidden)] // for adapters
pub fn rejected(adapter: &'static str, status: u16) {
    #[cfg(feature = "metrics")]
    if enabled() {
        metrics::counter!("wsdriver_handshakes_rejected_total", "adapter" => adapter, "status" => status.to_string()).increment(1);
    }
    let _ = (adapter, status);
}

#[cfg(feature = "metrics")]
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(feature = "metrics")]
fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Starts reporting metrics to the installed recorder, for the connections that open from
/// now on, and gives every metric its help text and unit. Call it once the application
/// installed its recorder (handles registered before that would report to nothing).
///
/// Built without the `metrics` feature, it warns (through `tracing`) that nothing will be
/// recorded.
pub fn enable() {
    #[cfg(not(feature = "metrics"))]
    tracing::warn!("wsdriver was built without its `metrics` feature: no metrics will be recorded");
    #[cfg(feature = "metrics")]
    enable_metrics();
}

#[cfg(feature = "metrics")]
fn enable_metrics() {
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("wsdriver_connections_opened_total", Unit::Count, "WebSocket handshakes completed");
    describe_counter!("wsdriver_connections_closed_total", Unit::Count, "WebSocket connections ended, by close code");
    describe_gauge!("wsdriver_connections_open", Unit::Count, "WebSocket connections open");
    describe_counter!("wsdriver_messages_received_total", Unit::Count, "Text and binary messages received");
    describe_counter!("wsdriver_messages_sent_total", Unit::Count, "Text and binary messages sent");
    describe_counter!("wsdriver_bytes_received_total", Unit::Bytes, "Bytes read after the handshake");
    describe_counter!("wsdriver_bytes_sent_total", Unit::Bytes, "Bytes written after the handshake");
    describe_gauge!("wsdriver_buffered_bytes", Unit::Bytes, "Bytes queued and not yet written");
    describe_counter!("wsdriver_handshakes_rejected_total", Unit::Count, "Opening handshakes refused, by HTTP status");
    describe_counter!("wsdriver_errors_total", Unit::Count, "Errors that ended a connection, by kind");
    describe_histogram!("wsdriver_handshake_duration_seconds", Unit::Seconds, "Time to complete the opening handshake");
}

/// The `kind` label of an error.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn kind(error: &Error) -> &'static str {
    match error {
        Error::Protocol(_) => "protocol",
        Error::Io(_) => "io",
        Error::ConnectionReset => "reset",
        Error::CloseTimeout => "close_timeout",
        Error::KeepaliveTimeout => "keepalive_timeout",
        Error::Handshake(_) => "handshake",
        _ => "other",
    }
}

/// One connection's meters, kept by its driver: empty until an adapter labels the
/// connection (and always, without the `metrics` feature, where it has no size).
#[derive(Default)]
pub(crate) struct Meters {
    #[cfg(feature = "metrics")]
    on: Option<Box<On>>,
}

#[cfg(feature = "metrics")]
struct On {
    adapter: &'static str,
    messages_in: metrics::Counter,
    messages_out: metrics::Counter,
    bytes_in: metrics::Counter,
    bytes_out: metrics::Counter,
    buffered: metrics::Gauge,
    /// What this connection last added to the buffered gauge.
    reported: usize,
}

#[allow(clippy::unused_self)] // each method is empty without the `metrics` feature
impl Meters {
    /// The connection opened on `adapter`, its handshake started at `started`.
    pub(crate) fn open(&mut self, adapter: &'static str, started: std::time::Instant) {
        #[cfg(feature = "metrics")]
        {
            use metrics::{counter, gauge, histogram};
            if self.on.is_some() || !enabled() {
                return;
            }
            counter!("wsdriver_connections_opened_total", "adapter" => adapter).increment(1);
            gauge!("wsdriver_connections_open", "adapter" => adapter).increment(1.0);
            histogram!("wsdriver_handshake_duration_seconds", "adapter" => adapter).record(started.elapsed().as_secs_f64());
            self.on = Some(Box::new(On {
                adapter,
                messages_in: counter!("wsdriver_messages_received_total", "adapter" => adapter),
                messages_out: counter!("wsdriver_messages_sent_total", "adapter" => adapter),
                bytes_in: counter!("wsdriver_bytes_received_total", "adapter" => adapter),
                bytes_out: counter!("wsdriver_bytes_sent_total", "adapter" => adapter),
                buffered: gauge!("wsdriver_buffered_bytes", "adapter" => adapter),
                reported: 0,
            }));
        }
        let _ = (adapter, started);
    }

    #[inline]
    pub(crate) fn read(&self, bytes: usize) {
        #[cfg(feature = "metrics")]
        if let Some(on) = &self.on {
            on.bytes_in.increment(bytes as u64);
        }
        let _ = bytes;
    }

    /// `bytes` were written; `buffered` remain queued.
    #[inline]
    pub(crate) fn wrote(&mut self, bytes: usize, buffered: usize) {
        #[cfg(feature = "metrics")]
        if let Some(on) = &mut self.on {
            on.bytes_out.increment(bytes as u64);
            on.set_buffered(buffered);
        }
        let _ = (bytes, buffered);
    }

    #[inline]
    pub(crate) fn received(&self) {
        #[cfg(feature = "metrics")]
        if let Some(on) = &self.on {
            on.messages_in.increment(1);
        }
    }

    #[inline]
    pub(crate) fn sent(&self) {
        #[cfg(feature = "metrics")]
        if let Some(on) = &self.on {
            on.messages_out.increment(1);
        }
    }

    /// The connection failed with `error` (counted once per connection's first error).
    pub(crate) fn error(&self, error: &Error) {
        #[cfg(feature = "metrics")]
        if let Some(on) = &self.on {
            metrics::counter!("wsdriver_errors_total", "adapter" => on.adapter, "kind" => kind(error)).increment(1);
        }
        let _ = error;
    }

    /// The connection ended with `code`.
    pub(crate) fn closed(&mut self, code: CloseCode) {
        #[cfg(feature = "metrics")]
        if let Some(mut on) = self.on.take() {
            on.set_buffered(0);
            metrics::gauge!("wsdriver_connections_open", "adapter" => on.adapter).decrement(1.0);
            metrics::counter!("wsdriver_connections_closed_total", "adapter" => on.adapter, "code" => u16::from(code).to_string())
                .increment(1);
        }
        let _ = code;
    }
}

#[cfg(feature = "metrics")]
impl On {
    fn set_buffered(&mut self, buffered: usize) {
        if buffered != self.reported {
            self.buffered.increment(buffered as f64 - self.reported as f64);
            self.reported = buffered;
        }
    }
}
