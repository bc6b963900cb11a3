//! Runs the Autobahn fuzzingserver protocol against URL: fetches the case count, runs every
//! case echoing each text and binary message, then asks the server to write its report.
//!
//! `cargo run --release --example autobahn_client -- ws://127.0.0.1:9001 [AGENT]`

use wsdriver::client::ClientBuilder;
use wsdriver::deflate::DeflateConfig;
use wsdriver::{Config, Error, Message};

/// Connects to `url` and echoes until the server closes; returns the first text received.
async fn run(url: &str) -> Result<Option<String>, Error> {
    // Offering client_no_context_takeover lets the suite's servers accept every variant
    // of the offer its compression cases expect.
    let deflate = DeflateConfig::default().no_context_takeover(false, true);
    let (mut ws, _) = ClientBuilder::new(url).config(Config::default().deflate(deflate)).connect().await?;
    let mut first_text = None;
    while let Some(message) = ws.recv().await {
        match message {
            Ok(Message::Text(text)) => {
                first_text.get_or_insert_with(|| text.to_string());
                let _ = ws.send(Message::Text(text)).await;
            }
            Ok(Message::Binary(data)) => {
                let _ = ws.send(Message::Binary(data)).await;
            }
            // Protocol errors and closes end the case; keep reading until the stream ends.
            _ => {}
        }
    }
    Ok(first_text)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let base = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let agent = std::env::args().nth(2).unwrap_or_else(|| "wsdriver".to_owned());
    let count: u32 = run(&format!("{base}/getCaseCount")).await?.and_then(|t| t.trim().parse().ok()).unwrap_or(0);
    eprintln!("autobahn client: {count} cases");
    for case in 1..=count {
        if let Err(error) = run(&format!("{base}/runCase?case={case}&agent={agent}")).await {
            eprintln!("case {case}: {error}");
        }
    }
    run(&format!("{base}/updateReports?agent={agent}")).await?;
    Ok(())
}
