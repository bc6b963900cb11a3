use super::*;
use crate::close::CloseCode;
use crate::frame::RSV1;
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn frame(opcode: OpCode, fin: bool, rsv: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader { fin, rsv, opcode, mask, payload_len: payload.len() as u64 };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    let mut out = head[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
    out
}

/// A frame as a client sends it.
fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, 0, Some([1, 2, 3, 4]), payload)
}

fn server() -> Protocol {
    server_with(Options::default())
}

fn server_with(options: Options) -> Protocol {
    let mut p = Protocol::new(Role::Server, options);
    p.open(Instant::now());
    p
}

fn limits(max_message_size: usize, max_frame_size: usize) -> Options {
    Options { max_message_size, max_frame_size, ..Options::default() }
}

fn read_all(p: &mut Protocol, bytes: &[u8]) -> Result<Vec<Message>, ProtocolError> {
    let mut input = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(m) = p.read(&mut input)? {
        out.push(m);
    }
    Ok(out)
}

/// The Close frame at the end of `out`, as (code, reason).
fn sent_close(p: &mut Protocol) -> Option<u16> {
    let bytes = p.out().to_vec();
    let (h, n) = FrameHeader::decode(&bytes).ok()??;
    (h.opcode == OpCode::Close).then(|| u16::from_be_bytes([bytes[n], bytes[n + 1]]))
}

#[test]
fn rfc_examples_from_a_client() {
    let mut p = server();
    // §5.7: a masked "Hello", then a fragmented unmasked-in-RFC "Hel" + "lo" (masked here).
    let mut bytes = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    bytes.extend(masked(OpCode::Text, false, b"Hel"));
    bytes.extend(masked(OpCode::Continuation, true, b"lo"));
    assert_eq!(read_all(&mut p, &bytes).unwrap(), [Message::text("Hello"), Message::text("Hello")]);
}

#[test]
fn rfc_examples_to_a_client() {
    let mut p = Protocol::new(Role::Client, Options::default());
    p.open(Instant::now());
    let mut bytes = vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    bytes.extend([0x82, 0x7E, 0x01, 0x00]);
    bytes.extend([0u8; 256]);
    let got = read_all(&mut p, &bytes).unwrap();
    assert_eq!(got, [Message::text("Hello"), Message::text("Hello"), Message::binary(vec![0u8; 256])]);
}

#[test]
fn ping_is_answered_even_between_fragments() {
    let mut p = server();
    let mut bytes = masked(OpCode::Binary, false, b"ab");
    bytes.extend(masked(OpCode::Ping, true, b"hi"));
    bytes.extend(masked(OpCode::Continuation, true, b"cd"));
    let got = read_all(&mut p, &bytes).unwrap();
    assert_eq!(got, [Message::Ping(Bytes::from_static(b"hi")), Message::binary(&b"abcd"[..])]);
    assert_eq!(p.out().to_vec(), [0x8A, 0x02, b'h', b'i']);
}

#[test]
fn byte_at_a_time_input() {
    let mut p = server();
    let bytes = masked(OpCode::Text, true, "ünïcödé".as_bytes());
    let mut input = BytesMut::new();
    let mut got = None;
    for b in bytes {
        input.extend_from_slice(&[b]);
        if let Some(m) = p.read(&mut input).unwrap() {
            got = Some(m);
        }
    }
    assert_eq!(got, Some(Message::text("ünïcödé")));
    assert!(input.is_empty());
}

#[test]
fn invalid_utf8_fails_before_the_frame_ends() {
    let mut p = server();
    let mut payload = b"hello".to_vec();
    payload.extend([0xed, 0xa0, 0x80]); // a UTF-16 surrogate: never valid
    payload.extend(b"world, still to come");
    let bytes = masked(OpCode::Text, true, &payload);
    // Deliver only up to the invalid bytes: the frame is far from complete.
    let mut input = BytesMut::from(&bytes[..2 + 4 + 8]);
    assert_eq!(p.read(&mut input), Err(ProtocolError::InvalidUtf8));
    assert_eq!(sent_close(&mut p), Some(1007));
    assert_eq!(p.ready_state(), ReadyState::Closed);
}

