//! The client through real proxies started here from Debian's packages: tinyproxy (HTTP
//! `CONNECT`, with and without Basic authentication) and microsocks (SOCKS5, with and
//! without a username and password); `ws://` and `wss://` through each, the proxy
//! environment variables (read by the client example, as a user runs it), `NO_PROXY`,
//! refusals, and a proxy that dies under an open WebSocket. Every proxy's log shows the
//! connection went through it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::browser_http2::{Pages, start as start_tls, tls};
use crate::common::proxy_servers::Proxy;
use crate::common::{self, bounded};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use wsdriver::client::{ClientBuilder, ProxyError};
use wsdriver::{Config, Error, Message};

const AUTH: (&str, &str) = ("alice", "s3cret");

/// A `ws://` echo server and a `wss://` one (its first message says its HTTP version),
/// with the roots that trust the latter.
async fn servers() -> (SocketAddr, SocketAddr, rustls::RootCertStore) {
    let plain = common::servers::start("standalone", Config::default()).await;
    let (config, pem) = tls();
    let secure = start_tls("standalone", config, Pages::default(), Config::default()).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
    (plain, secure, roots)
}

/// Connects with `builder` and has a message echoed (past the server's greeting, if any).
async fn echoed(builder: ClientBuilder) -> Result<(), Error> {
    let (mut ws, _) = bounded(builder.connect()).await?;
    ws.send(Message::text("through the proxy")).await?;
    loop {
        match bounded(ws.recv()).await {
            Some(Ok(Message::Text(text))) if text.as_str() == "through the proxy" => return Ok(()),
            Some(Ok(Message::Text(text))) if text.as_str().starts_with("HTTP/") => {} // the greeting
            other => panic!("expected the echo, got {other:?}"),
        }
    }
}

/// `ws://` and `wss://` through the proxy at `url`, each connection in `proxy`'s log as
/// `logged(port)` says it would be.
async fn both_through(proxy: &Proxy, url: &str, logged: impl Fn(u16) -> String) {
    let (plain, secure, roots) = servers().await;
    echoed(ClientBuilder::new(format!("ws://{plain}/")).proxy(url)).await.unwrap();
    echoed(ClientBuilder::new(format!("wss://{secure}/")).root_certificates(roots).proxy(url)).await.unwrap();
    for port in [plain.port(), secure.port()] {
        assert!(proxy.logged(&logged(port)), "no {:?} in the proxy's log:\n{}", logged(port), proxy.log());
    }
}

fn tunnelled(port: u16) -> String {
    format!("CONNECT 127.0.0.1:{port} ")
}

fn socks_connected(port: u16) -> String {
    format!("connected to 127.0.0.1:{port}")
}

#[tokio::test]
#[ignore = "needs tinyproxy (interop/install.sh)"]
async fn ws_and_wss_through_an_http_proxy() {
    let proxy = Proxy::tinyproxy(None);
    both_through(&proxy, &proxy.url("http", None), tunnelled).await;
}

#[tokio::test]
#[ignore = "needs tinyproxy (interop/install.sh)"]
async fn an_http_proxy_with_basic_authentication() {
    let proxy = Proxy::tinyproxy(Some(AUTH));
    both_through(&proxy, &proxy.url("http", Some(AUTH)), tunnelled).await;
    let (plain, _, _) = servers().await;
    // No credentials: 407; a wrong password: tinyproxy answers 401.
    for (url, expected) in [(proxy.url("http", None), [407, 407]), (proxy.url("http", Some(("alice", "wrong"))), [401, 407])] {
        match echoed(ClientBuilder::new(format!("ws://{plain}/")).proxy(&url)).await {
            Err(Error::Proxy(ProxyError::Refused { status })) => assert!(expected.contains(&status.as_u16()), "{url}: {status}"),
            other => panic!("{url}: expected the proxy's refusal, got {other:?}"),
        }
    }
}

