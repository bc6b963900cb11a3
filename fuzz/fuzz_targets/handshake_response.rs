//! The client's handshake: arbitrary bytes parsed as the server's HTTP/1.1 response, then
//! validated against an offer of subprotocols and permessage-deflate.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ws_core::deflate::DeflateConfig;
use ws_core::handshake::{client, http1};
use ws_core::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((response, len))) = http1::parse_response(data, 32) {
        let config = Config::default().protocols(["chat", "echo"]).deflate(DeflateConfig::default().max_window_bits(12, 10));
        let body = Bytes::copy_from_slice(&data[len..]);
        let _ = client::validate_response(response.status(), response.headers(), body, "dGhlIHNhbXBsZSBub25jZQ==", &config);
    }
});
