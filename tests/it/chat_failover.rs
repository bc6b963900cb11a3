//! The test that matters for the hub: chat clients behind HAProxy, on two chat processes
//! (axum and actix-web) sharing one Redis. While the clients talk, one process is killed,
//! or Redis restarts; the clients reconnect (through HAProxy, to whoever is there),
//! recover what they missed and send again what was not acknowledged. Every client must
//! end with the same messages in the same order: none lost, none twice. The clients are
//! Chromium pages (the chat's own page), or Rust clients built on the reconnecting
//! client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::haproxy::Haproxy;
use common::redis_server::RedisServer;
use common::{EchoProcess, TempDir, free_addr};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsdriver::client::{ClientBuilder, Reconnect, ReconnectHandle};
use wsdriver::{CloseCode, Connection, Handler, Message};

const CLIENTS: usize = 4;
const MESSAGES: usize = 60;
const INTERVAL: Duration = Duration::from_millis(40);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Disruption {
    KillNode,
    RestartRedis,
}

#[test]
#[ignore = "needs Chromium, redis-server and haproxy (interop/install.sh)"]
fn pages_lose_nothing_when_a_chat_process_is_killed() {
    pages(Disruption::KillNode);
}

#[test]
#[ignore = "needs Chromium, redis-server and haproxy (interop/install.sh)"]
fn pages_lose_nothing_when_redis_restarts() {
    pages(Disruption::RestartRedis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server and haproxy (interop/install.sh)"]
async fn rust_clients_lose_nothing_when_a_chat_process_is_killed() {
    rust_clients().await;
}

/// Redis (append-only, on disk: a restart keeps what it acknowledged), the two chat
/// processes and HAProxy in front of them.
struct Cluster {
    redis: Option<RedisServer>,
    redis_port: u16,
    data: TempDir,
    axum: EchoProcess,
    _actix: EchoProcess,
    a: SocketAddr,
    b: SocketAddr,
    proxy: Haproxy,
}

impl Cluster {
    fn start() -> Self {
        let data = TempDir::new("failover-redis");
        let redis_port = free_addr().port();
        let redis = RedisServer::start_persistent(redis_port, &data.0);
        let url = redis.url();
        let (a, b) = (free_addr(), free_addr());
        // The members of a process that dies leave the rooms' counts within about a second.
        let args = ["--redis", &url, "--presence-ttl", "1"];
        let axum = EchoProcess::start_example_with("chat", a, &args);
        let actix = EchoProcess::start_example_with("chat_actix", b, &args);
        let proxy = Haproxy::start(&[a, b]);
        Self { redis: Some(redis), redis_port, data, axum, _actix: actix, a, b, proxy }
    }

    fn restart_redis(&mut self, while_down: impl FnOnce()) {
        drop(self.redis.take());
        while_down();
        self.redis = Some(RedisServer::start_persistent(self.redis_port, &self.data.0));
    }
}

/// What one client ended with.
#[derive(Debug)]
struct Outcome {
    client: String,
    said: usize,
    pending: usize,
    refused: usize,
    here: usize,
    servers: Vec<String>,
    notices: usize,
    /// What it showed, in order: (sender, message number).
    shown: Vec<(String, u64)>,
}

fn parse_id(id: &str) -> (String, u64) {
    let (client, n) = id.rsplit_once('-').expect("an id is CLIENT-N");
    (client.to_owned(), n.parse().unwrap())
}

/// Every client said everything, had it acknowledged, recovered every time, counts every
/// client in the room, and shows the same sequence as the others: every message once,
/// each sender's in order.
fn check(outcomes: &[Outcome], cluster: &Cluster, disruption: Disruption) {
    let report = outcomes
        .iter()
        .map(|o| {
            format!(
                "{} said {}, {} pending, {} refused, {} here, servers {:?}, {} notices, shown {}",
                o.client,
                o.said,
                o.pending,
                o.refused,
                o.here,
                o.servers,
                o.notices,
                o.shown.len()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    for outcome in outcomes {
        assert_eq!(outcome.said, MESSAGES, "every client said everything:\n{report}");
        assert_eq!(outcome.pending, 0, "every message acknowledged:\n{report}");
        assert_eq!(outcome.notices, 0, "every client recovered every time:\n{report}");
        assert_eq!(outcome.here, CLIENTS, "every client counts everyone in the room, and no one else:\n{report}");
    }
    let first = &outcomes[0].shown;
    assert_eq!(first.len(), CLIENTS * MESSAGES, "none lost, none twice:\n{report}");
    let distinct: HashSet<&(String, u64)> = first.iter().collect();
    assert_eq!(distinct.len(), first.len(), "nothing shown twice:\n{report}");
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (client, n) in first {
        let before = last.insert(client, *n).unwrap_or(0);
        assert_eq!(*n, before + 1, "{client}'s messages in the order they were said");
    }
    for (index, other) in outcomes.iter().enumerate().skip(1) {
        assert!(&other.shown == first, "client {index} shows another sequence than client 0:\n{report}");
    }
    let (a, b) = (cluster.a.to_string(), cluster.b.to_string());
    let on_a = outcomes.iter().filter(|o| o.servers[0] == a).count();
    assert!(on_a > 0 && on_a < outcomes.len(), "clients on both processes:\n{report}");
    if disruption == Disruption::KillNode {
        let moved = outcomes.iter().filter(|o| o.servers[0] == a && o.servers.contains(&b)).count();
        assert_eq!(moved, on_a, "every client on the killed process went on through the other:\n{report}");
    }
    println!("{report}");
}

fn pages(disruption: Disruption) {
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop");
    assert!(
        interop.join("node_modules/playwright-core").exists() && Path::new("/usr/bin/chromium").exists(),
        "playwright-core or chromium missing: run interop/install.sh (scripts/test-all does)"
    );
    let mut cluster = Cluster::start();
    let mut node = Command::new("node")
        .arg(interop.join("chat_failover.js"))
        .arg(format!("http://{}/", cluster.proxy.addr))
        .args([CLIENTS.to_string(), MESSAGES.to_string(), INTERVAL.as_millis().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines().map_while(Result::ok);
    let mut next = |prefix: &str| -> String {
        let line = lines.find(|line| line.starts_with(prefix)).unwrap_or_else(|| panic!("the pages never said {prefix}"));
        line[prefix.len()..].trim().to_owned()
    };

    next("JOINED");
    next("HALF");
    match disruption {
        Disruption::KillNode => cluster.axum.kill(),
        // Down until the pages noticed: a server could not send one of their messages.
        Disruption::RestartRedis => cluster.restart_redis(|| drop(next("REFUSED"))),
    }
    let result: Vec<serde_json::Value> = serde_json::from_str(&next("RESULT")).unwrap();
    assert!(node.wait().unwrap().success());

    let count = |value: &serde_json::Value| value.as_u64().unwrap() as usize;
    let outcomes: Vec<Outcome> = result
        .iter()
        .map(|page| Outcome {
            client: page["client"].as_str().unwrap().to_owned(),
            said: count(&page["said"]),
            pending: count(&page["pending"]),
            refused: count(&page["refused"]),
            here: count(&page["here"]),
            servers: page["servers"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
            notices: page["notices"].as_array().unwrap().len(),
            shown: page["ids"].as_array().unwrap().iter().map(|id| parse_id(id.as_str().expect("every message has an id"))).collect(),
        })
        .collect();
    check(&outcomes, &cluster, disruption);
}

/// A chat client in Rust, as the page is in JavaScript: it joins from the last position
/// it saw, keeps what it said until it is acknowledged and sends it again, under the same
/// id, after reconnecting.
#[derive(Default)]
struct ChatState {
    name: String,
    position: Option<String>,
    in_room: bool,
    in_flight: bool,
    pending: VecDeque<(String, String)>,
    said: usize,
    refused: usize,
    here: usize,
    servers: Vec<String>,
    notices: usize,
    shown: Vec<String>,
}

#[derive(Clone)]
struct ChatClient(Arc<Mutex<ChatState>>);

impl ChatClient {
    fn state(&self) -> std::sync::MutexGuard<'_, ChatState> {
        self.0.lock().unwrap()
    }

    /// Sends the oldest message not acknowledged, if none is on its way.
    fn send_next(&self, ws: &Connection) {
        let mut state = self.state();
        if state.in_flight || !state.in_room {
            return;
        }
        let Some((id, text)) = state.pending.front().cloned() else { return };
        let say = serde_json::json!({ "type": "say", "id": id, "text": text });
        state.in_flight = ws.try_send(Message::text(say.to_string())).is_ok();
    }

    fn say(&self, ws: &Connection) {
        {
            let mut state = self.state();
            state.said += 1;
            let id = format!("{}-{}", state.name, state.said);
            let text = format!("message {}", state.said);
            state.pending.push_back((id, text));
        }
        self.send_next(ws);
    }
}

impl Handler for ChatClient {
    async fn on_open(&mut self, ws: &Connection) {
        let join = {
            let state = self.state();
            serde_json::json!({ "type": "join", "room": "failover", "name": state.name, "since": state.position })
        };
        let _ = ws.send_text(join.to_string()).await;
    }

    async fn on_message(&mut self, ws: &Connection, message: Message) {
        let Some(text) = message.as_text() else { return };
        let event: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut state = self.state();
        match event["type"].as_str() {
            Some("joined") => {
                let recovered = event["recovered"].as_bool() == Some(true);
                if state.position.is_some() && !recovered {
                    state.notices += 1;
                }
                if !recovered || state.position.is_none() {
                    state.position = event["position"].as_str().map(str::to_owned);
                }
                state.servers.push(event["server"].as_str().unwrap().to_owned());
                state.in_room = true;
            }
            Some("message") => {
                state.position = event["position"].as_str().map(str::to_owned);
                state.shown.push(event["id"].as_str().expect("every message has an id").to_owned());
            }
            Some("ack") => {
                if state.pending.front().is_some_and(|(id, _)| event["id"] == *id) {
                    state.pending.pop_front();
                }
                state.in_flight = false;
            }
            Some("presence") => state.here = event["here"].as_u64().unwrap() as usize,
            Some("error") if event["id"].is_string() => {
                state.refused += 1;
                state.in_flight = false;
            }
            _ => {}
        }
        drop(state);
        self.send_next(ws);
    }

    async fn on_close(&mut self, _ws: &Connection, _code: CloseCode, _reason: &str) {
        let mut state = self.state();
        state.in_room = false;
        state.in_flight = false;
    }
}

async fn rust_clients() {
    let mut cluster = Cluster::start();
    let url = format!("ws://{}/ws", cluster.proxy.addr);
    let mut clients: Vec<(ChatClient, ReconnectHandle)> = Vec::new();
    for n in 0..CLIENTS {
        let client = ChatClient(Arc::new(Mutex::new(ChatState { name: format!("rust{n}"), ..ChatState::default() })));
        let handle = ClientBuilder::new(&url)
            .reconnecting(Reconnect::default().delays(Duration::from_millis(100), Duration::from_secs(1)))
            .serve(client.clone());
        clients.push((client, handle));
    }
    let joined = |clients: &[(ChatClient, ReconnectHandle)]| clients.iter().all(|(c, _)| c.state().in_room);
    wait_until("every client joined", || joined(&clients)).await;

    // Each client says MESSAGES things, one every INTERVAL, whatever happens meanwhile; a
    // message refused (Redis was unreachable) goes again on the next tick.
    let mut ticker = tokio::time::interval(INTERVAL);
    let mut killed = false;
    let started = Instant::now();
    loop {
        ticker.tick().await;
        for (client, handle) in &clients {
            if client.state().said < MESSAGES {
                client.say(&handle.connection());
            }
            client.send_next(&handle.connection());
        }
        let acknowledged: usize = clients
            .iter()
            .map(|(c, _)| {
                let state = c.state();
                state.said - state.pending.len()
            })
            .sum();
        if !killed && acknowledged >= CLIENTS * MESSAGES / 2 {
            cluster.axum.kill();
            killed = true;
        }
        let done = clients.iter().all(|(c, _)| {
            let state = c.state();
            state.said == MESSAGES && state.pending.is_empty() && state.shown.len() >= CLIENTS * MESSAGES && state.here == CLIENTS
        });
        if done || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    assert!(killed, "the process was killed mid-conversation");
    let outcomes: Vec<Outcome> = clients
        .iter()
        .map(|(client, _)| {
            let state = client.state();
            Outcome {
                client: state.name.clone(),
                said: state.said,
                pending: state.pending.len(),
                refused: state.refused,
                here: state.here,
                servers: state.servers.clone(),
                notices: state.notices,
                shown: state.shown.iter().map(|id| parse_id(id)).collect(),
            }
        })
        .collect();
    check(&outcomes, &cluster, Disruption::KillNode);
    for (_, handle) in clients {
        let _ = handle.close(CloseCode::NORMAL, "").await;
    }
}

/// Waits, polling `condition` (bounded), until it holds.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling the clients' state, bounded
    }
}
