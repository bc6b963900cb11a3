//! The chat example: in-process rooms over our own client, and the browser test (two
//! Chromium pages on two chat processes, one on axum and one on actix-web, joined through
//! a real Redis).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::redis_server::RedisServer;
use common::{EchoProcess, bounded, free_addr};
use std::path::Path;
use std::process::Command;
use wsdriver::Message;
use wsdriver::client::ClientStream;

type Client = wsdriver::WebSocket<ClientStream>;

/// Joins the lobby; returns the connection and how many are in the lobby now, as the
/// announcement of its own arrival (to the room, itself included) says; it may come
/// before or after `joined`.
async fn join(addr: std::net::SocketAddr, name: &str) -> (Client, u64) {
    let (mut ws, _) = bounded(wsdriver::client::connect(format!("ws://{addr}/ws"))).await.unwrap();
    ws.send(Message::text(format!(r#"{{"type":"join","room":"lobby","name":"{name}"}}"#))).await.unwrap();
    let (mut joined, mut here) = (false, None);
    while !joined || here.is_none() {
        let event = next_json(&mut ws).await;
        match event["type"].as_str() {
            Some("joined") => {
                assert_eq!(event["name"].as_str(), Some(name));
                joined = true;
            }
            Some("presence") if event["name"] == name && event["event"] == "join" => here = event["here"].as_u64(),
            _ => {}
        }
    }
    (ws, here.unwrap())
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
    let (mut alice, here) = join(addr, "alice").await;
    assert_eq!(here, 1);
    let (mut bob, here) = join(addr, "bob").await;
    assert_eq!(here, 2);
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

/// The chat's `/metrics`, scraped after a scripted session: each count is what the session
/// did, by adapter, close code, error kind and status.
#[tokio::test]
async fn metrics_count_a_scripted_session() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = free_addr();
    let _chat = EchoProcess::start_example("chat", addr);

    // Refused: a plain GET on the WebSocket's route.
    let refused = common::raw_request(addr, b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let status = refused.split(' ').nth(1).unwrap().to_owned();
    assert!(status.starts_with('4'), "{refused}");

    // Two members talk, then close with two codes. Every frame either way is tallied: the
    // clients' (masked, all under 126 bytes) and the server's text frames as read.
    let mut client_bytes = 0;
    let mut tally = Tally::default();
    let mut members = Vec::new();
    for name in ["alice", "bob"] {
        let (mut ws, _) = bounded(wsdriver::client::connect(format!("ws://{addr}/ws"))).await.unwrap();
        let join = format!(r#"{{"type":"join","room":"lobby","name":"{name}"}}"#);
        client_bytes += 6 + join.len();
        ws.send(Message::text(join)).await.unwrap();
        tally.until(&mut ws, "joined").await;
        members.push(ws);
    }
    let say = r#"{"type":"say","text":"hello"}"#;
    client_bytes += 6 + say.len();
    members[1].send(Message::text(say)).await.unwrap();
    tally.until(&mut members[0], "message").await;
    for (index, code, reason) in [(1, 1000, ""), (0, 4000, "bye")] {
        client_bytes += 6 + 2 + reason.len();
        members[index].close(wsdriver::CloseCode::from(code), reason).await.unwrap();
        tally.until_closed(&mut members[index]).await;
    }

    // A protocol violation (text that is not UTF-8: 1007), and a client that vanishes.
    let handshake = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut bad = tokio::net::TcpStream::connect(addr).await.unwrap();
    bad.write_all(handshake).await.unwrap();
    bad.write_all(&common::client_frame(wsdriver::frame::OpCode::Text, true, &[0xff, 0xfe])).await.unwrap();
    client_bytes += 6 + 2;
    let mut answer = Vec::new();
    bounded(bad.read_to_end(&mut answer)).await.unwrap();
    assert!(answer.windows(2).any(|w| w == [0x03, 0xef]), "no 1007 in the answer"); // 1007 = 0x03ef
    let mut gone = tokio::net::TcpStream::connect(addr).await.unwrap();
    gone.write_all(handshake).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(bounded(gone.read_u8()).await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    drop(gone); // all read: a FIN, not a reset, and no Close frame

    // The counts are final once the server has ended every connection: a client may see
    // its end (the close handshake done) before the server has finished its side.
    let over = |m: &Metrics| {
        m.value("wsdriver_connections_open", &[]) == Some(0.0)
            && m.value("wsdriver_connections_closed_total", &[("code", "1006")]) == Some(1.0)
    };
    let metrics = scrape_until(addr, over).await;
    let count = |name: &str, labels: &[(&str, &str)]| {
        metrics.value(name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing:\n{}", metrics.0))
    };
    assert_eq!(count("wsdriver_handshakes_rejected_total", &[("status", &status)]), 1.0);
    assert_eq!(count("wsdriver_connections_opened_total", &[]), 4.0);
    for code in ["1000", "4000", "1007", "1006"] {
        assert_eq!(count("wsdriver_connections_closed_total", &[("code", code)]), 1.0, "code {code}");
    }
    assert_eq!(count("wsdriver_errors_total", &[("kind", "protocol")]), 1.0);
    assert_eq!(count("wsdriver_errors_total", &[("kind", "reset")]), 1.0);
    assert_eq!(count("wsdriver_messages_received_total", &[]), 3.0);
    assert_eq!(count("wsdriver_messages_sent_total", &[]), tally.messages as f64);
    assert_eq!(count("wsdriver_bytes_received_total", &[]), client_bytes as f64);
    // What the server wrote: the text frames the clients read, and its three Close frames
    // (each a code and at most a 123-byte reason).
    let sent = count("wsdriver_bytes_sent_total", &[]) as usize;
    assert!((tally.bytes + 3 * 4..=tally.bytes + 3 * 127).contains(&sent), "{sent} bytes sent, {} read as text", tally.bytes);
    assert_eq!(count("wsdriver_buffered_bytes", &[]), 0.0);
    assert_eq!(count("wsdriver_handshake_duration_seconds_count", &[]), 4.0);
}

/// The text messages the clients read, and the bytes of their frames.
#[derive(Default)]
struct Tally {
    messages: usize,
    bytes: usize,
}

impl Tally {
    async fn next(&mut self, ws: &mut Client) -> Option<serde_json::Value> {
        while let Some(message) = bounded(ws.recv()).await {
            if let Message::Text(text) = message.unwrap() {
                self.messages += 1;
                self.bytes += text.len() + if text.len() < 126 { 2 } else { 4 };
                return Some(serde_json::from_str(&text).unwrap());
            }
        }
        None
    }

    /// Reads up to the first event of `kind`.
    async fn until(&mut self, ws: &mut Client, kind: &str) {
        while self.next(ws).await.expect("the connection ended")["type"] != kind {}
    }

    /// Reads to the end of the connection.
    async fn until_closed(&mut self, ws: &mut Client) {
        while self.next(ws).await.is_some() {}
    }
}

/// A Prometheus text exposition.
struct Metrics(String);

impl Metrics {
    /// The value of `name` with the axum adapter's label and exactly `labels` besides.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        want.push("adapter=\"axum\"".into());
        want.sort();
        self.0.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').map_or((series, ""), |(m, l)| (m, l.trim_end_matches('}')));
            let mut have: Vec<String> = labels.split(',').filter(|l| !l.is_empty()).map(str::to_owned).collect();
            have.sort();
            (metric == name && have == want).then(|| value.parse().ok())?
        })
    }
}

/// Scrapes `/metrics` until `done` holds (the server finishes a connection in its own
/// time after the client's side ended), for at most 10 s.
async fn scrape_until(addr: std::net::SocketAddr, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let start = std::time::Instant::now();
    loop {
        let answer = common::raw_request(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        let metrics = Metrics(answer.split_once("\r\n\r\n").map_or(String::new(), |(_, body)| body.to_owned()));
        if done(&metrics) {
            return metrics;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "metrics never settled:\n{}", metrics.0);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // polling the server's state, bounded
    }
}
