//! Interop with real third-party clients, nobody on this project wrote them: headless
//! Chromium's own WebSocket, Node's `ws` and Python's `websockets`, each running the checks
//! of `interop/` (multi-byte text, every byte value, empty messages, the 125/126/65535/65536
//! length boundaries, 16 MiB, 1000 pipelined messages in order, subprotocol selection,
//! close with code and reason, permessage-deflate negotiated) against every way of
//! serving the echo handler.
//!
//! The peers are installed by `interop/install.sh`, which `scripts/test-all` runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::battery;
use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// The command line running `peer`'s checks, or a panic saying how to install it.
fn peer_command(peer: &str) -> tokio::process::Command {
    let dir = interop_dir();
    let missing = |what: &Path| panic!("{} is not installed: run interop/install.sh (scripts/test-all does)", what.display());
    let (program, script) = match peer {
        "node" | "chromium" => {
            let module = dir.join("node_modules").join(if peer == "node" { "ws" } else { "playwright-core" });
            if !module.exists() {
                missing(&module);
            }
            if peer == "chromium" && !Path::new("/usr/bin/chromium").exists() {
                missing(Path::new("/usr/bin/chromium"));
            }
            (PathBuf::from("node"), dir.join(if peer == "node" { "node_client.js" } else { "browser_client.js" }))
        }
        "python" => {
            let home = std::env::var_os("HOME").expect("HOME");
            let python = Path::new(&home).join(".cache/wsdriver-interop/venv/bin/python");
            if !python.exists() {
                missing(&python);
            }
            (python, dir.join("python_client.py"))
        }
        other => panic!("unknown peer {other}"),
    };
    let mut command = tokio::process::Command::new(program);
    command.arg(script);
    command
}

async fn run_peer(server: &str, peer: &str) {
    let addr = common::servers::start(server, battery::server_config()).await;
    let mut command = peer_command(peer);
    command.arg(format!("ws://{addr}")).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(180), command.output()).await.expect("peer timed out").expect("peer runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{peer} against {server} failed:\n{stdout}\n{stderr}");
    // Every check reported in; a peer that silently skipped would not print them all.
    assert_eq!(stdout.lines().filter(|l| l.contains("ok ")).count(), 9, "{stdout}");
}

macro_rules! interop {
    ($($server:ident),*) => {$(
        mod $server {
            #[tokio::test]
            #[ignore = "needs Chromium (interop/install.sh)"]
            async fn chromium() {
                super::run_peer(stringify!($server), "chromium").await;
            }

            #[tokio::test]
            #[ignore = "needs Node (interop/install.sh)"]
            async fn node_ws() {
                super::run_peer(stringify!($server), "node").await;
            }

            #[tokio::test]
            #[ignore = "needs Python (interop/install.sh)"]
            async fn python_websockets() {
                super::run_peer(stringify!($server), "python").await;
            }
        }
    )*};
}

interop!(standalone, hyper, tower, axum, actix);
