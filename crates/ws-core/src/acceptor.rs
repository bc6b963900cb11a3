//! [`Acceptor`]: a TCP accept loop's one step, made safe to loop on.
//!
//! accept(2) fails for reasons that concern one connection (it was reset while queued, a
//! network went down) and for shortages that pass (descriptors or buffers ran out); a
//! server must keep serving through both. Retrying a shortage at once only spins: the
//! queued connection is still there, and so is the shortage.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long to wait before accepting again after running out of descriptors or buffers.
const SHORTAGE_PAUSE: Duration = Duration::from_millis(100);

/// The listen backlog [`bind`] asks for (the kernel caps it, at `net.core.somaxconn` on
/// Linux).
pub const BACKLOG: u32 = 4096;

/// A listener for a WebSocket server on `addr` (the first of its addresses that binds),
/// with `SO_REUSEADDR` on Unix and a listen backlog of [`BACKLOG`].
///
/// `std` and Tokio listen with a backlog of 128: a burst of clients larger than that (every
/// client of a server that just restarted, reconnecting at once) overflows the queue, and
/// each connection dropped there waits a second or more for its SYN to be sent again.
/// [`Server::bind`](crate::Server::bind) and [`Acceptor::bind`] listen with this.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let listener = wsdriver::bind("127.0.0.1:9001").await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// The address cannot be resolved, or no resolved address can be bound (in use, not
/// permitted).
pub async fn bind(addr: impl tokio::net::ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
}

/// Accepts TCP connections for a server: see [`Acceptor::accept`].
///
/// ```no_run
/// use wsdriver::Acceptor;
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let mut acceptor = Acceptor::bind("127.0.0.1:9001").await?;
/// loop {
///     let (stream, peer) = acceptor.accept().await?; // only the listener's own errors end it
///     tokio::spawn(async move { /* serve `stream` from `peer` */ drop((stream, peer)) });
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    /// Within a shortage of descriptors or buffers: warned about once, until it passes.
    short: bool,
}

impl Acceptor {
    /// Accepts on `listener`.
    pub fn new(listener: TcpListener) -> Self {
        Self { listener, short: false }
    }

    /// Listens on `addr`, as [`bind`] does.
    ///
    /// # Errors
    ///
    /// As [`bind`].
    pub async fn bind(addr: impl tokio::net::ToSocketAddrs) -> io::Result<Self> {
        Ok(Self::new(bind(addr).await?))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection, with `TCP_NODELAY` set (a WebSocket writes whole messages).
    ///
    /// An error that concerns one connection is logged and skipped. When descriptors or
    /// buffers run out (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), it waits 100 ms between
    /// attempts, with one warning per shortage, rather than spinning. Only an error of the
    /// listener itself (closed, not listening) is returned.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection is taken from the listener only when this returns it.
    ///
    /// # Errors
    ///
    /// Only the listener's own failures; see above.
    pub async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    if self.short {
                        self.short = false;
                        tracing::info!("accepting connections again");
                    }
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, peer));
                }
                Err(e) => match Failure::of(&e) {
                    Failure::Listener => return Err(e),
                    Failure::Shortage => {
                        if !self.short {
                            self.short = true;
                            tracing::warn!(error = %e, "accept failed: out of resources; retrying every 100 ms");
                        }
                        tokio::time::sleep(SHORTAGE_PAUSE).await;
                    }
                    Failure::Connection => tracing::debug!(error = %e, "accept failed for one connection"),
                },
            }
        }
    }
}

/// `stream` once its peer sent its first bytes (or closed it); `None` if nothing came
/// before `deadline`.
///
/// A server that waits for this before it reads a request allocates nothing for a
/// connection whose peer is silent, and drops it at the deadline: 10,000 clients that
/// connect at once hold a task and a socket each until their requests come, not request
/// buffers that would be freed all at once later and leave the heap fragmented.
#[allow(clippy::manual_async_fn)] // its parameters would be kept twice in an `async fn`'s future
pub fn first_bytes(stream: TcpStream, deadline: tokio::time::Instant) -> impl std::future::Future<Output = Option<TcpStream>> + Send {
    async move {
        // Polled for readiness directly: `TcpStream::readable`'s future is three times the
        // size, and this state is every waiting connection's.
        match tokio::time::timeout_at(deadline, std::future::poll_fn(|cx| stream.poll_read_ready(cx))).await {
            Ok(Ok(())) => Some(stream),
            _ => None,
        }
    }
}

/// What an accept error is about.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The listener itself: nothing more can be accepted.
    Listener,
    /// Descriptors or buffers ran out: try again a little later.
    Shortage,
    /// One connection: try again at once (accept(2) says to treat these like `EAGAIN`).
    Connection,
}

impl Failure {
    fn of(error: &io::Error) -> Self {
        #[cfg(unix)]
        if let Some(code) = error.raw_os_error() {
            return match code {
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => Self::Shortage,
                libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP | libc::EFAULT => Self::Listener,
                _ => Self::Connection,
            };
        }
        match error.kind() {
            io::ErrorKind::OutOfMemory => Self::Shortage,
            io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported => Self::Listener,
            _ => Self::Connection,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn errors_are_told_apart() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(Failure::of(&os(libc::EMFILE)), Failure::Shortage);
        assert_eq!(Failure::of(&os(libc::ENFILE)), Failure::Shortage);
        assert_eq!(Failure::of(&os(libc::ENOBUFS)), Failure::Shortage);
        assert_eq!(Failure::of(&os(libc::ECONNABORTED)), Failure::Connection);
        assert_eq!(Failure::of(&os(libc::EPROTO)), Failure::Connection);
        assert_eq!(Failure::of(&os(libc::ENETDOWN)), Failure::Connection);
        assert_eq!(Failure::of(&os(libc::EBADF)), Failure::Listener);
        assert_eq!(Failure::of(&os(libc::EINVAL)), Failure::Listener);
    }
}
