//! Micro-benchmarks of the hot paths: frame header parse and encode, masking beside
//! memcpy, UTF-8 validation, the opening handshake, and a whole small echo through the
//! sans-IO protocol. `cargo bench -p ws-core --bench micro`.
#![allow(missing_docs, clippy::unwrap_used)]

use bytes::BytesMut;
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use ws_core::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use ws_core::handshake::server;
use ws_core::mask::apply_mask;
use ws_core::protocol::{Protocol, Role};
use ws_core::utf8::Utf8Validator;
use ws_core::{Config, Message};

fn frames(c: &mut Criterion) {
    let header = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: Some([1, 2, 3, 4]), payload_len: 1024 };
    let mut buf = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut buf);
    c.bench_function("frame header encode", |b| b.iter(|| black_box(&header).encode(black_box(&mut buf))));
    c.bench_function("frame header decode", |b| b.iter(|| FrameHeader::decode(black_box(&buf[..n])).unwrap()));
}

fn masking(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask vs memcpy");
    for size in [1024usize, 64 << 10, 1 << 20] {
        let src = vec![0xA5u8; size];
        let mut dst = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("mask {size}"), |b| b.iter(|| apply_mask(black_box(&mut dst), [1, 2, 3, 4], 0)));
        group.bench_function(format!("memcpy {size}"), |b| b.iter(|| black_box(&mut dst).copy_from_slice(black_box(&src))));
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    let ascii = "hello world, ".repeat(5000);
    let mixed = "héllo wörld — ✓ 日本語 ".repeat(2000);
    for (name, text) in [("ascii", &ascii), ("multibyte", &mixed)] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut v = Utf8Validator::default();
                v.feed(black_box(text.as_bytes())).unwrap();
                v.finish().unwrap();
            })
        });
    }
    group.finish();
}

fn handshake(c: &mut Criterion) {
    let request = http::Request::get("/chat")
        .header("host", "example.com")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    let config = Config::default();
    c.bench_function("server handshake", |b| b.iter(|| server::accept(black_box(&request), &config).unwrap()));
}

fn echo(c: &mut Criterion) {
    // 16 masked 16-byte client frames in, 16 replies out: one batch of a small-message echo.
    let mut client = Protocol::new(Role::Client, &Config::default());
    client.open(std::time::Instant::now());
    for _ in 0..16 {
        client.send(Message::binary(vec![7u8; 16])).unwrap();
    }
    let wire = client.out().to_vec();
    let mut server = Protocol::new(Role::Server, &Config::default());
    server.open(std::time::Instant::now());
    let mut group = c.benchmark_group("protocol echo");
    group.throughput(Throughput::Elements(16));
    group.bench_function("16 x 16 B", |b| {
        b.iter(|| {
            let mut input = BytesMut::from(&wire[..]);
            while let Some(m) = server.read(&mut input).unwrap() {
                server.send(m).unwrap();
            }
            let n = server.out().len();
            server.written(n);
        })
    });
    group.finish();
}

criterion_group!(benches, frames, masking, utf8, handshake, echo);
criterion_main!(benches);
