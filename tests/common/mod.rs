//! Helpers shared by the integration tests: a minimal client built from the core's own
//! handshake pieces, raw frame I/O for feeding bad input, and server starters.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod haproxy;
pub mod hub_member;
pub mod nats_server;
pub mod proxy_servers;
pub mod redis_server;
pub mod servers;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsdriver::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use wsdriver::{Config, Handler, Server, WebSocket, mask::apply_mask};

/// Upper bound for any single wait in a test: a hang fails the test instead of the suite.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Awaits `f`, failing the test if it takes longer than [`LIMIT`].
pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

/// Starts the standalone server with `config`, a fresh handler per connection.
pub async fn start_server<H, F>(config: Config, make: F) -> SocketAddr
where
    H: Handler,
    F: Fn() -> H + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::from_listener(listener).config(config);
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(move |_| make()));
    addr
}

tokio::task_local! {
    /// Set (with `HTTP2.scope(true, ..)`) while a check runs over HTTP/2: [`connect`]
    /// opens its WebSockets as extended CONNECTs, and asserts they are.
    pub static HTTP2: bool;
}

/// Connects a client socket to `ws://addr{path}` with `config` (its protocols are offered).
pub async fn connect(addr: SocketAddr, path: &str, config: &Config) -> WebSocket<wsdriver::client::ClientStream> {
    connect_with_response(addr, path, config).await.0
}

/// As [`connect`], also returning the 101 response.
pub async fn connect_with_response(
    addr: SocketAddr,
    path: &str,
    config: &Config,
) -> (WebSocket<wsdriver::client::ClientStream>, http::Response<()>) {
    let builder = wsdriver::client::ClientBuilder::new(format!("ws://{addr}{path}")).config(config.clone());
    let http2 = HTTP2.try_with(|http2| *http2).unwrap_or(false);
    let (ws, response) = bounded(builder.http2(http2).connect()).await.unwrap();
    let version = if http2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
    assert_eq!(ws.connection().http_version(), version);
    (ws, response)
}

/// A TCP stream on which a client handshake completed, for writing raw frames.
pub async fn raw_client(addr: SocketAddr) -> TcpStream {
    raw_handshake(TcpStream::connect(addr).await.unwrap()).await
}

/// A byte stream a test writes raw frames on.
pub trait RawIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> RawIo for T {}

/// A WebSocket's raw byte stream, opened over HTTP/2 (an extended CONNECT on hyper's
/// client, prior knowledge) inside [`HTTP2`]'s scope, over HTTP/1.1 otherwise.
pub async fn raw_stream(addr: SocketAddr) -> Box<dyn RawIo> {
    if !HTTP2.try_with(|http2| *http2).unwrap_or(false) {
        return Box::new(raw_client(addr).await);
    }
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}/"))
        .header("sec-websocket-version", "13")
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let mut response = bounded(send.send_request(request)).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    Box::new(TokioIo::new(bounded(hyper::upgrade::on(&mut response)).await.unwrap()))
}

/// Completes a client handshake on `stream`.
async fn raw_handshake(mut stream: TcpStream) -> TcpStream {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    let head = read_until_blank_line(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream
}

/// Sends raw bytes as an HTTP request and returns the answer: its head and, after it, a
/// body of `Content-Length` bytes (or everything until the server closes, without one).
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let head = read_until_blank_line(&mut stream).await;
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            bounded(stream.read_exact(&mut body)).await.unwrap();
        }
        None => {
            bounded(stream.read_to_end(&mut body)).await.unwrap();
        }
    }
    head + &String::from_utf8_lossy(&body)
}

async fn read_until_blank_line(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        if bounded(stream.read(&mut byte)).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A frame as a client sends it: masked.
pub fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let header = FrameHeader { fin, rsv: 0, opcode, mask: Some(key), payload_len: payload.len() as u64 };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    let mut out = head[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
    out
}

/// Reads one unmasked frame from the server: its opcode and payload; `None` at EOF.
pub async fn read_frame(stream: &mut TcpStream) -> Option<(OpCode, Vec<u8>)> {
    let mut buf = Vec::new();
    loop {
        if let Some((h, n)) = FrameHeader::decode(&buf).unwrap() {
            assert!(h.mask.is_none(), "server frames are unmasked");
            let total = n + h.payload_len as usize;
            while buf.len() < total {
                let mut chunk = vec![0u8; total - buf.len()];
                let got = bounded(stream.read(&mut chunk)).await.unwrap();
                assert!(got > 0, "eof inside a frame");
                buf.extend_from_slice(&chunk[..got]);
            }
            return Some((h.opcode, buf[n..total].to_vec()));
        }
        let mut byte = [0u8];
        match bounded(stream.read(&mut byte)).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => buf.push(byte[0]),
        }
    }
}

