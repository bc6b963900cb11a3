//! The event API behaves the same on every server: a peer that vanishes gives `on_error`
//! then exactly one `on_close` with 1006, a protocol violation reaches `on_error` then `on_close` with its
//! code, and sends from another task are delivered while the driver waits to read.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use common::{Event, Recorder, bounded, connect, events_until_close, raw_client, read_close};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use wsdriver::{Config, Connection, Handler, Message};

async fn recorder(kind: &str) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = common::servers::start_with(kind, Config::default(), move || Recorder { events: tx.clone(), echo: true }).await;
    (addr, rx)
}

async fn vanished_peer(kind: &str) {
    let (addr, mut events) = recorder(kind).await;
    drop(raw_client(addr).await);
    let seen = events_until_close(&mut events).await;
    let reset = Event::Error("connection reset without a close frame".into());
    assert_eq!(seen, [Event::Open, reset, Event::Close(1006, String::new())], "{kind}");
    assert_eq!(bounded(events.recv()).await, Some(Event::Dropped), "{kind}: nothing after on_close");
}

async fn violation(kind: &str) {
    let (addr, mut events) = recorder(kind).await;
    let mut peer = raw_client(addr).await;
    peer.write_all(&[0x81, 0x01, b'x']).await.unwrap(); // unmasked
    assert_eq!(read_close(&mut peer).await, Some(1002));
    let seen = events_until_close(&mut events).await;
    assert_eq!(seen.len(), 3, "{kind}: {seen:?}");
    assert!(matches!(&seen[1], Event::Error(e) if e.contains("unmasked frame")), "{kind}: {seen:?}");
    assert_eq!(seen[2], Event::Close(1002, String::new()), "{kind}");
}

/// Hands its connection out on open.
struct Exposed(mpsc::UnboundedSender<Connection>);

impl Handler for Exposed {
    async fn on_open(&mut self, ws: &Connection) {
        let _ = self.0.send(ws.clone());
    }
    async fn on_message(&mut self, _: &Connection, _: Message) {}
}

async fn sends_from_another_task(kind: &str) {
    let (tx, mut opened) = mpsc::unbounded_channel();
    let addr = common::servers::start_with(kind, Config::default(), move || Exposed(tx.clone())).await;
    let mut client = connect(addr, "/", &Config::default()).await;
    let conn = bounded(opened.recv()).await.unwrap();
    // The client sends nothing: the server's driver sits in a read that never completes.
    let sender = tokio::spawn(async move {
        for i in 0..50 {
            conn.send_text(format!("push {i}")).await.unwrap();
        }
    });
    for i in 0..50 {
        assert_eq!(bounded(client.recv()).await.unwrap().unwrap(), Message::text(format!("push {i}")), "{kind}");
    }
    sender.await.unwrap();
}

/// Logs one event from `on_message`, inside the connection's span.
struct Probe;

impl Handler for Probe {
    async fn on_message(&mut self, ws: &Connection, _: Message) {
        tracing::info!("span probe");
        let _ = ws.send_text("logged").await;
    }
}

/// The fields of the span around each "span probe" event, from every test of this binary.
static PROBED: std::sync::Mutex<Vec<std::collections::BTreeMap<String, String>>> = std::sync::Mutex::new(Vec::new());

/// Records span fields, and the span fields around each "span probe" event.
struct Capture;

#[derive(Default)]
struct Fields(std::collections::BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }
    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        values.record(ctx.span(id).unwrap().extensions_mut().get_mut::<Fields>().unwrap());
    }
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut message = Fields::default();
        event.record(&mut message);
        if message.0.get("message").map(String::as_str) != Some("span probe") {
            return;
        }
        let span = ctx.event_span(event).map(|span| span.extensions().get::<Fields>().map(|f| f.0.clone()).unwrap_or_default());
        PROBED.lock().unwrap().push(span.unwrap_or_default());
    }
}

/// What a handler logs is inside its connection's `websocket` span, with the adapter, the
/// client's address and the request's path.
async fn logs_in_the_connection_span(kind: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    static INSTALL: std::sync::Once = std::sync::Once::new();
    // INFO and above: the connection spans and the probe, not every debug event of the
    // other tests in this binary.
    let capture = tracing_subscriber::Layer::with_filter(Capture, tracing_subscriber::filter::LevelFilter::INFO);
    INSTALL.call_once(|| tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture)).unwrap());
    let addr = common::servers::start_with(kind, Config::default(), || Probe).await;
    let path = format!("/probe/{kind}");
    let mut client = connect(addr, &path, &Config::default()).await;
    client.send(Message::text("log this")).await.unwrap();
    assert_eq!(bounded(client.recv()).await.unwrap().unwrap(), Message::text("logged"));
    let probed = PROBED.lock().unwrap().iter().find(|span| span.get("path") == Some(&path)).cloned();
    let span = probed.unwrap_or_else(|| panic!("{kind}: no probe logged in a span with path {path}"));
    assert_eq!(span.get("adapter").map(String::as_str), Some(kind), "{kind}: {span:?}");
    let peer: std::net::SocketAddr = span.get("peer").unwrap_or_else(|| panic!("{kind}: no peer in {span:?}")).parse().unwrap();
    assert_eq!(peer.ip(), std::net::Ipv4Addr::LOCALHOST, "{kind}: {span:?}");
}

macro_rules! on_every_server {
    ($($kind:ident),*) => {$(
        mod $kind {
            #[tokio::test]
            async fn a_vanished_peer_gives_one_close_with_1006() {
                super::vanished_peer(stringify!($kind)).await;
            }

            #[tokio::test]
            async fn a_violation_reaches_on_error_then_on_close() {
                super::violation(stringify!($kind)).await;
            }

            #[tokio::test]
            async fn a_handler_logs_in_its_connection_span() {
                super::logs_in_the_connection_span(stringify!($kind)).await;
            }

            #[tokio::test]
            async fn sends_from_another_task_are_delivered_at_once() {
                super::sends_from_another_task(stringify!($kind)).await;
            }
        }
    )*};
}

on_every_server!(standalone, hyper, tower, axum, actix);
