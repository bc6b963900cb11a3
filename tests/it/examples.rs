//! The examples the README points to, run as processes: `auth` (authentication before the
//! upgrade) and `resume` (a reconnecting client that resumes without losing an event).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

/// `examples/auth.rs`: a request without a valid token is refused with 401 before any
/// upgrade; a token in a bearer header, a cookie or the query string opens a WebSocket
/// greeted with the token's user.
mod auth {
    use crate::common::{EchoProcess, bounded, free_addr};
    use http::{HeaderValue, StatusCode, header};
    use wsdriver::client::ClientBuilder;
    use wsdriver::handshake::HandshakeError;
    use wsdriver::{CloseCode, Error, Message};

    fn start() -> (EchoProcess, String) {
        let addr = free_addr();
        (EchoProcess::start_example("auth", addr), format!("ws://{addr}/chat"))
    }

    async fn refused(builder: ClientBuilder) -> StatusCode {
        match builder.connect().await {
            Err(Error::Handshake(HandshakeError::UnexpectedStatus { status, headers, .. })) => {
                assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
                status
            }
            Err(other) => panic!("expected a refusal, got {other}"),
            Ok(_) => panic!("expected a refusal, the upgrade was accepted"),
        }
    }

    async fn greeted_and_echoed(builder: ClientBuilder) {
        let (mut ws, response) = bounded(builder.connect()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("hello, alice"));
        ws.send(Message::text("ping me back")).await.unwrap();
        assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("ping me back"));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    }

    #[tokio::test]
    async fn no_token_or_a_wrong_one_is_refused_with_401() {
        let (_server, url) = start();
        assert_eq!(refused(ClientBuilder::new(&url)).await, StatusCode::UNAUTHORIZED);
        let wrong = ClientBuilder::new(&url).header(header::AUTHORIZATION, HeaderValue::from_static("Bearer guess"));
        assert_eq!(refused(wrong).await, StatusCode::UNAUTHORIZED);
        assert_eq!(refused(ClientBuilder::new(format!("{url}?token=guess"))).await, StatusCode::UNAUTHORIZED);
        let wrong_cookie = ClientBuilder::new(&url).header(header::COOKIE, HeaderValue::from_static("theme=dark; session=guess"));
        assert_eq!(refused(wrong_cookie).await, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_bearer_token_opens_the_websocket() {
        let (_server, url) = start();
        greeted_and_echoed(ClientBuilder::new(&url).header(header::AUTHORIZATION, HeaderValue::from_static("Bearer letmein"))).await;
    }

    #[tokio::test]
    async fn a_session_cookie_opens_the_websocket() {
        let (_server, url) = start();
        greeted_and_echoed(ClientBuilder::new(&url).header(header::COOKIE, HeaderValue::from_static("theme=dark; session=letmein"))).await;
    }

    #[tokio::test]
    async fn a_token_in_the_query_opens_the_websocket() {
        let (_server, url) = start();
        greeted_and_echoed(ClientBuilder::new(format!("{url}?token=letmein"))).await;
    }
}

/// `examples/resume.rs`: the server restarts every connection after a few events; the
/// reconnecting client resumes from the last event it saw and ends with every event, in
/// order, none missing.
#[test]
fn resume_survives_every_restart_without_losing_an_event() {
    let output = std::process::Command::new(common::example("resume"))
        .args(["127.0.0.1:0", "--count", "300", "--restart-every", "40"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(!stdout.contains("error:"), "{stdout}");
    // "received events 1 to N over C connections (R reconnections), ..."
    let number_after = |word: &str| -> u64 {
        let at = stdout.find(word).unwrap_or_else(|| panic!("no {word:?} in {stdout}")) + word.len();
        stdout[at..].split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty()).unwrap().parse().unwrap()
    };
    assert!(number_after("received events 1 to ") >= 300, "{stdout}");
    // 300 events, a restart every 40: at least 7 reconnections, each resumed.
    assert!(number_after("connections (") >= 7, "{stdout}");
}