/// Reads frames until a Close arrives; returns its code (`None` for an empty Close).
pub async fn read_close(stream: &mut TcpStream) -> Option<u16> {
    loop {
        let (op, payload) = read_frame(stream).await.expect("eof before a close frame");
        if op == OpCode::Close {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

/// Asserts the server closes the TCP connection (EOF, or a reset).
pub async fn assert_eof(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    let _ = bounded(stream.read_to_end(&mut rest)).await;
}

/// The echo handler every battery server runs.
pub struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ws: &wsdriver::Connection, message: wsdriver::Message) {
        let _ = ws.send(message).await; // the peer may be gone: its test decides
    }
}

/// Serves a connection with the handler inside, watched by a graceful shutdown from its
/// open until its `on_close` has run.
pub struct Watching<H>(pub wsdriver::shutdown::Shutdown, pub H);

impl<H: Handler> Handler for Watching<H> {
    async fn on_open(&mut self, ws: &wsdriver::Connection) {
        self.0.watch(ws);
        self.1.on_open(ws).await;
    }
    async fn on_message(&mut self, ws: &wsdriver::Connection, message: wsdriver::Message) {
        self.1.on_message(ws, message).await;
    }
    async fn on_error(&mut self, ws: &wsdriver::Connection, error: &wsdriver::Error) {
        self.1.on_error(ws, error).await;
    }
    async fn on_close(&mut self, ws: &wsdriver::Connection, code: wsdriver::CloseCode, reason: &str) {
        self.1.on_close(ws, code, reason).await;
    }
}

/// What a [`Recorder`] saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Open,
    Message(wsdriver::Message),
    Error(String),
    Close(u16, String),
    /// The handler was dropped: nothing can follow.
    Dropped,
}

/// A handler that reports every event on a channel, and echoes messages when `echo` is set.
pub struct Recorder {
    pub events: tokio::sync::mpsc::UnboundedSender<Event>,
    pub echo: bool,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Dropped);
    }
}

impl Handler for Recorder {
    async fn on_open(&mut self, _ws: &wsdriver::Connection) {
        let _ = self.events.send(Event::Open);
    }
    async fn on_message(&mut self, ws: &wsdriver::Connection, message: wsdriver::Message) {
        let _ = self.events.send(Event::Message(message.clone()));
        if self.echo {
            let _ = ws.send(message).await;
        }
    }
    async fn on_error(&mut self, _ws: &wsdriver::Connection, error: &wsdriver::Error) {
        let _ = self.events.send(Event::Error(error.to_string()));
    }
    async fn on_close(&mut self, _ws: &wsdriver::Connection, code: wsdriver::CloseCode, reason: &str) {
        let _ = self.events.send(Event::Close(code.into(), reason.to_owned()));
    }
}

/// Awaits `send`, reporting on `stuck` if it could not complete at once (the write buffer
/// was at its high-water mark): a test's signal that a handler is blocked in a send.
pub async fn send_reporting_a_stall(
    send: impl std::future::Future<Output = wsdriver::Result<()>>,
    stuck: &tokio::sync::mpsc::UnboundedSender<()>,
) -> wsdriver::Result<()> {
    let mut send = std::pin::pin!(send);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(send.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => {
            let _ = stuck.send(());
            send.await
        }
    }
}

/// Echoes like [`Recorder`] and records every event; hands out its connection when it
/// opens, says when a send of its blocks, and holds a message `"hold"` until `gate` is
/// notified.
pub struct Probe {
    pub events: tokio::sync::mpsc::UnboundedSender<Event>,
    pub opened: tokio::sync::mpsc::UnboundedSender<wsdriver::Connection>,
    pub stuck: tokio::sync::mpsc::UnboundedSender<()>,
    pub gate: std::sync::Arc<tokio::sync::Notify>,
}

/// What a test sees of a [`Probe`]'s server.
pub struct ProbeEnds {
    pub events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    pub opened: tokio::sync::mpsc::UnboundedReceiver<wsdriver::Connection>,
    pub stuck: tokio::sync::mpsc::UnboundedReceiver<()>,
    pub gate: std::sync::Arc<tokio::sync::Notify>,
}

/// A factory of [`Probe`]s reporting to the returned ends.
pub fn probes() -> (impl Fn() -> Probe + Send + Sync + 'static, ProbeEnds) {
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let (opened_tx, opened) = tokio::sync::mpsc::unbounded_channel();
    let (stuck_tx, stuck) = tokio::sync::mpsc::unbounded_channel();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let make = move || Probe { events: events_tx.clone(), opened: opened_tx.clone(), stuck: stuck_tx.clone(), gate: g.clone() };
    (make, ProbeEnds { events, opened, stuck, gate })
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Dropped);
    }
}

