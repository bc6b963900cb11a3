//! permessage-deflate (RFC 7692): negotiation in [`params`], and the [`Extension`] that
//! compresses outgoing messages and inflates incoming ones.
//!
//! Memory: nothing is allocated until the first message is compressed or inflated. Then a
//! compressor holds about `2^(window_bits + 2)` bytes plus zlib's hash tables (about
//! 256 KiB at 15 bits, 128 KiB less per bit below), and an inflater about
//! `2^window_bits` bytes plus 7 KiB (39 KiB at 15 bits). With no context takeover, the
//! compressor and inflater are reset after each message rather than freed, so a busy
//! connection does not reallocate them.

#[doc(hidden)] // the extension's parameter negotiation; public for the fuzzers
pub mod params;

use crate::error::ProtocolError;
use crate::extensions::Extension;
use crate::frame::{OpCode, RSV1};
use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use params::Agreed;
use std::cell::RefCell;

/// The four bytes a sync flush ends with, removed on send and restored on receipt
/// (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Inflated output is produced at most this much at a time, so the message size limit is
/// checked before memory grows past it.
const INFLATE_CHUNK: usize = 32 << 10;

/// permessage-deflate options: the same on servers, adapters and clients
/// ([`Config::deflate`](crate::Config::deflate)).
///
/// ```
/// use wsdriver::{Config, deflate::DeflateConfig};
/// let config = Config::default().deflate(DeflateConfig::default().level(6).threshold(256));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// zlib compression level, 0-9. Default 1 (fastest): for live traffic, speed over
    /// ratio.
    pub level: u32,
    /// Messages shorter than this are sent uncompressed. Default 64 bytes.
    pub threshold: usize,
    /// The largest window the server compresses with, 9-15 (a server offers it, a client
    /// asks for it). Default 15.
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with, 9-15. Default 15.
    pub client_max_window_bits: u8,
    /// The server resets its compression context after each message (less memory kept
    /// between messages, a lower ratio). Default false.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message. Default false.
    pub client_no_context_takeover: bool,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            level: 1,
            threshold: 64,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
        }
    }
}

impl DeflateConfig {
    /// Sets [`DeflateConfig::level`], 0-9 ([`DeflateConfig::validate`] refuses others).
    pub fn level(mut self, level: u32) -> Self {
        self.level = level;
        self
    }

    /// Sets [`DeflateConfig::threshold`].
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Sets the window bits, 9-15, of the server and of the client ([`DeflateConfig::validate`]
    /// refuses others).
    pub fn max_window_bits(mut self, server: u8, client: u8) -> Self {
        self.server_max_window_bits = server;
        self.client_max_window_bits = client;
        self
    }

    /// Checks the level (0-9) and the window bits (9-15: zlib cannot compress a raw
    /// stream with 8, the least RFC 7692 names). Part of [`Config::validate`](crate::Config::validate).
    ///
    /// ```
    /// use wsdriver::deflate::DeflateConfig;
    /// assert!(DeflateConfig::default().validate().is_ok());
    /// assert!(DeflateConfig::default().max_window_bits(8, 15).validate().is_err());
    /// assert!(DeflateConfig::default().level(10).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let check = |option, value: u32, min, max| match value {
            _ if (min..=max).contains(&value) => Ok(()),
            _ => Err(crate::config::ConfigError::OutOfRange { option, value, min, max }),
        };
        check("deflate.level", self.level, 0, 9)?;
        check("deflate.server_max_window_bits", self.server_max_window_bits.into(), 9, 15)?;
        check("deflate.client_max_window_bits", self.client_max_window_bits.into(), 9, 15)
    }

    /// Sets whether the server and the client reset their context after each message.
    pub fn no_context_takeover(mut self, server: bool, client: bool) -> Self {
        self.server_no_context_takeover = server;
        self.client_no_context_takeover = client;
        self
    }
}

/// The negotiated permessage-deflate of one connection.
pub struct Deflate {
    agreed: Agreed,
    level: u32,
    threshold: usize,
    compressor: Option<Compress>,
    inflater: Option<Decompress>,
    /// The peer's DEFLATE stream ended inside the message being inflated (BFINAL).
    stream_ended: bool,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate").field("agreed", &self.agreed).finish_non_exhaustive()
    }
}

impl Deflate {
    /// The extension for an agreement, with the local options.
    pub fn new(agreed: Agreed, config: &DeflateConfig) -> Self {
        Self { agreed, level: config.level.min(9), threshold: config.threshold, compressor: None, inflater: None, stream_ended: false }
    }
}

fn extension_error(e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Extension(e.to_string())
}

impl Extension for Deflate {
    fn rsv_bits(&self) -> u8 {
        RSV1
    }

