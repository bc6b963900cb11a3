//! Payload masking (RFC 6455 §5.3).
//!
//! Every byte of a client-to-server payload is XORed with the 4-byte masking key, cycling.
//! This is the hot loop of the library, so it works a machine word at a time: the key is
//! widened to 8 bytes and applied with one XOR per word, which the compiler turns into SIMD
//! lanes where the target has them, and on x86-64 CPUs with AVX2 (detected at run time)
//! into 256-bit ones. Plain safe Rust but for the call into that AVX2 build of it; the
//! byte-wise version below is the reference the fast one is tested against.

/// XORs `buf` in place with `key`, starting at byte `offset` of the key stream.
///
/// `offset` lets a payload be unmasked piece by piece as it arrives: pass the number of
/// payload bytes already processed (only its value modulo 4 matters). Masking and unmasking
/// are the same operation.
///
/// ```
/// use wsdriver::mask::apply_mask;
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut data = *b"Hello";
/// apply_mask(&mut data, key, 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
/// apply_mask(&mut data, key, 0);
/// assert_eq!(&data, b"Hello");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = u64::from(rotate(key, offset));
    let wide = key | key << 32; // the same four bytes twice, in either byte order
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= 64 && std::arch::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the only requirement of a `target_feature(enable = "avx2")` function is
        // that the CPU supports AVX2, detected just above.
        unsafe {
            return xor_avx2(buf, wide);
        }
    }
    xor(buf, wide);
}

/// [`xor`] compiled for AVX2: the same safe code, with the blocks in 256-bit lanes (the
/// baseline x86-64 target has 128-bit ones only, and twice the instructions).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
unsafe fn xor_avx2(buf: &mut [u8], wide: u64) {
    xor(buf, wide);
}

/// XORs `buf` with the key `wide`, a word at a time.
#[inline(always)]
fn xor(buf: &mut [u8], wide: u64) {
    let mut rest = buf;
    if rest.len() >= 64 {
        // Blocks of eight words: a loop body the compiler turns into full-width SIMD.
        let mut blocks = rest.chunks_exact_mut(64);
        for block in &mut blocks {
            for word in block.chunks_exact_mut(8) {
                xor_word(word, wide);
            }
        }
        rest = blocks.into_remainder();
    }
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        xor_word(word, wide);
    }
    // The tail is shorter than a word; it starts at a multiple of 8, so the key phase holds.
    for (byte, k) in words.into_remainder().iter_mut().zip(wide.to_ne_bytes()) {
        *byte ^= k;
    }
}

#[inline(always)]
fn xor_word(word: &mut [u8], wide: u64) {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(word);
    word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
}

/// The key as seen from byte `offset` of the payload, as a native-order word: its bytes in
/// memory are the key's, starting at `offset % 4` and cycling.
#[inline]
fn rotate(key: [u8; 4], offset: usize) -> u32 {
    let bits = (offset % 4) as u32 * 8;
    let word = u32::from_ne_bytes(key);
    if cfg!(target_endian = "little") { word.rotate_right(bits) } else { word.rotate_left(bits) }
}

/// The byte-at-a-time definition from the RFC, kept as the reference for tests.
#[cfg(test)]
pub(crate) fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_example() {
        // RFC 6455 §5.7: a single-frame masked text message containing "Hello".
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut data = *b"Hello";
        apply_mask(&mut data, key, 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    proptest! {
        #[test]
        // Short payloads word by word, long ones (64 bytes and more) by blocks, with AVX2
        // where the CPU has it.
        fn matches_reference(data in proptest::collection::vec(any::<u8>(), 0..5000),
                             key in any::<[u8; 4]>(), offset in 0usize..16) {
            let mut fast = data.clone();
            let mut slow = data.clone();
            apply_mask(&mut fast, key, offset);
            apply_mask_reference(&mut slow, key, offset);
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn piecewise_equals_whole(data in proptest::collection::vec(any::<u8>(), 0..200),
                                  key in any::<[u8; 4]>(), split in 0usize..200) {
            let split = split.min(data.len());
            let mut whole = data.clone();
            apply_mask(&mut whole, key, 0);
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            prop_assert_eq!(whole, pieces);
        }
    }
}
