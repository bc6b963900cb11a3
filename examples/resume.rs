//! Error recovery: a client that reconnects and resumes where it left off, without losing
//! or repeating an event.
//!
//! The server publishes a numbered event every 2 ms and keeps the last 1,000. A client
//! opens with `resume N` (the last number it saw) and gets every later event still kept,
//! then the live ones; one that asks for more than is kept is sent `reset` first, as a
//! real application would reload its state. To show recovery, the server restarts each
//! connection after `--restart-every` events (close code 1012, Service Restart), as a
//! deploy or a proxy would.
//!
//! The client is the reconnecting client: backoff with jitter between attempts, `on_open`
//! after every reconnection (where it sends `resume`), duplicates dropped by number. It
//! stops once it has seen `--count` events and prints what it saw; the exit status is 1
//! if an event was missing or out of order.
//!
//! `cargo run --example resume -- [ADDR] [--count 500] [--restart-every 60]`
//! (default `127.0.0.1:9001`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use wsdriver::client::{ClientBuilder, Reconnect};
use wsdriver::{CloseCode, Connection, Handler, Message, Server};

const KEPT: usize = 1_000;

/// The server's feed: the events still kept, and the live ones.
struct Feed {
    kept: Mutex<VecDeque<(u64, String)>>,
    live: broadcast::Sender<(u64, String)>,
}

impl Feed {
    fn publish(&self, seq: u64) {
        let event = (seq, format!("{seq} event number {seq}"));
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(event.clone());
        // Published under the lock, so a subscriber that reads `kept` under it too sees
        // every event exactly once, in one place or the other.
        let _ = self.live.send(event);
    }
}

/// One server connection: waits for `resume N`, then sends from N + 1 on.
struct Subscriber {
    feed: Arc<Feed>,
    restart_every: u64,
    started: bool,
}

impl Handler for Subscriber {
    async fn on_message(&mut self, ws: &Connection, message: Message) {
        let Some(since) = message.as_text().and_then(|t| t.strip_prefix("resume ")).and_then(|n| n.parse::<u64>().ok()) else {
            let _ = ws.close(CloseCode::POLICY_VIOLATION, "expected: resume N");
            return;
        };
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        // Subscribe and copy what is kept under one lock: nothing falls between the two.
        let (backlog, mut live, reset) = {
            let kept = self.feed.kept.lock().unwrap_or_else(|e| e.into_inner());
            let oldest = kept.front().map_or(since + 1, |(seq, _)| *seq);
            let backlog: Vec<_> = kept.iter().filter(|(seq, _)| *seq > since).cloned().collect();
            (backlog, self.feed.live.subscribe(), oldest > since + 1)
        };
        let (ws, restart_every) = (ws.clone(), self.restart_every);
        tokio::spawn(async move {
            if reset {
                let _ = ws.send_text("reset").await;
            }
            let mut sent = 0;
            for (_, text) in backlog {
                if !deliver(&ws, text, &mut sent, restart_every).await {
                    return;
                }
            }
            loop {
                match live.recv().await {
                    Ok((_, text)) => {
                        if !deliver(&ws, text, &mut sent, restart_every).await {
                            return;
                        }
                    }
                    // Too slow for the live feed: let the client come back and resume.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = ws.close(CloseCode::TRY_AGAIN_LATER, "fell behind");
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

/// Sends one event, and restarts the connection after `restart_every` of them: false once
/// the connection is gone or restarted.
async fn deliver(ws: &Connection, text: String, sent: &mut u64, restart_every: u64) -> bool {
    if ws.send_text(text).await.is_err() {
        return false;
    }
    *sent += 1;
    if *sent == restart_every {
        let _ = ws.close(CloseCode::SERVICE_RESTART, "restarting");
        return false;
    }
    true
}

/// What the client has seen.
#[derive(Default, Debug)]
struct Seen {
    last: u64,
    opens: u32,
    duplicates: u64,
    resets: u32,
    errors: Vec<String>,
}

/// The client's handler: resumes on every open, checks the numbers.
struct Resumer {
    seen: Arc<Mutex<Seen>>,
    progress: watch::Sender<u64>,
}

impl Handler for Resumer {
    async fn on_open(&mut self, ws: &Connection) {
        let last = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.opens += 1;
            seen.last
        };
        let _ = ws.send_text(format!("resume {last}")).await;
    }

    async fn on_message(&mut self, _ws: &Connection, message: Message) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Some(text) = message.as_text() else { return };
        if text == "reset" {
            seen.resets += 1;
            let error = format!("history no longer reaches back to {}", seen.last);
            seen.errors.push(error);
            return;
        }
        let Some(seq) = text.split(' ').next().and_then(|n| n.parse::<u64>().ok()) else { return };
        if seq <= seen.last {
            seen.duplicates += 1;
        } else {
            if seq != seen.last + 1 {
                let error = format!("missed {} to {}", seen.last + 1, seq - 1);
                seen.errors.push(error);
            }
            seen.last = seq;
            let _ = self.progress.send(seq);
        }
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).filter(|a| !a.starts_with("--")).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let (count, restart_every) = (arg("--count", 500), arg("--restart-every", 60).max(1));

    let feed = Arc::new(Feed { kept: Mutex::new(VecDeque::with_capacity(KEPT)), live: broadcast::channel(KEPT).0 });
    let server = Server::bind(addr.as_str()).await?;
    let url = format!("ws://{}/feed", server.local_addr()?);
    let serving = Arc::clone(&feed);
    tokio::spawn(server.serve(move |_| Subscriber { feed: Arc::clone(&serving), restart_every, started: false }));
    let publishing = Arc::clone(&feed);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        for seq in 1.. {
            tick.tick().await;
            publishing.publish(seq);
        }
    });

    let seen = Arc::new(Mutex::new(Seen::default()));
    let (progress, mut watching) = watch::channel(0);
    let policy = Reconnect::default().delays(Duration::from_millis(20), Duration::from_secs(1)).reset_after(Duration::from_millis(100));
    let client = ClientBuilder::new(&url).reconnecting(policy).serve(Resumer { seen: Arc::clone(&seen), progress });
    // (The borrow `wait_for` returns is dropped at once: holding it would block the
    // handler's next `send` on the channel.)
    let reached = matches!(tokio::time::timeout(Duration::from_secs(60), watching.wait_for(|last| *last >= count)).await, Ok(Ok(_)));
    let _ = client.close(CloseCode::NORMAL, "done").await;

    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "received events 1 to {} over {} connections ({} reconnections), {} duplicates dropped, {} resets",
        seen.last,
        seen.opens,
        seen.opens.saturating_sub(1),
        seen.duplicates,
        seen.resets
    );
    for error in &seen.errors {
        println!("error: {error}");
    }
    let complete = reached && seen.errors.is_empty();
    std::process::exit(if complete { 0 } else { 1 })
}
