//! `wsdriver connect URL`: standard input out as messages, messages in on standard output.

use crate::{fail, parse_duration, parse_header, parse_size};
use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::oneshot;
use ws_core::client::ClientBuilder;
use ws_core::deflate::DeflateConfig;
use ws_core::{CloseCode, Config, Connection, Message};

/// The exit statuses of `connect`.
mod exit {
    /// Closed with 1000 or 1001 (or by us, at the end of the input or on Ctrl-C).
    pub const CLOSED: u8 = 0;
    /// The connection could not be made (refused, DNS, TLS, proxy, handshake).
    pub const CONNECT_FAILED: u8 = 1;
    /// The command line was wrong (clap uses 2 too).
    pub const USAGE: u8 = 2;
    /// The server closed with another code.
    pub const CLOSED_WITH_ERROR: u8 = 3;
    /// The connection was lost without a close handshake.
    pub const LOST: u8 = 4;
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Each line of standard input is sent as a text message (with --binary, each chunk read as a \
binary message); each message received is written to standard output, one per line. In a \
terminal, received messages start with `< `, and binary ones are shown as hex.

When the input ends (Ctrl-D, or the end of a pipe), wsdriver waits until nothing has arrived \
for --linger, then closes with 1000. Ctrl-C closes at once.

Exit status: 0 closed normally (1000 or 1001), 1 could not connect, 2 usage, 3 closed by \
the server with another code, 4 connection lost without a close.

Proxies: HTTPS_PROXY (wss://), HTTP_PROXY (ws://), ALL_PROXY and NO_PROXY are honoured \
unless --proxy or --no-proxy says otherwise.")]
pub struct Args {
    /// The server's URL: ws://host[:port]/path or wss://...
    url: String,
    /// An extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A subprotocol to offer (repeatable; the server picks one).
    #[arg(short, long = "protocol", value_name = "NAME")]
    protocols: Vec<String>,
    /// The Origin header to send.
    #[arg(short, long)]
    origin: Option<String>,
    /// Send standard input as binary messages (chunks as they are read) and write binary
    /// messages to standard output as they are.
    #[arg(short, long)]
    binary: bool,
    /// Offer permessage-deflate compression.
    #[arg(short, long)]
    compression: bool,
    /// Open the WebSocket over HTTP/2 (RFC 8441) when the server speaks it.
    #[arg(long)]
    http2: bool,
    /// Connect through this proxy: http://[user:pass@]host:port, socks5://, socks5h://.
    #[arg(long, value_name = "URL", conflicts_with = "no_proxy")]
    proxy: Option<String>,
    /// Ignore the proxy environment variables and connect directly.
    #[arg(long)]
    no_proxy: bool,
    /// Accept any TLS certificate (self-signed, expired, another name's). Never on a network
    /// you do not trust.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Send a ping this often, and give up on a server that does not answer.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    ping_interval: Option<Duration>,
    /// How long TCP, TLS and a proxy may take.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    connect_timeout: Duration,
    /// The largest message accepted from the server.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_message_size: Option<usize>,
    /// After the input ends, keep reading until nothing has arrived for this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "500ms")]
    linger: Duration,
    /// Print nothing but the messages (no connected or closed lines).
    #[arg(short, long)]
    quiet: bool,
}

impl Args {
    fn builder(&self) -> Result<ClientBuilder, String> {
        let mut config = Config::default().protocols(self.protocols.iter().cloned());
        if self.compression {
            config = config.deflate(DeflateConfig::default());
        }
        if let Some(interval) = self.ping_interval {
            let pong_timeout = config.pong_timeout;
            config = config.keepalive(Some(interval), pong_timeout);
        }
        if let Some(bytes) = self.max_message_size {
            config = config.max_message_size(bytes);
        }
        let mut builder = ClientBuilder::new(&self.url).config(config).connect_timeout(self.connect_timeout).http2(self.http2);
        for header in &self.headers {
            let (name, value) = parse_header(header)?;
            builder = builder.header(name, value);
        }
        if let Some(origin) = &self.origin {
            let value = HeaderValue::try_from(origin.as_str()).map_err(|e| format!("--origin `{origin}`: {e}"))?;
            builder = builder.header(http::header::ORIGIN, value);
        }
        if let Some(proxy) = &self.proxy {
            builder = builder.proxy(proxy);
        }
        if self.no_proxy {
            builder = builder.no_proxy();
        }
        if self.insecure {
            builder = builder.tls_config(crate::insecure::client_config().map_err(|e| format!("--insecure: {e}"))?);
        }
        Ok(builder)
    }
}

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            fail(e);
            return ExitCode::from(exit::CONNECT_FAILED);
        }
    };
    let code = runtime.block_on(session(args));
    // A read of standard input may still be blocked on its thread: do not wait for it.
    runtime.shutdown_background();
    ExitCode::from(code)
}

