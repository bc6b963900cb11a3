//! The reconnecting client: the server process is killed and restarted, and the client
//! resumes: `on_open` again, and what was sent while the server was down is delivered.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use common::{EchoProcess, Event, Recorder, bounded, free_addr};
use std::net::SocketAddr;
use std::time::Duration;
use wsdriver::client::{ClientBuilder, Reconnect};
use wsdriver::{CloseCode, Error, Message};

fn start_echo(addr: SocketAddr) -> EchoProcess {
    EchoProcess::start(addr)
}

async fn next_event(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Event {
    bounded(events.recv()).await.unwrap()
}

/// Skips reconnect-attempt errors.
async fn next_non_error(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Event {
    loop {
        match next_event(events).await {
            Event::Error(_) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn resumes_after_the_server_is_killed_and_restarted() {
    let addr = free_addr();
    let mut server = start_echo(addr);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = ClientBuilder::new(format!("ws://{addr}/"))
        .reconnecting(Reconnect::default().delays(Duration::from_millis(20), Duration::from_millis(200)))
        .serve(Recorder { events: tx, echo: false });

    assert_eq!(next_event(&mut events).await, Event::Open);
    client.send(Message::text("before")).await.unwrap();
    assert_eq!(next_event(&mut events).await, Event::Message(Message::text("before")));

    server.kill();
    assert!(matches!(next_event(&mut events).await, Event::Error(_) | Event::Close(1006, _)));
    // Sent while the server is down: queued in the next connection.
    client.send(Message::text("while down")).await.unwrap();

    let _server = start_echo(addr);
    loop {
        match next_non_error(&mut events).await {
            Event::Close(1006, _) => continue,
            Event::Open => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(next_non_error(&mut events).await, Event::Message(Message::text("while down")));
    client.send(Message::text("after")).await.unwrap();
    assert_eq!(next_non_error(&mut events).await, Event::Message(Message::text("after")));

    bounded(client.close(CloseCode::NORMAL, "bye")).await.unwrap();
    assert_eq!(next_non_error(&mut events).await, Event::Close(1000, String::new()));
}

#[tokio::test]
async fn gives_up_after_the_attempt_bound() {
    let addr = free_addr(); // nothing listens there
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = ClientBuilder::new(format!("ws://{addr}/"))
        .reconnecting(Reconnect::default().delays(Duration::from_millis(5), Duration::from_millis(20)).max_attempts(3))
        .serve(Recorder { events: tx, echo: false });
    assert!(matches!(bounded(client.finished()).await, Err(Error::Io(_))));
    let mut errors = 0;
    while let Ok(event) = events.try_recv() {
        match event {
            Event::Error(_) => errors += 1,
            Event::Dropped => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(errors, 3);
}

/// A reconnecting client that gives up fails the sends waiting on its queue, and every
/// later one, instead of leaving them waiting.
#[tokio::test]
async fn giving_up_fails_the_sends_waiting_on_the_queue() {
    let addr = free_addr(); // nothing listens there
    let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
    let client = ClientBuilder::new(format!("ws://{addr}/"))
        .config(wsdriver::Config::default().write_buffer_high_water(1024))
        .reconnecting(Reconnect::default().delays(Duration::from_millis(50), Duration::from_millis(50)).max_attempts(2))
        .serve(Recorder { events: tx, echo: false });
    client.send(Message::binary(vec![0u8; 2048])).await.unwrap(); // queued, over the mark
    let waiting = client.send(Message::text("waits for room"));
    assert!(matches!(bounded(waiting).await, Err(Error::Closed)));
    assert!(matches!(bounded(client.send(Message::text("late"))).await, Err(Error::Closed)));
    assert!(matches!(bounded(client.finished()).await, Err(Error::Io(_))));
}

/// Closes every connection as soon as it opens.
struct Hangup;

impl wsdriver::Handler for Hangup {
    async fn on_open(&mut self, ws: &wsdriver::Connection) {
        let _ = ws.close(CloseCode::GOING_AWAY, "go away");
    }
    async fn on_message(&mut self, _: &wsdriver::Connection, _: Message) {}
}

/// A server that accepts and closes at once gets the backoff, not a tight loop.
#[tokio::test]
async fn a_connection_that_drops_at_once_is_retried_with_backoff() {
    let addr = common::start_server(wsdriver::Config::default(), || Hangup).await;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let started = tokio::time::Instant::now();
    let client = ClientBuilder::new(format!("ws://{addr}/"))
        .reconnecting(Reconnect::default().delays(Duration::from_millis(100), Duration::from_millis(100)))
        .serve(Recorder { events: tx, echo: false });
    let mut opens = 0;
    while opens < 5 {
        if next_event(&mut events).await == Event::Open {
            opens += 1;
        }
    }
    // Four waits of 50-100 ms between five connections; without them, a few milliseconds.
    assert!(started.elapsed() >= Duration::from_millis(200), "5 connections in {:?}", started.elapsed());
    drop(client);
}

/// Dropping the handle closes the connection and ends the client's task.
#[tokio::test]
async fn dropping_the_handle_stops_the_client() {
    let addr = common::start_server(wsdriver::Config::default(), || common::Echo).await;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = ClientBuilder::new(format!("ws://{addr}/")).reconnecting(Reconnect::default()).serve(Recorder { events: tx, echo: false });
    assert_eq!(next_event(&mut events).await, Event::Open);
    drop(client);
    assert_eq!(next_event(&mut events).await, Event::Close(1000, String::new()));
    assert_eq!(next_event(&mut events).await, Event::Dropped, "the task ended with the handler");
}

/// Closing a client that waits out a long backoff ends it at once.
#[tokio::test]
async fn close_during_a_backoff_is_not_missed() {
    let addr = free_addr(); // nothing listens there
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = ClientBuilder::new(format!("ws://{addr}/"))
        .reconnecting(Reconnect::default().delays(Duration::from_secs(60), Duration::from_secs(60)))
        .serve(Recorder { events: tx, echo: false });
    assert!(matches!(next_event(&mut events).await, Event::Error(_)), "the first attempt failed");
    // Now waiting 30-60 s before the next attempt: close must not wait for it.
    bounded(client.close(CloseCode::NORMAL, "bye")).await.unwrap();
}

/// `before_attempt` rebuilds the request before every attempt: an expired token is
/// refused (401) and the next attempt carries a fresh one, and so does every reconnect.
#[tokio::test]
async fn each_attempt_carries_a_fresh_token() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wsdriver::http::{HeaderValue, Response, StatusCode, header};
    use wsdriver::{Connection, Handler, Server};

    /// Greets with the token it was admitted with, then restarts (1012) the first time.
    struct Greeter(String);
    impl Handler for Greeter {
        async fn on_open(&mut self, ws: &Connection) {
            let _ = ws.send_text(self.0.clone()).await;
            if self.0 == "2" {
                let _ = ws.close(CloseCode::SERVICE_RESTART, "");
            }
        }
        async fn on_message(&mut self, _: &Connection, _: Message) {}
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token_of = |request: &wsdriver::http::Request<()>| {
        request.headers().get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?.parse::<usize>().ok()
    };
    let server = Server::from_listener(listener)
        .authorize(move |request| match token_of(request) {
            Some(token) if token >= 2 => Ok(()), // token 1 has expired
            _ => {
                let mut refused = Response::new(String::new());
                *refused.status_mut() = StatusCode::UNAUTHORIZED;
                Err(Box::new(refused))
            }
        })
        .serve(move |request| Greeter(token_of(request).unwrap().to_string()));
    tokio::spawn(server);

    /// Hands each greeting on.
    struct Client(tokio::sync::mpsc::UnboundedSender<String>, tokio::sync::mpsc::UnboundedSender<String>);
    impl Handler for Client {
        async fn on_message(&mut self, _: &Connection, message: Message) {
            let _ = self.0.send(message.as_text().unwrap_or_default().to_owned());
        }
        async fn on_error(&mut self, _: &Connection, error: &Error) {
            let _ = self.1.send(error.to_string());
        }
    }
    let (greetings_tx, mut greetings) = tokio::sync::mpsc::unbounded_channel();
    let (errors_tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let client = ClientBuilder::new(format!("ws://{addr}/"))
        .reconnecting(Reconnect::default().delays(Duration::from_millis(10), Duration::from_millis(50)))
        .before_attempt(move |builder| {
            let token = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move { builder.header(header::AUTHORIZATION, HeaderValue::try_from(format!("Bearer {token}")).unwrap()) }
        })
        .serve(Client(greetings_tx, errors_tx));
    let refused = bounded(errors.recv()).await.unwrap();
    assert!(refused.contains("401"), "{refused}");
    assert_eq!(bounded(greetings.recv()).await.unwrap(), "2", "the second attempt, with a fresh token");
    assert_eq!(bounded(greetings.recv()).await.unwrap(), "3", "the reconnect after 1012, with another");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    client.close(CloseCode::NORMAL, "").await.unwrap();
}
