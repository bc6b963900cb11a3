//! The opening handshake (RFC 6455 §4), on the `http` crate's types so that every adapter
//! shares it: [`server`] validates a request and builds the 101 response, [`client`] builds
//! a request and validates the response, and [`http1`] reads and writes HTTP/1.1 bytes
//! for the standalone server and the client.

pub mod client;
#[doc(hidden)] // HTTP/1.1 head parsing for the standalone server and the client; public for the fuzzers
pub mod http1;
pub mod server;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha1::{Digest, Sha1};

/// What the opening handshake agreed on, handed to the socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Negotiated {
    /// The subprotocol selected, if any.
    pub protocol: Option<String>,
    /// The permessage-deflate agreement, if compression was negotiated.
    #[cfg(feature = "deflate")]
    pub deflate: Option<crate::deflate::params::Agreed>,
    /// The WebSocket runs on an HTTP/2 stream, opened by an extended CONNECT (RFC 8441),
    /// rather than on a connection upgraded from HTTP/1.1.
    pub http2: bool,
}

impl Negotiated {
    /// Only a subprotocol, no extension.
    pub fn protocol(protocol: Option<String>) -> Self {
        Self { protocol, ..Self::default() }
    }
}

/// The GUID appended to the key before hashing (RFC 6455 §1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
///
/// ```
/// // The example of RFC 6455 §1.3.
/// assert_eq!(wsdriver::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

/// Why an opening handshake failed. On a server each maps to the HTTP status the request
/// is answered with ([`HandshakeError::status`], [`HandshakeError::response`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request method is not GET (405).
    #[error("method {0} is not allowed; a websocket handshake is a GET")]
    MethodNotAllowed(http::Method),
    /// The request is older than HTTP/1.1 (400).
    #[error("http/1.1 or later is required")]
    HttpVersion,
    /// No `Upgrade: websocket`: a plain HTTP request to a websocket endpoint (426).
    #[error("upgrade required: send 'Upgrade: websocket'")]
    NotUpgrade,
    /// An `Upgrade` header that does not name websocket (400).
    #[error("upgrade header does not name websocket")]
    InvalidUpgrade,
    /// No `upgrade` token in `Connection` (400).
    #[error("connection header does not include 'upgrade'")]
    MissingConnectionUpgrade,
    /// No `Host` header (400).
    #[error("missing host header")]
    MissingHost,
    /// No `Sec-WebSocket-Key` (400).
    #[error("missing sec-websocket-key header")]
    MissingKey,
    /// A key that is not the base64 encoding of 16 bytes (400).
    #[error("sec-websocket-key is not 16 base64-encoded bytes")]
    InvalidKey,
    /// `Sec-WebSocket-Version` missing or not 13 (426, with `Sec-WebSocket-Version: 13`).
    #[error("unsupported websocket version; only 13 is supported")]
    UnsupportedVersion,
    /// The `Origin` was refused by the configured check (403).
    #[error("origin not allowed")]
    ForbiddenOrigin,
    /// The request could not be parsed as HTTP/1.1 (400).
    #[error("malformed http request: {0}")]
    Malformed(String),
    /// The request's head exceeded the configured size or header count (431).
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// The peer did not complete its handshake in time (408).
    #[error("handshake timed out")]
    Timeout,
    /// Client side: the server answered with a status other than 101.
    #[error("server answered {status} instead of 101")]
    UnexpectedStatus {
        /// The status.
        status: StatusCode,
        /// The response headers.
        headers: Box<HeaderMap>,
        /// The start of the body, as far as it was read.
        body: bytes::Bytes,
    },
    /// Client side: the server redirected; redirects are reported, not followed.
    #[error("server redirected ({status}) to {location}")]
    Redirect {
        /// The 3xx status.
        status: StatusCode,
        /// The `Location` header.
        location: String,
    },
    /// Client side: `Sec-WebSocket-Accept` missing or wrong.
    #[error("sec-websocket-accept missing or wrong")]
    InvalidAccept,
    /// Client side: the server picked a subprotocol the client did not offer.
    #[error("server selected subprotocol {0:?}, which was not offered")]
    UnofferedProtocol(String),
    /// Client side: the server answered with an extension the client did not offer.
    #[error("server selected extension {0:?}, which was not offered")]
    UnofferedExtension(String),
    /// The connection closed before the handshake completed.
    #[error("connection closed during the handshake")]
    ConnectionClosed,
    /// Server side: the application refused the request before the upgrade (see
    /// [`Server::authorize`](crate::Server::authorize)), answering with this status.
    #[error("refused by the application with {0}")]
    Refused(StatusCode),
    /// The local [`Config`](crate::Config) does not pass its
    /// [`validate`](crate::Config::validate): a server answers 500, a client does not
    /// connect.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    ///
    /// ```
    /// use http::StatusCode;
    /// use wsdriver::handshake::HandshakeError;
    /// assert_eq!(HandshakeError::UnsupportedVersion.status(), StatusCode::UPGRADE_REQUIRED);
    /// assert_eq!(HandshakeError::InvalidKey.status(), StatusCode::BAD_REQUEST);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotUpgrade | Self::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            Self::ForbiddenOrigin => StatusCode::FORBIDDEN,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Refused(status) => *status,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The response a server sends for this error: the status, the headers the RFCs ask
    /// for (`Allow`, `Upgrade`, `Sec-WebSocket-Version: 13`), and the reason as a short
    /// plain-text body.
    pub fn response(&self) -> http::Response<String> {
        let mut response = http::Response::new(format!("{self}\n"));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        match self {
            Self::MethodNotAllowed(_) => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            Self::NotUpgrade | Self::UnsupportedVersion => {
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
            _ => {}
        }
        response
    }
}

/// The comma-separated tokens of every `name` header, trimmed, empty ones skipped (how
/// `Connection`, `Upgrade` and `Sec-WebSocket-Protocol` list their values).
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.append("sec-websocket-protocol", "a, b".parse().unwrap());
/// headers.append("sec-websocket-protocol", "c".parse().unwrap());
/// let tokens: Vec<_> = wsdriver::handshake::header_tokens(&headers, &http::header::SEC_WEBSOCKET_PROTOCOL).collect();
/// assert_eq!(tokens, ["a", "b", "c"]);
/// ```
pub fn header_tokens<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim).filter(|t| !t.is_empty())
}

/// Whether any `name` header has `token`, compared case-insensitively.
pub(crate) fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn error_responses_carry_required_headers() {
        let r = HandshakeError::UnsupportedVersion.response();
        assert_eq!(r.status(), 426);
        assert_eq!(r.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        let r = HandshakeError::MethodNotAllowed(http::Method::POST).response();
        assert_eq!((r.status().as_u16(), r.headers()[header::ALLOW].to_str().unwrap()), (405, "GET"));
        assert!(r.body().contains("POST"));
    }
}
