//! Payload masking (RFC 6455 §5.3): `transformed[i] = original[i] ^ key[i % 4]`.

/// Masks or unmasks `buf` in place with `key`, starting at position `offset` of the key
/// stream (so a payload can be unmasked in pieces as it arrives).
///
/// Works eight bytes at a time; the compiler turns the loop into SIMD on x86_64.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// The byte-at-a-time reference version of [`apply_mask`], straight from §5.3.
pub fn apply_mask_plain(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(i + offset) % 4];
    }
}

/// The key as seen from position `offset` of the key stream.
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut out = key;
    out.rotate_left(offset % 4);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_example_hello() {
        // §5.7: a masked "Hello" with key 37 fa 21 3d.
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    proptest! {
        #[test]
        fn fast_matches_plain(data in proptest::collection::vec(any::<u8>(), 0..300),
                              key in any::<[u8; 4]>(), offset in 0usize..8) {
            let mut fast = data.clone();
            let mut plain = data.clone();
            apply_mask(&mut fast, key, offset);
            apply_mask_plain(&mut plain, key, offset);
            prop_assert_eq!(&fast, &plain);
        }

        #[test]
        fn split_unmask_equals_whole(data in proptest::collection::vec(any::<u8>(), 0..100),
                                     key in any::<[u8; 4]>(), cut in 0usize..100) {
            let cut = cut.min(data.len());
            let mut whole = data.clone();
            apply_mask(&mut whole, key, 0);
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut);
            prop_assert_eq!(whole, parts);
        }
    }
}
