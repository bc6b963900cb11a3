//! The client side of the opening handshake (RFC 6455 §4.1).

use super::{HandshakeError, Negotiated, accept_key, header_tokens};
use crate::config::Config;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri, header};

/// Builds the upgrade request for `uri` with a fresh random key; returns it with the key,
/// which [`validate_response`] needs. Fails with [`HandshakeError::Config`] if `config`
/// does not pass [`Config::validate`].
///
/// Credentials in the URL (`ws://user:password@host/`) are sent as
/// `Authorization: Basic`, percent-decoded, and never in `Host`; an `Authorization` among
/// [`Config::extra_headers`] wins over them.
///
/// ```
/// use wsdriver::{Config, handshake::client};
/// let uri: http::Uri = "ws://example.com:8080/chat?room=1".parse().unwrap();
/// let (request, key) = client::request(&uri, &Config::default().protocols(["chat"])).unwrap();
/// assert_eq!(request.uri(), "/chat?room=1");
/// assert_eq!(request.headers()["host"], "example.com:8080");
/// assert_eq!(request.headers()["sec-websocket-key"], key.as_str());
/// assert_eq!(request.headers()["sec-websocket-protocol"], "chat");
///
/// let uri: http::Uri = "ws://ann:s%3Acret@example.com/".parse().unwrap();
/// let (request, _) = client::request(&uri, &Config::default()).unwrap();
/// assert_eq!(request.headers()["host"], "example.com");
/// assert_eq!(request.headers()["authorization"], "Basic YW5uOnM6Y3JldA=="); // ann:s:cret
/// ```
pub fn request(uri: &Uri, config: &Config) -> Result<(Request<()>, String), HandshakeError> {
    config.validate()?;
    let authority = uri.authority().ok_or_else(|| HandshakeError::Malformed(format!("no host in {uri}")))?;
    let (userinfo, host) = match authority.as_str().rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, authority.as_str()),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let key = BASE64.encode(rand::random::<[u8; 16]>());
    let mut builder = Request::get(path);
    let headers = builder.headers_mut().ok_or_else(|| HandshakeError::Malformed(format!("invalid uri {uri}")))?;
    headers.extend(config.extra_headers.clone());
    let bad = |e: http::header::InvalidHeaderValue| HandshakeError::Malformed(e.to_string());
    headers.insert(header::HOST, HeaderValue::from_str(host).map_err(bad)?);
    if let Some(userinfo) = userinfo.filter(|_| !headers.contains_key(header::AUTHORIZATION)) {
        headers.insert(header::AUTHORIZATION, basic_auth(userinfo).map_err(bad)?);
    }
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_str(&key).map_err(bad)?);
    headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    if !config.protocols.is_empty() {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(&config.protocols.join(", ")).map_err(bad)?);
    }
    #[cfg(feature = "deflate")]
    if let Some(deflate) = &config.deflate {
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_str(&crate::deflate::params::offer(deflate)).map_err(bad)?);
    }
    let request = builder.body(()).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    Ok((request, key))
}

/// `Authorization: Basic` for a URL's `user:password` (RFC 7617), each part
/// percent-decoded (RFC 3986 §3.2.1); a password may be absent.
fn basic_auth(userinfo: &str) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut credentials: Vec<u8> = percent_encoding::percent_decode_str(user).collect();
    credentials.push(b':');
    credentials.extend(percent_encoding::percent_decode_str(password));
    let mut value = HeaderValue::from_str(&format!("Basic {}", BASE64.encode(credentials)))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Validates the server's answer (RFC 6455 §4.1, steps 1-6 of the client's checks) and