#[tokio::test]
#[ignore = "needs microsocks (interop/install.sh)"]
async fn ws_and_wss_through_socks5_and_socks5h() {
    let proxy = Proxy::microsocks(None);
    both_through(&proxy, &proxy.url("socks5", None), socks_connected).await;
    both_through(&proxy, &proxy.url("socks5h", None), socks_connected).await;
}

#[tokio::test]
#[ignore = "needs microsocks (interop/install.sh)"]
async fn socks5_with_a_username_and_password() {
    let proxy = Proxy::microsocks(Some(AUTH));
    both_through(&proxy, &proxy.url("socks5h", Some(AUTH)), socks_connected).await;
    let (plain, _, _) = servers().await;
    for url in [proxy.url("socks5h", None), proxy.url("socks5h", Some(("alice", "wrong")))] {
        match echoed(ClientBuilder::new(format!("ws://{plain}/")).proxy(&url)).await {
            Err(Error::Proxy(ProxyError::Socks(reason))) => assert!(!reason.is_empty()),
            other => panic!("{url}: expected the SOCKS5 proxy's refusal, got {other:?}"),
        }
    }
}

#[tokio::test]
#[ignore = "needs tinyproxy (interop/install.sh)"]
async fn a_proxy_that_dies_under_an_open_websocket() {
    let mut proxy = Proxy::tinyproxy(None);
    let (plain, _, _) = servers().await;
    let url = proxy.url("http", None);
    let (mut ws, _) = bounded(ClientBuilder::new(format!("ws://{plain}/")).proxy(&url).connect()).await.unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("before"));
    proxy.kill();
    match bounded(ws.recv()).await {
        None | Some(Err(Error::ConnectionReset | Error::Io(_))) => {}
        other => panic!("expected the connection lost, got {other:?}"),
    }
    match bounded(ClientBuilder::new(format!("ws://{plain}/")).proxy(&url).connect()).await {
        Err(Error::Io(_)) => {}
        other => panic!("expected no way through a dead proxy, got {:?}", other.map(|(_, response)| response)),
    }
}

/// The client example (`examples/client.rs`, which connects with the defaults) sending
/// one line to `url` with only `env` for proxy variables: whether the line came back
/// (the input ends once it has), and what the example printed.
async fn client_example(url: &str, env: &[(&str, String)]) -> (bool, String) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let mut command = tokio::process::Command::new(common::example("client"));
    for name in
        ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "REQUEST_METHOD"]
    {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child =
        command.arg(url).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello from the environment\n").await.unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let mut echoed = false;
    while let Some(line) = bounded(stdout.next_line()).await.unwrap() {
        printed.push_str(&line);
        printed.push('\n');
        if line == "hello from the environment" {
            echoed = true;
            break;
        }
    }
    drop(stdin); // end of input: the example closes
    let mut stderr = String::new();
    let _ = bounded(child.stderr.take().unwrap().read_to_string(&mut stderr)).await;
    let _ = bounded(child.wait()).await;
    (echoed, printed + &stderr)
}

