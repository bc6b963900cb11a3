//! `wsdriver serve ADDR`: the standalone server, echoing, broadcasting, or running a
//! command per connection, with a directory of files beside it.

use crate::{fail, parse_duration, parse_header, parse_size};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use std::path::{Component, Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use ws_core::deflate::DeflateConfig;
use ws_core::meter::PeerAddr;
use ws_core::rustls::{self, pki_types::CertificateDer, pki_types::PrivateKeyDer, pki_types::pem::PemObject};
use ws_core::{CloseCode, Config, Connection, Handler, Message, PreparedMessage, Server};
use ws_hub::{Hub, Member};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Every path is served. --broadcast makes each path a room: a message from one client goes to \
every client on the same path, its sender included. --exec runs the command (with sh -c) for \
each connection: text messages are written to its standard input, one per line, binary ones \
as they are; each line of its output is sent back as a text message; when it exits, the \
connection closes with 1000. It sees WSDRIVER_PATH (the request's path and query) and \
WSDRIVER_PEER (the client's address) in its environment.

Ctrl-C (or SIGTERM) shuts down gracefully: every connection is closed with 1001 and given \
--shutdown-deadline to finish its close handshake.")]
pub struct Args {
    /// The address to listen on.
    #[arg(default_value = "127.0.0.1:9001")]
    addr: String,
    /// Send every message back to its sender (the default).
    #[arg(long, group = "mode")]
    echo: bool,
    /// Send every message to every client on the same path.
    #[arg(long, group = "mode")]
    broadcast: bool,
    /// Run this shell command for each connection, its standard input and output joined to
    /// the messages.
    #[arg(long, group = "mode", value_name = "COMMAND")]
    exec: Option<String>,
    /// Serve the files of this directory to plain HTTP GET requests (index.html for a
    /// directory), beside the WebSockets.
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// Serve wss:// with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// A subprotocol the server accepts, in order of preference (repeatable).
    #[arg(short, long = "protocol", value_name = "NAME")]
    protocols: Vec<String>,
    /// Accept handshakes only from this Origin (repeatable; default: any origin).
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// An extra header on every handshake's answer, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Do not accept permessage-deflate compression.
    #[arg(long)]
    no_compression: bool,
    /// zlib level for compressed messages, 0-9 [default: 1].
    #[arg(long, value_name = "LEVEL", conflicts_with = "no_compression")]
    compression_level: Option<u32>,
    /// Messages shorter than this are sent uncompressed [default: 64].
    #[arg(long, value_name = "BYTES", value_parser = parse_size, conflicts_with = "no_compression")]
    compression_threshold: Option<usize>,
    /// The largest window the server compresses with, 9-15 [default: 15].
    #[arg(long, value_name = "BITS", conflicts_with = "no_compression")]
    compression_window_bits: Option<u8>,
    /// Reset the server's compression context after every message (less memory per
    /// connection, a lower ratio).
    #[arg(long, conflicts_with = "no_compression")]
    no_context_takeover: bool,
    /// The largest message accepted [default: 64MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_message_size: Option<usize>,
    /// The largest frame accepted [default: 64MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_frame_size: Option<usize>,
    /// Bytes queued for a client before senders wait [default: 1MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    write_buffer_high_water: Option<usize>,
    /// How long the request head and a TLS handshake may take [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    handshake_timeout: Option<Duration>,
    /// The largest request head, in bytes [default: 16k].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_header_bytes: Option<usize>,
    /// The most request headers [default: 64].
    #[arg(long, value_name = "COUNT")]
    max_headers: Option<usize>,
    /// How long a close handshake may take before the connection is dropped [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    close_timeout: Option<Duration>,
    /// Ping every client this often [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "no_ping")]
    ping_interval: Option<Duration>,
    /// Never ping clients.
    #[arg(long)]
    no_ping: bool,
    /// Close a client that does not answer a ping within this time [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pong_timeout: Option<Duration>,
    /// How long a graceful shutdown waits for close handshakes.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    shutdown_deadline: Duration,
}

impl Args {
    fn config(&self) -> Result<Config, String> {
        let mut config = Config::default().protocols(self.protocols.iter().cloned());
        if !self.allowed_origins.is_empty() {
            config = config.allowed_origins(self.allowed_origins.iter().cloned());
        }
        for header in &self.headers {
            let (name, value) = parse_header(header)?;
            config = config.extra_header(name, value);
        }
        if !self.no_compression {
            let mut deflate = DeflateConfig::default();
            if let Some(level) = self.compression_level {
                deflate = deflate.level(level);
            }
            if let Some(bytes) = self.compression_threshold {
                deflate = deflate.threshold(bytes);
            }
            if let Some(bits) = self.compression_window_bits {
                deflate = deflate.max_window_bits(bits, deflate.client_max_window_bits);
            }
            config = config.deflate(deflate.no_context_takeover(self.no_context_takeover, false));
        }
        if let Some(bytes) = self.max_message_size {
            config = config.max_message_size(bytes);
        }
        if let Some(bytes) = self.max_frame_size {
            config = config.max_frame_size(bytes);
        }
        if let Some(bytes) = self.write_buffer_high_water {
            config = config.write_buffer_high_water(bytes);
        }
        if let Some(timeout) = self.handshake_timeout {
            config = config.handshake_timeout(timeout);
        }
        if self.max_header_bytes.is_some() || self.max_headers.is_some() {
            let bytes = self.max_header_bytes.unwrap_or(config.max_header_bytes);
            let count = self.max_headers.unwrap_or(config.max_headers);
            config = config.max_request_headers(bytes, count);
        }
        if let Some(timeout) = self.close_timeout {
            config = config.close_timeout(timeout);
        }
        let interval = if self.no_ping { None } else { self.ping_interval.or(config.ping_interval) };
        let pong_timeout = self.pong_timeout.unwrap_or(config.pong_timeout);
        Ok(config.keepalive(interval, pong_timeout))
    }

    fn tls(&self) -> Result<Option<rustls::ServerConfig>, String> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else { return Ok(None) };
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("--cert {}: {e}", cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--key {}: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
            .map(Some)
            .map_err(|e| format!("--cert/--key: {e}"))
    }
}

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            fail(e);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fail(e);
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let config = args.config()?;
    config.validate().map_err(|e| e.to_string())?;
    let tls = args.tls()?;
    if let Some(dir) = &args.static_dir {
        if !dir.is_dir() {
            return Err(format!("--static {}: not a directory", dir.display()));
        }
    }
    let mut server = Server::bind(&args.addr).await.map_err(|e| format!("cannot listen on {}: {e}", args.addr))?.config(config);
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    if let Some(tls) = tls {
        server = server.tls(tls);
    }
    if let Some(dir) = args.static_dir.clone() {
        server = server.fallback(move |request| static_file(&dir, request));
    }
    let mode = match (&args.exec, args.broadcast) {
        (Some(command), _) => Mode::Exec(Arc::from(command.as_str())),
        (None, true) => Mode::Broadcast(Hub::new()),
        (None, false) => Mode::Echo,
    };
    println!("wsdriver: {} on {scheme}://{addr}", mode.name());
    let server = server.with_graceful_shutdown(shutdown_signal(), args.shutdown_deadline);
    server.serve(move |request| mode.handler(request)).await.map_err(|e| e.to_string())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("wsdriver: shutting down");
}

