//! Fuzzes `protocol::Decoder` (RFC 6455 frames and message assembly).
//!
//! The input is a chunking schedule (see `common/schedule.rs`) followed by the byte
//! stream a client would send. The stream is decoded twice: cut into the scheduled
//! chunks, and whole in one piece. Checked:
//! - every `decode` call on non-empty input consumes > 0 bytes and at most what it got;
//! - a Text event is UTF-8, data messages respect `max_message`, control payloads fit
//!   125 bytes, a Close payload parses with `parse_close_payload`;
//! - after a data message completes, the decoder holds no partial state;
//! - decoding stops at the first error;
//! - chunked and whole decoding give the same events, the same error (if any), and end
//!   in the same mid-message state (differential);
//! - with permessage-deflate allowed (an odd number of chunk sizes), compressed messages
//!   come out whole, within `max_message`, and leave no partial state.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pushloop::codec::{parse_close_payload, Decoder, Event, Limits};
use pushloop::ProtocolError;

#[path = "common/schedule.rs"]
mod schedule;

const LIMITS: Limits = Limits {
    max_frame: 64 << 10,
    max_message: 256 << 10,
};

/// An owned copy of an event, for comparing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Vec<u8>),
    Compressed(bool, Vec<u8>),
}

/// What a run produced: its events, the error that stopped it, and whether the decoder
/// was left mid-message.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Ev>,
    error: Option<ProtocolError>,
    mid_message: bool,
}

/// Checks one event and returns its owned copy.
fn check_event(event: Event<'_>, dec: &Decoder) -> Ev {
    match event {
        Event::Text(text) => {
            assert!(
                std::str::from_utf8(text.as_bytes()).is_ok(),
                "Text event is not UTF-8"
            );
            assert!(text.len() <= LIMITS.max_message, "text over max_message");
            assert!(
                !dec.is_mid_message(),
                "state kept after a complete text message"
            );
            Ev::Text(text.as_bytes().to_vec())
        }
        Event::Binary(p) => {
            assert!(p.len() <= LIMITS.max_message, "binary over max_message");
            assert!(
                !dec.is_mid_message(),
                "state kept after a complete binary message"
            );
            Ev::Binary(p.to_vec())
        }
        Event::Ping(p) => {
            assert!(p.len() <= 125, "ping payload over 125 bytes");
            Ev::Ping(p.to_vec())
        }
        Event::Pong(p) => {
            assert!(p.len() <= 125, "pong payload over 125 bytes");
            Ev::Pong(p.to_vec())
        }
        Event::Close(p) => {
            assert!(p.len() <= 125, "close payload over 125 bytes");
            assert!(
                parse_close_payload(&p).is_ok(),
                "Close event whose payload does not parse: {:02x?}",
                &p[..]
            );
            Ev::Close(p.to_vec())
        }
        Event::Compressed { text, data } => {
            assert!(
                data.len() <= LIMITS.max_message,
                "compressed over max_message"
            );
            assert!(
                !dec.is_mid_message(),
                "state kept after a complete compressed message"
            );
            Ev::Compressed(text, data.to_vec())
        }
    }
}

/// Decodes `stream` fed as the chunks `cuts`, until it is used up or the first error.
fn run(stream: &[u8], cuts: &[(usize, usize)], compression: bool) -> Outcome {
    let mut dec = Decoder::new();
    if compression {
        dec.allow_compression();
    }
    let mut events = Vec::new();
    for &(start, end) in cuts {
        // Each read lands in a fresh buffer: decode unmasks in place.
        let mut chunk = stream[start..end].to_vec();
        let mut pos = 0;
        while pos < chunk.len() {
            let given = chunk.len() - pos;
            match dec.decode(&mut chunk[pos..], &LIMITS) {
                Ok((used, event)) => {
                    assert!(used > 0, "decode consumed nothing of {given} bytes");
                    assert!(used <= given, "decode consumed {used} of {given} bytes");
                    pos += used;
                    if let Some(event) = event {
                        events.push(check_event(event, &dec));
                    }
                }
                Err(error) => {
                    return Outcome {
                        events,
                        error: Some(error),
                        mid_message: dec.is_mid_message(),
                    }
                }
            }
        }
    }
    Outcome {
        events,
        error: None,
        mid_message: dec.is_mid_message(),
    }
}

fuzz_target!(|data: &[u8]| {
    let (sizes, stream) = schedule::split(data);
    let compression = sizes.len() % 2 == 1;
    let chunked = run(stream, &schedule::chunks(stream.len(), &sizes), compression);
    let whole_cut = if stream.is_empty() {
        vec![]
    } else {
        vec![(0, stream.len())]
    };
    let whole = run(stream, &whole_cut, compression);
    // After an error the mid-message state is unspecified; compare it only for clean runs.
    if chunked.error.is_some() || whole.error.is_some() {
        assert_eq!(
            (&chunked.events, &chunked.error),
            (&whole.events, &whole.error),
            "chunked (sizes {sizes:?}) and whole decoding differ"
        );
    } else {
        assert_eq!(
            chunked, whole,
            "chunked (sizes {sizes:?}) and whole decoding differ"
        );
    }
});
