//! The `wsdriver` binary as a user runs it: `connect` through pipes and a terminal,
//! `serve` in each mode, `bench` against the echo example.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use ws_core::client::ClientBuilder;
use ws_core::{CloseCode, Message};

/// The longest any step of these tests may take.
const LIMIT: Duration = Duration::from_secs(30);

fn wsdriver() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsdriver"))
}

/// `wsdriver serve 127.0.0.1:0 ARGS`, killed when dropped.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start(args: &[&str]) -> Self {
        let mut child =
            wsdriver().arg("serve").arg("127.0.0.1:0").args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        // Its first line: `wsdriver: MODE on ws://ADDR`, printed once it listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.split_whitespace().last().unwrap_or_else(|| panic!("serve did not start: {line:?}")).to_owned();
        Self { child, url }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn addr(&self) -> String {
        self.url.split("://").nth(1).unwrap().to_owned()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `wsdriver ARGS` with `input` on standard input; bounded by [`LIMIT`].
fn run(args: &[&str], input: &[u8]) -> Output {
    let mut child = wsdriver().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(LIMIT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("wsdriver {args:?} did not finish");
        }
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_reads_like_a_manual() {
    let top = run(&["--help"], b"");
    assert!(top.status.success());
    let text = String::from_utf8(top.stdout).unwrap();
    for word in ["connect", "serve", "bench", "Examples:"] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
    for (command, flags) in [
        (
            "connect",
            &["--header", "--protocol", "--origin", "--proxy", "--insecure", "--ping-interval", "--compression", "Exit status"][..],
        ),
        ("serve", &["--echo", "--broadcast", "--exec", "--static", "--cert", "--key", "--max-message-size", "--ping-interval"][..]),
        ("bench", &["--conns", "--inflight", "--size", "--duration", "--json", "--deflate", "--http2"][..]),
    ] {
        let help = run(&[command, "--help"], b"");
        assert!(help.status.success(), "{command} --help");
        let text = String::from_utf8(help.stdout).unwrap();
        for flag in flags {
            assert!(text.contains(flag), "{flag} missing from `{command} --help`:\n{text}");
        }
    }
    let usage = run(&["connect"], b"");
    assert_eq!(usage.status.code(), Some(2), "a missing URL is a usage error");
    let usage = run(&["serve", "--echo", "--broadcast"], b"");
    assert_eq!(usage.status.code(), Some(2), "one mode at a time");
}

#[test]
fn connect_pipes_lines_through_serve() {
    let server = Serve::start(&[]);
    let output = run(&["connect", &server.url("/pipe")], "hello\nwörld\n\nlast line without a newline".as_bytes());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\nwörld\n\nlast line without a newline\n");
    assert!(stderr(&output).contains("closed: 1000"), "{}", stderr(&output));

    // Binary: bytes in, the same bytes out.
    let bytes: Vec<u8> = (0..=255).cycle().take(100_000).collect();
    let output = run(&["connect", "--binary", "--quiet", "--compression", &server.url("/")], &bytes);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(output.stdout, bytes);
    assert!(stderr(&output).is_empty(), "--quiet: {}", stderr(&output));
}

/// Reads a WebSocket handshake request from `socket` and accepts it.
fn answer_101(socket: &mut std::net::TcpStream) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.ends_with(b"\r\n\r\n") {
        let n = std::io::Read::read(socket, &mut buf).unwrap();
        assert!(n > 0, "the client went away mid-request");
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request).into_owned();
    let key = text.lines().find_map(|l| l.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-key"))).unwrap().1;
    let accept = ws_core::handshake::accept_key(key.trim().as_bytes());
    write!(
        socket,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .unwrap();
}

#[test]
fn connect_exit_status_says_how_it_ended() {
    // Nothing listening: could not connect.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let output = run(&["connect", &format!("ws://{closed_port}/")], b"");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("could not connect"), "{}", stderr(&output));

    // A bad header on the command line: usage.
    let output = run(&["connect", "-H", "no colon", "ws://127.0.0.1:9/"], b"");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));

    // The server closes with 1009 (message too big): another code.
    let server = Serve::start(&["--max-message-size", "16"]);
    let output = run(&["connect", &server.url("/")], b"a line longer than sixteen bytes\n");
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("closed: 1009"), "{}", stderr(&output));

    // The server goes away without a close handshake: lost.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let rude = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        answer_101(&mut socket);
        // A text frame, then the connection is dropped.
        socket.write_all(b"\x81\x02hi").unwrap();
    });
    let output = run(&["connect", "--linger", "30s", &format!("ws://{addr}/")], b"");
    rude.join().unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hi\n");
    assert!(stderr(&output).contains("closed: 1006"), "{}", stderr(&output));
}