#[test]
fn invalid_utf8_fails_at_the_fragment_that_makes_it_invalid() {
    let mut p = server();
    let mut input = BytesMut::from(&masked(OpCode::Text, false, "κόσμε".as_bytes())[..]);
    assert_eq!(p.read(&mut input), Ok(None));
    input.extend_from_slice(&masked(OpCode::Continuation, false, &[0xf4, 0x90, 0x80, 0x80]));
    assert_eq!(p.read(&mut input), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn text_cut_inside_a_character_across_fragments() {
    let mut p = server();
    let euro = "€".as_bytes();
    let mut bytes = masked(OpCode::Text, false, &euro[..1]);
    bytes.extend(masked(OpCode::Continuation, false, &euro[1..2]));
    bytes.extend(masked(OpCode::Continuation, true, &euro[2..]));
    assert_eq!(read_all(&mut p, &bytes).unwrap(), [Message::text("€")]);
    let mut p = server();
    let bytes = masked(OpCode::Text, true, &euro[..2]);
    assert_eq!(read_all(&mut p, &bytes), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn close_handshake_initiated_by_peer() {
    let mut p = server();
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend(b"bye");
    let got = read_all(&mut p, &masked(OpCode::Close, true, &payload)).unwrap();
    assert_eq!(got, [Message::Close(Some(CloseFrame { code: CloseCode::NORMAL, reason: "bye".into() }))]);
    assert_eq!(p.out().to_vec(), [0x88, 0x02, 0x03, 0xE8]);
    assert_eq!(p.ready_state(), ReadyState::Closed);
    assert!(matches!(p.send(Message::text("late")), Err(Error::Closed)));
    // Anything after the Close is ignored.
    assert_eq!(read_all(&mut p, &masked(OpCode::Text, true, b"x")).unwrap(), []);
}

#[test]
fn empty_close_is_answered_with_an_empty_close() {
    let mut p = server();
    assert_eq!(read_all(&mut p, &masked(OpCode::Close, true, b"")).unwrap(), [Message::Close(None)]);
    assert_eq!(p.out().to_vec(), [0x88, 0x00]);
}

#[test]
fn close_handshake_initiated_locally() {
    let mut p = server();
    p.close(Some(CloseFrame::new(4000, "done").unwrap())).unwrap();
    assert_eq!(p.ready_state(), ReadyState::Closing);
    assert_eq!(sent_close(&mut p), Some(4000));
    let before = p.out().len();
    // Data may still arrive before the peer's Close.
    let mut bytes = masked(OpCode::Text, true, b"in flight");
    bytes.extend(masked(OpCode::Close, true, &4000u16.to_be_bytes()));
    let got = read_all(&mut p, &bytes).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(p.ready_state(), ReadyState::Closed);
    assert_eq!(p.out().len(), before, "no second Close is sent");
    assert!(matches!(p.close(None), Err(Error::Closed)));
}

#[test]
fn violations_fail_with_the_right_code() {
    let cases: Vec<(Vec<u8>, ProtocolError, u16)> = vec![
        (frame(OpCode::Text, true, 0, None, b"x"), ProtocolError::UnmaskedFrame, 1002),
        (frame(OpCode::Text, true, RSV1, Some([9; 4]), b"x"), ProtocolError::ReservedBits(RSV1), 1002),
        (vec![0x83, 0x80, 1, 2, 3, 4], ProtocolError::ReservedOpCode(3), 1002),
        (masked(OpCode::Continuation, true, b"x"), ProtocolError::UnexpectedContinuation, 1002),
        ([masked(OpCode::Text, false, b"a"), masked(OpCode::Text, true, b"b")].concat(), ProtocolError::ExpectedContinuation, 1002),
        (masked(OpCode::Ping, false, b""), ProtocolError::FragmentedControlFrame, 1002),
        (vec![0x89, 0xFE, 0, 126], ProtocolError::ControlFrameTooLong, 1002),
        (masked(OpCode::Close, true, &[3]), ProtocolError::InvalidClosePayload, 1002),
        (masked(OpCode::Close, true, &1005u16.to_be_bytes()), ProtocolError::InvalidCloseCode(1005), 1002),
        (masked(OpCode::Close, true, &[0x03, 0xE8, 0xC0]), ProtocolError::InvalidUtf8, 1007),
        (masked(OpCode::Text, true, &[0xC0, 0x80]), ProtocolError::InvalidUtf8, 1007),
    ];
    for (bytes, error, code) in cases {
        let mut p = server();
        assert_eq!(read_all(&mut p, &bytes), Err(error.clone()), "{error}");
        assert_eq!(sent_close(&mut p), Some(code), "{error}");
        assert!(p.is_failed());
        // A failed connection ignores all further input.
        assert_eq!(read_all(&mut p, &masked(OpCode::Text, true, b"x")), Ok(vec![]));
    }
    let mut client = Protocol::new(Role::Client, Options::default());
    client.open(Instant::now());
    assert_eq!(read_all(&mut client, &masked(OpCode::Text, true, b"x")), Err(ProtocolError::MaskedFrame));
}

#[test]
fn limits_fail_with_1009_as_soon_as_announced() {
    let mut p = server_with(limits(10, 8));
    // Only the header of a 9-byte frame: rejected before any payload arrives.
    assert_eq!(read_all(&mut p, &[0x82, 0x89, 1, 2, 3, 4]), Err(ProtocolError::FrameTooBig { size: 9, limit: 8 }));
    assert_eq!(sent_close(&mut p), Some(1009));

    let mut p = server_with(limits(10, 8));
    let mut bytes = masked(OpCode::Binary, false, &[0; 8]);
    bytes.extend(&masked(OpCode::Continuation, true, &[0; 3])[..6]);
    assert_eq!(read_all(&mut p, &bytes), Err(ProtocolError::MessageTooBig { size: 11, limit: 10 }));
    assert_eq!(sent_close(&mut p), Some(1009));

    // A 2^63-1 length neither overflows nor allocates.
    let mut p = server();
    let mut huge = vec![0x82, 0xFF];
    huge.extend((i64::MAX as u64).to_be_bytes());
    huge.extend([1, 2, 3, 4]);
    assert!(matches!(read_all(&mut p, &huge), Err(ProtocolError::FrameTooBig { .. })));
}

#[test]
fn messages_sent_while_connecting_go_out_on_open() {
    let mut p = Protocol::new(Role::Server, Options::default());
    assert_eq!(p.ready_state(), ReadyState::Connecting);
    p.send(Message::text("first")).unwrap();
    p.send(Message::binary(vec![2])).unwrap();
    assert!(p.out().is_empty());
    assert_eq!(p.buffered(), 6);
    p.open(Instant::now());
    assert_eq!(p.out().to_vec(), [0x81, 5, b'f', b'i', b'r', b's', b't', 0x82, 1, 2]);
}

#[test]
fn client_frames_are_masked_with_fresh_keys() {
    let mut c = Protocol::new(Role::Client, Options::default());
    c.open(Instant::now());
    c.send(Message::text("same")).unwrap();
    c.send(Message::text("same")).unwrap();
    let bytes = c.out().to_vec();
    let (h1, n1) = FrameHeader::decode(&bytes).unwrap().unwrap();
    let (h2, _) = FrameHeader::decode(&bytes[n1 + 4..]).unwrap().unwrap();
    assert!(h1.mask.is_some() && h2.mask.is_some());
    assert_ne!(h1.mask, h2.mask);
    assert_eq!(read_all(&mut server(), &bytes).unwrap(), [Message::text("same"), Message::text("same")]);
}

#[test]
fn control_payload_limit_on_send() {
    let mut p = server();
    assert!(matches!(p.send(Message::Ping(Bytes::from(vec![0; 126]))), Err(Error::InvalidArgument(_))));
    assert!(matches!(p.close(Some(CloseFrame { code: CloseCode::ABNORMAL, reason: Utf8Bytes::new() })), Err(Error::InvalidArgument(_))));
    assert_eq!(p.ready_state(), ReadyState::Open);
}

/// An identity "extension" on RSV1, to exercise the hook.
struct Identity;

impl Extension for Identity {
    fn rsv_bits(&self) -> u8 {
        RSV1
    }
    fn encode(&mut self, _: OpCode, payload: &[u8], out: &mut BytesMut) -> Result<Option<u8>, ProtocolError> {
        if payload.len() < 3 {
            return Ok(None);
        }
        out.extend_from_slice(payload);
        Ok(Some(RSV1))
    }
    fn decode(&mut self, _: u8, payload: &[u8], _: bool, out: &mut BytesMut, _: usize) -> Result<(), ProtocolError> {
        out.extend_from_slice(payload);
        Ok(())
    }
}

#[test]
fn extension_hook_owns_rsv1() {
    let mut c = Protocol::new(Role::Client, Options::default());
    c.set_extension(Box::new(Identity));
    c.open(Instant::now());
    c.send(Message::text("long enough")).unwrap();
    c.send(Message::text("no")).unwrap();
    let bytes = c.out().to_vec();
    assert_eq!(bytes[0], 0x80 | RSV1 | 0x1);
    let mut s = Protocol::new(Role::Server, Options::default());
    s.set_extension(Box::new(Identity));
    s.open(Instant::now());
    assert_eq!(read_all(&mut s, &bytes).unwrap(), [Message::text("long enough"), Message::text("no")]);
    // RSV1 on a continuation frame is still a violation.
    let mut s = Protocol::new(Role::Server, Options::default());
    s.set_extension(Box::new(Identity));
    s.open(Instant::now());
    let bad = [masked(OpCode::Text, false, b"a"), frame(OpCode::Continuation, true, RSV1, Some([0; 4]), b"b")].concat();
    assert_eq!(read_all(&mut s, &bad), Err(ProtocolError::ReservedBits(RSV1)));
}

fn any_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        "\\PC{0,300}".prop_map(Message::text),
        proptest::collection::vec(any::<u8>(), 0..70_000).prop_map(Message::binary),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(|p| Message::Ping(p.into())),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(|p| Message::Pong(p.into())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever one end encodes, the other decodes to the same messages, however the bytes
    /// are cut into reads.
    #[test]
    fn encode_then_decode_any_messages(messages in proptest::collection::vec(any_message(), 1..6),
                                       chunk in 1usize..5000, client_sends in any::<bool>()) {
        let (tx_role, rx_role) = if client_sends { (Role::Client, Role::Server) } else { (Role::Server, Role::Client) };
        let mut tx = Protocol::new(tx_role, Options::default());
        tx.open(Instant::now());
        for m in &messages {
            tx.send(m.clone()).unwrap();
        }
        let wire = tx.out().to_vec();
        let mut rx = Protocol::new(rx_role, Options::default());
        rx.open(Instant::now());
        let mut input = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            input.extend_from_slice(piece);
            while let Some(m) = rx.read(&mut input).unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got, messages);
    }

    /// Arbitrary bytes never panic and never leave the parser inconsistent.
    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), server_role in any::<bool>()) {
        let role = if server_role { Role::Server } else { Role::Client };
        let mut p = Protocol::new(role, limits(1024, 512));
        p.open(Instant::now());
        let mut input = BytesMut::from(&bytes[..]);
        for _ in 0..64 {
            match p.read(&mut input) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
}

#[test]
fn a_prepared_frame_is_shared_not_copied() {
    let prepared = PreparedMessage::binary(vec![7u8; 8192]);
    let (mut a, mut b) = (server(), server());
    a.send_prepared(&prepared).unwrap();
    b.send_prepared(&prepared).unwrap();
    for proto in [&mut a, &mut b] {
        let mut slices = [std::io::IoSlice::new(&[]); 4];
        let n = proto.out().io_slices(&mut slices);
        assert_eq!(n, 1);
        assert_eq!(slices[0].as_ptr(), prepared.frame().as_ptr(), "the same bytes, queued by reference");
    }
}

#[test]
fn a_client_encodes_a_prepared_message_itself_masked() {
    let mut client = Protocol::new(Role::Client, Options::default());
    client.open(Instant::now());
    client.send_prepared(&PreparedMessage::text("hi")).unwrap();
    let mut out = [std::io::IoSlice::new(&[]); 4];
    let n = client.out().io_slices(&mut out);
    let bytes: Vec<u8> = out[..n].iter().flat_map(|s| s.iter().copied()).collect();
    let (header, len) = FrameHeader::decode(&bytes).unwrap().unwrap();
    assert!(header.mask.is_some());
    let mut payload = bytes[len..].to_vec();
    apply_mask(&mut payload, header.mask.unwrap(), 0);
    assert_eq!(payload, b"hi");
}

#[test]
fn a_prepared_message_after_close_fails() {
    let mut proto = server();
    proto.close(None).unwrap();
    assert!(matches!(proto.send_prepared(&PreparedMessage::text("late")), Err(Error::Closed)));
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn keepalive(ping: u64, pong: u64) -> Options {
    Options { ping_interval: Some(secs(ping)), pong_timeout: secs(pong), ..Options::default() }
}

fn opened_at(options: Options, t0: Instant) -> Protocol {
    let mut p = Protocol::new(Role::Server, options);
    p.open(t0);
    p
}

fn status_code(p: &Protocol) -> Option<u16> {
    p.close_status().map(|(code, _)| u16::from(code))
}

#[test]
fn keepalive_pings_after_silence_and_gives_up_after_the_pong_timeout() {
    let t0 = Instant::now();
    let mut p = opened_at(keepalive(10, 5), t0);
    assert_eq!(p.poll_timeout(), Some(t0 + secs(10)));
    p.handle_timeout(t0 + secs(9)).unwrap();
    assert!(p.out().is_empty(), "not due yet");
    p.handle_timeout(t0 + secs(10)).unwrap();
    assert_eq!(p.out().to_vec(), [0x89, 0x00], "an empty ping");
    p.written(2);
    assert_eq!(p.poll_timeout(), Some(t0 + secs(15)));
    assert!(matches!(p.handle_timeout(t0 + secs(15)), Err(Error::KeepaliveTimeout)));
    assert!(p.is_ended());
    assert_eq!(status_code(&p), Some(1006));
    assert_eq!(p.poll_timeout(), None);
    assert!(matches!(p.send(Message::text("late")), Err(Error::Closed)));
}

#[test]
fn any_input_keeps_the_peer_alive() {
    let t0 = Instant::now();
    let mut p = opened_at(keepalive(10, 5), t0);
    p.received(t0 + secs(4));
    assert_eq!(p.poll_timeout(), Some(t0 + secs(14)), "the interval runs from the last input");
    p.handle_timeout(t0 + secs(14)).unwrap();
    assert_eq!(p.out().to_vec(), [0x89, 0x00]);
    p.received(t0 + secs(16)); // the pong, or anything else
    assert_eq!(p.poll_timeout(), Some(t0 + secs(26)));
    p.handle_timeout(t0 + secs(19)).unwrap();
    assert!(!p.is_ended());
    assert_eq!(p.ready_state(), ReadyState::Open);
}

#[test]
fn without_keepalive_an_open_connection_has_no_deadline() {
    let mut p = opened_at(Options { ping_interval: None, ..Options::default() }, Instant::now());
    assert_eq!(p.poll_timeout(), None);
    p.handle_timeout(Instant::now() + secs(3600)).unwrap();
    assert!(p.out().is_empty());
}

#[test]
fn the_close_timeout_runs_from_the_close() {
    let t0 = Instant::now();
    let mut p = opened_at(Options::default(), t0);
    p.close(None).unwrap();
    // The close deadline starts at the next handle_timeout: the caller's now.
    assert!(p.poll_timeout().is_some_and(|due| due <= t0 + secs(100)));
    p.handle_timeout(t0 + secs(100)).unwrap();
    assert_eq!(p.poll_timeout(), Some(t0 + secs(105)));
    p.handle_timeout(t0 + secs(104)).unwrap();
    assert!(matches!(p.handle_timeout(t0 + secs(105)), Err(Error::CloseTimeout)));
    assert!(p.is_ended());
    assert_eq!(status_code(&p), Some(1006));
}

#[test]
fn after_the_close_handshake_the_transport_must_end_within_the_close_timeout() {
    let t0 = Instant::now();
    let mut p = opened_at(Options::default(), t0);
    p.received(t0 + secs(2));
    read_all(&mut p, &masked(OpCode::Close, true, &1000u16.to_be_bytes())).unwrap();
    assert!(p.is_closed());
    assert_eq!(p.poll_timeout(), Some(t0 + secs(7)));
    // A handshake that completed ends quietly when the transport lingers.
    p.handle_timeout(t0 + secs(7)).unwrap();
    assert!(p.is_ended());
    assert_eq!(status_code(&p), Some(1000), "the peer's code, not 1006");
}

#[test]
fn a_violation_fails_with_its_code_and_a_close_deadline() {
    let t0 = Instant::now();
    let mut p = opened_at(Options::default(), t0);
    p.received(t0 + secs(1));
    assert!(read_all(&mut p, &masked(OpCode::Text, true, &[0xff])).is_err());
    assert!(p.is_closed() && p.is_failed());
    assert_eq!(status_code(&p), Some(1007));
    assert_eq!(p.poll_timeout(), Some(t0 + secs(6)));
}

#[test]
fn a_pong_answers_its_ping_and_every_ping_before_it() {
    let mut p = server();
    let a = p.ping(Bytes::from_static(b"a")).unwrap();
    let b = p.ping(Bytes::from_static(b"b")).unwrap();
    let c = p.ping(Bytes::from_static(b"c")).unwrap();
    assert!(!p.ping_answered(a));
    read_all(&mut p, &masked(OpCode::Pong, true, b"zzz")).unwrap();
    assert!(!p.ping_answered(a), "an unsolicited pong answers nothing");
    read_all(&mut p, &masked(OpCode::Pong, true, b"b")).unwrap();
    assert!(p.ping_answered(a) && p.ping_answered(b) && !p.ping_answered(c));
    read_all(&mut p, &masked(OpCode::Pong, true, b"c")).unwrap();
    assert!(p.ping_answered(c));
    assert!(matches!(p.ping(Bytes::from(vec![0; 126])), Err(Error::InvalidArgument(_))));
}

#[test]
fn over_the_high_water_mark_only_the_latest_ping_is_answered() {
    let mut p = server_with(Options { write_buffer_high_water: 10, ..Options::default() });
    p.send(Message::binary(vec![0; 20])).unwrap();
    assert!(p.is_backlogged());
    let queued = p.out().len();
    let mut flood = Vec::new();
    for i in 0..100u8 {
        flood.extend(masked(OpCode::Ping, true, &[i]));
    }
    assert_eq!(read_all(&mut p, &flood).unwrap().len(), 100);
    assert_eq!(p.out().len(), queued, "no pong queued while over the mark");
    p.written(queued);
    assert_eq!(p.out().to_vec(), [0x8A, 0x01, 99], "once drained, the latest ping's pong");
}

#[test]
fn the_end_drops_everything_queued() {
    let mut p = Protocol::new(Role::Client, Options::default());
    p.send(Message::text("queued while connecting")).unwrap();
    assert_eq!(p.buffered(), 23);
    p.end();
    assert_eq!(p.buffered(), 0);
    assert!(matches!(p.send(Message::text("late")), Err(Error::Closed)));
    assert_eq!(status_code(&p), Some(1006));
}

#[test]
fn a_deferred_failure_waits_until_the_messages_before_it_are_answered() {
    let mut p = server();
    p.defer_failures(true);
    let mut bytes = masked(OpCode::Text, true, b"first");
    bytes.extend(frame(OpCode::Text, true, RSV1, Some([9; 4]), b"bad"));
    bytes.extend(masked(OpCode::Ping, true, b"never seen"));
    let mut input = BytesMut::from(&bytes[..]);
    assert_eq!(p.read(&mut input).unwrap(), Some(Message::text("first")));
    assert_eq!(p.read(&mut input).unwrap(), None, "the violation waits");
    assert!(p.has_deferred_failure() && !p.wants_input());
    assert_eq!(p.ready_state(), ReadyState::Open);
    p.send(Message::text("first")).unwrap(); // the answer goes out first
    assert_eq!(p.fail_deferred(), Some(ProtocolError::ReservedBits(RSV1)));
    let out = p.out().to_vec();
    assert_eq!(&out[..7], [0x81, 5, b'f', b'i', b'r', b's', b't']);
    assert_eq!(&out[7..], [0x88, 2, 0x03, 0xEA], "then the Close, 1002");
    assert!(p.is_failed());
    assert_eq!(p.fail_deferred(), None);
}
