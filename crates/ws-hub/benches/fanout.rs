//! Fan-out: one publisher, 10,000 subscribers in one process.
//!
//! Compares the hub (a broadcast encoded once; each subscriber's connection queues the
//! shared frame without waiting) with the usual approach: a `tokio::sync::broadcast`
//! channel, and a task per connection that receives each message and sends it with its
//! own socket, encoding its own frame. Both use the same driver and the same subscribers
//! (readers counting bytes), so the difference is the fan-out design.
//!
//! Each subscriber is joined to its server connection by an in-memory pipe with a 64 KiB
//! buffer (`tokio::io::duplex`), not TCP: 10,000 loopback connections need 20,000
//! descriptors in one process, more than machines commonly allow, and the kernel's share
//! would be the same for both approaches.
//!
//! The cross-process cell: one process publishes 64-byte messages through Redis (the
//! backplane numbers, keeps and publishes each), another delivers them to 1,000 members;
//! deliveries per second, and the latency from publish to receipt (each message carries the
//! time it was published; both processes read the same clock). It starts its own
//! `redis-server` on a loopback port (or uses `REDIS_URL`), and is skipped without one.
//!
//! `cargo bench -p ws-hub --bench fanout [-- --subscribers N --rounds R --json PATH]`; the
//! JSON (`benches/results/fanout.json`) is what `benches/charts.py` draws. One approach
//! and one payload alone, in this process (for callgrind): `--only hub|baseline
//! --payload 64`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails loudly

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::sync::{Notify, broadcast};
use ws_core::{Config, Message, Role, WebSocket};
use ws_hub::{Hub, RedisBackplane};

const PIPE_BUFFER: usize = 64 << 10;
const RING: usize = 1024;

/// (payload bytes, messages per run)
const WORKLOADS: [(usize, usize); 2] = [(64, 1000), (8192, 50)];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Approach {
    Hub,
    Baseline,
}

/// Bytes received by every subscriber together, and a wake-up once `target` is reached.
struct Received {
    bytes: AtomicU64,
    target: AtomicU64,
    done: Notify,
}

impl Received {
    fn add(&self, n: u64) {
        let before = self.bytes.fetch_add(n, Ordering::Relaxed);
        let target = self.target.load(Ordering::Relaxed);
        if before < target && before + n >= target {
            self.done.notify_one();
        }
    }
}

struct Setup {
    hub: Hub,
    baseline: broadcast::Sender<Bytes>,
    received: Arc<Received>,
    /// Every subscriber and server task, kept for the process's lifetime.
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A subscriber's end: reads and counts bytes until the pipe closes.
fn subscriber(mut pipe: DuplexStream, received: Arc<Received>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            received.add(n as u64);
        }
    })
}

