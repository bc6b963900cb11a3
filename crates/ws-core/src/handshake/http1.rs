//! HTTP/1.1 bytes for the opening handshake: the standalone server reads requests and
//! writes responses with it; the client the reverse. Parsing is httparse's, bounded by the
//! configured size and header count.

use super::HandshakeError;
use bytes::{BufMut, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Poll, ready};
use tokio::io::{AsyncRead, ReadBuf};

/// Parses a request head from the start of `buf`: `Ok(None)` while it is incomplete,
/// otherwise the request and the length of its head (anything after it is WebSocket data
/// the client sent early).
///
/// ```
/// use wsdriver::handshake::http1::parse_request;
/// let raw = b"GET /chat HTTP/1.1\r\nHost: a\r\n\r\n\x81";
/// let (request, len) = parse_request(raw, 16).unwrap().unwrap();
/// assert_eq!((request.uri().path(), len), ("/chat", raw.len() - 1));
/// assert!(parse_request(&raw[..10], 16).unwrap().is_none());
/// ```
pub fn parse_request(buf: &[u8], max_headers: usize) -> Result<Option<(Request<()>, usize)>, HandshakeError> {
    let mut on_stack = [httparse::EMPTY_HEADER; SLOTS_ON_STACK];
    let mut on_heap = Vec::new();
    let mut req = httparse::Request::new(header_slots(max_headers, &mut on_stack, &mut on_heap));
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadersTooLarge),
        Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes()).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let mut builder = Request::builder().method(method).uri(req.path.unwrap_or("/")).version(if req.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    });
    if let Some(headers) = builder.headers_mut() {
        *headers = to_header_map(req.headers)?;
    }
    let request = builder.body(()).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    Ok(Some((request, len)))
}

/// Parses a response head from the start of `buf`, like [`parse_request`].
pub fn parse_response(buf: &[u8], max_headers: usize) -> Result<Option<(Response<()>, usize)>, HandshakeError> {
    let mut on_stack = [httparse::EMPTY_HEADER; SLOTS_ON_STACK];
    let mut on_heap = Vec::new();
    let mut resp = httparse::Response::new(header_slots(max_headers, &mut on_stack, &mut on_heap));
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadersTooLarge),
        Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
    };
    let status = StatusCode::from_u16(resp.code.unwrap_or_default()).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = to_header_map(resp.headers)?;
    Ok(Some((response, len)))
}

/// Header slots parsed into without allocating, up to the default header count.
const SLOTS_ON_STACK: usize = 64;

/// `max_headers` slots: on the stack when they fit, else on the heap.
fn header_slots<'a, 'b>(
    max_headers: usize,
    on_stack: &'a mut [httparse::Header<'b>; SLOTS_ON_STACK],
    on_heap: &'a mut Vec<httparse::Header<'b>>,
) -> &'a mut [httparse::Header<'b>] {
    if max_headers <= SLOTS_ON_STACK {
        &mut on_stack[..max_headers]
    } else {
        on_heap.resize(max_headers, httparse::EMPTY_HEADER);
        on_heap
    }
}

fn to_header_map(headers: &[httparse::Header<'_>]) -> Result<HeaderMap, HandshakeError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        map.append(name, value);
    }
    Ok(map)
}

fn write_headers(headers: &HeaderMap, out: &mut BytesMut) {
    for (name, value) in headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
}

/// Serializes a response head and `body` (the response's own body is not used, so a
/// `Response<()>` serializes too). A non-101 response gets a `Content-Length` and
/// `Connection: close`: error responses end the connection.
pub fn write_response<B>(response: &Response<B>, body: &[u8], out: &mut BytesMut) {
    let status = response.status();
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    write_headers(response.headers(), out);
    if status != StatusCode::SWITCHING_PROTOCOLS {
        out.put_slice(format!("content-length: {}\r\nconnection: close\r\n", body.len()).as_bytes());
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
}

/// Serializes a request head.
pub fn write_request(request: &Request<()>, out: &mut BytesMut) {
    out.put_slice(request.method().as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(request.uri().path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    write_headers(request.headers(), out);
    out.put_slice(b"\r\n");
}

/// Reads from `io` into `buf` until `parse` finds a complete head, failing with
/// [`HandshakeError::HeadersTooLarge`] past `max_bytes` and
/// [`HandshakeError::ConnectionClosed`] at end of stream. The bytes after the head stay
/// in `buf`.
///
/// Nothing is allocated before bytes arrive: each read goes through a buffer on the stack
/// and only what arrived is copied into `buf`. A server that 10,000 clients connect to at
/// once holds no buffer for those whose request has not come yet, and the buffers of
/// those that came are freed before the next is read, instead of all being alive at the
/// same moment and leaving the heap fragmented once the storm is over.
///
/// # Errors
///
/// [`HandshakeError`] for a head over `max` bytes (431), one that does not parse (400), or
/// a stream that ends first; [`Error::Io`](crate::Error::Io) when the stream fails.
pub async fn read_head<IO, T>(
    io: &mut IO,
    buf: &mut BytesMut,
    max_bytes: usize,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, HandshakeError>,
) -> Result<T, crate::Error>
where
    IO: AsyncRead + Unpin,
{
    loop {
        if !buf.is_empty() {
            if let Some((head, len)) = parse(buf)? {
                let _ = buf.split_to(len);
                return Ok(head);
            }
        }
        if buf.len() >= max_bytes {
            return Err(HandshakeError::HeadersTooLarge.into());
        }
        let room = max_bytes - buf.len();
        let read = poll_fn(|cx| {
            let mut chunk = [0u8; READ_CHUNK];
            let mut chunk = ReadBuf::new(&mut chunk[..room.min(READ_CHUNK)]);
            ready!(Pin::new(&mut *io).poll_read(cx, &mut chunk))?;
            buf.extend_from_slice(chunk.filled());
            Poll::Ready(Ok::<_, std::io::Error>(chunk.filled().len()))
        });
        if read.await? == 0 {
            return Err(HandshakeError::ConnectionClosed.into());
        }
    }
}

/// The stack buffer a handshake is read through.
const READ_CHUNK: usize = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_bytes() {
        let mut out = BytesMut::new();
        let r = HandshakeError::UnsupportedVersion.response();
        write_response(&r, r.body().as_bytes(), &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{text}");
        assert!(text.contains("sec-websocket-version: 13\r\n"));
        let (parsed, len) = parse_response(&out, 16).unwrap().unwrap();
        assert_eq!((parsed.status(), &out[len..]), (StatusCode::UPGRADE_REQUIRED, r.body().as_bytes()));
    }

    #[test]
    fn too_many_headers() {
        let raw = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert_eq!(parse_request(raw, 2).unwrap_err(), HandshakeError::HeadersTooLarge);
        assert!(parse_request(raw, 3).unwrap().is_some());
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(parse_request(b"\x16\x03\x01 hello\r\n\r\n", 8), Err(HandshakeError::Malformed(_))));
    }

    #[tokio::test]
    async fn read_head_bounds_size() {
        let raw = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        let mut buf = BytesMut::new();
        let err = read_head(&mut raw.as_bytes(), &mut buf, 64, |b| parse_request(b, 8)).await.unwrap_err();
        assert!(matches!(err, crate::Error::Handshake(HandshakeError::HeadersTooLarge)));
        let mut buf = BytesMut::new();
        let req = read_head(&mut raw.as_bytes(), &mut buf, 4096, |b| parse_request(b, 8)).await.unwrap();
        assert_eq!(req.headers()["x"].len(), 100);
    }
}
