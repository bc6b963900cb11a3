//! `wsdriver bench URL`: many connections, each keeping a number of messages in flight to
//! an echo server, for a fixed time; reports messages/s, bytes/s and the latency from a
//! message being queued to its echo arriving.
//!
//! Built to cost the server's core far more than its own: the handshake is the library's,
//! but then every frame is encoded once, masked with the all-zero key (a valid key that
//! leaves the payload as it is) and, with `--deflate`, compressed once by the library's
//! permessage-deflate with no client context takeover (which the offer asks for), so each
//! send is a plain copy. Echoes are counted by their frame headers, never decoded; the
//! latency histogram is updated once per read, not per message.

use crate::{fail, parse_duration, parse_size};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use ws_core::Config;
use ws_core::client::{ClientBuilder, ClientStream};
use ws_core::deflate::params::Agreed;
use ws_core::deflate::{Deflate, DeflateConfig};
use ws_core::extensions::Extension;
use ws_core::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};

/// The longest latency the histogram holds (longer ones are counted at this value).
const MAX_LATENCY_US: u64 = 3_600_000_000;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
The server must echo every message (wsdriver serve does, as does every echo example). The \
clock starts once every connection is open; handshakes are not measured. Latency is from a \
message being queued to its echo arriving, so it includes the time spent behind the other \
messages in flight on its connection.

Output: a summary; --json for one JSON object; --quiet for one line \
(messages/s N bytes/s N p50_us N p99_us N p999_us N).")]
pub struct Args {
    /// The echo server's URL.
    #[arg(default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// Connections, all open for the whole run.
    #[arg(short, long, default_value_t = 64)]
    conns: usize,
    /// Messages in flight on each connection: each echo sends the next.
    #[arg(short, long, default_value_t = 16)]
    inflight: usize,
    /// Payload bytes per message (JSON-like text, compressible as real traffic is).
    #[arg(short, long, value_parser = parse_size, default_value = "1024")]
    size: usize,
    /// How long to measure.
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    duration: Duration,
    /// Send binary messages (text by default).
    #[arg(short, long)]
    binary: bool,
    /// Compress with permessage-deflate (level 1, no client context takeover).
    #[arg(long, alias = "compression")]
    deflate: bool,
    /// Each connection an HTTP/2 connection carrying one WebSocket (RFC 8441; h2c by
    /// prior knowledge for ws://, ALPN for wss://).
    #[arg(long)]
    http2: bool,
    /// Accept any TLS certificate.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Print the result as one JSON object.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print the result as one line, and no progress bar.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> ExitCode {
    if args.conns == 0 || args.inflight == 0 || args.size == 0 {
        fail("--conns, --inflight and --size must be at least 1");
        return ExitCode::from(2);
    }
    // One thread: the loader stays on one core, leaving the others to the server.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            fail(e);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(&args)) {
        Ok(result) => {
            result.print(&args);
            ExitCode::SUCCESS
        }
        Err(e) => {
            fail(e);
            ExitCode::FAILURE
        }
    }
}

/// What a run measured.
struct Outcome {
    messages: u64,
    bytes: u64,
    seconds: f64,
    latency: Histogram<u64>,
}