/// returns what it agreed to: the subprotocol, and permessage-deflate if offered and
/// accepted.
///
/// A non-101 status is an error carrying the status, headers and `body_start`; a 3xx is
/// reported as a redirect rather than followed.
pub fn validate_response(
    status: StatusCode,
    headers: &HeaderMap,
    body_start: Bytes,
    key: &str,
    config: &Config,
) -> Result<Negotiated, HandshakeError> {
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refused(status, headers, body_start));
    }
    if !super::has_token(headers, &header::UPGRADE, "websocket") {
        return Err(HandshakeError::InvalidUpgrade);
    }
    if !super::has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let expected = accept_key(key.as_bytes());
    if headers.get(header::SEC_WEBSOCKET_ACCEPT).is_none_or(|v| v.as_bytes() != expected.as_bytes()) {
        return Err(HandshakeError::InvalidAccept);
    }
    agreed(headers, config)
}

/// The extended CONNECT (RFC 8441 §4) that opens a WebSocket on an HTTP/2 stream, for
/// `uri` (`ws://` or `wss://`): the headers of [`request`] but those HTTP/2 forbids or
/// replaces (`Host` becomes `:authority`; `Upgrade`, `Connection` and the key go), with
/// an absolute `http`/`https` URI for `:scheme`, `:authority` and `:path`. The
/// `:protocol` pseudo-header is the HTTP/2 library's to add (hyper's
/// `ext::Protocol::from_static("websocket")`).
///
/// ```
/// use wsdriver::{Config, handshake::client};
/// let uri: http::Uri = "wss://example.com/chat?room=1".parse().unwrap();
/// let request = client::extended_connect_request(&uri, &Config::default().protocols(["chat"])).unwrap();
/// assert_eq!(request.method(), http::Method::CONNECT);
/// assert_eq!(request.uri(), "https://example.com/chat?room=1");
/// assert_eq!(request.headers()["sec-websocket-version"], "13");
/// assert_eq!(request.headers()["sec-websocket-protocol"], "chat");
/// assert!(request.headers().get("sec-websocket-key").is_none());
/// assert!(request.headers().get("host").is_none());
/// ```
pub fn extended_connect_request(uri: &Uri, config: &Config) -> Result<Request<()>, HandshakeError> {
    let (request, _key) = request(uri, config)?;
    let (mut parts, ()) = request.into_parts();
    for name in [header::HOST, header::UPGRADE, header::CONNECTION, header::SEC_WEBSOCKET_KEY] {
        parts.headers.remove(name);
    }
    let scheme = if uri.scheme_str() == Some("wss") { "https" } else { "http" };
    let authority = uri.authority().map(|a| a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, host)| host)).unwrap_or_default();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri =
        format!("{scheme}://{authority}{path}").parse().map_err(|e| HandshakeError::Malformed(format!("invalid uri {uri}: {e}")))?;
    parts.method = http::Method::CONNECT;
    parts.version = http::Version::HTTP_2;
    Ok(Request::from_parts(parts, ()))
}

/// Validates the answer to an [`extended_connect_request`]: a 2xx (RFC 8441 §5), with a
/// subprotocol and extensions the client offered; no key, no `Upgrade`. Errors as
/// [`validate_response`]'s.
pub fn validate_extended_connect_response(
    status: StatusCode,
    headers: &HeaderMap,
    body_start: Bytes,
    config: &Config,
) -> Result<Negotiated, HandshakeError> {
    if !status.is_success() {
        return Err(refused(status, headers, body_start));
    }
    let mut negotiated = agreed(headers, config)?;
    negotiated.http2 = true;
    Ok(negotiated)
}

/// A refusal: a redirect with its location, or the status with its headers and body.
fn refused(status: StatusCode, headers: &HeaderMap, body_start: Bytes) -> HandshakeError {
    if status.is_redirection() {
        if let Some(location) = headers.get(header::LOCATION).and_then(|l| l.to_str().ok()) {
            return HandshakeError::Redirect { status, location: location.to_owned() };
        }
    }
    HandshakeError::UnexpectedStatus { status, headers: Box::new(headers.clone()), body: body_start }
}