    fn encode(&mut self, _opcode: OpCode, payload: &[u8], out: &mut BytesMut) -> Result<Option<u8>, ProtocolError> {
        if payload.len() < self.threshold {
            return Ok(None);
        }
        let (level, bits) = (self.level, self.agreed.own_window_bits);
        let c = self.compressor.get_or_insert_with(|| Compress::new_with_window_bits(Compression::new(level), false, bits));
        let mut buf = Vec::with_capacity(payload.len() / 2 + 64);
        let start_in = c.total_in();
        loop {
            let consumed = (c.total_in() - start_in) as usize;
            if buf.len() == buf.capacity() {
                buf.reserve(buf.capacity().max(64));
            }
            c.compress_vec(&payload[consumed..], &mut buf, FlushCompress::Sync).map_err(extension_error)?;
            // Done when all input is consumed and the flush did not fill the buffer.
            if (c.total_in() - start_in) as usize == payload.len() && buf.len() < buf.capacity() {
                break;
            }
        }
        if buf.ends_with(&TAIL) {
            buf.truncate(buf.len() - TAIL.len());
        }
        if self.agreed.own_no_context_takeover {
            c.reset();
        }
        out.extend_from_slice(&buf);
        Ok(Some(RSV1))
    }

    fn decode(&mut self, _rsv: u8, payload: &[u8], fin: bool, out: &mut BytesMut, limit: usize) -> Result<(), ProtocolError> {
        // A larger window than the peer's always inflates correctly; zlib cannot inflate
        // raw streams with fewer than 9 bits.
        let bits = self.agreed.peer_window_bits.max(9);
        let d = self.inflater.get_or_insert_with(|| Decompress::new_with_window_bits(false, bits));
        if self.stream_ended {
            // RFC 7692 §7.2.3.4: a message may end its DEFLATE stream (BFINAL); nothing of
            // it may follow in the same message.
            if !payload.is_empty() {
                return Err(ProtocolError::Extension("data after the end of the deflate stream".into()));
            }
        } else {
            self.stream_ended = inflate(d, payload, out, limit)?;
        }
        if fin {
            if !self.stream_ended {
                self.stream_ended = inflate(d, &TAIL, out, limit)?;
            }
            if self.stream_ended || self.agreed.peer_no_context_takeover {
                // A stream that ended cannot go on: the next message starts a new one.
                // Its window is gone with it, so a next message that refers back to this
                // one (context takeover) fails to inflate (1007) instead of coming out
                // empty.
                d.reset(false);
            }
            self.stream_ended = false;
        }
        Ok(())
    }
}

