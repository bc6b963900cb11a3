//! The server side of the opening handshake (RFC 6455 §4.2).

use super::{HandshakeError, Negotiated, accept_key, has_token, header_tokens};
use crate::config::Config;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version, header};

/// A validated upgrade request: the response to send, and what was negotiated.
#[derive(Debug)]
pub struct Accepted {
    /// The response, with the config's extra headers: `101 Switching Protocols` over
    /// HTTP/1.1, `200 OK` to an extended CONNECT (RFC 8441).
    pub response: Response<()>,
    /// The subprotocol and extensions agreed; pass it to the socket.
    pub negotiated: Negotiated,
}

impl Accepted {
    /// The subprotocol selected, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.negotiated.protocol.as_deref()
    }
}

/// Validates an upgrade request and builds the 101 response (RFC 6455 §4.2.1, §4.2.2).
///
/// The subprotocol is the first one the client offers (clients list them by preference)
/// that `config.protocols` supports. Errors carry the status to answer with
/// ([`HandshakeError::response`]).
///
/// ```
/// use wsdriver::{Config, handshake::server::accept};
/// let request = http::Request::get("/chat")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "keep-alive, Upgrade")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-protocol", "chat.v1, chat.v2")
///     .body(())
///     .unwrap();
/// let accepted = accept(&request, &Config::default().protocols(["chat.v2"])).unwrap();
/// assert_eq!(accepted.response.status(), 101);
/// assert_eq!(accepted.response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// assert_eq!(accepted.protocol(), Some("chat.v2"));
/// ```
pub fn accept<B>(request: &http::Request<B>, config: &Config) -> Result<Accepted, HandshakeError> {
    accept_parts(request.method(), request.version(), request.headers(), config)
}

/// Whether a request asks for a WebSocket upgrade at all (`Upgrade: websocket`): what an
/// adapter checks before taking a request away from the application's other routes.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    has_token(headers, &header::UPGRADE, "websocket")
}

/// [`accept`] on the parts of a request, for servers that do not hand out a whole
/// `http::Request`.
pub fn accept_parts(method: &Method, version: Version, headers: &HeaderMap, config: &Config) -> Result<Accepted, HandshakeError> {
    check_config(config)?;
    validate_request(method, version, headers)?;
    respond_checked(headers, config)
}

/// An invalid config refuses every handshake (500), and says why in the log.
fn check_config(config: &Config) -> Result<(), HandshakeError> {
    config.validate().map_err(|error| {
        tracing::error!(%error, "websocket handshake refused: the server's config is invalid");
        error.into()
    })
}

/// The checks of [`accept_parts`] that do not depend on the server's config (method,
/// version, the upgrade headers, the version and the key), for an extractor that rejects
/// a request before its route has chosen a config; [`respond`] then finishes the
/// handshake without checking them again.
pub fn validate_request(method: &Method, version: Version, headers: &HeaderMap) -> Result<(), HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::MethodNotAllowed(method.clone()));
    }
    if version < Version::HTTP_11 {
        return Err(HandshakeError::HttpVersion);
    }
    if headers.get(header::UPGRADE).is_none() {
        return Err(HandshakeError::NotUpgrade);
    }
    if !has_token(headers, &header::UPGRADE, "websocket") {
        return Err(HandshakeError::InvalidUpgrade);
    }
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    if headers.get(header::HOST).is_none() {
        return Err(HandshakeError::MissingHost);
    }
    if !header_tokens(headers, &header::SEC_WEBSOCKET_VERSION).any(|v| v == "13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(HandshakeError::MissingKey)?;
    if !matches!(BASE64.decode(key.as_bytes()), Ok(k) if k.len() == 16) {
        return Err(HandshakeError::InvalidKey);
    }
    Ok(())
}

