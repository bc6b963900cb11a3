//! The sans-IO state machine fed arbitrary bytes, in both roles, with and without
//! permessage-deflate, cut into reads of arbitrary sizes. Every message it yields is sent
//! back, as an echo server would. Nothing may panic, and memory stays within the limits.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ws_core::deflate::params::Agreed;
use ws_core::deflate::{Deflate, DeflateConfig};
use ws_core::protocol::{Protocol, Role};
use ws_core::{Config, Message};

const LIMIT: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let role = if control & 1 == 0 { Role::Server } else { Role::Client };
    let mut p = Protocol::new(role, &Config::default().max_message_size(LIMIT).max_frame_size(LIMIT / 2));
    if control & 2 != 0 {
        let agreed = Agreed { own_window_bits: 9 + (control >> 4) % 7, own_no_context_takeover: control & 4 != 0, peer_window_bits: 15, peer_no_context_takeover: control & 8 != 0 };
        p.set_extension(Box::new(Deflate::new(agreed, &DeflateConfig::default())));
    }
    p.open(std::time::Instant::now());
    let chunk = 1 + (control as usize >> 2);
    let mut input = BytesMut::new();
    for piece in rest.chunks(chunk) {
        input.extend_from_slice(piece);
        loop {
            match p.read(&mut input) {
                Ok(Some(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    assert!(message.len() <= LIMIT);
                    let _ = p.send(message);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        assert!(input.len() <= rest.len());
        let drained = p.out().len();
        p.written(drained);
    }
});
