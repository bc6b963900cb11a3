//! The inflater: arbitrary compressed frames, split into messages and fragments by the
//! input itself, never grow output past the message limit and never panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ws_core::deflate::params::Agreed;
use ws_core::deflate::{Deflate, DeflateConfig};
use ws_core::extensions::Extension;
use ws_core::frame::RSV1;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let agreed = Agreed { own_window_bits: 15, own_no_context_takeover: false, peer_window_bits: 9 + control % 7, peer_no_context_takeover: control & 0x80 != 0 };
    let mut d = Deflate::new(agreed, &DeflateConfig::default());
    let mut out = BytesMut::new();
    // 0xFF bytes end a frame; 0xFE bytes end a message.
    for frame in rest.split(|&b| b == 0xFF) {
        for (i, part) in frame.split(|&b| b == 0xFE).enumerate() {
            let fin = i > 0 || frame.is_empty();
            if d.decode(RSV1, part, fin, &mut out, LIMIT).is_err() {
                return;
            }
            assert!(out.len() <= LIMIT);
            if fin {
                out.clear();
            }
        }
    }
});