/// The checks of an RFC 8441 opening handshake, a WebSocket on an HTTP/2 stream (or an
/// HTTP/3 one, RFC 9220): an extended CONNECT whose `:protocol` pseudo-header is
/// `websocket` (`protocol`, which servers expose beside the request: hyper as
/// `hyper::ext::Protocol`), with `Sec-WebSocket-Version: 13`. There is no key to check:
/// the stream itself is the proof (RFC 8441 §5). [`respond_extended_connect`] finishes
/// the handshake.
///
/// ```
/// use http::{HeaderMap, Method, Version};
/// use wsdriver::handshake::server::validate_extended_connect;
/// let mut headers = HeaderMap::new();
/// headers.insert("sec-websocket-version", "13".parse().unwrap());
/// assert!(validate_extended_connect(&Method::CONNECT, Version::HTTP_2, Some("websocket"), &headers).is_ok());
/// assert!(validate_extended_connect(&Method::CONNECT, Version::HTTP_2, None, &headers).is_err());
/// ```
pub fn validate_extended_connect(
    method: &Method,
    version: Version,
    protocol: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), HandshakeError> {
    if method != Method::CONNECT {
        return Err(HandshakeError::MethodNotAllowed(method.clone()));
    }
    if version < Version::HTTP_2 {
        return Err(HandshakeError::HttpVersion);
    }
    if !protocol.is_some_and(|p| p.eq_ignore_ascii_case("websocket")) {
        return Err(HandshakeError::InvalidUpgrade);
    }
    if !header_tokens(headers, &header::SEC_WEBSOCKET_VERSION).any(|v| v == "13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    Ok(())
}

/// Whether a request is an extended CONNECT for a WebSocket (RFC 8441): what an adapter
/// checks, beside [`is_upgrade_request`], before taking a request from other routes.
pub fn is_extended_connect(method: &Method, protocol: Option<&str>) -> bool {
    method == Method::CONNECT && protocol.is_some_and(|p| p.eq_ignore_ascii_case("websocket"))
}

/// The rest of an RFC 8441 handshake [`validate_extended_connect`] accepted: the origin,
/// the subprotocol and extensions, as over HTTP/1.1, and a `200` response (no
/// `Sec-WebSocket-Accept`, no `Upgrade`: RFC 8441 §5).
pub fn respond_extended_connect(headers: &HeaderMap, config: &Config) -> Result<Accepted, HandshakeError> {
    check_config(config)?;
    respond_with(headers, config, None)
}

/// The rest of [`accept_parts`] for a request [`validate_request`] accepted: the config's
/// checks (the origin), the subprotocol and extensions, and the 101 response.
pub fn respond(headers: &HeaderMap, config: &Config) -> Result<Accepted, HandshakeError> {
    check_config(config)?;
    respond_checked(headers, config)
}

/// The subprotocol a handshake selects: the first the client offers (clients list them by
/// preference) that the server supports.
pub fn select_protocol<'a>(headers: &'a HeaderMap, supported: &[String]) -> Option<&'a str> {
    header_tokens(headers, &header::SEC_WEBSOCKET_PROTOCOL).find(|offered| supported.iter().any(|p| p == offered))
}

/// [`respond`] with a config already checked.
fn respond_checked(headers: &HeaderMap, config: &Config) -> Result<Accepted, HandshakeError> {
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(HandshakeError::MissingKey)?;
    let accept = HeaderValue::from_str(&accept_key(key.as_bytes())).map_err(|_| HandshakeError::InvalidKey)?;
    respond_with(headers, config, Some(accept))
}