fn setup(approach: Approach, subscribers: usize) -> Setup {
    // The same ring size for both: neither may lag behind a 1000-message burst.
    let hub = Hub::builder().queue_capacity(RING).build();
    let (baseline, _) = broadcast::channel::<Bytes>(RING);
    let received = Arc::new(Received { bytes: AtomicU64::new(0), target: AtomicU64::new(u64::MAX), done: Notify::new() });
    let mut tasks = Vec::with_capacity(2 * subscribers);
    // A broadcast server's write buffers: 64 KiB each, for both approaches.
    let config = Config::default().write_buffer_high_water(64 << 10);
    for _ in 0..subscribers {
        let (server_end, client_end) = tokio::io::duplex(PIPE_BUFFER);
        tasks.push(subscriber(client_end, received.clone()));
        let mut ws = WebSocket::from_raw(server_end, Role::Server, &config);
        tasks.push(match approach {
            Approach::Hub => {
                let member = hub.register(ws.connection());
                member.join("room");
                tokio::spawn(async move {
                    let _member = member;
                    while ws.recv().await.is_some() {}
                })
            }
            Approach::Baseline => {
                let mut rx = baseline.subscribe();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            m = ws.recv() => if m.is_none() { break },
                            r = rx.recv() => match r {
                                Ok(payload) => if ws.send(Message::Binary(payload)).await.is_err() { break },
                                Err(broadcast::error::RecvError::Lagged(_)) => {}
                                Err(broadcast::error::RecvError::Closed) => break,
                            },
                        }
                    }
                })
            }
        });
    }
    Setup { hub, baseline, received, _tasks: tasks }
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// Resets the peak RSS (VmHWM) to the current RSS.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Publishes `count` messages of `size` bytes to every subscriber; returns the elapsed time
/// and the peak RSS growth (KiB) while it ran.
async fn run(setup: &Setup, approach: Approach, subscribers: usize, size: usize, count: usize) -> (Duration, u64) {
    let header = if size < 126 {
        2
    } else if size < 65536 {
        4
    } else {
        10
    };
    let per_run = (subscribers * count * (size + header)) as u64;
    let received = &setup.received;
    let start_bytes = received.bytes.load(Ordering::Relaxed);
    received.target.store(start_bytes + per_run, Ordering::Relaxed);
    reset_peak();
    let base = rss_kib("VmRSS:");
    let payload = Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    let done = received.done.notified();
    tokio::pin!(done);
    done.as_mut().enable();
    for _ in 0..count {
        match approach {
            Approach::Hub => {
                setup.hub.broadcast("room", payload.clone());
            }
            Approach::Baseline => {
                let _ = setup.baseline.send(payload.clone());
            }
        }
        tokio::task::yield_now().await;
    }
    if received.bytes.load(Ordering::Relaxed) < start_bytes + per_run {
        tokio::time::timeout(Duration::from_secs(120), done).await.expect("every subscriber received every message");
    }
    let elapsed = start.elapsed();
    (elapsed, rss_kib("VmHWM:").saturating_sub(base))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs one approach in this process and prints one `RESULT` line per workload.
fn child(approach: Approach, subscribers: usize, payload: Option<usize>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let before = rss_kib("VmRSS:");
        let setup = setup(approach, subscribers);
        tokio::task::yield_now().await;
        let per_subscriber = rss_kib("VmRSS:").saturating_sub(before) as f64 / subscribers as f64;
        for (size, count) in WORKLOADS.into_iter().filter(|(size, _)| payload.is_none_or(|p| p == *size)) {
            let (elapsed, peak) = run(&setup, approach, subscribers, size, count).await;
            let rate = (subscribers * count) as f64 / elapsed.as_secs_f64();
            println!("RESULT {size} {rate} {peak} {per_subscriber}");
        }
    });
}

/// The cross-process cell's size: members in the subscribing process, messages, payload.
const CROSS_SUBSCRIBERS: usize = 1000;
const CROSS_MESSAGES: usize = 1000;
const CROSS_PAYLOAD: usize = 64;

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn redis_hub(url: &str) -> (Hub, RedisBackplane) {
    let backplane = RedisBackplane::new(url).expect("a Redis URL").prefix("fanout:");
    (Hub::builder().queue_capacity(RING).backplane(backplane.clone()).build(), backplane)
}

/// The subscribing process: `CROSS_SUBSCRIBERS` members of the room, each read by a
/// client that records, for every message, the time from its publication to its receipt.
/// Prints `READY` once subscribed, then `RESULT deliveries/s p50 p99 max` (microseconds).
fn redis_subscribers(url: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (hub, backplane) = redis_hub(url);
        let latencies = Arc::new(std::sync::Mutex::new(hdrhistogram::Histogram::<u64>::new(3).expect("histogram")));
        let first_sent = Arc::new(AtomicU64::new(u64::MAX));
        let last_received = Arc::new(AtomicU64::new(0));
        let config = Config::default().write_buffer_high_water(64 << 10);
        let mut readers = Vec::with_capacity(CROSS_SUBSCRIBERS);
        let mut members = Vec::with_capacity(CROSS_SUBSCRIBERS);
        for _ in 0..CROSS_SUBSCRIBERS {
            let (server_end, client_end) = tokio::io::duplex(PIPE_BUFFER);
            let mut server = WebSocket::from_raw(server_end, Role::Server, &config);
            let member = hub.register(server.connection());
            member.join("room");
            members.push(member);
            tokio::spawn(async move { while server.recv().await.is_some() {} });
            let (latencies, first_sent, last_received) = (latencies.clone(), first_sent.clone(), last_received.clone());
            readers.push(tokio::spawn(async move {
                let mut client = WebSocket::from_raw(client_end, Role::Client, &Config::default());
                let mut mine = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
                for _ in 0..CROSS_MESSAGES {
                    let message = client.recv().await.expect("every message").expect("a message");
                    let now = now_ns();
                    let sent = u64::from_be_bytes(message.as_bytes()[..8].try_into().expect("a timestamp"));
                    mine.record(now.saturating_sub(sent) / 1000).expect("a latency");
                    first_sent.fetch_min(sent, Ordering::Relaxed);
                    last_received.fetch_max(now, Ordering::Relaxed);
                }
                latencies.lock().unwrap().add(&mine).expect("merge");
            }));
        }
        backplane.connected().await;
        println!("READY");
        for reader in readers {
            tokio::time::timeout(Duration::from_secs(120), reader).await.expect("every member received every message").unwrap();
        }
        let elapsed = (last_received.load(Ordering::Relaxed) - first_sent.load(Ordering::Relaxed)) as f64 / 1e9;
        let h = latencies.lock().unwrap();
        let rate = (CROSS_SUBSCRIBERS * CROSS_MESSAGES) as f64 / elapsed;
        println!("RESULT {rate} {} {} {}", h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max());
        drop(members);
    });
}

