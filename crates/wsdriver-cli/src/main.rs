//! `wsdriver`: talk to a WebSocket server, serve one, or measure one, from a terminal.
//!
//! ```text
//! wsdriver connect ws://127.0.0.1:9001      # type lines, see the answers
//! wsdriver serve 127.0.0.1:9001 --broadcast # a chat room on every path
//! wsdriver bench ws://127.0.0.1:9001 -d 10  # messages/s and latency percentiles
//! ```

mod bench;
mod connect;
mod insecure;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// WebSocket client, server and benchmark (RFC 6455, permessage-deflate, HTTP/2).
#[derive(Debug, Parser)]
#[command(name = "wsdriver", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "\
Examples:
  wsdriver connect ws://127.0.0.1:9001            type lines, read the answers
  echo hello | wsdriver connect wss://example.com/ws
  wsdriver serve 127.0.0.1:9001                   an echo server
  wsdriver serve 127.0.0.1:9001 --broadcast --static ./public
  wsdriver serve 127.0.0.1:9001 --exec 'tr a-z A-Z'
  wsdriver bench ws://127.0.0.1:9001 --conns 64 --size 16 --duration 10

Logging: RUST_LOG=debug (to standard error).")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to a WebSocket URL: standard input goes out, messages come back on standard output.
    Connect(connect::Args),
    /// Serve WebSockets on an address: echo, broadcast, or a command per connection.
    Serve(serve::Args),
    /// Load an echo server with many connections and report throughput and latency.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    match cli.command {
        Command::Connect(args) => connect::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
    }
}

/// Reports a failure as `wsdriver: message` on standard error.
fn fail(message: impl std::fmt::Display) {
    eprintln!("wsdriver: {message}");
}

/// A duration on the command line: seconds (`30`, `1.5`), or a number with `ms`, `s`,
/// `m` or `h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration (30, 1.5s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit `{other}` (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

/// A header on the command line, `Name: value` (`--header`, of `connect` and `serve`).
fn parse_header(header: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let (name, value) = header.split_once(':').ok_or_else(|| format!("--header `{header}`: expected `Name: value`"))?;
    let name = http::HeaderName::try_from(name.trim()).map_err(|e| format!("--header `{header}`: {e}"))?;
    let value = http::HeaderValue::try_from(value.trim()).map_err(|e| format!("--header `{header}`: {e}"))?;
    Ok((name, value))
}

/// A size on the command line: bytes, or a number with `k`/`KiB`, `m`/`MiB` or `g`/`GiB`.
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: usize = number.parse().map_err(|_| format!("`{text}` is not a size (1024, 64k, 16MiB)"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown unit `{other}` (k, m, g)")),
    };
    value.checked_mul(scale).ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("-1").is_err());
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999999999g").is_err());
    }
}
