//! permessage-deflate negotiation (RFC 7692 §5, §7.1): the client's offers, the server's
//! pick and response, and the client's check of that response.

use super::DeflateConfig;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const NAME: &str = "permessage-deflate";

/// The parameters of one offer or response (RFC 7692 §7.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// `server_no_context_takeover`
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover`
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits[=N]`: `Some(None)` when present without a value.
    pub client_max_window_bits: Option<Option<u8>>,
}

/// What both ends agreed, from this end's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// Window bits this end compresses with.
    pub own_window_bits: u8,
    /// This end resets its compressor after every message.
    pub own_no_context_takeover: bool,
    /// Window bits the peer compresses with (what inflating needs).
    pub peer_window_bits: u8,
    /// The peer resets its compressor after every message.
    pub peer_no_context_takeover: bool,
}

fn window_bits(value: Option<&str>) -> Result<u8, ()> {
    let v = value.ok_or(())?;
    // A decimal integer without leading zeros, 8 to 15 (§7.1.2).
    if v.len() > 2 || v.starts_with('0') {
        return Err(());
    }
    match v.parse::<u8>() {
        Ok(n @ 8..=15) => Ok(n),
        _ => Err(()),
    }
}

/// Parses one element of `Sec-WebSocket-Extensions` (`name; p1; p2=v`): the extension
/// name and, for permessage-deflate, its parameters (`Err` for unknown, duplicate or
/// invalid ones, which decline the offer).
pub fn parse(element: &str) -> (String, Result<Params, ()>) {
    let mut parts = element.split(';').map(str::trim);
    let name = parts.next().unwrap_or("").to_ascii_lowercase();
    if name != NAME {
        return (name, Err(()));
    }
    let parse_params = || -> Result<Params, ()> {
        let mut p = Params::default();
        for part in parts {
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                None => (part, None),
            };
            match key.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" if value.is_none() && !p.server_no_context_takeover => p.server_no_context_takeover = true,
                "client_no_context_takeover" if value.is_none() && !p.client_no_context_takeover => p.client_no_context_takeover = true,
                "server_max_window_bits" if p.server_max_window_bits.is_none() => p.server_max_window_bits = Some(window_bits(value)?),
                "client_max_window_bits" if p.client_max_window_bits.is_none() => {
                    p.client_max_window_bits = Some(value.map(|v| window_bits(Some(v))).transpose()?);
                }
                _ => return Err(()),
            }
        }
        Ok(p)
    };
    let result = parse_params();
    (name, result)
}