/// The publishing process: `CROSS_MESSAGES` messages as fast as the hub takes them, each
/// carrying the time it was published; returns once Redis has the last one.
fn redis_publisher(url: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (hub, backplane) = redis_hub(url);
        backplane.connected().await;
        for n in 0..CROSS_MESSAGES {
            let mut payload = vec![0u8; CROSS_PAYLOAD];
            payload[..8].copy_from_slice(&now_ns().to_be_bytes());
            payload[8..16].copy_from_slice(&(n as u64).to_be_bytes());
            if n + 1 < CROSS_MESSAGES {
                hub.broadcast("room", payload);
            } else {
                // Appended in order: once the last is in Redis, every one is.
                hub.publish("room", payload).await.expect("Redis took the last message");
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(backplane.dropped(), 0, "the backplane kept up");
    });
}

/// A `redis-server` of the bench's own, on a loopback port, killed when dropped.
struct OwnRedis(std::process::Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Redis the cross-process cell uses: `REDIS_URL`, or one started here.
fn redis() -> Option<(String, Option<OwnRedis>)> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Some((url, None));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let own = OwnRedis(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20)); // polling for the port, bounded
    }
    Some((format!("redis://127.0.0.1:{port}/"), Some(own)))
}

/// Runs the cross-process cell `rounds` times; the medians of deliveries/s, p50, p99 and
/// max latency (microseconds).
fn cross_process(exe: &std::path::Path, url: &str, rounds: usize) -> [f64; 4] {
    use std::io::BufRead;
    let mut runs = Vec::new();
    for _ in 0..rounds {
        let mut subscribers = std::process::Command::new(exe)
            .args(["--only", "redis-subscribers", "--redis", url])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run the subscribing process");
        let mut lines = std::io::BufReader::new(subscribers.stdout.take().expect("its output")).lines().map_while(Result::ok);
        assert!(lines.by_ref().any(|l| l == "READY"), "the subscribing process did not get ready");
        let status =
            std::process::Command::new(exe).args(["--only", "redis-publisher", "--redis", url]).status().expect("run the publisher");
        assert!(status.success(), "the publishing process failed");
        let result = lines.find_map(|l| l.strip_prefix("RESULT ").map(str::to_owned)).expect("the subscribing process's result");
        assert!(subscribers.wait().expect("it exits").success());
        let fields: Vec<f64> = result.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        runs.push([fields[0], fields[1], fields[2], fields[3]]);
    }
    std::array::from_fn(|i| median(runs.iter().map(|r| r[i]).collect()))
}

