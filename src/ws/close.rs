//! Close codes and the Close frame payload (RFC 6455 §5.5.1, §7.4).

use std::fmt;

/// A close status code as carried in a Close frame (RFC 6455 §7.4): a number with a
/// meaning. The registered codes are associated constants; any other `u16` converts in
/// and out with `From`.
///
/// ```
/// use pushloop::CloseCode;
/// assert_eq!(CloseCode::from(1008), CloseCode::POLICY_VIOLATION);
/// assert_eq!(u16::from(CloseCode::NORMAL), 1000);
/// assert!(CloseCode::NORMAL.is_sendable() && !CloseCode::ABNORMAL.is_sendable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: normal closure; the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint received a data type it cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a Close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a text message was not valid UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Whether the code may appear in a Close frame on the wire.
    ///
    /// RFC 6455 §7.4.1/§7.4.2 and the IANA registry: 1000–1003 and 1007–1014 are defined,
    /// 3000–4999 are for libraries and applications; 1004–1006, 1015 and everything else
    /// below 3000 is reserved or must not be sent.
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl PartialEq<u16> for CloseCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The parsed payload of a Close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosePayload<'a> {
    /// The status code, or [`CloseCode::NO_STATUS`] when the frame had an empty payload.
    pub code: CloseCode,
    /// The UTF-8 reason that followed the code (may be empty).
    pub reason: &'a str,
}

/// Appends a Close frame body for `code` and `reason` to `out`.
///
/// [`CloseCode::NO_STATUS`] writes an empty body. The reason is cut at a character boundary so that
/// the body fits the 125-byte control frame limit (§5.5).
pub fn encode_payload(code: CloseCode, reason: &str, out: &mut Vec<u8>) {
    if code == CloseCode::NO_STATUS {
        return;
    }
    out.extend_from_slice(&code.0.to_be_bytes());
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
    fn encoded_reason_fits_a_control_frame() {
        let long = "é".repeat(100);
        let mut out = Vec::new();
        encode_payload(CloseCode::from(4000), &long, &mut out);
        assert!(out.len() <= 125);
        assert!(std::str::from_utf8(&out[2..]).is_ok());
        out.clear();
        encode_payload(CloseCode::NO_STATUS, "ignored", &mut out);
        assert!(out.is_empty());
    }
}