async fn session(args: Args) -> u8 {
    let builder = match args.builder() {
        Ok(builder) => builder,
        Err(e) => {
            fail(e);
            return exit::USAGE;
        }
    };
    let (ws, response) = match builder.connect().await {
        Ok(connected) => connected,
        Err(e) => {
            fail(format_args!("could not connect to {}: {e}", args.url));
            return exit::CONNECT_FAILED;
        }
    };
    if !args.quiet {
        let mut details = vec![format!("{:?}", ws.http_version())];
        if let Some(protocol) = ws.protocol() {
            details.push(format!("protocol {protocol}"));
        }
        if let Some(extensions) = response.headers().get(http::header::SEC_WEBSOCKET_EXTENSIONS).and_then(|v| v.to_str().ok()) {
            details.push(extensions.to_owned());
        }
        eprintln!("connected to {} ({})", args.url, details.join(", "));
    }
    let connection = ws.connection();
    let (_sink, mut stream) = ws.split();
    let (input_ended, mut input_end) = oneshot::channel();
    let input = tokio::spawn(send_input(connection.clone(), args.binary, input_ended));
    let mut output = Output::new(args.binary);
    let mut closing = false; // we sent the Close
    let mut lingering: Option<tokio::time::Instant> = None;
    let ctrl_c = tokio::signal::ctrl_c();
    let mut ctrl_c = std::pin::pin!(ctrl_c);
    loop {
        let linger_until = lingering.filter(|_| !closing);
        tokio::select! {
            message = stream.recv() => match message {
                Some(Ok(message)) => {
                    if let Some(until) = lingering.as_mut() {
                        *until = tokio::time::Instant::now() + args.linger;
                    }
                    if let Err(e) = output.write(&message) {
                        // A closed pipe downstream (`| head`): stop as a pipe would.
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            let _ = connection.close(CloseCode::NORMAL, "");
                            closing = true;
                        } else {
                            fail(format_args!("writing the output: {e}"));
                        }
                    }
                }
                Some(Err(e)) => fail(e),
                None => break,
            },
            ended = &mut input_end, if lingering.is_none() && !closing => {
                if let Ok(Err(e)) = ended {
                    fail(format_args!("reading the input: {e}"));
                }
                lingering = Some(tokio::time::Instant::now() + args.linger);
            }
            () = sleep_until(linger_until) => {
                let _ = connection.close(CloseCode::NORMAL, "");
                closing = true;
            }
            _ = &mut ctrl_c, if !closing => {
                let _ = connection.close(CloseCode::NORMAL, "");
                closing = true;
            }
        }
    }
    input.abort();
    let _ = output.flush();
    let (code, reason) = stream.close_status().unwrap_or((CloseCode::ABNORMAL, "".into()));
    if !args.quiet {
        if reason.is_empty() {
            eprintln!("closed: {}", u16::from(code));
        } else {
            eprintln!("closed: {} {reason}", u16::from(code));
        }
    }
    match u16::from(code) {
        1000 | 1001 => exit::CLOSED,
        // We closed; the server answered with a Close without a code.
        1005 if closing => exit::CLOSED,
        1006 => exit::LOST,
        _ => exit::CLOSED_WITH_ERROR,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sends standard input until it ends: lines as text, or chunks as binary. Reports the end
/// (or a read error) on `ended`.
async fn send_input(connection: Connection, binary: bool, ended: oneshot::Sender<std::io::Result<()>>) {
    let result = if binary { send_chunks(&connection).await } else { send_lines(&connection).await };
    let _ = ended.send(result);
}

async fn send_lines(connection: &Connection) -> std::io::Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        line.clear();
        if stdin.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        while line.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            line.pop();
        }
        let text = String::from_utf8(std::mem::take(&mut line))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "a line is not UTF-8 (send it with --binary)"))?;
        if connection.send_text(text).await.is_err() {
            return Ok(()); // the connection is closing; the main loop reports why
        }
    }
}

async fn send_chunks(connection: &Connection) -> std::io::Result<()> {
    let mut stdin = tokio::io::stdin();
    let mut buf = BytesMut::with_capacity(64 << 10);
    loop {
        buf.reserve(64 << 10);
        if stdin.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        if connection.send_binary(buf.split().freeze()).await.is_err() {
            return Ok(());
        }
    }
}

/// Standard output: messages one per line; in a terminal marked `< ` with binary as hex.
struct Output {
    out: std::io::BufWriter<std::io::Stdout>,
    terminal: bool,
    raw_binary: bool,
}

impl Output {
    fn new(raw_binary: bool) -> Self {
        let stdout = std::io::stdout();
        let terminal = stdout.is_terminal();
        Self { out: std::io::BufWriter::new(stdout), terminal, raw_binary }
    }

    fn write(&mut self, message: &Message) -> std::io::Result<()> {
        match message {
            Message::Text(text) if self.terminal => writeln!(self.out, "< {text}")?,
            Message::Text(text) => writeln!(self.out, "{text}")?,
            Message::Binary(data) if self.raw_binary && !self.terminal => self.out.write_all(data)?,
            Message::Binary(data) if self.terminal => writeln!(self.out, "< {}", hex(data))?,
            Message::Binary(data) => writeln!(self.out, "{}", hex(data))?,
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return Ok(()),
        }
        self.out.flush()
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// `[N bytes] 0a 1b …`: the first 64 bytes in hex.
fn hex(data: &Bytes) -> String {
    const SHOWN: usize = 64;
    let mut text = format!("[{} bytes]", data.len());
    for byte in data.iter().take(SHOWN) {
        text.push_str(&format!(" {byte:02x}"));
    }
    if data.len() > SHOWN {
        text.push_str(" …");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_is_shown_as_hex() {
        assert_eq!(hex(&Bytes::from_static(b"\x00\xffA")), "[3 bytes] 00 ff 41");
        assert!(hex(&Bytes::from(vec![1u8; 100])).ends_with(" …"));
    }
}
