//! Micro-benchmarks of the per-message codec work: header decode, unmasking, UTF-8
//! validation, frame encoding, and the whole decoder on a read's worth of frames.
//!
//! Run: `cargo bench --bench codec` (or `cargo bench --bench codec -- mask` for a subset).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pushloop::codec::{
    apply_mask, apply_mask_plain, encode_frame, encode_masked_frame, Decoder, FrameHeader, Limits,
    OpCode, Utf8State,
};
use std::hint::black_box;
use std::time::Duration;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const SIZES: [usize; 4] = [16, 1 << 10, 16 << 10, 1 << 20];

/// `len` bytes of ASCII text.
fn ascii(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// About `len` bytes of mixed 1- to 4-byte UTF-8.
fn multibyte(len: usize) -> Vec<u8> {
    let unit = "κόσμε aé€𝄞 ".as_bytes();
    unit.iter()
        .copied()
        .cycle()
        .take(len / unit.len() * unit.len())
        .collect()
}

/// One masked client text frame carrying `payload`.
fn masked(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_masked_frame(true, OpCode::Text, payload, KEY, &mut out);
    out
}

fn header_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame/decode_header");
    for len in [16usize, 16 << 10, 1 << 20] {
        let frame = masked(&ascii(len));
        group.bench_with_input(BenchmarkId::from_parameter(len), &frame, |b, frame| {
            b.iter(|| FrameHeader::decode(black_box(&frame[..14])))
        });
    }
    group.finish();
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for len in SIZES {
        let mut buf = ascii(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("apply_mask", len), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), KEY, 1))
        });
        group.bench_function(BenchmarkId::new("apply_mask_plain", len), |b| {
            b.iter(|| apply_mask_plain(black_box(&mut buf), KEY, 1))
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    for (name, data) in [
        ("ascii", ascii(16)),
        ("ascii", ascii(16 << 10)),
        ("multibyte", multibyte(16 << 10)),
    ] {
        let id = format!("{name}/{}", data.len());
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(BenchmarkId::new("Utf8State", &id), |b| {
            b.iter(|| {
                let mut state = Utf8State::default();
                state.feed(black_box(&data)).and_then(|()| state.finish())
            })
        });
        group.bench_function(BenchmarkId::new("Utf8State_split_4k", &id), |b| {
            b.iter(|| {
                let mut state = Utf8State::default();
                for piece in black_box(&data).chunks(4093) {
                    state.feed(piece)?;
                }
                state.finish()
            })
        });
        group.bench_function(BenchmarkId::new("std_from_utf8", &id), |b| {
            b.iter(|| std::str::from_utf8(black_box(&data)).is_ok())
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for len in [16usize, 16 << 10] {
        let payload = ascii(len);
        let mut out = Vec::with_capacity(len + 14);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("server_frame", len), |b| {
            b.iter(|| {
                out.clear();
                encode_frame(OpCode::Text, black_box(&payload), &mut out);
                out.len()
            })
        });
        group.bench_function(BenchmarkId::new("masked_client_frame", len), |b| {
            b.iter(|| {
                out.clear();
                encode_masked_frame(true, OpCode::Text, black_box(&payload), KEY, &mut out);
                out.len()
            })
        });
    }
    group.finish();
}

/// The decoder on what one read might hold: many small frames, or one large frame.
/// Each iteration first copies the masked input (decode unmasks in place); the copy is
/// measured too, as `copy_only`.
fn decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("decoder");
    let limits = Limits::default();
    let small: Vec<u8> = (0..64).flat_map(|_| masked(&ascii(16))).collect();
    let large = masked(&ascii(16 << 10));
    let mixed = masked(&multibyte(16 << 10));
    for (name, input, messages) in [
        ("64x16B", &small, 64u64),
        ("1x16KiB", &large, 1),
        ("1x16KiB_multibyte", &mixed, 1),
    ] {
        let mut work = input.clone();
        group.throughput(Throughput::Elements(messages));
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            let mut decoder = Decoder::new();
            b.iter(|| {
                work.copy_from_slice(input);
                let mut pos = 0;
                let mut events = 0;
                while pos < work.len() {
                    let (used, event) = decoder
                        .decode(&mut work[pos..], &limits)
                        .expect("valid input");
                    pos += used;
                    events += event.is_some() as u32;
                }
                events
            })
        });
        group.bench_function(BenchmarkId::new("copy_only", name), |b| {
            b.iter(|| {
                work.copy_from_slice(black_box(input));
                work.len()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = codec;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = header_decode, unmask, utf8, encode, decoder
}
criterion_main!(codec);
