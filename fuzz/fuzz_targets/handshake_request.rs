//! The standalone server's handshake: arbitrary bytes parsed as an HTTP/1.1 request, then
//! validated, with subprotocols and permessage-deflate configured.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_core::deflate::DeflateConfig;
use ws_core::handshake::{http1, server};
use ws_core::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((request, len))) = http1::parse_request(data, 32) {
        assert!(len <= data.len());
        let config = Config::default().protocols(["chat", "echo"]).deflate(DeflateConfig::default()).allowed_origins(["https://ok"]);
        match server::accept(&request, &config) {
            Ok(accepted) => assert_eq!(accepted.response.status(), 101),
            Err(e) => assert!(e.status().is_client_error()),
        }
    }
});
