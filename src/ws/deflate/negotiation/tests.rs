//! Negotiation: what is answered to which offer, and which headers are rejected.

use super::*;
use crate::ws::deflate::codec::TAIL;
use crate::ws::deflate::Compressor;
use flate2::{Decompress, FlushDecompress};

/// The defaults, but letting clients keep their context, so that responses show
/// exactly what the offer asked for.
fn client_keeps_context() -> DeflateConfig {
    DeflateConfig {
        client_context_takeover: true,
        ..DeflateConfig::default()
    }
}

#[test]
fn default_answers_no_context_takeover_both_ways() {
    let params = negotiate(
        [&b"permessage-deflate; client_max_window_bits"[..]],
        &DeflateConfig::default(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        params.response_value(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
}

fn offer(values: &[&str]) -> Result<Option<Params>, NegotiationError> {
    offer_with(values, &client_keeps_context())
}

fn offer_with(values: &[&str], config: &DeflateConfig) -> Result<Option<Params>, NegotiationError> {
    negotiate(values.iter().map(|v| v.as_bytes()), config)
}

/// The response value for `values` under the default config, or "" when declined.
fn response(values: &[&str]) -> String {
    response_with(values, &client_keeps_context())
}

fn response_with(values: &[&str], config: &DeflateConfig) -> String {
    offer_with(values, config)
        .expect("well-formed")
        .map(|p| p.response_value())
        .unwrap_or_default()
}

/// A config with context takeover on both sides and 15-bit windows: the neutral answer.
fn neutral() -> DeflateConfig {
    DeflateConfig {
        server_context_takeover: true,
        ..client_keeps_context()
    }
}

#[test]
fn nothing_offered() {
    assert_eq!(offer(&[]), Ok(None));
    assert_eq!(offer(&[""]), Ok(None));
    assert_eq!(offer(&[" , ,"]), Ok(None));
    assert_eq!(offer(&["x-webkit-deflate-frame"]), Ok(None));
    assert_eq!(offer(&["foo; bar=1; baz=\"q\", deflate-stream"]), Ok(None));
}

#[test]
fn plain_offer() {
    let params = offer(&["permessage-deflate"]).unwrap().unwrap();
    assert_eq!(
        params,
        Params {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_max_window_bits_offered: false,
        }
    );
    assert_eq!(
        params.response_value(),
        "permessage-deflate; server_no_context_takeover"
    );
    assert!(params.server_compresses());
    assert_eq!(
        response_with(&["permessage-deflate"], &neutral()),
        "permessage-deflate"
    );
}

#[test]
fn each_parameter_alone() {
    let c = neutral();
    let cases = [
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=15",
        ),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate",
        ),
        (
            "permessage-deflate; client_max_window_bits=12",
            "permessage-deflate; client_max_window_bits=12",
        ),
        (
            "permessage-deflate; client_max_window_bits=15",
            "permessage-deflate",
        ),
    ];
    for (offered, answered) in cases {
        assert_eq!(response_with(&[offered], &c), answered, "{offered}");
    }
}

#[test]
fn client_max_window_bits_with_and_without_value() {
    let limited = DeflateConfig {
        client_max_window_bits: 10,
        ..neutral()
    };
    let params = |v: &str| offer_with(&[v], &limited).unwrap().unwrap();
    // Offered without a value: we may name any window.
    let p = params("permessage-deflate; client_max_window_bits");
    assert_eq!(p.client_max_window_bits, 10);
    assert_eq!(
        p.response_value(),
        "permessage-deflate; client_max_window_bits=10"
    );
    // Offered with a value: no more than the client's hint.
    assert_eq!(
        params("permessage-deflate; client_max_window_bits=9").client_max_window_bits,
        9
    );
    assert_eq!(
        params("permessage-deflate; client_max_window_bits=12").client_max_window_bits,
        10
    );
    // Not offered: we must not name it, and the client may use 15.
    let p = params("permessage-deflate");
    assert_eq!(p.client_max_window_bits, 15);
    assert_eq!(p.response_value(), "permessage-deflate");
    // A limit of 8 is sent as is (we inflate with 15 anyway).
    let eight = DeflateConfig {
        client_max_window_bits: 8,
        ..neutral()
    };
    assert_eq!(
        response_with(&["permessage-deflate; client_max_window_bits"], &eight),
        "permessage-deflate; client_max_window_bits=8"
    );
}

#[test]
fn combinations() {
    let params = offer_with(
        &[
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; \
           client_max_window_bits=11; server_no_context_takeover",
        ],
        &neutral(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        params,
        Params {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 11,
            server_max_window_bits_offered: true,
        }
    );
    assert_eq!(
        params.response_value(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=11"
    );
}

#[test]
fn first_acceptable_offer_wins() {
    // An unknown parameter declines that offer only.
    let value = "permessage-deflate; x_custom=1; server_max_window_bits=9, \
                 permessage-deflate; server_max_window_bits=10, permessage-deflate";
    assert_eq!(
        response_with(&[value], &neutral()),
        "permessage-deflate; server_max_window_bits=10"
    );
    // Every offer declined: connect without the extension.
    assert_eq!(
        offer(&["permessage-deflate; foo, permessage-deflate; bar=2"]),
        Ok(None)
    );
    // Other extensions in between are skipped.
    assert_eq!(
        response_with(
            &["foo, permessage-deflate; client_no_context_takeover, bar"],
            &neutral()
        ),
        "permessage-deflate; client_no_context_takeover"
    );
}

#[test]
fn several_header_values_in_order() {
    let values = ["foo; a=b", "permessage-deflate; server_max_window_bits=12"];
    assert_eq!(
        response_with(&values, &neutral()),
        "permessage-deflate; server_max_window_bits=12"
    );
    let values = [
        "permessage-deflate; unknown",
        "permessage-deflate; server_max_window_bits=11",
        "permessage-deflate",
    ];
    assert_eq!(
        response_with(&values, &neutral()),
        "permessage-deflate; server_max_window_bits=11"
    );
}

#[test]
fn quoted_values() {
    let c = neutral();
    assert_eq!(
        response_with(&["permessage-deflate; server_max_window_bits=\"10\""], &c),
        "permessage-deflate; server_max_window_bits=10"
    );
    assert_eq!(
        response_with(&["permessage-deflate; client_max_window_bits=\"1\\1\""], &c),
        "permessage-deflate; client_max_window_bits=11"
    );
    // An unknown parameter with a quoted token value is still well-formed.
    assert_eq!(offer(&["permessage-deflate; x=\"a.b\""]), Ok(None));
    // The unquoted content must be a token.
    for bad in [
        "permessage-deflate; server_max_window_bits=\"1 0\"",
        "permessage-deflate; server_max_window_bits=\"\"",
        "permessage-deflate; server_max_window_bits=\"10",
        "permessage-deflate; x=\"a,b\"",
        "permessage-deflate; x=\"a\\",
    ] {
        assert_eq!(offer(&[bad]), Err(NegotiationError::Malformed), "{bad}");
    }
}

#[test]
fn whitespace_and_case() {
    let c = neutral();
    for value in [
        "permessage-deflate;server_max_window_bits=10",
        "  permessage-deflate ;\tserver_max_window_bits = 10  ",
        "Permessage-Deflate; SERVER_MAX_WINDOW_BITS=10",
        ", permessage-deflate; server_max_window_bits=10 ,",
    ] {
        assert_eq!(
            response_with(&[value], &c),
            "permessage-deflate; server_max_window_bits=10",
            "{value:?}"
        );
    }
}

#[test]
fn duplicates_are_rejected() {
    for (value, name) in [
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "server_no_context_takeover",
        ),
        (
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "client_no_context_takeover",
        ),
        (
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "server_max_window_bits",
        ),
        (
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "client_max_window_bits",
        ),
        // Even in an offer that would be declined for its unknown parameter.
        (
            "permessage-deflate; foo; client_max_window_bits; Client_Max_Window_Bits",
            "client_max_window_bits",
        ),
    ] {
        assert_eq!(
            offer(&[value]),
            Err(NegotiationError::DuplicateParameter(name)),
            "{value}"
        );
    }
}

#[test]
fn invalid_values_are_rejected() {
    use NegotiationError::*;
    let s = "server_max_window_bits";
    let c = "client_max_window_bits";
    for (value, err) in [
        (
            "permessage-deflate; server_max_window_bits=7",
            InvalidValue(s),
        ),
        (
            "permessage-deflate; server_max_window_bits=16",
            InvalidValue(s),
        ),
        (
            "permessage-deflate; server_max_window_bits=08",
            InvalidValue(s),
        ),
        (
            "permessage-deflate; server_max_window_bits=010",
            InvalidValue(s),
        ),
        (
            "permessage-deflate; server_max_window_bits=0x0a",
            InvalidValue(s),
        ),
        (
            "permessage-deflate; server_max_window_bits=+9",
            InvalidValue(s),
        ),
        (
            "permessage-deflate; server_max_window_bits",
            MissingValue(s),
        ),
        (
            "permessage-deflate; client_max_window_bits=0",
            InvalidValue(c),
        ),
        (
            "permessage-deflate; client_max_window_bits=99",
            InvalidValue(c),
        ),
        (
            "permessage-deflate; server_no_context_takeover=1",
            UnexpectedValue("server_no_context_takeover"),
        ),
        (
            "permessage-deflate; client_no_context_takeover=\"x\"",
            UnexpectedValue("client_no_context_takeover"),
        ),
    ] {
        assert_eq!(offer(&[value]), Err(err.clone()), "{value}");
        assert_eq!(err.status(), 400);
    }
}

#[test]
fn syntax_errors_are_rejected() {
    for value in [
        "permessage-deflate;",
        "permessage-deflate; ; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits=",
        "permessage-deflate server_no_context_takeover",
        "permessage-deflate; a b",
        "permessage-deflate; a=b=c",
        "\"permessage-deflate\"",
        ";permessage-deflate",
        "permessage-deflate; a=\u{e9}",
        // A broken other extension makes the whole header malformed.
        "permessage-deflate, foo;",
        "foo bar, permessage-deflate",
    ] {
        assert_eq!(
            offer(&[value]),
            Err(NegotiationError::Malformed),
            "{value:?}"
        );
    }
    // Also after an acceptable offer, and in a later header.
    assert_eq!(
        offer(&[
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits=20"
        ]),
        Err(NegotiationError::InvalidValue("client_max_window_bits"))
    );
}

#[test]
fn config_variations() {
    // Disabled: not even parsed.
    let off = DeflateConfig {
        enabled: false,
        ..client_keeps_context()
    };
    assert_eq!(offer_with(&["permessage-deflate"], &off), Ok(None));
    assert_eq!(offer_with(&["permessage-deflate;;"], &off), Ok(None));
    // The default keeps no server context.
    assert_eq!(
        response(&["permessage-deflate"]),
        "permessage-deflate; server_no_context_takeover"
    );
    // No client context takeover: answered even unasked.
    let no_client = DeflateConfig {
        client_context_takeover: false,
        ..neutral()
    };
    assert_eq!(
        response_with(&["permessage-deflate"], &no_client),
        "permessage-deflate; client_no_context_takeover"
    );
    // Server window: the smaller of the request and the config, named even unasked.
    let small = DeflateConfig {
        server_max_window_bits: 11,
        ..neutral()
    };
    assert_eq!(
        response_with(&["permessage-deflate"], &small),
        "permessage-deflate; server_max_window_bits=11"
    );
    assert_eq!(
        response_with(&["permessage-deflate; server_max_window_bits=13"], &small),
        "permessage-deflate; server_max_window_bits=11"
    );
    assert_eq!(
        response_with(&["permessage-deflate; server_max_window_bits=9"], &small),
        "permessage-deflate; server_max_window_bits=9"
    );
    // Out-of-range config values are clamped.
    let silly = DeflateConfig {
        server_max_window_bits: 3,
        client_max_window_bits: 40,
        ..neutral()
    };
    let p = offer_with(&["permessage-deflate; client_max_window_bits"], &silly)
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.server_max_window_bits, p.client_max_window_bits),
        (9, 15)
    );
}

