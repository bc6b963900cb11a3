//! The chat example: in-process rooms over our own client, and the browser test (two
//! Chromium pages on two chat processes, one on axum and one on actix-web, joined through
//! a real Redis).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::redis_server::RedisServer;
use common::{EchoProcess, bounded, free_addr};
use std::path::Path;
use std::process::Command;
use wsdriver::Message;
use wsdriver::client::ClientStream;

type Client = wsdriver::WebSocket<ClientStream>;

async fn join(addr: std::net::SocketAddr, name: &str) -> Client {
    let (mut ws, _) = bounded(wsdriver::client::connect(format!("ws://{addr}/ws"))).await.unwrap();
    ws.send(Message::text(format!(r#"{{"type":"join","room":"lobby","name":"{name}"}}"#))).await.unwrap();
    let joined = next_json(&mut ws).await;
    assert_eq!((joined["type"].as_str(), joined["name"].as_str()), (Some("joined"), Some(name)));
    ws
}

async fn next_json(ws: &mut Client) -> serde_json::Value {
    let message = bounded(ws.recv()).await.unwrap().unwrap();
    serde_json::from_str(message.as_text().expect("text")).unwrap()
}

/// The next event of `kind`, skipping others (presence notices arrive as people join).
async fn next_of(ws: &mut Client, kind: &str) -> serde_json::Value {
    loop {
        let event = next_json(ws).await;
        if event["type"] == kind {
            return event;
        }
    }
}

#[tokio::test]
async fn chat_rooms_in_process() {
    let addr = free_addr();
    let _chat = EchoProcess::start_example("chat", addr);
    let mut alice = join(addr, "alice").await;
    let presence = next_of(&mut alice, "presence").await;
    assert_eq!((presence["name"].as_str(), presence["here"].as_u64()), (Some("alice"), Some(1)));
    let mut bob = join(addr, "bob").await;
    let presence = next_of(&mut alice, "presence").await;
    assert_eq!((presence["name"].as_str(), presence["event"].as_str(), presence["here"].as_u64()), (Some("bob"), Some("join"), Some(2)));

    bob.send(Message::text(r#"{"type":"say","text":"hi \"alice\" <b>"}"#)).await.unwrap();
    for ws in [&mut alice, &mut bob] {
        let said = next_of(ws, "message").await;
        assert_eq!((said["name"].as_str(), said["text"].as_str()), (Some("bob"), Some("hi \"alice\" <b>")));
    }

    // Bad input gets an error event, not a dropped connection.
    alice.send(Message::text("not json")).await.unwrap();
    assert_eq!(next_of(&mut alice, "error").await["type"], "error");
    alice.send(Message::text(format!(r#"{{"type":"say","text":"{}"}}"#, "x".repeat(2001)))).await.unwrap();
    assert_eq!(next_of(&mut alice, "error").await["type"], "error");

    bob.close(wsdriver::CloseCode::NORMAL, "").await.unwrap();
    let left = next_of(&mut alice, "presence").await;
    assert_eq!((left["name"].as_str(), left["event"].as_str(), left["here"].as_u64()), (Some("bob"), Some("leave"), Some(1)));
}

#[test]
#[ignore = "needs Chromium and redis-server (interop/install.sh)"]
fn two_browser_pages_on_two_servers_through_redis() {
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop");
    assert!(
        interop.join("node_modules/playwright-core").exists() && Path::new("/usr/bin/chromium").exists(),
        "playwright-core or chromium missing: run interop/install.sh (scripts/test-all does)"
    );
    let redis = RedisServer::start();
    let (a, b) = (free_addr(), free_addr());
    let _axum = EchoProcess::start_example_with("chat", a, &["--redis", &redis.url()]);
    let _actix = EchoProcess::start_example_with("chat_actix", b, &["--redis", &redis.url()]);
    let screenshot = common::example("chat").parent().unwrap().parent().unwrap().join("chat-browser.png");
    let _ = std::fs::remove_file(&screenshot);

    let output = Command::new("node")
        .arg(interop.join("chat_browser.js"))
        .args([format!("http://{a}/"), format!("http://{b}/"), screenshot.display().to_string()])
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("via {a}")) && stdout.contains(&format!("via {b}")), "each page on its own server:\n{stdout}");
    assert!(stdout.contains("bob sees: alice: hello from alice"), "{stdout}");
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot");
    println!("screenshot: {}", screenshot.display());
}