impl Outcome {
    fn print(&self, args: &Args) {
        let rate = |n: u64| n as f64 / self.seconds.max(f64::MIN_POSITIVE);
        let us = |q: f64| self.latency.value_at_quantile(q);
        if args.json {
            let json = serde_json::json!({
                "url": args.url,
                "connections": args.conns,
                "inflight": args.inflight,
                "size": args.size,
                "binary": args.binary,
                "deflate": args.deflate,
                "http2": args.http2,
                "seconds": self.seconds,
                "messages": self.messages,
                "messages_per_sec": rate(self.messages),
                "bytes_per_sec": rate(self.bytes),
                "latency_us": {
                    "p50": us(0.5), "p90": us(0.9), "p99": us(0.99), "p999": us(0.999),
                    "max": self.latency.max(), "mean": self.latency.mean(),
                },
            });
            println!("{json}");
        } else if args.quiet {
            println!(
                "messages/s {:.0} bytes/s {:.0} p50_us {} p99_us {} p999_us {}",
                rate(self.messages),
                rate(self.bytes),
                us(0.5),
                us(0.99),
                us(0.999)
            );
        } else {
            let kind = if args.binary { "binary" } else { "text" };
            println!(
                "{}: {} connections x {} in flight, {} B {kind} messages{}{}, {:.1} s",
                args.url,
                args.conns,
                args.inflight,
                args.size,
                if args.deflate { ", deflate" } else { "" },
                if args.http2 { ", HTTP/2" } else { "" },
                self.seconds
            );
            println!("  messages/s  {:.0}", rate(self.messages));
            println!("  bytes/s     {:.1} MB", rate(self.bytes) / 1e6);
            println!(
                "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                show(us(0.5)),
                show(us(0.9)),
                show(us(0.99)),
                show(us(0.999)),
                show(self.latency.max())
            );
        }
    }
}