/// The response to an accepted handshake: a 101 with `accept` (RFC 6455), or a 200
/// without (RFC 8441).
fn respond_with(headers: &HeaderMap, config: &Config, accept: Option<HeaderValue>) -> Result<Accepted, HandshakeError> {
    let http2 = accept.is_none();
    let origin = headers.get(header::ORIGIN).map(|o| o.to_str().unwrap_or(""));
    if !config.origin_check.allows(origin) {
        return Err(HandshakeError::ForbiddenOrigin);
    }

    let protocol = select_protocol(headers, &config.protocols).map(str::to_owned);

    let mut response = Response::new(());
    let h = response.headers_mut();
    h.extend(config.extra_headers.clone());
    if let Some(accept) = accept {
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    let h = response.headers_mut();
    if let Some(p) = &protocol {
        // The name came from a header value, so it is a valid one.
        if let Ok(v) = HeaderValue::from_str(p) {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    let mut negotiated = Negotiated::protocol(protocol);
    negotiated.http2 = http2;
    #[cfg(feature = "deflate")]
    if let Some(deflate) = &config.deflate {
        let values = headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter().filter_map(|v| v.to_str().ok());
        if let Some((answer, agreed)) = crate::deflate::params::accept(&crate::deflate::params::elements(values), deflate) {
            if let Ok(v) = HeaderValue::from_str(&answer) {
                h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
                negotiated.deflate = Some(agreed);
            }
        }
    }
    Ok(Accepted { response, negotiated })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> http::request::Builder {
        http::Request::get("/")
            .header("host", "localhost")
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
    }

    fn run(b: http::request::Builder) -> Result<Accepted, HandshakeError> {
        accept(&b.body(()).unwrap(), &Config::default().protocols(["b", "a"]))
    }

    /// Validating first and responding later (an extractor's two steps) answers exactly
    /// as `accept` does, and each step refuses what it should.
    #[test]
    fn validate_then_respond_is_accept_in_two_steps() {
        let r = request().header("sec-websocket-protocol", "a").body(()).unwrap();
        let config = Config::default().protocols(["a"]);
        validate_request(r.method(), r.version(), r.headers()).unwrap();
        let (whole, split) = (accept(&r, &config).unwrap(), respond(r.headers(), &config).unwrap());
        assert_eq!(whole.response.headers(), split.response.headers());
        assert_eq!(split.protocol(), Some("a"));

        let post = request().method("POST").body(()).unwrap();
        assert!(matches!(validate_request(post.method(), post.version(), post.headers()), Err(HandshakeError::MethodNotAllowed(_))));
        let from_elsewhere = request().header("origin", "https://evil.example").body(()).unwrap();
        let strict = Config::default().allowed_origins(["https://good.example"]);
        validate_request(from_elsewhere.method(), from_elsewhere.version(), from_elsewhere.headers()).unwrap();
        assert!(matches!(respond(from_elsewhere.headers(), &strict), Err(HandshakeError::ForbiddenOrigin)));
    }

    fn without(name: &str) -> http::request::Builder {
        let full = request().body(()).unwrap();
        let mut b = http::Request::get("/");
        for (n, v) in full.headers() {
            if n.as_str() != name {
                b = b.header(n, v);
            }
        }
        b
    }

    #[test]
    fn accepts_a_valid_request() {
        let a = run(request()).unwrap();
        assert_eq!(a.response.status(), 101);
        assert_eq!(a.response.headers()["upgrade"], "websocket");
        assert_eq!(a.protocol(), None);
        assert!(a.response.headers().get("sec-websocket-protocol").is_none());
    }

    #[test]
    fn tokens_are_case_insensitive_lists() {
        let a = run(request().header("connection", "keep-alive, UPGRADE").header("upgrade", "WebSocket"));
        assert!(a.is_ok());
    }

    #[test]
    fn picks_in_client_preference_order() {
        let a = run(request().header("sec-websocket-protocol", "x, a").header("sec-websocket-protocol", "b")).unwrap();
        assert_eq!(a.protocol(), Some("a"));
        assert_eq!(a.response.headers()["sec-websocket-protocol"], "a");
        assert_eq!(run(request().header("sec-websocket-protocol", "x")).unwrap().protocol(), None);
    }

    #[test]
    fn rejections_have_precise_errors() {
        assert_eq!(run(request().method("POST")).unwrap_err(), HandshakeError::MethodNotAllowed(Method::POST));
        assert_eq!(run(request().version(Version::HTTP_10)).unwrap_err(), HandshakeError::HttpVersion);
        assert_eq!(run(without("upgrade")).unwrap_err(), HandshakeError::NotUpgrade);
        assert_eq!(run(without("upgrade").header("upgrade", "h2c")).unwrap_err(), HandshakeError::InvalidUpgrade);
        assert_eq!(run(without("connection")).unwrap_err(), HandshakeError::MissingConnectionUpgrade);
        assert_eq!(run(without("host")).unwrap_err(), HandshakeError::MissingHost);
        assert_eq!(run(without("sec-websocket-key")).unwrap_err(), HandshakeError::MissingKey);
        assert_eq!(run(without("sec-websocket-key").header("sec-websocket-key", "c2hvcnQ=")).unwrap_err(), HandshakeError::InvalidKey);
        assert_eq!(run(without("sec-websocket-version")).unwrap_err(), HandshakeError::UnsupportedVersion);
        assert_eq!(
            run(without("sec-websocket-version").header("sec-websocket-version", "8")).unwrap_err(),
            HandshakeError::UnsupportedVersion
        );
    }

    #[test]
    fn origin_check() {
        let cfg = Config::default().allowed_origins(["https://good.example"]);
        let check = |b: http::request::Builder| accept(&b.body(()).unwrap(), &cfg).map(|_| ());
        assert_eq!(check(request().header("origin", "https://good.example")), Ok(()));
        assert_eq!(check(request().header("origin", "https://evil.example")), Err(HandshakeError::ForbiddenOrigin));
        assert_eq!(check(request()), Ok(()));
        assert_eq!(HandshakeError::ForbiddenOrigin.status(), 403);
    }

    /// RFC 8441: a CONNECT with `:protocol` websocket on HTTP/2 is answered 200, with the
    /// subprotocol, and without the HTTP/1.1 upgrade's key, accept and upgrade headers.
    #[test]
    fn extended_connect_on_http2() {
        let mut headers = HeaderMap::new();
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("x, a"));
        let check = |method: &Method, version, protocol| validate_extended_connect(method, version, protocol, &headers);
        assert_eq!(check(&Method::CONNECT, Version::HTTP_2, Some("websocket")), Ok(()));
        assert_eq!(check(&Method::GET, Version::HTTP_2, Some("websocket")), Err(HandshakeError::MethodNotAllowed(Method::GET)));
        assert_eq!(check(&Method::CONNECT, Version::HTTP_11, Some("websocket")), Err(HandshakeError::HttpVersion));
        assert_eq!(check(&Method::CONNECT, Version::HTTP_2, Some("webtransport")), Err(HandshakeError::InvalidUpgrade));
        assert_eq!(check(&Method::CONNECT, Version::HTTP_2, None), Err(HandshakeError::InvalidUpgrade));
        assert_eq!(
            validate_extended_connect(&Method::CONNECT, Version::HTTP_2, Some("websocket"), &HeaderMap::new()),
            Err(HandshakeError::UnsupportedVersion)
        );
        assert!(is_extended_connect(&Method::CONNECT, Some("websocket")) && !is_extended_connect(&Method::CONNECT, None));

        let accepted = respond_extended_connect(&headers, &Config::default().protocols(["a"])).unwrap();
        assert_eq!(accepted.response.status(), StatusCode::OK);
        assert_eq!(accepted.protocol(), Some("a"));
        for absent in [header::SEC_WEBSOCKET_ACCEPT, header::UPGRADE, header::CONNECTION] {
            assert!(accepted.response.headers().get(&absent).is_none(), "{absent}");
        }
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        let strict = Config::default().allowed_origins(["https://good.example"]);
        assert_eq!(respond_extended_connect(&headers, &strict).unwrap_err(), HandshakeError::ForbiddenOrigin);
    }

    #[test]
    fn extra_headers_are_added() {
        let cfg = Config::default().extra_header(header::SERVER, HeaderValue::from_static("wsdriver"));
        let a = accept(&request().body(()).unwrap(), &cfg).unwrap();
        assert_eq!(a.response.headers()["server"], "wsdriver");
    }
}
