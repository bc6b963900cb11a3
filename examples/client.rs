//! A minimal command-line client: connects to a URL, sends each line of standard
//! input as a text message, prints what arrives. End the input (Ctrl-D) to close: it
//! closes at once, so a reply still on its way may be cut off. `wsdriver connect` (the
//! `wsdriver-cli` crate) is the full tool: it waits for the answers, and has headers,
//! subprotocols, proxies, TLS options and exit statuses.
//!
//! `cargo run --example client -- [URL]` (default `ws://127.0.0.1:9001`).

use tokio::io::{AsyncBufReadExt, BufReader};
use wsdriver::{CloseCode, Message, client};

#[tokio::main]
async fn main() -> Result<(), wsdriver::Error> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let (ws, response) = client::connect(&url).await?;
    eprintln!("connected to {url} ({})", response.status());
    let connection = ws.connection();
    let (_sink, mut stream) = ws.split();
    let printer = tokio::spawn(async move {
        while let Some(message) = stream.recv().await {
            match message {
                Ok(Message::Text(text)) => println!("{text}"),
                Ok(Message::Binary(data)) => println!("<{} bytes>", data.len()),
                Ok(Message::Close(frame)) => eprintln!("closed by the server: {frame:?}"),
                Ok(_) => {}
                Err(error) => eprintln!("error: {error}"),
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        connection.send_text(line).await?;
    }
    let _ = connection.close(CloseCode::NORMAL, "");
    let _ = printer.await;
    Ok(())
}
