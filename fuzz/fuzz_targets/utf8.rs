//! Fuzzes `utf8::Utf8State`: the input (after its chunking schedule, see
//! `common/schedule.rs`) is fed in chunks, then `finish` is called. Checked:
//! - the verdict agrees with `std::str::from_utf8` on the whole input;
//! - it fails fast: `feed` fails on exactly the first chunk whose end makes the input
//!   seen so far invalid (not merely incomplete), and never before;
//! - after an error the state is not used again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pushloop::codec::Utf8State;

#[path = "common/schedule.rs"]
mod schedule;

/// The length of the shortest prefix of `data` that std calls invalid (not merely
/// incomplete), or `None` when every prefix is valid or incomplete.
fn first_invalid_prefix(data: &[u8]) -> Option<usize> {
    let err = std::str::from_utf8(data).err()?;
    err.error_len()?;
    let v = err.valid_up_to();
    // `data[..v]` is valid and `v` is a character boundary: the sequence that fails
    // starts at `v` and is at most 4 bytes long.
    (v + 1..=(v + 4).min(data.len())).find(|&end| {
        std::str::from_utf8(&data[v..end])
            .err()
            .is_some_and(|e| e.error_len().is_some())
    })
}

fuzz_target!(|data: &[u8]| {
    let (sizes, text) = schedule::split(data);
    let std_ok = std::str::from_utf8(text).is_ok();
    let first_bad = first_invalid_prefix(text);
    if !std_ok && first_bad.is_none() {
        // Invalid only by ending inside a character.
        assert!(std::str::from_utf8(text).unwrap_err().error_len().is_none());
    }

    let mut state = Utf8State::default();
    let mut failed_at = None;
    for (start, end) in schedule::chunks(text.len(), &sizes) {
        let ok = state.feed(&text[start..end]).is_ok();
        let expected = first_bad.is_none_or(|bad| end < bad);
        assert_eq!(
            ok, expected,
            "feed of {start}..{end} (sizes {sizes:?}) gave ok={ok}, std's first invalid prefix is {first_bad:?}"
        );
        if !ok {
            failed_at = Some(end);
            break;
        }
    }
    let incremental_ok = failed_at.is_none() && state.finish().is_ok();
    assert_eq!(
        incremental_ok, std_ok,
        "Utf8State (sizes {sizes:?}) says {incremental_ok}, std says {std_ok}"
    );
});