#[tokio::test]
async fn serve_broadcast_sends_to_everyone_on_the_path() {
    let server = Serve::start(&["--broadcast"]);
    let open = |path: &str| ClientBuilder::new(server.url(path)).connect();
    let (mut a, _) = open("/room").await.unwrap();
    let (mut b, _) = open("/room").await.unwrap();
    let (mut elsewhere, _) = open("/other").await.unwrap();
    // Until both are in the room, a message may reach only the sender: say hello until b hears.
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        a.send(Message::text("hello")).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(200), b.recv()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                assert_eq!(text, "hello");
                break;
            }
            Ok(other) => panic!("b got {other:?}"),
            Err(_) => assert!(tokio::time::Instant::now() < deadline, "b never heard a"),
        }
    }
    b.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    // a hears its own hellos, then b's message.
    let until_binary = async {
        loop {
            match a.recv().await.unwrap().unwrap() {
                Message::Text(text) => assert_eq!(text, "hello"),
                Message::Binary(data) => return data,
                other => panic!("a got {other:?}"),
            }
        }
    };
    assert_eq!(tokio::time::timeout(LIMIT, until_binary).await.unwrap().as_ref(), [1, 2, 3]);
    // Another path is another room.
    elsewhere.send(Message::text("anyone?")).await.unwrap();
    let echoed = tokio::time::timeout(LIMIT, elsewhere.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::text("anyone?"), "the sender hears itself");
    b.send(Message::text("only the room")).await.unwrap();
    let heard = tokio::time::timeout(LIMIT, a.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(heard, Message::text("only the room"));
    assert!(tokio::time::timeout(Duration::from_millis(300), elsewhere.recv()).await.is_err(), "/other heard /room");
}