/// Inflates all of `input` onto `out`, a chunk at a time, failing as soon as `out` passes
/// `limit`: a compression bomb fails with 1009 before memory grows past the limit (the
/// buffer's doubling growth allocates at most twice it). Returns whether the DEFLATE
/// stream ended (a block with BFINAL set); data after its end fails (1007).
///
/// The output goes through a buffer kept per thread: inflating straight into `out` would
/// mean zeroing up to 32 KiB of it first at every call (a tiny compressed frame cost
/// thousands of times its size), and this buffer is set up once.
fn inflate(d: &mut Decompress, input: &[u8], out: &mut BytesMut, limit: usize) -> Result<bool, ProtocolError> {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.try_borrow_mut().map_err(|_| ProtocolError::Extension("inflater re-entered".into()))?;
        if scratch.capacity() < INFLATE_CHUNK {
            scratch.reserve_exact(INFLATE_CHUNK);
        }
        let start_in = d.total_in();
        loop {
            let consumed = (d.total_in() - start_in) as usize;
            scratch.clear();
            // `decompress_vec` writes into the spare room only: no zeroing.
            let status = d.decompress_vec(&input[consumed..], &mut scratch, FlushDecompress::Sync).map_err(extension_error)?;
            let produced = scratch.len();
            if out.len() + produced > limit {
                return Err(ProtocolError::MessageTooBig { size: (out.len() + produced) as u64, limit });
            }
            out.extend_from_slice(&scratch);
            let all_in = (d.total_in() - start_in) as usize == input.len();
            match status {
                Status::StreamEnd if all_in => return Ok(true),
                Status::StreamEnd => return Err(ProtocolError::Extension("data after the end of the deflate stream".into())),
                // Output space left over means the inflater has nothing more for now.
                _ if all_in && produced < scratch.capacity() => return Ok(false),
                Status::BufError if produced == 0 && all_in => return Ok(false),
                _ => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(config: &DeflateConfig) -> (Deflate, Deflate) {
        let (response, server) = params::accept(&[params::offer(config).as_str()], config).unwrap();
        let client = params::validate(&response, config).unwrap();
        (Deflate::new(client, config), Deflate::new(server, config))
    }

    fn round_trip(tx: &mut Deflate, rx: &mut Deflate, message: &[u8]) -> Vec<u8> {
        let mut wire = BytesMut::new();
        let rsv = tx.encode(OpCode::Text, message, &mut wire).unwrap();
        if rsv.is_none() {
            return message.to_vec();
        }
        // Deliver in three frames, as a fragmented message.
        let mut out = BytesMut::new();
        let (a, rest) = wire.split_at(wire.len() / 3);
        let (b, c) = rest.split_at(rest.len() / 2);
        rx.decode(RSV1, a, false, &mut out, 1 << 30).unwrap();
        rx.decode(RSV1, b, false, &mut out, 1 << 30).unwrap();
        rx.decode(RSV1, c, true, &mut out, 1 << 30).unwrap();
        out.to_vec()
    }

    #[test]
    fn compresses_and_inflates_with_and_without_context_takeover() {
        for no_context in [false, true] {
            for bits in [9u8, 12, 15] {
                let config = DeflateConfig {
                    server_max_window_bits: bits,
                    client_max_window_bits: bits,
                    server_no_context_takeover: no_context,
                    client_no_context_takeover: no_context,
                    ..DeflateConfig::default()
                };
                let (mut client, mut server) = pair(&config);
                for i in 0..20 {
                    let text = format!("{{\"seq\":{i},\"payload\":\"{}\"}}", "the quick brown fox ".repeat(i * 7));
                    assert_eq!(round_trip(&mut client, &mut server, text.as_bytes()), text.as_bytes());
                    assert_eq!(round_trip(&mut server, &mut client, text.as_bytes()), text.as_bytes());
                }
            }
        }
    }

    #[test]
    fn small_messages_stay_uncompressed() {
        let (mut client, _) = pair(&DeflateConfig::default());
        let mut wire = BytesMut::new();
        assert_eq!(client.encode(OpCode::Text, b"short", &mut wire).unwrap(), None);
        assert!(wire.is_empty());
    }

    #[test]
    fn a_compression_bomb_fails_before_memory_grows() {
        let (mut client, mut server) = pair(&DeflateConfig::default());
        let bomb = vec![0u8; 50 << 20]; // 50 MiB of zeros: a few hundred KiB on the wire
        let mut wire = BytesMut::new();
        client.encode(OpCode::Binary, &bomb, &mut wire).unwrap();
        assert!(wire.len() * 100 < bomb.len(), "{} bytes", wire.len());
        let mut out = BytesMut::new();
        let limit = 1 << 20;
        let err = server.decode(RSV1, &wire, true, &mut out, limit).unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooBig { .. }));
        assert_eq!(err.close_code(), crate::CloseCode::MESSAGE_TOO_BIG);
        // The buffer grows by doubling, so at most twice the limit is ever allocated.
        assert!(out.capacity() <= 2 * (limit + INFLATE_CHUNK), "grew to {}", out.capacity());
    }

    /// A whole message compressed as a finished DEFLATE stream (BFINAL), as RFC 7692
    /// §7.2.3.4 lets a sender do.
    fn finished_stream(text: &str) -> Vec<u8> {
        let mut c = Compress::new_with_window_bits(Compression::new(6), false, 15);
        let mut wire = Vec::with_capacity(text.len() + 64);
        c.compress_vec(text.as_bytes(), &mut wire, FlushCompress::Finish).unwrap();
        wire
    }

    #[test]
    fn messages_that_end_their_deflate_stream_inflate_one_after_another() {
        let (_, mut server) = pair(&DeflateConfig::default()); // context takeover on
        for text in ["the first message ends its stream with BFINAL", "the second is a stream of its own"] {
            let mut out = BytesMut::new();
            server.decode(RSV1, &finished_stream(text), true, &mut out, 1 << 20).unwrap();
            assert_eq!(&out[..], text.as_bytes(), "not empty, not cut");
        }
    }

    #[test]
    fn data_after_the_end_of_the_deflate_stream_fails_with_1007() {
        let (_, mut server) = pair(&DeflateConfig::default());
        let mut wire = finished_stream("done");
        wire.extend_from_slice(b"and then some");
        let err = server.decode(RSV1, &wire, true, &mut BytesMut::new(), 1 << 20).unwrap_err();
        assert_eq!(err.close_code(), crate::CloseCode::INVALID_PAYLOAD);
        // In a later frame of the same message too.
        let (_, mut server) = pair(&DeflateConfig::default());
        let mut out = BytesMut::new();
        server.decode(RSV1, &finished_stream("done"), false, &mut out, 1 << 20).unwrap();
        let err = server.decode(RSV1, b"more", true, &mut out, 1 << 20).unwrap_err();
        assert_eq!(err.close_code(), crate::CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn corrupt_data_fails_with_1007() {
        let (_, mut server) = pair(&DeflateConfig::default());
        let err = server.decode(RSV1, &[0xff, 0xff, 0xff, 0xff, 0x00], true, &mut BytesMut::new(), 1 << 20).unwrap_err();
        assert_eq!(err.close_code(), crate::CloseCode::INVALID_PAYLOAD);
    }
}
