//! Fuzzes the opening handshake: `handshake::parse` on an arbitrary request head, then
//! everything the server asks of a parsed request (`validate_upgrade`, `keep_alive`,
//! `http::body_length`, `path`, `query`, header look-ups). Nothing may panic. Checked:
//! - `Ok(None)` only while the input is within `max_head`;
//! - a complete head's length is > 0, <= the input and <= `max_head`;
//! - the head alone parses to the same length, and the head less its last byte is still
//!   incomplete (the server re-parses its buffer as bytes arrive, so a head split across
//!   reads must be accepted the same way);
//! - `body_length` never announces more than its maximum;
//! - a successful upgrade is a GET with a Host, a 28-character accept key, and a chosen
//!   subprotocol that is one of ours and that the client offered;
//! - permessage-deflate negotiation (RFC 7692) over the `Sec-WebSocket-Extensions`
//!   headers never panics, answers 400 when it fails, and agrees to window sizes in
//!   range whose response names the extension and parses back to the same parameters.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pushloop::codec::{
    body_length, negotiate, parse_request as parse, validate_upgrade, BodyLength, MAX_HEADERS,
};
use pushloop::DeflateConfig;

const MAX_HEAD: usize = 8192;

/// `parse` on `buf`, reduced to the head length (`Ok(None)` while incomplete).
fn head_len(buf: &[u8]) -> Result<Option<usize>, pushloop::RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    parse(buf, &mut headers, MAX_HEAD).map(|r| r.map(|(_, len)| len))
}

fuzz_target!(|data: &[u8]| {
    let supported = vec!["chat".to_owned(), "superchat".to_owned()];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (req, len) = match parse(data, &mut headers, MAX_HEAD) {
        Err(e) => {
            assert!(matches!(e.status(), 400 | 426 | 431));
            return;
        }
        Ok(None) => {
            assert!(data.len() <= MAX_HEAD, "incomplete head over max_head");
            return;
        }
        Ok(Some(parsed)) => parsed,
    };
    assert!(
        len > 0 && len <= data.len(),
        "head length {len} of {}",
        data.len()
    );
    assert!(len <= MAX_HEAD, "head length {len} over max_head");

    // The same head arriving in pieces.
    assert_eq!(
        head_len(&data[..len]),
        Ok(Some(len)),
        "the head alone parses differently"
    );
    assert_eq!(
        head_len(&data[..len - 1]),
        Ok(None),
        "the head less its last byte is not incomplete"
    );

    // Accessors.
    let method = req.method();
    let path = req.path();
    let query = req.query();
    assert!(!path.contains('?'));
    assert!(!method.is_empty());
    let _ = req.header("host");
    let _ = req.header("HOST");
    let _ = req.header("");
    let _ = req.header_bytes("sec-websocket-key");
    let _ = req.header_bytes("connection");
    let _ = req.wants_upgrade();
    let _ = req.keep_alive();
    let mut count = 0;
    for (name, _value) in req.headers() {
        count += 1;
        // The first header of that name (case-insensitive) is what a look-up returns.
        let first = req
            .headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v);
        assert_eq!(req.header_bytes(name), first);
        assert_eq!(
            req.header(name),
            first.and_then(|v| std::str::from_utf8(v).ok())
        );
    }
    assert!(count <= MAX_HEADERS);
    let _ = query;

    for max in [0, 1, 10, 1 << 20, usize::MAX] {
        match body_length(&req, max) {
            BodyLength::Fixed(n) => assert!(n <= max, "body length {n} over {max}"),
            BodyLength::TooLarge => {}
            BodyLength::Unsupported(status) => assert!(matches!(status, 400 | 411)),
        }
    }

    for config in [
        DeflateConfig::default(),
        DeflateConfig {
            server_context_takeover: true,
            client_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 9,
            ..DeflateConfig::default()
        },
    ] {
        match negotiate(req.headers_named("sec-websocket-extensions"), &config) {
            Ok(Some(params)) => {
                assert!((8..=15).contains(&params.server_max_window_bits));
                assert!((8..=15).contains(&params.client_max_window_bits));
                assert!(params.server_max_window_bits <= config.server_max_window_bits.max(8));
                let answer = params.response_value();
                assert!(answer.starts_with("permessage-deflate"), "{answer}");
                // The client reads our answer as an offer-shaped list: it must parse.
                let again = negotiate([answer.as_bytes()], &DeflateConfig::default());
                assert!(again.is_ok(), "our answer {answer:?} does not parse");
            }
            Ok(None) => {}
            Err(e) => assert_eq!(e.status(), 400),
        }
    }

    match validate_upgrade(&req, &supported) {
        Ok(upgrade) => {
            let accept = &upgrade.accept;
            assert_eq!(accept.len(), 28, "accept key {accept:?}");
            assert_eq!(req.method(), "GET");
            assert!(req.header_bytes("host").is_some());
            if let Some(chosen) = upgrade.protocol {
                assert!(supported.iter().any(|s| s == chosen), "chose {chosen:?}");
                let offered = req
                    .headers()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
                    .flat_map(|(_, v)| v.split(|b| *b == b','))
                    .any(|t| t.trim_ascii() == chosen.as_bytes());
                assert!(offered, "chose {chosen:?}, which the client did not offer");
            }
            // Still answers after negotiation.
            let _ = req.keep_alive();
            let _ = body_length(&req, 1 << 20);
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 426 | 431));
        }
    }
});
