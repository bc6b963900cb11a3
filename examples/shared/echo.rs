//! The one echo handler every echo example serves, and the listen-address convention.

use std::time::Duration;
use wsdriver::deflate::DeflateConfig;
use wsdriver::{Config, Connection, Handler, Message};

/// Sends every text and binary message back.
pub struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ws: &Connection, message: Message) {
        let _ = ws.send(message).await;
    }
}

/// The config every echo example serves with: the defaults, plus permessage-deflate.
pub fn config() -> Config {
    Config::default().deflate(DeflateConfig::default())
}

/// The listen address: the first argument, by default `127.0.0.1:9001`.
pub fn listen_addr() -> String {
    std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned())
}

/// Logs to stderr, filtered by `RUST_LOG`.
pub fn init_logging() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
}

/// How long a graceful shutdown waits for the WebSockets' close handshakes.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Resolves on SIGINT (Ctrl-C) or SIGTERM: what starts a graceful shutdown.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