#[tokio::test]
#[ignore = "needs tinyproxy and microsocks (interop/install.sh)"]
async fn the_environment_chooses_the_proxy() {
    let http = Proxy::tinyproxy(None);
    let socks = Proxy::microsocks(None);
    let (plain, secure, _) = servers().await;
    let ws = format!("ws://{plain}/");

    // HTTP_PROXY for ws://.
    let (echoed, printed) = client_example(&ws, &[("HTTP_PROXY", http.url("http", None))]).await;
    assert!(echoed && http.logged(&tunnelled(plain.port())), "{printed}\n{}", http.log());

    // NO_PROXY: the same server, straight (an address, then a CIDR range).
    let direct = common::servers::start("standalone", Config::default()).await;
    for no_proxy in ["127.0.0.1", "10.0.0.0/8,127.0.0.0/8"] {
        let env = [("HTTP_PROXY", http.url("http", None)), ("NO_PROXY", no_proxy.to_owned())];
        let (echoed, printed) = client_example(&format!("ws://{direct}/"), &env).await;
        assert!(echoed && !http.logged(&tunnelled(direct.port())), "NO_PROXY={no_proxy}: {printed}\n{}", http.log());
    }

    // As a CGI script, HTTP_PROXY may come from a request's `Proxy:` header: ignored.
    let cgi = common::servers::start("standalone", Config::default()).await;
    let env = [("HTTP_PROXY", http.url("http", None)), ("REQUEST_METHOD", "GET".to_owned())];
    let (echoed, printed) = client_example(&format!("ws://{cgi}/"), &env).await;
    assert!(echoed && !http.logged(&tunnelled(cgi.port())), "{printed}\n{}", http.log());

    // ALL_PROXY, a SOCKS5 proxy, for ws://.
    let (echoed, printed) = client_example(&ws, &[("ALL_PROXY", socks.url("socks5h", None))]).await;
    assert!(echoed && socks.logged(&socks_connected(plain.port())), "{printed}\n{}", socks.log());

    // HTTPS_PROXY for wss:// (and not HTTP_PROXY): the tunnel is made; the example, which
    // trusts the webpki roots only, then refuses the test's certificate.
    let env = [("HTTPS_PROXY", http.url("http", None)), ("HTTP_PROXY", "http://127.0.0.1:9".to_owned())];
    let (echoed, printed) = client_example(&format!("wss://{secure}/"), &env).await;
    assert!(!echoed && printed.contains("UnknownIssuer"), "{printed}");
    assert!(http.logged(&tunnelled(secure.port())), "{}", http.log());
}

#[tokio::test]
#[ignore = "needs tinyproxy (interop/install.sh)"]
async fn the_reconnecting_client_comes_back_through_the_same_proxy() {
    use common::{EchoProcess, Event, Recorder, free_addr};
    use wsdriver::client::Reconnect;
    let proxy = Proxy::tinyproxy(Some(AUTH));
    let addr = free_addr();
    let mut server = EchoProcess::start(addr);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = ClientBuilder::new(format!("ws://{addr}/"))
        .proxy(proxy.url("http", Some(AUTH)))
        .reconnecting(Reconnect::default().delays(std::time::Duration::from_millis(20), std::time::Duration::from_millis(200)))
        .serve(Recorder { events: tx, echo: false });
    let mut next = async || loop {
        match bounded(events.recv()).await.unwrap() {
            Event::Error(_) | Event::Close(1006, _) => continue,
            other => return other,
        }
    };
    assert_eq!(next().await, Event::Open);
    client.send(Message::text("first")).await.unwrap();
    assert_eq!(next().await, Event::Message(Message::text("first")));
    server.kill();
    let _server = EchoProcess::start(addr);
    assert_eq!(next().await, Event::Open);
    client.send(Message::text("second")).await.unwrap();
    assert_eq!(next().await, Event::Message(Message::text("second")));
    let tunnels = proxy.log().matches(&tunnelled(addr.port())).count();
    assert!(tunnels >= 2, "{tunnels} tunnels to the server in the proxy's log:\n{}", proxy.log());
}

/// A proxy URL the client cannot use fails every connection, rather than letting it go
/// straight to the server; the error leaves the credentials out.
#[tokio::test]
async fn an_unusable_proxy_url_fails_the_connection() {
    let (plain, _, _) = servers().await;
    for url in ["ftp://alice:s3cret@127.0.0.1:21", "not a url", "https://127.0.0.1:3128", "http://"] {
        match ClientBuilder::new(format!("ws://{plain}/")).proxy(url).connect().await {
            Err(Error::Proxy(ProxyError::InvalidUrl(shown))) => assert!(!shown.contains("s3cret"), "{shown}"),
            other => panic!("{url}: expected an unusable proxy URL, got {:?}", other.map(|(_, response)| response)),
        }
    }
}