/// The extension elements of a header's values, split at commas outside quotes.
pub fn elements<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out = Vec::new();
    for value in values {
        let (mut start, mut quoted) = (0, false);
        for (i, c) in value.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    out.push(value[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.push(value[start..].trim());
    }
    out.retain(|e| !e.is_empty());
    out
}

/// The client's offer for `config`.
pub fn offer(config: &DeflateConfig) -> String {
    let mut s = String::from(NAME);
    if config.client_no_context_takeover {
        s.push_str("; client_no_context_takeover");
    }
    if config.server_no_context_takeover {
        s.push_str("; server_no_context_takeover");
    }
    if config.server_max_window_bits < 15 {
        s.push_str(&format!("; server_max_window_bits={}", config.server_max_window_bits));
    }
    match config.client_max_window_bits {
        15 => s.push_str("; client_max_window_bits"),
        n => s.push_str(&format!("; client_max_window_bits={n}")),
    }
    s
}

/// The server's pick: the first offer it can accept, with the response to send
/// (RFC 7692 §7.1). Offers it cannot honour are declined, and with none left the
/// connection proceeds without compression.
pub fn accept(elements: &[&str], config: &DeflateConfig) -> Option<(String, Agreed)> {
    elements.iter().find_map(|element| match parse(element) {
        (_, Ok(offer)) => accept_offer(&offer, config),
        _ => None,
    })
}

fn accept_offer(offer: &Params, config: &DeflateConfig) -> Option<(String, Agreed)> {
    let mut response = String::from(NAME);
    // The server's window: its own limit, lowered to what the client asks.
    let own_window_bits = offer.server_max_window_bits.map_or(config.server_max_window_bits, |n| n.min(config.server_max_window_bits));
    if own_window_bits < 9 {
        // zlib cannot deflate with an 8-bit window (it uses 9): decline.
        return None;
    }
    let own_no_context_takeover = config.server_no_context_takeover || offer.server_no_context_takeover;
    if own_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if offer.server_max_window_bits.is_some() || own_window_bits < 15 {
        response.push_str(&format!("; server_max_window_bits={own_window_bits}"));
    }
    // The client's window: ask for our limit only if it said it can honour one.
    let peer_window_bits = match offer.client_max_window_bits {
        Some(offered) => {
            let bits = offered.map_or(config.client_max_window_bits, |n| n.min(config.client_max_window_bits));
            if bits < 15 || offered.is_some() {
                response.push_str(&format!("; client_max_window_bits={bits}"));
            }
            bits
        }
        None => 15,
    };
    if config.client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    // Only what the response asks for binds the client: some clients send the offer's
    // client_no_context_takeover hint and keep their context anyway.
    let peer_no_context_takeover = config.client_no_context_takeover;
    Some((response, Agreed { own_window_bits, own_no_context_takeover, peer_window_bits, peer_no_context_takeover }))
}

/// The client's check of the server's response to its [`offer`]: the agreement, or
/// `Err` with the reason the response is unacceptable.
pub fn validate(element: &str, config: &DeflateConfig) -> Result<Agreed, String> {
    let (name, params) = parse(element);
    if name != NAME {
        return Err(format!("extension {name} was not offered"));
    }
    let p = params.map_err(|()| format!("invalid {NAME} response: {element}"))?;
    let offered_server_bits = (config.server_max_window_bits < 15).then_some(config.server_max_window_bits);
    let peer_window_bits = match (p.server_max_window_bits, offered_server_bits) {
        (Some(n), Some(limit)) if n > limit => return Err(format!("server_max_window_bits={n} exceeds the offered {limit}")),
        (Some(n), _) => n,
        (None, Some(limit)) => return Err(format!("server_max_window_bits={limit} was offered but not confirmed")),
        (None, None) => 15,
    };
    if config.server_no_context_takeover && !p.server_no_context_takeover {
        return Err("server_no_context_takeover was offered but not confirmed".into());
    }
    let own_window_bits = match p.client_max_window_bits {
        Some(None) => return Err("client_max_window_bits needs a value in a response".into()),
        Some(Some(n)) if n > config.client_max_window_bits => return Err(format!("client_max_window_bits={n} exceeds the offered limit")),
        Some(Some(n)) if n < 9 => return Err("client_max_window_bits=8 cannot be honoured".into()),
        Some(Some(n)) => n,
        None => config.client_max_window_bits,
    };
    Ok(Agreed {
        own_window_bits,
        own_no_context_takeover: config.client_no_context_takeover || p.client_no_context_takeover,
        peer_window_bits,
        peer_no_context_takeover: p.server_no_context_takeover,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeflateConfig {
        DeflateConfig::default()
    }

    #[test]
    fn parses_offers_and_rejects_bad_parameters() {
        assert_eq!(parse("permessage-deflate").1, Ok(Params::default()));
        let (_, p) = parse("permessage-deflate; client_max_window_bits; server_max_window_bits=10; server_no_context_takeover");
        assert_eq!(
            p,
            Ok(Params {
                server_no_context_takeover: true,
                server_max_window_bits: Some(10),
                client_max_window_bits: Some(None),
                ..Params::default()
            })
        );
        assert_eq!(parse("permessage-deflate; client_max_window_bits=\"12\"").1.unwrap().client_max_window_bits, Some(Some(12)));
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; unknown",
        ] {
            assert_eq!(parse(bad).1, Err(()), "{bad}");
        }
        assert_eq!(parse("x-webkit-deflate-frame").0, "x-webkit-deflate-frame");
    }

    #[test]
    fn splits_elements_outside_quotes() {
        assert_eq!(elements(["a; x=\"1,2\", b", "c"].into_iter()), ["a; x=\"1,2\"", "b", "c"]);
    }

    #[test]
    fn server_accepts_the_first_acceptable_offer() {
        // Autobahn 13.7's offers: the first acceptable wins.
        let offers = ["permessage-deflate; server_no_context_takeover; server_max_window_bits=9", "permessage-deflate"];
        let (response, agreed) = accept(&offers, &cfg()).unwrap();
        assert_eq!(response, "permessage-deflate; server_no_context_takeover; server_max_window_bits=9");
        assert_eq!(
            agreed,
            Agreed { own_window_bits: 9, own_no_context_takeover: true, peer_window_bits: 15, peer_no_context_takeover: false }
        );
        // The client's hint alone does not make the server drop its inflater's context.
        let (_, agreed) = accept(&["permessage-deflate; client_no_context_takeover"], &cfg()).unwrap();
        assert!(!agreed.peer_no_context_takeover);
        // An offer we cannot honour (an 8-bit window) or cannot parse is declined.
        let offers = ["permessage-deflate; server_max_window_bits=8", "permessage-deflate; bogus", "permessage-deflate"];
        assert_eq!(accept(&offers, &cfg()).unwrap().0, "permessage-deflate");
        assert!(accept(&["x-webkit-deflate-frame"], &cfg()).is_none());
    }

    #[test]
    fn server_asks_for_smaller_client_windows_only_when_offered() {
        let config = DeflateConfig { client_max_window_bits: 10, client_no_context_takeover: true, ..cfg() };
        let (response, agreed) = accept(&["permessage-deflate; client_max_window_bits"], &config).unwrap();
        assert_eq!(response, "permessage-deflate; client_max_window_bits=10; client_no_context_takeover");
        assert_eq!((agreed.peer_window_bits, agreed.peer_no_context_takeover), (10, true));
        let (response, agreed) = accept(&["permessage-deflate"], &config).unwrap();
        assert_eq!(response, "permessage-deflate; client_no_context_takeover");
        assert_eq!(agreed.peer_window_bits, 15);
    }

    #[test]
    fn client_offer_and_validation_round_trip() {
        let config = DeflateConfig { server_max_window_bits: 10, server_no_context_takeover: true, client_max_window_bits: 12, ..cfg() };
        let offer = offer(&config);
        assert_eq!(offer, "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12");
        let (response, server_side) = accept(&[offer.as_str()], &cfg()).unwrap();
        let client_side = validate(&response, &config).unwrap();
        assert_eq!(client_side.own_window_bits, server_side.peer_window_bits);
        assert_eq!(client_side.peer_window_bits, server_side.own_window_bits);
        assert_eq!(client_side.peer_no_context_takeover, server_side.own_no_context_takeover);
    }

    #[test]
    fn client_rejects_responses_beyond_its_offer() {
        let config = DeflateConfig { server_max_window_bits: 10, ..cfg() };
        assert!(validate("permessage-deflate; server_max_window_bits=12", &config).is_err());
        assert!(validate("permessage-deflate", &config).is_err());
        assert!(validate("permessage-deflate; server_max_window_bits=10; client_max_window_bits", &config).is_err());
        assert!(validate("permessage-deflate; server_max_window_bits=10; client_max_window_bits=8", &config).is_err());
        assert!(validate("permessage-deflate; server_max_window_bits=10; mystery", &config).is_err());
        assert!(validate("permessage-deflate; server_max_window_bits=10", &config).is_ok());
    }
}