#[tokio::test]
async fn serve_exec_joins_a_command_to_each_connection() {
    let server = Serve::start(&["--exec", r#"read line; echo "got $line on $WSDRIVER_PATH"; read line; echo "then $line""#]);
    let (mut ws, _) = ClientBuilder::new(server.url("/cmd?x=1")).connect().await.unwrap();
    ws.send(Message::text("one")).await.unwrap();
    let first = tokio::time::timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, Message::text("got one on /cmd?x=1"));
    ws.send(Message::text("two")).await.unwrap();
    let second = tokio::time::timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(second, Message::text("then two"));
    // The command has exited: the connection closes with 1000.
    let close = tokio::time::timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(close, Message::Close(Some(ws_core::CloseFrame { code: CloseCode::NORMAL, reason: "the command exited".into() })));

    // Each connection has its own process.
    let server = Serve::start(&["--exec", "while read line; do echo \"$line$line\"; done"]);
    let (mut a, _) = ClientBuilder::new(server.url("/")).connect().await.unwrap();
    let (mut b, _) = ClientBuilder::new(server.url("/")).connect().await.unwrap();
    a.send(Message::text("a")).await.unwrap();
    b.send(Message::text("b")).await.unwrap();
    assert_eq!(tokio::time::timeout(LIMIT, a.recv()).await.unwrap().unwrap().unwrap(), Message::text("aa"));
    assert_eq!(tokio::time::timeout(LIMIT, b.recv()).await.unwrap().unwrap().unwrap(), Message::text("bb"));
}

#[tokio::test]
async fn serve_static_serves_a_page_beside_the_websockets() {
    let dir = std::env::temp_dir().join(format!("wsdriver-cli-static-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(dir.join("index.html"), "<script src=/js/app.js></script>").unwrap();
    std::fs::write(dir.join("js/app.js"), "new WebSocket(location.href.replace('http', 'ws'))").unwrap();
    let server = Serve::start(&["--static", dir.to_str().unwrap()]);
    let get = |path: &str| {
        let mut socket = std::net::TcpStream::connect(server.addr()).unwrap();
        socket.set_read_timeout(Some(LIMIT)).unwrap();
        write!(socket, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut socket, &mut answer).unwrap();
        answer
    };
    let index = get("/");
    assert!(index.starts_with("HTTP/1.1 200"), "{index}");
    assert!(index.contains("content-type: text/html"), "{index}");
    assert!(index.ends_with("<script src=/js/app.js></script>"), "{index}");
    let script = get("/js/app.js");
    assert!(script.contains("content-type: text/javascript"), "{script}");
    assert!(get("/nothing.png").starts_with("HTTP/1.1 404"));
    assert!(get("/../../../../etc/passwd").starts_with("HTTP/1.1 404"));
    // And the WebSockets on the same address.
    let (mut ws, _) = ClientBuilder::new(server.url("/")).connect().await.unwrap();
    ws.send(Message::text("still echoing")).await.unwrap();
    assert_eq!(tokio::time::timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap(), Message::text("still echoing"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn serve_flags_reach_the_config() {
    let server = Serve::start(&["-H", "x-served-by: wsdriver", "--protocol", "chat.v2", "--max-message-size", "1k", "--no-compression"]);
    let config = ws_core::Config::default().protocols(["chat.v1", "chat.v2"]).deflate(ws_core::deflate::DeflateConfig::default());
    let (mut ws, response) = ClientBuilder::new(server.url("/")).config(config).connect().await.unwrap();
    assert_eq!(response.headers()["x-served-by"], "wsdriver");
    assert_eq!(ws.protocol().as_deref(), Some("chat.v2"));
    assert!(!response.headers().contains_key("sec-websocket-extensions"), "--no-compression");
    ws.send(Message::text("x".repeat(2000))).await.unwrap();
    let closed = tokio::time::timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert!(matches!(&closed, Message::Close(Some(frame)) if frame.code == CloseCode::MESSAGE_TOO_BIG), "{closed:?}");

    // Values the config refuses stop the server before it listens, saying which.
    let refused = run(&["serve", "127.0.0.1:0", "--compression-level", "12"], b"");
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("deflate.level"), "{}", stderr(&refused));
    let refused = run(&["serve", "127.0.0.1:0", "-H", "bad header"], b"");
    assert!(stderr(&refused).contains("--header"), "{}", stderr(&refused));
}

#[test]
fn serve_tls_and_connect_insecure() {
    let dir = std::env::temp_dir().join(format!("wsdriver-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let server = Serve::start(&["--cert", &path("cert.pem"), "--key", &path("key.pem")]);
    assert!(server.url.starts_with("wss://"), "{}", server.url);
    let url = server.url("/").replace("127.0.0.1", "localhost");
    let refused = run(&["connect", &url], b"");
    assert_eq!(refused.status.code(), Some(1), "a self-signed certificate is refused without -k: {}", stderr(&refused));
    let output = run(&["connect", "-k", &url], b"over tls\n");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "over tls\n");
    let output = run(&["connect", "-k", "--http2", &url], b"over h2\n");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "over h2\n");
    assert!(stderr(&output).contains("HTTP/2"), "{}", stderr(&output));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_shuts_down_gracefully_on_ctrl_c() {
    let mut server = Serve::start(&[]);
    let mut client =
        wsdriver().args(["connect", &server.url("/")]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"ping\n").unwrap();
    let mut stdout = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ping\n", "the client is connected");
    let status = Command::new("kill").args(["-INT", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    let code = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(started.elapsed() < LIMIT, "serve did not exit on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    let mut rest = String::new();
    std::io::Read::read_to_string(client.stderr.as_mut().unwrap(), &mut rest).unwrap();
    assert!(rest.contains("closed: 1001"), "the client was told the server is going away: {rest}");
    assert_eq!(client.wait().unwrap().code(), Some(0), "1001 is a normal end");
}

/// The echo example, built beside this binary by `cargo test --workspace`.
fn echo_example() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_wsdriver"));
    let path = bin.parent().unwrap().join("examples").join("echo");
    assert!(path.exists(), "{} is not built: run `cargo test --workspace` (or `cargo build --example echo`)", path.display());
    path
}

#[test]
fn bench_measures_the_echo_example() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut echo = Command::new(echo_example()).arg(addr.to_string()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(echo.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    let url = format!("ws://{addr}/");
    for extra in [&[][..], &["--deflate"][..], &["--http2", "--binary"][..]] {
        let mut args = vec!["bench", url.as_str(), "--conns", "4", "--inflight", "8", "--size", "256", "--duration", "500ms", "--json"];
        args.extend_from_slice(extra);
        let output = run(&args, b"");
        assert!(output.status.success(), "bench {extra:?}: {}", stderr(&output));
        let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let messages = result["messages"].as_u64().unwrap();
        assert!(messages >= 32, "bench {extra:?} echoed only {messages}: {result}");
        let (p50, p99, max) = (
            result["latency_us"]["p50"].as_u64().unwrap(),
            result["latency_us"]["p99"].as_u64().unwrap(),
            result["latency_us"]["max"].as_u64().unwrap(),
        );
        assert!(0 < p50 && p50 <= p99 && p99 <= max, "latency percentiles in order: {result}");
        assert!(result["messages_per_sec"].as_f64().unwrap() > 0.0);
    }
    let _ = echo.kill();
    let _ = echo.wait();
    // Nothing there any more: the bench fails at once (not after its hour), saying why.
    let output = run(&["bench", &url, "--duration", "1h", "--quiet"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("handshake"), "{}", stderr(&output));

    // One connection of two refused: the other stops at once too.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut accepted, _) = listener.accept().unwrap();
        answer_101(&mut accepted);
        let (mut refused, _) = listener.accept().unwrap();
        refused.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n").unwrap();
        // Read (never echoed) until the bench closes it.
        let mut buf = [0u8; 4096];
        while std::io::Read::read(&mut accepted, &mut buf).is_ok_and(|n| n > 0) {}
    });
    let output = run(&["bench", &format!("ws://{addr}/"), "--conns", "2", "--duration", "1h", "--quiet"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("403"), "{}", stderr(&output));
    server.join().unwrap();
}

/// A terminal session: `tmux` runs `wsdriver connect` in a pseudo-terminal, types into
/// it and reads the screen.
struct Terminal {
    socket: String,
}

impl Terminal {
    fn start(command: &str) -> Self {
        let socket = format!("wsdriver-cli-{}-{}", std::process::id(), command.len());
        // The shell prints the exit status and waits, so the screen can still be read.
        // The shell survives the Ctrl-C meant for the command (a caught signal is reset for
        // the command itself).
        let shell = format!("trap true INT; {command}; echo \"[exit $?]\"; read done");
        let status = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-x", "150", "-y", "40", "sh", "-c", &shell])
            .status()
            .expect("tmux (installed by interop/install.sh)");
        assert!(status.success());
        Self { socket }
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux").args(["-L", &self.socket, "send-keys"]).args(keys).status().unwrap();
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let output = Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p"]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits (bounded) until the screen shows `text`.
    fn wait_for(&self, text: &str) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(started.elapsed() < LIMIT, "{text:?} never showed on the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

#[test]
#[ignore = "needs tmux (interop/install.sh); scripts/test-all runs it"]
fn connect_in_a_terminal() {
    let server = Serve::start(&[]);
    let bin = env!("CARGO_BIN_EXE_wsdriver");
    // Typed lines come back marked; Ctrl-C closes with 1000.
    let terminal = Terminal::start(&format!("{bin} connect {}", server.url("/tty")));
    terminal.wait_for("connected to");
    terminal.keys(&["hello from a terminal", "Enter"]);
    terminal.wait_for("< hello from a terminal");
    terminal.keys(&["C-c"]);
    let screen = terminal.wait_for("[exit 0]");
    assert!(screen.contains("closed: 1000"), "{screen}");
    drop(terminal);

    // Ctrl-D ends the input: the session closes once the answers are in.
    let terminal = Terminal::start(&format!("{bin} connect --compression {}", server.url("/")));
    terminal.wait_for("permessage-deflate");
    terminal.keys(&["last words", "Enter"]);
    terminal.wait_for("< last words");
    terminal.keys(&["C-d"]);
    let screen = terminal.wait_for("[exit 0]");
    assert!(screen.contains("closed: 1000"), "{screen}");
}