enum Mode {
    Echo,
    Broadcast(Hub),
    Exec(Arc<str>),
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Broadcast(_) => "broadcast",
            Self::Exec(_) => "exec",
        }
    }

    fn handler(&self, request: &Request<()>) -> Session {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        match self {
            Self::Echo => Session::Echo,
            Self::Broadcast(hub) => Session::Broadcast { hub: hub.clone(), room: path, member: None },
            Self::Exec(command) => {
                let peer = request.extensions().get::<PeerAddr>().map(|p| p.0.to_string()).unwrap_or_default();
                Session::Exec { command: Arc::clone(command), path, peer, child: None }
            }
        }
    }
}

/// One connection's handler.
enum Session {
    Echo,
    Broadcast { hub: Hub, room: String, member: Option<Member> },
    Exec { command: Arc<str>, path: String, peer: String, child: Option<(Child, ChildStdin)> },
}

impl Handler for Session {
    async fn on_open(&mut self, ws: &Connection) {
        match self {
            Self::Echo => {}
            Self::Broadcast { hub, room, member } => {
                let joined = hub.register(ws.clone());
                joined.join(room);
                *member = Some(joined);
            }
            Self::Exec { command, path, peer, child } => match spawn(command, path, peer, ws) {
                Ok(spawned) => *child = Some(spawned),
                Err(e) => {
                    tracing::warn!(%command, error = %e, "cannot run the command");
                    let _ = ws.close(CloseCode::INTERNAL_ERROR, "the command could not be started");
                }
            },
        }
    }

