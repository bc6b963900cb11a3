//! [`ActixIo`]: actix-web's request payload and streaming response body, as one
//! `AsyncRead + AsyncWrite` stream for the core's driver.

use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_util::StreamExt;
use std::convert::Infallible;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// Chunks in flight each way. Small: a few chunks are enough to keep both sides busy, and
/// a bounded channel is what turns a slow client into backpressure.
const CHANNEL_CHUNKS: usize = 4;

/// The byte stream of an actix-web WebSocket connection. Reads come from the request
/// payload (pumped by a task on the connection's worker, since the payload cannot leave
/// it); writes go to the response body through a bounded channel.
pub struct ActixIo {
    incoming: mpsc::Receiver<Bytes>,
    pending: Bytes,
    outgoing: PollSender<Bytes>,
}

/// The response body of an upgraded connection: what the socket writes.
pub struct OutgoingBody(mpsc::Receiver<Bytes>);

impl Stream for OutgoingBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

impl ActixIo {
    /// Pumps `payload` into a new stream; returns it with the body to respond with.
    /// Must be called on an actix-web worker.
    pub(crate) fn new(mut payload: web::Payload) -> (Self, OutgoingBody) {
        let (in_tx, incoming) = mpsc::channel(CHANNEL_CHUNKS);
        let (out_tx, out_rx) = mpsc::channel(CHANNEL_CHUNKS);
        actix_web::rt::spawn(async move {
            while let Some(Ok(chunk)) = payload.next().await {
                if in_tx.send(chunk).await.is_err() {
                    break;
                }
            }
        });
        (Self { incoming, pending: Bytes::new(), outgoing: PollSender::new(out_tx) }, OutgoingBody(out_rx))
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, chunk: impl FnOnce() -> Bytes) -> Poll<io::Result<()>> {
        ready!(self.outgoing.poll_reserve(cx)).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        self.outgoing.send_item(chunk()).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for ActixIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.incoming.poll_recv(cx)) {
                Some(chunk) => self.pending = chunk,
                None => return Poll::Ready(Ok(())), // end of stream
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ActixIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_send(cx, || Bytes::copy_from_slice(buf)))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let total = bufs.iter().map(|b| b.len()).sum();
        ready!(self.poll_send(cx, || {
            let mut chunk = BytesMut::with_capacity(total);
            for b in bufs {
                chunk.extend_from_slice(b);
            }
            chunk.freeze()
        }))?;
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Ending the body ends the response, and actix closes the connection.
        self.outgoing.close();
        Poll::Ready(Ok(()))
    }
}
