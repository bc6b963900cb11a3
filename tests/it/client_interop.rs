//! The client against real third-party servers, nobody on this project wrote them:
//! Node's `ws` and Python's `websockets`, each running the battery's client-side checks
//! (multi-byte text, every byte value, empty messages, length boundaries, 16 MiB, 1000
//! pipelined messages, subprotocol selection, close codes, ping), with permessage-deflate
//! negotiated.
//!
//! The peers are installed by `interop/install.sh`, which `scripts/test-all` runs. Each
//! server process lives as long as this test binary: it exits when its standard input,
//! held here, closes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The running peer servers, by name, with the address each listens on.
fn servers() -> &'static Mutex<HashMap<&'static str, (Child, SocketAddr)>> {
    static SERVERS: OnceLock<Mutex<HashMap<&'static str, (Child, SocketAddr)>>> = OnceLock::new();
    SERVERS.get_or_init(Default::default)
}

fn peer_server(name: &'static str) -> SocketAddr {
    let mut servers = servers().lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, addr)) = servers.get(name) {
        return *addr;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop");
    let mut command = match name {
        "node" => {
            assert!(dir.join("node_modules/ws").exists(), "node ws is not installed: run interop/install.sh");
            let mut c = Command::new("node");
            c.arg(dir.join("node_server.js"));
            c
        }
        _ => {
            let python = Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/wsdriver-interop/venv/bin/python");
            assert!(python.exists(), "python websockets is not installed: run interop/install.sh");
            let mut c = Command::new(python);
            c.arg(dir.join("python_server.py"));
            c
        }
    };
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{name} server said {line:?}"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    servers.insert(name, (child, addr));
    addr
}

macro_rules! against {
    ($($peer:ident),*) => {$(
        mod $peer {
            async fn start(_config: wsdriver::Config) -> std::net::SocketAddr {
                super::peer_server(stringify!($peer))
            }
            crate::echo_battery!(@tests_needing "needs Node and Python (interop/install.sh)"; start; text_multibyte, binary_all_byte_values, empty_messages, length_boundaries,
                sixteen_mib, pipelined_in_order, subprotocol_selection, close_code_is_echoed, ping_is_answered, deflate_round_trips);
        }
    )*};
}

against!(node, python);
