//! [`ActixIo`]: actix-web's request payload and streaming response body, as one
//! `AsyncRead + AsyncWrite` stream for the core's driver.

use crate::pipe::{Chunks, Outgoing, Pipe};
use actix_web::web;
use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use std::convert::Infallible;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The byte stream of an actix-web WebSocket connection. Reads come from the request
/// payload, pumped by a task on the connection's worker (the payload cannot leave it), its
/// chunks passed on as they are and copied once, into the driver's buffer; writes go to
/// the streaming response body. Both through bounded pipes, so a slow peer is
/// backpressure, not memory.
pub struct ActixIo {
    incoming: Pipe<Chunks>,
    outgoing: Pipe<Outgoing>,
}

/// The response body of an upgraded connection: what the socket writes.
pub struct OutgoingBody(Pipe<Outgoing>);

impl Stream for OutgoingBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_read(cx, |buf| Ok(buf.take()))
    }
}

impl Drop for OutgoingBody {
    fn drop(&mut self) {
        // actix dropped the response: the connection is gone.
        self.0.close();
    }
}

impl ActixIo {
    /// Pumps `payload` into a new stream; returns it with the body to respond with.
    /// Must be called on an actix-web worker.
    pub(crate) fn new(mut payload: web::Payload) -> (Self, OutgoingBody) {
        let incoming = Pipe::<Chunks>::default();
        let outgoing = Pipe::default();
        let pump = incoming.clone();
        actix_web::rt::spawn(async move {
            // Ends when the payload ends, or when the socket is gone: a payload that never
            // ends must not keep this task (and the connection's buffers) alive.
            let mut next = |cx: &mut Context<'_>| match pump.poll_closed(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => payload.poll_next_unpin(cx),
            };
            while let Some(Ok(chunk)) = poll_fn(&mut next).await {
                let mut chunk = Some(chunk);
                let sent = poll_fn(|cx| pump.poll_write(cx, |chunks| chunks.push(chunk.take().unwrap_or_default()))).await;
                if sent.is_err() {
                    break;
                }
            }
            pump.close();
        });
        (Self { incoming, outgoing: outgoing.clone() }, OutgoingBody(outgoing))
    }
}

impl Drop for ActixIo {
    fn drop(&mut self) {
        self.incoming.close();
        self.outgoing.close();
    }
}

impl AsyncRead for ActixIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // `None` is the end of the stream: nothing read.
        ready!(self.incoming.poll_read(cx, |chunks| chunks.read_into(buf)));
        Poll::Ready(Ok(()))
    }
}

fn broken_pipe(_: ()) -> io::Error {
    io::ErrorKind::BrokenPipe.into()
}

impl AsyncWrite for ActixIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.outgoing.poll_write(cx, |out| out.append(&[IoSlice::new(buf)])).map_err(broken_pipe)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.outgoing.poll_write(cx, |out| out.append(bufs)).map_err(broken_pipe)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Ending the body ends the response, and actix closes the connection.
        self.outgoing.close();
        Poll::Ready(Ok(()))
    }
}