/// The subprotocol and extensions an accepting answer agreed to, if the client offered
/// them.
fn agreed(headers: &HeaderMap, config: &Config) -> Result<Negotiated, HandshakeError> {
    let mut selected = header_tokens(headers, &header::SEC_WEBSOCKET_PROTOCOL);
    let protocol = match (selected.next(), selected.next()) {
        (None, _) => None,
        (Some(p), None) if config.protocols.iter().any(|o| o == p) => Some(p.to_owned()),
        (Some(p), _) => return Err(HandshakeError::UnofferedProtocol(p.to_owned())),
    };
    #[allow(unused_mut)]
    let mut negotiated = Negotiated::protocol(protocol);
    let values = headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter().filter_map(|v| v.to_str().ok());
    let extensions: Vec<&str> = values.flat_map(|v| v.split(',')).map(str::trim).filter(|e| !e.is_empty()).collect();
    match (extensions.as_slice(), offered_deflate(config)) {
        ([], _) => {}
        #[cfg(feature = "deflate")]
        ([only], Some(deflate)) => {
            let agreed = crate::deflate::params::validate(only, deflate).map_err(HandshakeError::UnofferedExtension)?;
            negotiated.deflate = Some(agreed);
        }
        (more, _) => return Err(HandshakeError::UnofferedExtension(more.join(", "))),
    }
    Ok(negotiated)
}

#[cfg(feature = "deflate")]
fn offered_deflate(config: &Config) -> Option<&crate::deflate::DeflateConfig> {
    config.deflate.as_ref()
}

#[cfg(not(feature = "deflate"))]
fn offered_deflate(_: &Config) -> Option<()> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::server;

    #[test]
    fn round_trip_with_the_server_side() {
        let cfg = Config::default().protocols(["b", "a"]);
        let (req, key) = request(&"ws://[::1]:9001/x".parse().unwrap(), &cfg).unwrap();
        assert_eq!(req.headers()["host"], "[::1]:9001");
        let accepted = server::accept(&req, &Config::default().protocols(["a"])).unwrap();
        let r = &accepted.response;
        assert_eq!(validate_response(r.status(), r.headers(), Bytes::new(), &key, &cfg).unwrap().protocol.as_deref(), Some("a"));
    }

    #[test]
    fn keys_are_fresh() {
        let uri = "ws://h/".parse().unwrap();
        assert_ne!(request(&uri, &Config::default()).unwrap().1, request(&uri, &Config::default()).unwrap().1);
    }

    #[test]
    fn rejects_bad_answers() {
        let cfg = Config::default().protocols(["a"]);
        let (req, key) = request(&"ws://h/".parse().unwrap(), &cfg).unwrap();
        let good = server::accept(&req, &cfg).unwrap().response;
        let check = |status: StatusCode, headers: &HeaderMap| validate_response(status, headers, Bytes::from_static(b"nope"), &key, &cfg);

        let mut wrong_accept = good.headers().clone();
        wrong_accept.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_static("AAAA"));
        assert_eq!(check(StatusCode::SWITCHING_PROTOCOLS, &wrong_accept), Err(HandshakeError::InvalidAccept));

        let mut unoffered = good.headers().clone();
        unoffered.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("z"));
        assert_eq!(check(StatusCode::SWITCHING_PROTOCOLS, &unoffered), Err(HandshakeError::UnofferedProtocol("z".into())));

        let mut ext = good.headers().clone();
        ext.insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static("permessage-deflate"));
        assert!(matches!(check(StatusCode::SWITCHING_PROTOCOLS, &ext), Err(HandshakeError::UnofferedExtension(_))));

        let mut redirect = HeaderMap::new();
        redirect.insert(header::LOCATION, HeaderValue::from_static("ws://elsewhere/"));
        assert!(
            matches!(check(StatusCode::FOUND, &redirect), Err(HandshakeError::Redirect { location, .. }) if location == "ws://elsewhere/")
        );

        match check(StatusCode::FORBIDDEN, &HeaderMap::new()) {
            Err(HandshakeError::UnexpectedStatus { status, body, .. }) => {
                assert_eq!((status, &body[..]), (StatusCode::FORBIDDEN, &b"nope"[..]))
            }
            other => panic!("{other:?}"),
        }
    }
}
