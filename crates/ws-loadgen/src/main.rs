//! A WebSocket load generator for echo servers, built to cost the server's core far more
//! than its own: every frame it sends is encoded once, masked with the all-zero key (a
//! valid key that leaves the payload as is), and, with `--deflate`, compressed once with
//! no context takeover (which the offer announces), so each send is a plain copy. Replies
//! are counted by their frame headers and never decoded.
//!
//! ```text
//! ws-loadgen --url ws://127.0.0.1:9001 [--conns 64] [--inflight 16] [--size 1024]
//!            [--secs 5] [--binary] [--deflate] [--http2]
//! ```
//! Prints one line: `messages/s <rate> bytes/s <rate>` (payload bytes echoed).
//!
//! With `--http2`, each connection is an HTTP/2 connection (h2c, prior knowledge, hyper's
//! client) carrying one WebSocket opened by an extended CONNECT (RFC 8441); the frames
//! are the same.

use bytes::{Buf, BytesMut};
use flate2::{Compress, Compression, FlushCompress};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ws_core::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, RSV1};

struct Args {
    url: String,
    conns: usize,
    inflight: usize,
    size: usize,
    secs: f64,
    binary: bool,
    deflate: bool,
    http2: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: "ws://127.0.0.1:9001".into(),
        conns: 64,
        inflight: 16,
        size: 1024,
        secs: 5.0,
        binary: false,
        deflate: false,
        http2: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value()?,
            "--conns" => a.conns = value()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--inflight" => a.inflight = value()?.parse().map_err(|e| format!("--inflight: {e}"))?,
            "--size" => a.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--secs" => a.secs = value()?.parse().map_err(|e| format!("--secs: {e}"))?,
            "--binary" => a.binary = true,
            "--deflate" => a.deflate = true,
            "--http2" => a.http2 = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// Text-like payload: JSON records, compressible as real application traffic is.
fn payload(size: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0u64;
    while s.len() < size {
        s.push_str(&format!("{{\"id\":{i},\"user\":\"user{}\",\"status\":\"online\",\"score\":{}}},", i % 97, (i * 7919) % 1000));
        i += 1;
    }
    s.truncate(size);
    s.into_bytes()
}

/// One client frame, ready to send as is.
fn frame(payload: &[u8], binary: bool, deflate: bool) -> Vec<u8> {
    let (body, rsv) = if deflate {
        let mut c = Compress::new_with_window_bits(Compression::new(1), false, 15);
        let mut out = Vec::with_capacity(payload.len() + 64);
        loop {
            let consumed = c.total_in() as usize;
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let _ = c.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync);
            if c.total_in() as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        out.truncate(out.len().saturating_sub(4)); // the sync flush's 00 00 ff ff
        (out, RSV1)
    } else {
        (payload.to_vec(), 0)
    };
    let opcode = if binary { OpCode::Binary } else { OpCode::Text };
    let header = FrameHeader { fin: true, rsv, opcode, mask: Some([0; 4]), payload_len: body.len() as u64 };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    let mut out = head[..n].to_vec();
    out.extend_from_slice(&body);
    out
}

async fn handshake(host: &str, path: &str, deflate: bool) -> std::io::Result<(TcpStream, BytesMut)> {
    let mut stream = TcpStream::connect(host).await?;
    stream.set_nodelay(true)?;
    let ext = if deflate { "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n" } else { "" };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(64 << 10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 101") {
                return Err(std::io::Error::other(format!("refused: {}", head.lines().next().unwrap_or(""))));
            }
            if deflate && !head.contains("permessage-deflate") {
                return Err(std::io::Error::other("permessage-deflate not negotiated"));
            }
            buf.advance(end + 4);
            return Ok((stream, buf));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// An HTTP/2 connection to `host` (prior knowledge) and one WebSocket on it, opened by an
/// extended CONNECT.
async fn handshake_http2(host: &str, path: &str, deflate: bool) -> std::io::Result<hyper::upgrade::Upgraded> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = TcpStream::connect(host).await?;
    stream.set_nodelay(true)?;
    let (mut send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{host}{path}"))
        .header("sec-websocket-version", "13")
        .extension(hyper::ext::Protocol::from_static("websocket"));
    if deflate {
        request = request.header("sec-websocket-extensions", "permessage-deflate; client_no_context_takeover");
    }
    let request = request.body(http_body_util::Empty::<bytes::Bytes>::new()).map_err(std::io::Error::other)?;
    let mut response = send.send_request(request).await.map_err(std::io::Error::other)?;
    if response.status() != http::StatusCode::OK {
        return Err(std::io::Error::other(format!("refused: {}", response.status())));
    }
    if deflate && !response.headers().contains_key("sec-websocket-extensions") {
        return Err(std::io::Error::other("permessage-deflate not negotiated"));
    }
    hyper::upgrade::on(&mut response).await.map_err(std::io::Error::other)
}

/// Counts every whole reply in `buf` (a partial header stays for the next read), and
/// queues one send per message echoed.
fn count_replies(buf: &mut BytesMut, skip: &mut usize, pending: &mut Pending, counts: &mut (u64, u64)) {
    loop {
        let n = (*skip).min(buf.len());
        buf.advance(n);
        *skip -= n;
        if *skip > 0 {
            break;
        }
        let Ok(Some((h, n))) = FrameHeader::decode(buf) else { break };
        buf.advance(n);
        *skip = h.payload_len as usize;
        if matches!(h.opcode, OpCode::Text | OpCode::Binary) && h.fin {
            counts.0 += 1;
            counts.1 += h.payload_len;
            pending.add(1);
        }
    }
}

/// Copies of the frame back to back, about 64 KiB of them (at least one).
#[derive(Clone)]
struct Burst {
    bytes: std::sync::Arc<Vec<u8>>,
    frame_len: usize,
}

impl Burst {
    fn new(frame: &[u8]) -> Self {
        let copies = ((64 << 10) / frame.len().max(1)).max(1);
        Self { bytes: std::sync::Arc::new(frame.repeat(copies)), frame_len: frame.len() }
    }
}

/// Frames waiting to be sent: a count, written from one burst of copies of the frame
/// (about 64 KiB of them), so even many large frames in flight cost no memory of their
/// own.
struct Pending {
    burst: std::sync::Arc<Vec<u8>>,
    frame_len: usize,
    frames: usize,
    /// Bytes of the current write (`start..end` of the burst) already written.
    written: usize,
    end: usize,
}

impl Pending {
    fn new(burst: &Burst, frames: usize) -> Self {
        Self { burst: burst.bytes.clone(), frame_len: burst.frame_len, frames, written: 0, end: 0 }
    }

    fn is_empty(&self) -> bool {
        self.frames == 0 && self.written == self.end
    }

    fn add(&mut self, frames: usize) {
        self.frames += frames;
    }

    /// The bytes to write next.
    fn next_bytes(&mut self) -> &[u8] {
        if self.written == self.end {
            let per_burst = (self.burst.len() / self.frame_len).max(1);
            let n = self.frames.min(per_burst);
            self.frames -= n;
            self.written = 0;
            self.end = n * self.frame_len;
        }
        &self.burst[self.written..self.end]
    }

    fn advance(&mut self, n: usize) {
        self.written += n;
    }
}

/// Opens one connection, reports it ready, and once every connection is (`start` gives the
/// deadline) echoes until the deadline; returns (messages, payload bytes) echoed.
async fn connection(
    host: String,
    path: String,
    frame: Burst,
    args: (usize, bool, bool),
    ready: tokio::sync::mpsc::Sender<()>,
    mut start: tokio::sync::watch::Receiver<Option<Instant>>,
) -> std::io::Result<(u64, u64)> {
    let (inflight, deflate, http2) = args;
    if http2 {
        let stream = handshake_http2(&host, &path, deflate).await?;
        let _ = ready.send(()).await;
        drop(ready);
        let deadline = match start.wait_for(Option::is_some).await {
            Ok(deadline) => deadline.unwrap_or_else(Instant::now),
            Err(_) => return Ok((0, 0)),
        };
        return echo_stream(hyper_util::rt::TokioIo::new(stream), frame, inflight, deadline).await;
    }
    let (stream, mut buf) = handshake(&host, &path, deflate).await?;
    let _ = ready.send(()).await;
    drop(ready);
    let deadline = match start.wait_for(Option::is_some).await {
        Ok(deadline) => deadline.unwrap_or_else(Instant::now),
        Err(_) => return Ok((0, 0)),
    };
    // Writes never block reads: a peer that echoes a large message while it is still
    // arriving (the raw ceiling does) must find us reading. Replies to send wait in
    // `pending`, written as far as the socket takes them whenever it is writable.
    let mut pending = Pending::new(&frame, inflight);
    let mut counts = (0u64, 0u64); // messages, payload bytes
    let mut skip = 0usize; // payload bytes of a frame still to skip
    loop {
        while !pending.is_empty() {
            match stream.try_write(pending.next_bytes()) {
                Ok(n) => pending.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        count_replies(&mut buf, &mut skip, &mut pending, &mut counts);
        if Instant::now() >= deadline {
            return Ok(counts);
        }
        buf.reserve(256 << 10);
        match stream.try_read_buf(&mut buf) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let ready = async {
                    if pending.is_empty() {
                        stream.readable().await
                    } else {
                        tokio::select! {
                            r = stream.readable() => r,
                            w = stream.writable() => w,
                        }
                    }
                };
                match tokio::time::timeout_at(deadline.into(), ready).await {
                    Err(_) => return Ok(counts),
                    Ok(r) => r?,
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The echo loop of [`connection`] over any stream (an HTTP/2 stream here): writes
/// never block reads, as there.
async fn echo_stream<S>(stream: S, frame: Burst, inflight: usize, deadline: Instant) -> std::io::Result<(u64, u64)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut pending = Pending::new(&frame, inflight);
    let mut buf = BytesMut::with_capacity(256 << 10);
    let mut counts = (0u64, 0u64);
    let mut skip = 0usize;
    let deadline = tokio::time::Instant::from_std(deadline);
    loop {
        count_replies(&mut buf, &mut skip, &mut pending, &mut counts);
        buf.reserve(256 << 10);
        let writing = !pending.is_empty();
        tokio::select! {
            read = reader.read_buf(&mut buf) => {
                if read? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            written = writer.write(pending.next_bytes()), if writing => pending.advance(written?),
            () = tokio::time::sleep_until(deadline) => return Ok(counts),
        }
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ws-loadgen: {e}");
            std::process::exit(2);
        }
    };
    let rest = args.url.strip_prefix("ws://").unwrap_or(&args.url);
    let (host, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    };
    let frame = Burst::new(&frame(&payload(args.size), args.binary, args.deflate));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ws-loadgen: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        // The clock starts once every connection is open: handshakes are not measured.
        let (ready, mut ready_rx) = tokio::sync::mpsc::channel(args.conns.max(1));
        let (go, start_rx) = tokio::sync::watch::channel(None);
        let tasks: Vec<_> = (0..args.conns)
            .map(|_| {
                let conn = connection(
                    host.clone(),
                    path.clone(),
                    frame.clone(),
                    (args.inflight, args.deflate, args.http2),
                    ready.clone(),
                    start_rx.clone(),
                );
                tokio::spawn(conn)
            })
            .collect();
        drop(ready);
        let mut opened = 0;
        while opened < args.conns && ready_rx.recv().await.is_some() {
            opened += 1;
        }
        let start = Instant::now();
        go.send_replace(Some(start + Duration::from_secs_f64(args.secs)));
        let (mut messages, mut bytes) = (0u64, 0u64);
        for t in tasks {
            match t.await {
                Ok(Ok((m, b))) => {
                    messages += m;
                    bytes += b;
                }
                Ok(Err(e)) => return Err(e.to_string()),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok((messages, bytes, start.elapsed().as_secs_f64()))
    });
    match result {
        Ok((messages, bytes, secs)) => println!("messages/s {:.0} bytes/s {:.0}", messages as f64 / secs, bytes as f64 / secs),
        Err(e) => {
            eprintln!("ws-loadgen: {e}");
            std::process::exit(1);
        }
    }
}
