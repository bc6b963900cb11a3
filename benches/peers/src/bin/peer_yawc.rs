//! Echo on yawc (with its axum extractor), permessage-deflate at level 1 with context
//! takeover: the same compression settings as wsdriver's echo examples.
use axum::{Router, response::IntoResponse};
use futures_util::{SinkExt, StreamExt};
use yawc::frame::OpCode;
use yawc::{CompressionLevel, IncomingUpgrade, Options};

async fn echo(ws: IncomingUpgrade) -> impl IntoResponse {
    let options = Options::default().with_utf8().with_no_delay().with_limits(64 << 20, 128 << 20).with_compression_level(CompressionLevel::new(1));
    let (response, socket) = ws.upgrade(options).unwrap();
    tokio::spawn(async move {
        let Ok(mut ws) = socket.await else { return };
        while let Some(frame) = ws.next().await {
            let (opcode, _fin, body) = frame.into_parts();
            if matches!(opcode, OpCode::Text | OpCode::Binary) && ws.send(yawc::Frame::from((opcode, body))).await.is_err() {
                break;
            }
        }
    });
    response
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    axum::serve(listener, Router::new().fallback(echo)).await.unwrap();
}