    async fn on_message(&mut self, ws: &Connection, message: Message) {
        match self {
            Self::Echo => {
                let _ = ws.send(message).await;
            }
            Self::Broadcast { room, member: Some(member), .. } => {
                let prepared: PreparedMessage = match message {
                    Message::Text(text) => text.into(),
                    Message::Binary(data) => data.into(),
                    _ => return,
                };
                let _: usize = member.broadcast(room, prepared);
            }
            Self::Broadcast { member: None, .. } => {}
            Self::Exec { child, .. } => {
                let Some((_, stdin)) = child else { return };
                let written = match &message {
                    Message::Text(text) => {
                        async {
                            stdin.write_all(text.as_bytes()).await?;
                            stdin.write_all(b"\n").await?;
                            stdin.flush().await
                        }
                        .await
                    }
                    Message::Binary(data) => {
                        async {
                            stdin.write_all(data).await?;
                            stdin.flush().await
                        }
                        .await
                    }
                    _ => Ok(()),
                };
                if let Err(e) = written {
                    tracing::debug!(error = %e, "the command no longer reads its input");
                }
            }
        }
    }

    async fn on_close(&mut self, _ws: &Connection, _code: CloseCode, _reason: &str) {
        if let Self::Exec { child: Some((child, _)), .. } = self {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// Starts `sh -c command` for one connection: each line of its output is sent as a
/// text message (binary when it is not UTF-8), and the connection is closed with 1000
/// when the output ends.
fn spawn(command: &str, path: &str, peer: &str, ws: &Connection) -> std::io::Result<(Child, ChildStdin)> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("WSDRIVER_PATH", path)
        .env("WSDRIVER_PEER", peer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(std::io::Error::other("the command's pipes were not opened"));
    };
    let ws = ws.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            let message = match String::from_utf8(std::mem::take(&mut line)) {
                Ok(text) => Message::text(text),
                Err(bytes) => Message::Binary(Bytes::from(bytes.into_bytes())),
            };
            if ws.send(message).await.is_err() {
                return;
            }
        }
        let _ = ws.close(CloseCode::NORMAL, "the command exited");
    });
    Ok((child, stdin))
}

