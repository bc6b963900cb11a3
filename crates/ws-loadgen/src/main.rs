//! A WebSocket load generator for echo servers, built to cost the server's core far more
//! than its own: every frame it sends is encoded once, masked with the all-zero key (a
//! valid key that leaves the payload as is), and, with `--deflate`, compressed once with
//! no context takeover (which the offer announces), so each send is a plain copy. Replies
//! are counted by their frame headers and never decoded.
//!
//! ```text
//! ws-loadgen --url ws://127.0.0.1:9001 [--conns 64] [--inflight 16] [--size 1024]
//!            [--secs 5] [--binary] [--deflate]
//! ```
//! Prints one line: `messages/s <rate> bytes/s <rate>` (payload bytes echoed).

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
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { url: "ws://127.0.0.1:9001".into(), conns: 64, inflight: 16, size: 1024, secs: 5.0, binary: false, deflate: false };
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

/// Runs one connection until `deadline`; returns (messages, payload bytes) echoed.
async fn connection(
    host: String,
    path: String,
    frame: std::sync::Arc<Vec<u8>>,
    args: (usize, bool),
    deadline: Instant,
) -> std::io::Result<(u64, u64)> {
    let (inflight, deflate) = args;
    let (mut stream, mut buf) = handshake(&host, &path, deflate).await?;
    let mut out = Vec::with_capacity(frame.len() * inflight);
    for _ in 0..inflight {
        out.extend_from_slice(&frame);
    }
    stream.write_all(&out).await?;
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut skip = 0usize; // payload bytes of a frame still to skip
    loop {
        if buf.is_empty() || skip > 0 {
            buf.clear();
            buf.reserve(256 << 10);
            let read = tokio::time::timeout_at(deadline.into(), stream.read_buf(&mut buf)).await;
            match read {
                Err(_) => return Ok((messages, bytes)),
                Ok(Ok(0)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(r) => r?,
            };
            let n = skip.min(buf.len());
            buf.advance(n);
            skip -= n;
            if skip > 0 {
                continue;
            }
        }
        let mut replies = 0;
        while let Ok(Some((h, n))) = FrameHeader::decode(&buf) {
            buf.advance(n);
            let len = h.payload_len as usize;
            let here = len.min(buf.len());
            buf.advance(here);
            skip = len - here;
            if matches!(h.opcode, OpCode::Text | OpCode::Binary) && h.fin {
                messages += 1;
                replies += 1;
                bytes += len as u64;
            }
            if skip > 0 {
                break;
            }
        }
        if replies > 0 {
            out.clear();
            for _ in 0..replies {
                out.extend_from_slice(&frame);
            }
            stream.write_all(&out).await?;
        }
        if Instant::now() >= deadline {
            return Ok((messages, bytes));
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
    let frame = std::sync::Arc::new(frame(&payload(args.size), args.binary, args.deflate));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ws-loadgen: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(args.secs);
        let tasks: Vec<_> = (0..args.conns)
            .map(|_| tokio::spawn(connection(host.clone(), path.clone(), frame.clone(), (args.inflight, args.deflate), deadline)))
            .collect();
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