#[test]
fn server_window_8_is_accepted_without_compression() {
    let p = offer_with(
        &["permessage-deflate; server_max_window_bits=8"],
        &neutral(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(p.server_max_window_bits, 8);
    assert!(!p.server_compresses());
    assert_eq!(
        p.response_value(),
        "permessage-deflate; server_max_window_bits=8"
    );
    // Should a compressor be made for it anyway, its output fits a 256-byte window.
    let data = b"abcdefgh".repeat(200);
    let mut out = Vec::new();
    Compressor::new(8, 9).compress(&data, &mut out, false);
    let mut tiny = Decompress::new_with_window_bits(false, 9);
    out.extend_from_slice(&TAIL);
    let mut back = Vec::with_capacity(data.len() + 16);
    tiny.decompress_vec(&out, &mut back, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(back, data);
}

#[test]
fn autobahn_offers() {
    // The offers of Autobahn|Testsuite 0.8.2 cases 12.* and 13.1–13.7, and what we
    // answer under the default config. Its client wants client_max_window_bits with a
    // value in any response and accepts whatever we choose.
    let base = "permessage-deflate; client_no_context_takeover; client_max_window_bits";
    let cases = [
        (base.to_string(), ""),
        (format!("{base}; server_no_context_takeover"), ""),
        (
            format!("{base}; server_max_window_bits=9"),
            "; server_max_window_bits=9",
        ),
        (
            format!("{base}; server_max_window_bits=15"),
            "; server_max_window_bits=15",
        ),
        (
            format!("{base}; server_no_context_takeover; server_max_window_bits=9"),
            "; server_max_window_bits=9",
        ),
        (
            format!("{base}; server_no_context_takeover; server_max_window_bits=15"),
            "; server_max_window_bits=15",
        ),
        (
            format!(
                "{base}; server_no_context_takeover; server_max_window_bits=9, \
                 {base}; server_no_context_takeover, {base}"
            ),
            "; server_max_window_bits=9",
        ),
    ];
    for (offered, tail) in cases {
        assert_eq!(
            response(&[&offered]),
            format!(
                "permessage-deflate; server_no_context_takeover; \
                 client_no_context_takeover{tail}"
            ),
            "{offered}"
        );
    }
}