/// Answers a plain HTTP request from `dir`: GET only, paths inside `dir` only.
fn static_file(dir: &Path, request: &Request<()>) -> Response<Bytes> {
    let answer = |status: StatusCode, body: &'static str| {
        let mut response = Response::new(Bytes::from_static(body.as_bytes()));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
        response
    };
    if request.method() != http::Method::GET {
        let mut response = answer(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here\n");
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return response;
    }
    let Some(mut path) = resolve(dir, request.uri().path()) else {
        return answer(StatusCode::NOT_FOUND, "not found\n");
    };
    if path.is_dir() {
        path.push("index.html");
    }
    // Small files for a page beside the WebSockets: read at once, on the server's thread.
    match std::fs::read(&path) {
        Ok(body) => {
            let mime = mime_guess::from_path(&path).first_or_octet_stream();
            let mut response = Response::new(Bytes::from(body));
            if let Ok(value) = header::HeaderValue::from_str(mime.essence_str()) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            response
        }
        Err(_) => answer(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The file a URL path names inside `dir`, or `None` for a path that would leave it.
fn resolve(dir: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(url_path).decode_utf8().ok()?;
    let mut path = dir.to_path_buf();
    for component in Path::new(decoded.as_ref()).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly
    use super::*;

    #[test]
    fn documented_defaults_are_the_config_defaults() {
        use clap::CommandFactory;
        let command = crate::Cli::command();
        let serve = command.find_subcommand("serve").unwrap();
        let help = |id: &str| serve.get_arguments().find(|a| a.get_id() == id).unwrap().get_help().unwrap().to_string();
        let size = |bytes: usize| match bytes {
            _ if bytes % (1 << 20) == 0 => format!("[default: {}MiB]", bytes >> 20),
            _ if bytes % (1 << 10) == 0 => format!("[default: {}k]", bytes >> 10),
            _ => format!("[default: {bytes}]"),
        };
        let secs = |d: Duration| format!("[default: {}s]", d.as_secs());
        let config = Config::default();
        let deflate = DeflateConfig::default();
        for (id, default) in [
            ("max_message_size", size(config.max_message_size)),
            ("max_frame_size", size(config.max_frame_size)),
            ("write_buffer_high_water", size(config.write_buffer_high_water)),
            ("max_header_bytes", size(config.max_header_bytes)),
            ("max_headers", format!("[default: {}]", config.max_headers)),
            ("handshake_timeout", secs(config.handshake_timeout)),
            ("close_timeout", secs(config.close_timeout)),
            ("ping_interval", secs(config.ping_interval.unwrap())),
            ("pong_timeout", secs(config.pong_timeout)),
            ("compression_level", format!("0-9 [default: {}]", deflate.level)),
            ("compression_threshold", format!("[default: {}]", deflate.threshold)),
            ("compression_window_bits", format!("[default: {}]", deflate.server_max_window_bits)),
        ] {
            let text = help(id);
            assert!(text.ends_with(&default), "--{id}: {text:?} should end with {default:?}");
        }
    }

    #[test]
    fn paths_stay_inside_the_directory() {
        let dir = Path::new("/srv/www");
        assert_eq!(resolve(dir, "/"), Some(PathBuf::from("/srv/www")));
        assert_eq!(resolve(dir, "/a/b.html"), Some(PathBuf::from("/srv/www/a/b.html")));
        assert_eq!(resolve(dir, "/a%20b.js"), Some(PathBuf::from("/srv/www/a b.js")));
        assert_eq!(resolve(dir, "/../etc/passwd"), None);
        assert_eq!(resolve(dir, "/a/%2e%2e/%2e%2e/etc/passwd"), None);
        assert_eq!(resolve(dir, "/%ff"), None);
    }

    #[test]
    fn static_answers() {
        let dir = std::env::temp_dir().join(format!("wsdriver-static-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "<p>hi</p>").unwrap();
        let get = |path: &str| static_file(&dir, &Request::get(path).body(()).unwrap());
        let index = get("/");
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(index.headers()[header::CONTENT_TYPE], "text/html");
        assert_eq!(index.body().as_ref(), b"<p>hi</p>");
        assert_eq!(get("/missing.css").status(), StatusCode::NOT_FOUND);
        assert_eq!(get("/../index.html").status(), StatusCode::NOT_FOUND);
        let post = static_file(&dir, &Request::post("/").body(()).unwrap());
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
