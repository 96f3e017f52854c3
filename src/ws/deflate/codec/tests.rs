//! The codec: the RFC 7692 examples, context takeover, fragmentation, limits and round trips.

use super::*;
use proptest::prelude::*;

const HELLO: &[u8] = b"Hello";

/// Inflates one whole message (one frame).
fn inflate_message(d: &mut Decompressor, payload: &[u8]) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    d.inflate(payload, true, usize::MAX, &mut out)?;
    Ok(out)
}

fn compress_message(c: &mut Compressor, payload: &[u8], reset_after: bool) -> Vec<u8> {
    let mut out = Vec::new();
    c.compress(payload, &mut out, reset_after);
    out
}

#[test]
fn rfc_7692_examples() {
    let mut d = Decompressor::new(15);
    // §7.2.3.1: a message compressed in one block.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(inflate_message(&mut d, &hello).unwrap(), HELLO);
    // §7.2.3.2: the same, sharing the LZ77 window of the previous message.
    assert_eq!(
        inflate_message(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
        HELLO
    );
    // §7.2.3.3: a block with no compression.
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(inflate_message(&mut d, &stored).unwrap(), HELLO);
    let mut out = Vec::new();
    stored_blocks(HELLO, &mut out);
    assert_eq!(out, stored);
    // §7.2.3.4: a block with BFINAL set; the next message starts a new stream.
    let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(inflate_message(&mut d, &last).unwrap(), HELLO);
    assert_eq!(inflate_message(&mut d, &hello).unwrap(), HELLO);
    // §7.2.3.5: two DEFLATE blocks in one message.
    let two = [
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    assert_eq!(inflate_message(&mut d, &two).unwrap(), HELLO);
    // §7.2.3.6: an empty message is one octet 00.
    assert_eq!(inflate_message(&mut d, &[0x00]).unwrap(), b"");
    assert_eq!(inflate_message(&mut d, &hello).unwrap(), HELLO);
}

#[test]
fn compressing_hello_matches_the_rfc() {
    let mut c = Compressor::new(15, 6);
    let first = compress_message(&mut c, HELLO, false);
    assert_eq!(first, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    let mut d = Decompressor::new(15);
    assert_eq!(inflate_message(&mut d, &first).unwrap(), HELLO);
    let second = compress_message(&mut c, HELLO, false);
    assert!(second.len() < first.len(), "{second:02x?}");
    assert_eq!(inflate_message(&mut d, &second).unwrap(), HELLO);
}

#[test]
fn empty_messages() {
    for (bits, level) in [(15, 2), (9, 9), (8, 6), (15, 0)] {
        let mut c = Compressor::new(bits, level);
        let mut d = Decompressor::new(bits);
        for reset_after in [false, true] {
            assert_eq!(compress_message(&mut c, b"", reset_after), [0x00]);
            let some = compress_message(&mut c, b"some text", reset_after);
            assert_eq!(inflate_message(&mut d, &[0x00]).unwrap(), b"");
            assert_eq!(inflate_message(&mut d, &some).unwrap(), b"some text");
            // Empty after a message, with the window still held.
            let empty = compress_message(&mut c, b"", reset_after);
            assert_eq!(inflate_message(&mut d, &empty).unwrap(), b"");
            let again = compress_message(&mut c, b"some text", reset_after);
            assert_eq!(inflate_message(&mut d, &again).unwrap(), b"some text");
        }
    }
}

fn sample_json(i: usize) -> Vec<u8> {
    format!(
        r#"{{"type":"quote","symbol":"ACME","bid":{}.25,"ask":{}.27,"venue":"XNAS","seq":{i}}}"#,
        100 + i,
        100 + i
    )
    .into_bytes()
}

#[test]
fn context_takeover_across_messages() {
    let mut c = Compressor::new(15, 2);
    let mut d = Decompressor::new(15);
    let sizes: Vec<usize> = (0..5)
        .map(|i| {
            let msg = sample_json(i);
            let z = compress_message(&mut c, &msg, false);
            assert_eq!(inflate_message(&mut d, &z).unwrap(), msg);
            z.len()
        })
        .collect();
    assert!(sizes[1..].iter().all(|&s| s < sizes[0] / 2), "{sizes:?}");
}

#[test]
fn no_context_takeover_across_messages() {
    let mut c = Compressor::new(15, 2);
    let mut d = Decompressor::new(15);
    let msg = sample_json(1);
    let outputs: Vec<Vec<u8>> = (0..4)
        .map(|_| compress_message(&mut c, &msg, true))
        .collect();
    for z in &outputs {
        assert_eq!(z, &outputs[0]);
        assert_eq!(inflate_message(&mut d, z).unwrap(), msg);
        d.reset();
    }
    // The decompressor may also keep its window: the client never refers to it.
    for z in &outputs {
        assert_eq!(inflate_message(&mut d, z).unwrap(), msg);
    }
}

#[test]
fn shared_compressor_serves_several_peers() {
    let mut shared = Compressor::new(15, 2);
    let mut peers = [Decompressor::new(15), Decompressor::new(15)];
    for i in 0..6 {
        let msg = sample_json(i);
        let z = compress_message(&mut shared, &msg, true);
        // Each peer sees only some of the messages.
        let peer = &mut peers[i % 2];
        assert_eq!(inflate_message(peer, &z).unwrap(), msg);
    }
}

#[test]
fn fragmented_inflate() {
    let msg: Vec<u8> = (0..50).flat_map(sample_json).collect();
    let mut c = Compressor::new(15, 6);
    let z = compress_message(&mut c, &msg, false);
    for frame_len in [1, 2, 3, 7, 100, z.len()] {
        let mut d = Decompressor::new(15);
        let mut out = Vec::new();
        let frames: Vec<&[u8]> = z.chunks(frame_len).collect();
        for (i, frame) in frames.iter().enumerate() {
            d.inflate(frame, i + 1 == frames.len(), usize::MAX, &mut out)
                .unwrap();
        }
        assert_eq!(out, msg, "frames of {frame_len}");
    }
    // Empty frames, including an empty final one.
    let mut d = Decompressor::new(15);
    let mut out = Vec::new();
    d.inflate(&[], false, usize::MAX, &mut out).unwrap();
    d.inflate(&z, false, usize::MAX, &mut out).unwrap();
    d.inflate(&[], true, usize::MAX, &mut out).unwrap();
    assert_eq!(out, msg);
}

#[test]
fn window_9_output_fits_a_512_byte_window() {
    let msg: Vec<u8> = (0..200).flat_map(sample_json).collect();
    let mut c = Compressor::new(9, 9);
    let z = compress_message(&mut c, &msg, false);
    assert!(z.len() < msg.len() / 2);
    let mut strict = Decompress::new_with_window_bits(false, 9);
    let mut back = Vec::with_capacity(msg.len() + 16);
    let mut input = z.clone();
    input.extend_from_slice(&TAIL);
    strict
        .decompress_vec(&input, &mut back, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(back, msg);
}

#[test]
fn incompressible_and_large_messages() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for (bits, level) in [(15, 2), (15, 0), (8, 2)] {
        let mut c = Compressor::new(bits, level);
        let mut d = Decompressor::new(15);
        for _ in 0..2 {
            let z = compress_message(&mut c, &noise, false);
            assert!(z.len() < noise.len() + noise.len() / 100 + 64);
            assert_eq!(inflate_message(&mut d, &z).unwrap(), noise);
        }
    }
}

/// About `mib` MiB of zeros, deflated at window 15 in chunks (never held whole).
fn bomb(mib: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut deflate = Compress::new_with_window_bits(Compression::best(), false, 15);
    let mut out = Vec::with_capacity(mib * 1100);
    for i in 0..mib {
        let flush = if i + 1 == mib {
            FlushCompress::Sync
        } else {
            FlushCompress::None
        };
        let start = deflate.total_in();
        while deflate.total_in() - start < zeros.len() as u64 {
            let done = (deflate.total_in() - start) as usize;
            out.reserve(4096);
            deflate
                .compress_vec(&zeros[done..], &mut out, flush)
                .unwrap();
        }
    }
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}

#[test]
fn decompression_bomb_stops_at_the_limit() {
    let z = bomb(128);
    assert!(z.len() < 200 * 1024, "{}", z.len());
    const LIMIT: usize = 1 << 20;
    let started = std::time::Instant::now();
    // In one frame.
    let mut d = Decompressor::new(15);
    let mut out = Vec::new();
    assert_eq!(
        d.inflate(&z, true, LIMIT, &mut out),
        Err(InflateError::TooBig)
    );
    assert!(out.capacity() <= LIMIT + 1, "{}", out.capacity());
    // In frames of 1 KiB: it fails within the first few.
    let mut d = Decompressor::new(15);
    let mut out = Vec::new();
    let mut frames = 0;
    let result = z.chunks(1024).try_for_each(|frame| {
        frames += 1;
        d.inflate(frame, false, LIMIT, &mut out)
    });
    assert_eq!(result, Err(InflateError::TooBig));
    assert!(frames <= 2, "{frames}");
    assert!(out.capacity() <= LIMIT + 1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // After the error the decompressor is usable again.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(inflate_message(&mut d, &hello).unwrap(), HELLO);
}

#[test]
fn limit_is_inclusive_and_counts_earlier_frames() {
    let msg = vec![b'a'; 10_000];
    let z = compress_message(&mut Compressor::new(15, 6), &msg, true);
    let mut d = Decompressor::new(15);
    let mut out = Vec::new();
    d.inflate(&z, true, msg.len(), &mut out).unwrap();
    assert_eq!(out, msg);
    out.clear();
    assert_eq!(
        d.inflate(&z, true, msg.len() - 1, &mut out),
        Err(InflateError::TooBig)
    );
    // Earlier frames already in `out` count.
    let mut out = vec![b'x'; 10];
    assert_eq!(
        d.inflate(&z, true, msg.len() + 9, &mut out),
        Err(InflateError::TooBig)
    );
    let mut out = vec![b'x'; 10];
    d.inflate(&z, true, msg.len() + 10, &mut out).unwrap();
    assert_eq!(out.len(), msg.len() + 10);
}

#[test]
fn corrupt_input() {
    let mut d = Decompressor::new(15);
    for bad in [
        &[0xff, 0xff, 0xff][..],                      // BTYPE 11 is reserved
        &[0x00, 0x05, 0x00, 0x00, 0x00, 1, 2, 3][..], // NLEN is not ~LEN
        &[0x0c, 0xff, 0xff, 0xff, 0xff][..],          // bad dynamic block
    ] {
        assert_eq!(
            inflate_message(&mut d, bad),
            Err(InflateError::Corrupt),
            "{bad:02x?}"
        );
        assert_eq!(
            inflate_message(&mut d, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(),
            HELLO
        );
    }
    // A back-reference before the start of the stream.
    let mut d = Decompressor::new(15);
    assert_eq!(
        inflate_message(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
        Err(InflateError::Corrupt)
    );
    assert_eq!(
        InflateError::Corrupt.close_code(),
        CloseCode::INVALID_PAYLOAD
    );
    assert_eq!(
        InflateError::TooBig.close_code(),
        CloseCode::MESSAGE_TOO_BIG
    );
}

/// Bytes that are sometimes compressible: runs, a small alphabet, or noise.
fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3000),
        proptest::collection::vec(prop::sample::select(b"ab \n{}".to_vec()), 0..5000),
        (any::<u8>(), 0usize..70_000).prop_map(|(b, n)| vec![b; n]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_under_any_split(
        messages in proptest::collection::vec(message(), 1..5),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        bits in 8u8..=15,
        level in 0u32..=9,
        reset_after in any::<bool>(),
    ) {
        let mut c = Compressor::new(bits, level);
        let mut d = Decompressor::new(bits);
        for msg in &messages {
            let z = compress_message(&mut c, msg, reset_after);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(z.len() + 1)).collect();
            points.push(0);
            points.push(z.len());
            points.sort_unstable();
            let mut out = Vec::new();
            for (i, pair) in points.windows(2).enumerate() {
                let fin = i + 2 == points.len();
                d.inflate(&z[pair[0]..pair[1]], fin, usize::MAX, &mut out).unwrap();
            }
            prop_assert_eq!(&out, msg);
        }
    }
}