impl Handler for Probe {
    async fn on_open(&mut self, ws: &wsdriver::Connection) {
        let _ = self.events.send(Event::Open);
        let _ = self.opened.send(ws.clone());
    }
    async fn on_message(&mut self, ws: &wsdriver::Connection, message: wsdriver::Message) {
        let _ = self.events.send(Event::Message(message.clone()));
        if message.as_text() == Some("hold") {
            self.gate.notified().await;
        }
        let _ = send_reporting_a_stall(ws.send(message), &self.stuck).await;
    }
    async fn on_error(&mut self, _ws: &wsdriver::Connection, error: &wsdriver::Error) {
        let _ = self.events.send(Event::Error(error.to_string()));
    }
    async fn on_close(&mut self, _ws: &wsdriver::Connection, code: wsdriver::CloseCode, reason: &str) {
        let _ = self.events.send(Event::Close(code.into(), reason.to_owned()));
    }
}

/// Answers a message by pinging the peer and awaiting the pong inside `on_message`, then
/// saying whether it came.
pub struct PingInside;

impl Handler for PingInside {
    async fn on_message(&mut self, ws: &wsdriver::Connection, _message: wsdriver::Message) {
        let answered = ws.send_ping("inside on_message").await.is_ok();
        let _ = ws.send_text(if answered { "pong arrived" } else { "no pong" }).await;
    }
}

/// A raw client whose socket receive buffer is small, so that a server writing to it,
/// while it never reads, hits the server's own limits at once rather than the kernel's.
pub async fn raw_client_small_window(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    raw_handshake(socket.connect(addr).await.unwrap()).await
}

/// Starts a server whose connections are served by [`Recorder`]s reporting on the
/// returned channel.
pub async fn start_recorder(config: Config, echo: bool) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = start_server(config, move || Recorder { events: tx.clone(), echo }).await;
    (addr, rx)
}

/// Collects events until (and including) the connection's `Close`, then checks that no
/// further event follows from that connection.
pub async fn events_until_close(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let event = bounded(rx.recv()).await.expect("handler channel closed");
        let done = matches!(event, Event::Close(..));
        events.push(event);
        if done {
            return events;
        }
    }
}

/// An example binary (`echo`, `echo_axum` …), which `cargo test` builds beside the test
/// binaries.
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join("examples").join(name);
    assert!(path.exists(), "{} not built: run through cargo test", path.display());
    path
}

/// The echo example running as a process; killed when dropped, so a failing test leaves
/// none behind.
pub struct EchoProcess(pub std::process::Child);

impl EchoProcess {
    /// Starts the echo example on `addr` and waits until it accepts connections.
    pub fn start(addr: SocketAddr) -> Self {
        Self::start_example("echo", addr)
    }

    /// Starts the echo example `name` on `addr` and waits until it accepts connections.
    pub fn start_example(name: &str, addr: SocketAddr) -> Self {
        Self::start_example_with(name, addr, &[])
    }

    /// Starts the example `name` with `addr` and then `args` as arguments, and waits until
    /// it accepts connections.
    pub fn start_example_with(name: &str, addr: SocketAddr, args: &[&str]) -> Self {
        use std::process::{Command, Stdio};
        // SOAK_SERVER runs another echo server binary instead (a peer, for comparison).
        let binary = std::env::var_os("SOAK_SERVER").map(std::path::PathBuf::from).unwrap_or_else(|| example(name));
        // One malloc arena: far less fragmentation noise in the RSS readings.
        let process = EchoProcess(
            Command::new(binary)
                .env("MALLOC_ARENA_MAX", "1")
                .arg(addr.to_string())
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return process;
            }
            std::thread::sleep(Duration::from_millis(25)); // polling for the port, bounded
        }
        panic!("{name} did not start on {addr}");
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Its open file descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.0.id())).map(|d| d.count()).unwrap_or(0)
    }

    /// Waits (bounded, polling the process's descriptor table) until it holds no more
    /// than `fds` descriptors again: what it closes after a peer goes away, it closes in
    /// its own time. (Fewer is no leak: a baseline taken while a runtime still held a
    /// descriptor of its own may be one high.)
    pub async fn settle_fds(&self, fds: usize) {
        let start = std::time::Instant::now();
        while self.fds() > fds {
            assert!(start.elapsed() < Duration::from_secs(20), "server holds {} descriptors, baseline {fds}", self.fds());
            tokio::time::sleep(Duration::from_millis(20)).await; // polling the server's state, bounded
        }
    }

    /// Its resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).expect("the server's /proc status");
        let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:"));
        rss.and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmRSS in the server's /proc status")
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The median of the growth from each sample to the next: a leak grows every wave, while
/// one trim, burst or step moves one or two of the growths only.
pub fn growth_per_wave(samples: &[u64]) -> f64 {
    let mut slopes: Vec<f64> = samples.windows(2).map(|w| w[1] as f64 - w[0] as f64).collect();
    slopes.sort_by(f64::total_cmp);
    let mid = slopes.len() / 2;
    if slopes.len() % 2 == 0 { (slopes[mid - 1] + slopes[mid]) / 2.0 } else { slopes[mid] }
}

/// A directory removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new(prefix: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wsdriver-{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback address (nothing listens on it once returned).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}