fn main() {
    let mut subscribers = 10_000;
    let mut payload = None;
    let mut rounds = 3;
    let mut only = None;
    let mut json = None;
    let mut redis_url = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--subscribers" => subscribers = args.next().and_then(|v| v.parse().ok()).unwrap_or(subscribers),
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            "--only" => only = args.next(),
            "--payload" => payload = args.next().and_then(|v| v.parse().ok()),
            "--json" => json = args.next(),
            "--redis" => redis_url = args.next(),
            _ => {} // cargo bench passes --bench
        }
    }
    match only.as_deref() {
        Some("hub") => return child(Approach::Hub, subscribers, payload),
        Some("baseline") => return child(Approach::Baseline, subscribers, payload),
        Some("redis-subscribers") => return redis_subscribers(&redis_url.expect("--redis URL")),
        Some("redis-publisher") => return redis_publisher(&redis_url.expect("--redis URL")),
        _ => {}
    }
    println!(
        "fan-out: 1 publisher -> {subscribers} subscribers, in-memory pipes, 2 worker threads, {rounds} interleaved rounds, each run in a fresh process"
    );
    // (approach, payload) -> per-round (deliveries/s, peak KiB, KiB per subscriber)
    let mut results: Vec<(Approach, usize, Vec<[f64; 3]>)> = Vec::new();
    let exe = std::env::current_exe().expect("current exe");
    for _ in 0..rounds {
        for approach in [Approach::Hub, Approach::Baseline] {
            let name = if approach == Approach::Hub { "hub" } else { "baseline" };
            let output = std::process::Command::new(&exe)
                .args(["--only", name, "--subscribers", &subscribers.to_string()])
                .env("MALLOC_ARENA_MAX", "2")
                .output()
                .expect("run the child");
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let fields: Vec<f64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
                let [size, rate, peak, per] = fields[..] else { continue };
                let size = size as usize;
                match results.iter_mut().find(|r| r.0 == approach && r.1 == size) {
                    Some(r) => r.2.push([rate, peak, per]),
                    None => results.push((approach, size, vec![[rate, peak, per]])),
                }
            }
        }
    }
    let med = |v: &[[f64; 3]], i: usize| median(v.iter().map(|r| r[i]).collect());
    let (mut rows, mut ratio_rows) = (Vec::new(), Vec::new());
    println!("| payload x messages | approach | deliveries/s | peak RSS growth while publishing | RSS per subscriber (both ends) |");
    println!("| --- | --- | --- | --- | --- |");
    for (size, count) in WORKLOADS {
        let row = |a: Approach| &results.iter().find(|r| r.0 == a && r.1 == size).expect("measured").2;
        let (hub, base) = (row(Approach::Hub), row(Approach::Baseline));
        for (name, r) in [("hub", hub), ("tokio broadcast", base)] {
            println!("| {size} B x {count} | {name} | {:.2} M | {:.1} MiB | {:.2} KiB |", med(r, 0) / 1e6, med(r, 1) / 1024.0, med(r, 2));
            rows.push(format!(
                r#"  {{"payload": {size}, "messages": {count}, "approach": "{name}", "deliveries_per_sec": {:.0}, "peak_kib": {:.0}, "kib_per_subscriber": {:.3}}}"#,
                med(r, 0),
                med(r, 1),
                med(r, 2)
            ));
        }
        // The machine's speed drifts between rounds more than the two approaches differ
        // within one: the ratio is each round's (its two runs back to back), the median
        // of them, with every round's shown.
        let ratios: Vec<f64> = hub.iter().zip(base).map(|(h, b)| h[0] / b[0]).collect();
        let each = ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ");
        println!(
            "| {size} B x {count} | hub / baseline | {:.2}x (rounds: {each}) | {:.2}x | |",
            median(ratios.clone()),
            med(hub, 1) / med(base, 1).max(1.0)
        );
        ratio_rows.push(format!(r#"{{"payload": {size}, "messages": {count}, "each_round": [{each}]}}"#));
    }
    let cross = match redis() {
        Some((url, _own)) => {
            let [rate, p50, p99, max] = cross_process(&exe, &url, rounds);
            println!();
            println!(
                "cross-process: 1 publisher process -> Redis -> 1 process with {CROSS_SUBSCRIBERS} members, {CROSS_MESSAGES} messages of {CROSS_PAYLOAD} B at once, {rounds} rounds"
            );
            println!("| payload x messages | deliveries/s | latency p50 | p99 | max |");
            println!("| --- | --- | --- | --- | --- |");
            println!(
                "| {CROSS_PAYLOAD} B x {CROSS_MESSAGES} | {:.2} M | {:.2} ms | {:.2} ms | {:.2} ms |",
                rate / 1e6,
                p50 / 1e3,
                p99 / 1e3,
                max / 1e3
            );
            format!(
                r#", "cross_process": {{"subscribers": {CROSS_SUBSCRIBERS}, "payload": {CROSS_PAYLOAD}, "messages": {CROSS_MESSAGES}, "deliveries_per_sec": {rate:.0}, "p50_us": {p50:.0}, "p99_us": {p99:.0}, "max_us": {max:.0}}}"#
            )
        }
        None => {
            println!("cross-process cell skipped: no redis-server (set REDIS_URL, or install it)");
            String::new()
        }
    };
    if let Some(path) = json {
        let text = format!(
            "{{\"subscribers\": {subscribers}, \"rounds\": {rounds}, \"results\": [\n{}\n], \"hub_over_baseline\": [{}]{cross}}}\n",
            rows.join(",\n"),
            ratio_rows.join(", ")
        );
        std::fs::write(&path, text).expect("write the --json file");
    }
}
