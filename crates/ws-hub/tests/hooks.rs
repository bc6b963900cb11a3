//! The hub's hooks: who may connect, join and publish, and what is published.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{member, next_text};
use std::time::Duration;
use tokio::io::DuplexStream;
use ws_core::{CloseCode, Config, Message, Role, WebSocket};
use ws_hub::{ConnectRequest, Hub, HubError, JoinRequest, Position, PublishRequest, Refusal};

/// A connection's server side (its reader running) and its client.
fn open() -> (ws_core::Connection, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 << 10);
    let server = WebSocket::from_raw(a, Role::Server, &Config::default());
    let connection = server.connection();
    tokio::spawn(async move {
        let mut server = server;
        while server.recv().await.is_some() {}
    });
    (connection, WebSocket::from_raw(b, Role::Client, &Config::default()))
}

/// What the client sees last: its connection's close code and reason.
async fn closed_with(client: &mut WebSocket<DuplexStream>) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), client.recv()).await.expect("timed out") {
            Some(Ok(Message::Close(Some(frame)))) => return (u16::from(frame.code), frame.reason.to_string()),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
}

fn guarded() -> Hub {
    Hub::builder()
        .on_connect(|request: ConnectRequest| async move {
            let cookie = request.headers.get(http::header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            match cookie.strip_prefix("session=") {
                Some(user) if !user.is_empty() => Ok(user.to_owned().into()),
                _ if request.uri.query() == Some("guest") => Err(Refusal::error("guests may look, not connect")),
                _ => Err(Refusal::close(CloseCode::from(4001), "unauthorized")),
            }
        })
        .on_join(|request: JoinRequest| async move {
            if request.room.starts_with("staff") && request.who.info != "boss" {
                return Err(Refusal::error(format!("{} may not join {}", String::from_utf8_lossy(&request.who.info), request.room)));
            }
            if request.room == "forbidden" {
                return Err(Refusal::close(CloseCode::POLICY_VIOLATION, "no such room"));
            }
            Ok(())
        })
        .on_publish(|request: PublishRequest| async move {
            let who = String::from_utf8_lossy(&request.who.info).into_owned();
            match request.message.as_text() {
                Some(text) if text.contains("spam") => Err(Refusal::close(CloseCode::POLICY_VIOLATION, "spam")),
                Some(text) if text.trim().is_empty() => Err(Refusal::error("say something")),
                Some(text) => Ok(Message::text(format!("{who}: {}", text.trim()))),
                None => Err(Refusal::error("text only")),
            }
        })
        .build()
}

fn request(cookie: Option<&str>, uri: &str) -> http::Request<()> {
    let mut request = http::Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header(http::header::COOKIE, cookie);
    }
    request.body(()).unwrap()
}

#[tokio::test]
async fn the_connect_hook_decides_who_is_a_member_and_what_it_says_about_itself() {
    let hub = guarded();
    let (connection, _client) = open();
    let alice = hub.connect(connection, &request(Some("session=alice"), "/chat")).await.unwrap();
    alice.join("lobby");
    assert_eq!(hub.presence("lobby").await.unwrap()[0].info, "alice", "the hook's answer is the member's info");

    let (connection, mut client) = open();
    let refused = hub.connect(connection, &request(None, "/chat")).await;
    assert!(matches!(&refused, Err(HubError::Refused(r)) if r.code() == Some(CloseCode::from(4001))), "{refused:?}");
    assert_eq!(closed_with(&mut client).await, (4001, "unauthorized".to_owned()), "closed with the refusal's code");

    let (connection, _client) = open();
    let refused = hub.connect(connection.clone(), &request(None, "/chat?guest")).await;
    assert!(matches!(&refused, Err(HubError::Refused(r)) if r.code().is_none() && r.reason() == "guests may look, not connect"));
    assert_eq!(connection.ready_state(), ws_core::ReadyState::Open, "an error refusal leaves the connection open");
    assert_eq!(hub.len(), 1, "only Alice is a member");
}

#[tokio::test]
async fn the_join_hook_guards_rooms_a_member_asks_for() {
    let hub = guarded();
    let (connection, mut client) = open();
    let bob = hub.connect(connection.clone(), &request(Some("session=bob"), "/")).await.unwrap();
    let refused = bob.join_from("staff-room", Position::default()).await;
    assert!(matches!(&refused, Err(HubError::Refused(r)) if r.reason() == "bob may not join staff-room"), "{refused:?}");
    assert_eq!(hub.local_presence("staff-room"), 0);
    assert!(bob.join_from("lobby", Position::default()).await.is_ok());
    bob.join("staff-room");
    assert_eq!(hub.local_presence("staff-room"), 1, "the server's own join asks no one");

    let refused = bob.join_from("forbidden", Position::default()).await;
    assert!(matches!(refused, Err(HubError::Refused(_))));
    assert_eq!(closed_with(&mut client).await, (1008, "no such room".to_owned()));
}

#[tokio::test]
async fn the_publish_hook_rewrites_or_refuses_what_members_publish() {
    let hub = guarded();
    let (connection, _client) = open();
    let carol = hub.connect(connection, &request(Some("session=carol"), "/")).await.unwrap();
    let (reader, mut r) = member(&hub);
    reader.join("lobby");

    let position = carol.publish("lobby", "  hello  ").await.unwrap();
    assert_eq!(next_text(&mut r).await, "carol: hello", "what the hook returned is published");
    let refused = carol.publish("lobby", "   ").await;
    assert!(matches!(&refused, Err(HubError::Refused(r)) if r.reason() == "say something"));
    assert!(matches!(carol.publish_others("lobby", vec![1u8]).await, Err(HubError::Refused(_))));
    hub.publish("lobby", "the server's own").await.unwrap();
    assert_eq!(next_text(&mut r).await, "the server's own", "nothing refused was published, the hub's own asks no one");
    assert_eq!(carol.publish_once("lobby", "k", "once").await.unwrap().offset, position.offset + 2);
    assert_eq!(next_text(&mut r).await, "carol: once");
}

#[tokio::test]
async fn a_publish_refusal_with_a_code_closes_the_publisher() {
    let hub = guarded();
    let (connection, mut client) = open();
    let dave = hub.connect(connection, &request(Some("session=dave"), "/")).await.unwrap();
    assert!(matches!(dave.publish("lobby", "buy spam").await, Err(HubError::Refused(_))));
    assert_eq!(closed_with(&mut client).await, (1008, "spam".to_owned()));
}
