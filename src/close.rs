//! Close codes and the Close frame payload (RFC 6455 §5.5.1, §7.4).

use crate::error::ProtocolError;

/// A close status code as carried in a Close frame (RFC 6455 §7.4).
pub type CloseCode = u16;

/// 1000: normal closure; the purpose of the connection has been fulfilled.
pub const NORMAL: CloseCode = 1000;
/// 1001: the endpoint is going away (server shutdown, page navigation).
pub const GOING_AWAY: CloseCode = 1001;
/// 1002: the peer broke the protocol.
pub const PROTOCOL_ERROR: CloseCode = 1002;
/// 1003: the endpoint received a data type it cannot accept.
pub const UNSUPPORTED_DATA: CloseCode = 1003;
/// 1005: no status code was present (never sent on the wire).
pub const NO_STATUS: CloseCode = 1005;
/// 1006: the connection closed without a Close frame (never sent on the wire).
pub const ABNORMAL: CloseCode = 1006;
/// 1007: a text message was not valid UTF-8.
pub const INVALID_PAYLOAD: CloseCode = 1007;
/// 1008: a message violated the endpoint's policy.
pub const POLICY_VIOLATION: CloseCode = 1008;
/// 1009: a message was too big to process.
pub const MESSAGE_TOO_BIG: CloseCode = 1009;
/// 1010: the client expected an extension the server did not negotiate.
pub const MANDATORY_EXTENSION: CloseCode = 1010;
/// 1011: the server met an unexpected condition.
pub const INTERNAL_ERROR: CloseCode = 1011;
/// 1012: the service is restarting.
pub const SERVICE_RESTART: CloseCode = 1012;
/// 1013: try again later.
pub const TRY_AGAIN_LATER: CloseCode = 1013;

/// Whether `code` may appear in a Close frame on the wire.
///
/// RFC 6455 §7.4.1/§7.4.2 and the IANA registry: 1000–1003 and 1007–1014 are defined,
/// 3000–4999 are for libraries and applications; 1004–1006, 1015 and everything else
/// below 3000 is reserved or must not be sent.
pub fn is_sendable(code: CloseCode) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The parsed payload of a Close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosePayload<'a> {
    /// The status code, or [`NO_STATUS`] when the frame had an empty payload.
    pub code: CloseCode,
    /// The UTF-8 reason that followed the code (may be empty).
    pub reason: &'a str,
}

/// Parses a Close frame body (§5.5.1): empty, or a 2-byte code followed by UTF-8.
pub fn parse_payload(payload: &[u8]) -> Result<ClosePayload<'_>, ProtocolError> {
    match payload {
        [] => Ok(ClosePayload {
            code: NO_STATUS,
            reason: "",
        }),
        // "If there is a body, the first two bytes of the body MUST be a 2-byte unsigned integer".
        [_] => Err(ProtocolError::CloseBodyTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_sendable(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(ClosePayload { code, reason })
        }
    }
}

/// Appends a Close frame body for `code` and `reason` to `out`.
///
/// [`NO_STATUS`] writes an empty body. The reason is cut at a character boundary so that
/// the body fits the 125-byte control frame limit (§5.5).
pub fn encode_payload(code: CloseCode, reason: &str, out: &mut Vec<u8>) {
    if code == NO_STATUS {
        return;
    }
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(truncate_reason(reason).as_bytes());
}

/// The longest prefix of `reason` that fits a Close body (123 bytes) on a char boundary.
pub fn truncate_reason(reason: &str) -> &str {
    const MAX: usize = 123;
    if reason.len() <= MAX {
        return reason;
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_body_means_no_status() {
        assert_eq!(parse_payload(&[]).unwrap().code, NO_STATUS);
    }

    #[test]
    fn one_byte_body_is_a_protocol_error() {
        assert_eq!(parse_payload(&[3]), Err(ProtocolError::CloseBodyTooShort));
    }

    #[test]
    fn codes_follow_the_registry() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(is_sendable(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_sendable(bad), "{bad}");
            let body = u16::to_be_bytes(bad);
            assert_eq!(
                parse_payload(&body),
                Err(ProtocolError::InvalidCloseCode(bad))
            );
        }
    }

    #[test]
    fn reason_must_be_utf8() {
        assert_eq!(
            parse_payload(&[0x03, 0xe8, 0xff]),
            Err(ProtocolError::InvalidCloseReason)
        );
        let p = parse_payload(b"\x03\xe8bye").unwrap();
        assert_eq!((p.code, p.reason), (1000, "bye"));
    }

    #[test]
    fn encoded_reason_fits_a_control_frame() {
        let long = "é".repeat(100);
        let mut out = Vec::new();
        encode_payload(4000, &long, &mut out);
        assert!(out.len() <= 125);
        assert!(std::str::from_utf8(&out[2..]).is_ok());
        out.clear();
        encode_payload(NO_STATUS, "ignored", &mut out);
        assert!(out.is_empty());
    }
}
