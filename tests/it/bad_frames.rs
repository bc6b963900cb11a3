//! Protocol violations from a peer: the connection is failed with the right close code,
//! `on_error` sees a typed error, and `on_close` reports the code, once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use common::{Event, assert_eof, client_frame, events_until_close, raw_client, read_close, start_recorder};
use tokio::io::AsyncWriteExt;
use wsdriver::Config;
use wsdriver::frame::OpCode;

/// Sends `bytes` after the handshake; expects a Close with `code`, the TCP close, and the
/// handler events open, error (containing `error`), close(code).
async fn expect_failure(config: Config, bytes: Vec<u8>, code: u16, error: &str) {
    let (addr, mut events) = start_recorder(config, true).await;
    let mut peer = raw_client(addr).await;
    peer.write_all(&bytes).await.unwrap();
    assert_eq!(read_close(&mut peer).await, Some(code), "{error}");
    assert_eof(&mut peer).await;
    let seen = events_until_close(&mut events).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], Event::Open);
    assert!(matches!(&seen[1], Event::Error(e) if e.contains(error)), "{seen:?}");
    assert_eq!(seen[2], Event::Close(code, String::new()));
}

fn unmasked(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![first_byte, payload.len() as u8];
    v.extend_from_slice(payload);
    v
}

#[tokio::test]
async fn unmasked_client_frame_is_1002() {
    expect_failure(Config::default(), unmasked(0x81, b"hi"), 1002, "unmasked frame").await;
}

#[tokio::test]
async fn reserved_bits_are_1002() {
    let mut frame = client_frame(OpCode::Text, true, b"hi");
    frame[0] |= 0x40;
    expect_failure(Config::default(), frame, 1002, "reserved bits").await;
}

#[tokio::test]
async fn reserved_opcodes_are_1002() {
    for opcode in [3u8, 7, 0xB, 0xF] {
        let mut frame = client_frame(OpCode::Binary, true, b"");
        frame[0] = 0x80 | opcode;
        expect_failure(Config::default(), frame, 1002, "reserved opcode").await;
    }
}

#[tokio::test]
async fn fragmented_control_frame_is_1002() {
    expect_failure(Config::default(), client_frame(OpCode::Ping, false, b"x"), 1002, "fragmented control frame").await;
}

#[tokio::test]
async fn control_frame_over_125_bytes_is_1002() {
    // The header alone announces 126 bytes.
    expect_failure(Config::default(), vec![0x89, 0x80 | 126, 0, 126, 1, 2, 3, 4], 1002, "control frame payload over 125").await;
}

#[tokio::test]
async fn continuation_rules_are_1002() {
    expect_failure(Config::default(), client_frame(OpCode::Continuation, true, b"x"), 1002, "continuation frame without").await;
    let frames = [client_frame(OpCode::Text, false, b"a"), client_frame(OpCode::Binary, true, b"b")].concat();
    expect_failure(Config::default(), frames, 1002, "new data frame before").await;
}

#[tokio::test]
async fn invalid_close_codes_and_reasons() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        expect_failure(Config::default(), client_frame(OpCode::Close, true, &code.to_be_bytes()), 1002, "invalid close code").await;
    }
    expect_failure(Config::default(), client_frame(OpCode::Close, true, &[3]), 1002, "close frame payload of one byte").await;
    expect_failure(Config::default(), client_frame(OpCode::Close, true, &[0x03, 0xE8, 0xFF, 0xFE]), 1007, "invalid utf-8").await;
}

#[tokio::test]
async fn invalid_utf8_fails_fast_before_the_frame_ends() {
    // A 1000-byte text frame whose invalid bytes come first: only its first part is sent,
    // and the server must not wait for the rest.
    let mut payload = vec![b'a'; 1000];
    payload[10..13].copy_from_slice(&[0xED, 0xA0, 0x80]);
    let frame = client_frame(OpCode::Text, true, &payload);
    expect_failure(Config::default(), frame[..40].to_vec(), 1007, "invalid utf-8").await;
}

#[tokio::test]
async fn invalid_utf8_across_fragments_fails_at_the_bad_fragment() {
    let frames =
        [client_frame(OpCode::Text, false, "κόσμε".as_bytes()), client_frame(OpCode::Continuation, false, &[0xF4, 0x90, 0x80, 0x80])]
            .concat();
    expect_failure(Config::default(), frames, 1007, "invalid utf-8").await;
}

#[tokio::test]
async fn oversize_frames_and_messages_are_1009() {
    let config = || Config::default().max_frame_size(1000).max_message_size(1500);
    // The header of a frame over the limit is enough: no payload follows.
    let header_only = client_frame(OpCode::Binary, true, &[0; 1001])[..8].to_vec();
    expect_failure(config(), header_only, 1009, "exceeds the limit of 1000").await;
    let frames = [client_frame(OpCode::Binary, false, &[0; 1000]), client_frame(OpCode::Continuation, true, &[0; 501])].concat();
    expect_failure(config(), frames, 1009, "exceeds the limit of 1500").await;
}

#[tokio::test]
async fn a_huge_announced_length_does_not_allocate_it() {
    let mut frame = vec![0x82, 0xFF];
    frame.extend((1u64 << 62).to_be_bytes());
    frame.extend([1, 2, 3, 4]);
    expect_failure(Config::default(), frame, 1009, "exceeds the limit").await;
}
