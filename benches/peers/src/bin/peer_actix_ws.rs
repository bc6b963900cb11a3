//! Echo on actix-ws, the documented pattern.
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use actix_ws::Message;
use futures_util::StreamExt;

async fn echo(req: HttpRequest, body: web::Payload) -> Result<HttpResponse, actix_web::Error> {
    let (response, mut session, stream) = actix_ws::handle(&req, body)?;
    // The same message limit as the other servers (actix-ws defaults to 64 KiB frames,
    // which would refuse the 1 MiB cells).
    let mut stream = stream.max_frame_size(64 << 20);
    actix_web::rt::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let sent = match msg {
                Message::Text(t) => session.text(t).await,
                Message::Binary(b) => session.binary(b).await,
                Message::Ping(p) => session.pong(&p).await,
                Message::Close(reason) => {
                    let _ = session.close(reason).await;
                    return;
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(response)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    HttpServer::new(|| App::new().default_service(web::to(echo))).bind(addr)?.run().await
}