/// Microseconds, readably.
fn show(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

async fn bench(args: &Args) -> Result<Outcome, String> {
    let mut config = Config::default();
    let deflate = DeflateConfig::default().level(1).threshold(0).no_context_takeover(false, true);
    if args.deflate {
        config = config.deflate(deflate);
    }
    let tls = if args.insecure { Some(crate::insecure::client_config().map_err(|e| e.to_string())?) } else { None };
    let plan = Arc::new(Plan {
        payload: payload(args.size),
        binary: args.binary,
        deflate: args.deflate.then_some(deflate),
        burst: OnceLock::new(),
    });
    let echoed = Arc::new(AtomicU64::new(0));
    // The clock starts once every connection is open: handshakes are not measured.
    let (ready, mut ready_rx) = mpsc::channel(args.conns);
    let (go, start) = watch::channel(None);
    let tasks: Vec<_> = (0..args.conns)
        .map(|_| {
            // A builder of its own per connection: with --http2, one HTTP/2 connection each.
            let mut builder = ClientBuilder::new(&args.url).config(config.clone()).http2(args.http2);
            if let Some(tls) = &tls {
                builder = builder.tls_config(Arc::clone(tls));
            }
            let job = Job { plan: Arc::clone(&plan), inflight: args.inflight, echoed: Arc::clone(&echoed) };
            tokio::spawn(connection(builder, job, ready.clone(), start.clone()))
        })
        .collect();
    drop(ready);
    let mut opened = 0;
    while opened < args.conns && ready_rx.recv().await.is_some() {
        opened += 1;
    }
    let started = Instant::now();
    // If a connection failed (its task has the error), the others stop at once.
    go.send_replace(Some(if opened < args.conns { started } else { started + args.duration }));
    let progress = (!args.quiet && !args.json && args.duration >= Duration::from_secs(2) && std::io::stderr().is_terminal())
        .then(|| tokio::spawn(show_progress(args.duration, Arc::clone(&echoed))));
    let mut finished = Vec::with_capacity(tasks.len());
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(counts)) => finished.push(counts),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(e.to_string())),
        }
    }
    // Every connection stopped at the deadline: the clock stops here, before the merging.
    let mut outcome = Outcome { messages: 0, bytes: 0, seconds: started.elapsed().as_secs_f64(), latency: histogram() };
    for counts in &finished {
        outcome.messages += counts.messages;
        outcome.bytes += counts.bytes;
        let _ = outcome.latency.add(&counts.latency);
    }
    if let Some(progress) = progress {
        progress.abort();
        let _ = progress.await;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

fn histogram() -> Histogram<u64> {
    // 3 significant digits, growing with the largest value recorded (a few KiB for
    // latencies of milliseconds): constant arguments, which are valid.
    #[allow(clippy::expect_used)]
    Histogram::new(3).expect("a valid precision")
}

async fn show_progress(duration: Duration, echoed: Arc<AtomicU64>) {
    let bar = indicatif::ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {elapsed}/{duration} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let _clear = ClearOnDrop(bar.clone());
    loop {
        tick.tick().await;
        let elapsed = started.elapsed();
        bar.set_position(elapsed.as_millis() as u64);
        let rate = echoed.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64().max(1e-3);
        bar.set_message(format!("{rate:.0} msg/s"));
    }
}

/// Clears the progress bar when its task ends (it is aborted).
struct ClearOnDrop(indicatif::ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// What every connection sends.
struct Plan {
    payload: Vec<u8>,
    binary: bool,
    deflate: Option<DeflateConfig>,
    /// The frames, built by the first connection for what its handshake agreed.
    burst: OnceLock<(Option<Agreed>, Burst)>,
}

impl Plan {
    /// The burst of frames for a connection that agreed `agreed`.
    fn burst(&self, agreed: Option<Agreed>) -> Result<Burst, String> {
        if let Some((first, shared)) = self.burst.get() {
            if *first == agreed {
                return Ok(shared.clone());
            }
            return Ok(Burst::new(&self.frame(agreed)?));
        }
        let burst = Burst::new(&self.frame(agreed)?);
        let (first, shared) = self.burst.get_or_init(|| (agreed, burst.clone()));
        Ok(if *first == agreed { shared.clone() } else { burst })
    }

    /// One client frame, ready to send as it is, as many times as needed.
    fn frame(&self, agreed: Option<Agreed>) -> Result<Vec<u8>, String> {
        let opcode = if self.binary { OpCode::Binary } else { OpCode::Text };
        let mut body = BytesMut::new();
        let mut rsv = 0;
        if let Some(config) = &self.deflate {
            let agreed = agreed.ok_or("the server did not agree to permessage-deflate")?;
            if !agreed.own_no_context_takeover {
                return Err("the server did not accept client_no_context_takeover".into());
            }
            rsv = Deflate::new(agreed, config).encode(opcode, &self.payload, &mut body).map_err(|e| e.to_string())?.unwrap_or(0);
        }
        if rsv == 0 {
            body = BytesMut::from(&self.payload[..]);
        }
        let header = FrameHeader { fin: true, rsv, opcode, mask: Some([0; 4]), payload_len: body.len() as u64 };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        let mut frame = head[..n].to_vec();
        frame.extend_from_slice(&body);
        Ok(frame)
    }
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

/// Copies of the frame back to back, about 64 KiB of them (at least one), shared by every
/// connection.
#[derive(Clone)]
struct Burst {
    bytes: Arc<Vec<u8>>,
    frame_len: usize,
}

impl Burst {
    fn new(frame: &[u8]) -> Self {
        let copies = ((64 << 10) / frame.len().max(1)).max(1);
        Self { bytes: Arc::new(frame.repeat(copies)), frame_len: frame.len() }
    }
}

/// Frames waiting to be sent: a count, written from the burst, so even many large frames
/// in flight cost no memory of their own.
struct Pending {
    burst: Burst,
    frames: usize,
    /// Bytes of the current write (`..end` of the burst) already written.
    written: usize,
    end: usize,
}

impl Pending {
    fn new(burst: Burst, frames: usize) -> Self {
        Self { burst, frames, written: 0, end: 0 }
    }

    fn is_empty(&self) -> bool {
        self.frames == 0 && self.written == self.end
    }

    /// The bytes to write next.
    fn next_bytes(&mut self) -> &[u8] {
        if self.written == self.end {
            let per_burst = (self.burst.bytes.len() / self.burst.frame_len).max(1);
            let n = self.frames.min(per_burst);
            self.frames -= n;
            self.written = 0;
            self.end = n * self.burst.frame_len;
        }
        &self.burst.bytes[self.written..self.end]
    }

    fn advance(&mut self, n: usize) {
        self.written += n;
    }
}

/// One connection's counts.
struct Counts {
    messages: u64,
    bytes: u64,
    latency: Histogram<u64>,
    /// When the messages in flight were queued, oldest first: (time, how many).
    queued: VecDeque<(Instant, u64)>,
}

impl Counts {
    fn new(inflight: usize, now: Instant) -> Self {
        Self { messages: 0, bytes: 0, latency: histogram(), queued: VecDeque::from([(now, inflight as u64)]) }
    }

    /// `n` echoes arrived at `now`: their latencies are recorded (one entry per group
    /// queued together), and `n` new messages are queued.
    fn echoed(&mut self, mut n: u64, now: Instant) {
        let replaced = n;
        while n > 0 {
            let Some((at, count)) = self.queued.front_mut() else { break };
            let taken = n.min(*count);
            let us = (now.saturating_duration_since(*at).as_micros() as u64).clamp(1, MAX_LATENCY_US);
            let _ = self.latency.record_n(us, taken);
            *count -= taken;
            n -= taken;
            if *count == 0 {
                self.queued.pop_front();
            }
        }
        self.queued.push_back((now, replaced));
    }
}

/// Counts every whole echo in `buf` (a partial header stays for the next read), queues one
/// send per echo, and records their latency.
fn count_echoes(buf: &mut BytesMut, skip: &mut usize, pending: &mut Pending, counts: &mut Counts, echoed: &AtomicU64) {
    let mut n = 0;
    loop {
        let taken = (*skip).min(buf.len());
        buf.advance(taken);
        *skip -= taken;
        if *skip > 0 {
            break;
        }
        let Ok(Some((header, len))) = FrameHeader::decode(buf) else { break };
        buf.advance(len);
        *skip = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
        if matches!(header.opcode, OpCode::Text | OpCode::Binary) && header.fin {
            n += 1;
            counts.bytes += header.payload_len;
        }
    }
    if n > 0 {
        counts.messages += n;
        pending.frames += n as usize;
        counts.echoed(n, Instant::now());
        echoed.fetch_add(n, Ordering::Relaxed);
    }
}

/// What each connection is given.
struct Job {
    plan: Arc<Plan>,
    inflight: usize,
    echoed: Arc<AtomicU64>,
}

/// Opens one connection, reports it ready, and once every connection is (`start` gives the
/// deadline) keeps its messages in flight until the deadline.
async fn connection(
    builder: ClientBuilder,
    job: Job,
    ready: mpsc::Sender<()>,
    mut start: watch::Receiver<Option<Instant>>,
) -> Result<Counts, String> {
    let (stream, _response, negotiated, leftover) = builder.establish().await.map_err(|e| format!("handshake: {e}"))?;
    let burst = job.plan.burst(negotiated.deflate)?;
    let _ = ready.send(()).await;
    drop(ready);
    let deadline = match start.wait_for(Option::is_some).await {
        Ok(deadline) => deadline.unwrap_or_else(Instant::now),
        Err(_) => return Err("cancelled".into()),
    };
    let pending = Pending::new(burst, job.inflight);
    let counts = Counts::new(job.inflight, Instant::now());
    let run = Run { pending, counts, buf: leftover, skip: 0, echoed: job.echoed, deadline };
    let counts = match stream {
        ClientStream::Plain(tcp) => run.tcp(tcp).await,
        other => run.stream(other).await,
    };
    counts.map_err(|e| e.to_string())
}

/// One connection's loop state.
struct Run {
    pending: Pending,
    counts: Counts,
    buf: BytesMut,
    /// Payload bytes of a frame still to skip.
    skip: usize,
    echoed: Arc<AtomicU64>,
    deadline: Instant,
}

impl Run {
    /// Over TCP: writes never block reads (a peer that echoes a large message while it is
    /// still arriving must find us reading); what is to send waits in `pending` and is
    /// written as far as the socket takes it whenever it is writable.
    async fn tcp(mut self, stream: tokio::net::TcpStream) -> std::io::Result<Counts> {
        loop {
            while !self.pending.is_empty() {
                match stream.try_write(self.pending.next_bytes()) {
                    Ok(n) => self.pending.advance(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            count_echoes(&mut self.buf, &mut self.skip, &mut self.pending, &mut self.counts, &self.echoed);
            if Instant::now() >= self.deadline {
                return Ok(self.counts);
            }
            self.buf.reserve(256 << 10);
            match stream.try_read_buf(&mut self.buf) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let ready = async {
                        if self.pending.is_empty() {
                            stream.readable().await
                        } else {
                            tokio::select! {
                                r = stream.readable() => r,
                                w = stream.writable() => w,
                            }
                        }
                    };
                    match tokio::time::timeout_at(self.deadline.into(), ready).await {
                        Err(_) => return Ok(self.counts),
                        Ok(r) => r?,
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Over any other stream (TLS, an HTTP/2 stream): the same loop on async reads and
    /// writes, which never block each other either.
    async fn stream<S: AsyncRead + AsyncWrite>(mut self, stream: S) -> std::io::Result<Counts> {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let deadline = tokio::time::Instant::from_std(self.deadline);
        loop {
            count_echoes(&mut self.buf, &mut self.skip, &mut self.pending, &mut self.counts, &self.echoed);
            self.buf.reserve(256 << 10);
            let writing = !self.pending.is_empty();
            tokio::select! {
                read = reader.read_buf(&mut self.buf) => {
                    if read? == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                written = writer.write(self.pending.next_bytes()), if writing => self.pending.advance(written?),
                () = tokio::time::sleep_until(deadline) => return Ok(self.counts),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly
    use super::*;

    #[test]
    fn latency_is_recorded_per_group_queued_together() {
        let t0 = Instant::now();
        let mut counts = Counts::new(4, t0);
        counts.echoed(3, t0 + Duration::from_millis(2));
        counts.echoed(2, t0 + Duration::from_millis(5));
        // 4 sent at t0 (3 echoed at 2 ms, 1 at 5 ms), 3 sent at 2 ms (1 echoed at 5 ms).
        assert_eq!(counts.latency.len(), 5);
        assert_eq!(counts.latency.count_at(2_000), 3);
        assert_eq!(counts.latency.count_at(5_000), 1);
        assert_eq!(counts.latency.count_at(3_000), 1);
        assert_eq!(counts.queued.iter().map(|(_, n)| n).sum::<u64>(), 4);
    }

    #[test]
    fn frames_are_masked_with_the_zero_key_and_compressed_once() {
        let plan = Plan { payload: payload(300), binary: true, deflate: None, burst: OnceLock::new() };
        let frame = plan.frame(None).unwrap();
        let (header, n) = FrameHeader::decode(&frame).unwrap().unwrap();
        assert_eq!((header.opcode, header.mask, header.payload_len), (OpCode::Binary, Some([0; 4]), 300));
        assert_eq!(&frame[n..], &plan.payload[..]);

        let config = DeflateConfig::default().threshold(0);
        let plan = Plan { payload: payload(300), binary: false, deflate: Some(config), burst: OnceLock::new() };
        let agreed = Agreed { own_window_bits: 15, own_no_context_takeover: true, peer_window_bits: 15, peer_no_context_takeover: false };
        let frame = plan.frame(Some(agreed)).unwrap();
        let (header, n) = FrameHeader::decode(&frame).unwrap().unwrap();
        assert_eq!(header.rsv, ws_core::frame::RSV1);
        assert!(frame.len() - n < 300, "compressed");
        let refused = Agreed { own_no_context_takeover: false, ..agreed };
        assert!(plan.frame(Some(refused)).is_err());
        assert!(plan.frame(None).is_err());
    }
}
