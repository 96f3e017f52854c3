//! The body of a Close frame (RFC 6455 §5.5.1): nothing, or a 2-byte status code and a
//! UTF-8 reason.

use std::error::Error;
use std::fmt;

/// The code `on_close` reports for a Close without a body (§7.1.5); never sent.
pub const NO_STATUS: u16 = 1005;

/// A Close body: `code` big-endian, then `reason`.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + reason.len());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
    out
}

/// The code of a Close body, if it has one; nothing is checked.
#[inline]
pub fn close_code(payload: &[u8]) -> Option<u16> {
    payload.first_chunk::<2>().map(|c| u16::from_be_bytes(*c))
}

/// Whether `code` may appear in a Close frame (§7.4.1, §7.4.2 and the IANA registry):
/// 1000-1003, 1007-1014, 3000-4999.
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A Close body that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseError {
    /// One byte: half a code.
    OneByte,
    /// The reason is not UTF-8.
    ReasonNotUtf8,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::OneByte => write!(f, "one-byte Close body (RFC 6455 §5.5.1)"),
            CloseError::ReasonNotUtf8 => {
                write!(f, "Close reason not UTF-8 (RFC 6455 §5.5.1)")
            }
        }
    }
}

impl Error for CloseError {}

/// The code and reason of a Close body; `Ok(None)` for an empty one. Whether the code
/// may be sent is [`valid_close_code`]'s question.
pub fn parse_close(payload: &[u8]) -> Result<Option<(u16, &str)>, CloseError> {
    match payload {
        [] => Ok(None),
        [_] => Err(CloseError::OneByte),
        [hi, lo, reason @ ..] => {
            let reason = std::str::from_utf8(reason).map_err(|_| CloseError::ReasonNotUtf8)?;
            Ok(Some((u16::from_be_bytes([*hi, *lo]), reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip() {
        let body = close_payload(1000, "bye");
        assert_eq!(body, b"\x03\xe8bye");
        assert_eq!(parse_close(&body), Ok(Some((1000, "bye"))));
        assert_eq!(close_code(&body), Some(1000));
        assert_eq!(parse_close(&close_payload(4000, "")), Ok(Some((4000, ""))));
        assert_eq!(close_payload(1001, "€").len(), 5);
    }

    #[test]
    fn empty_short_and_bad_bodies() {
        assert_eq!(parse_close(b""), Ok(None));
        assert_eq!(close_code(b""), None);
        assert_eq!(parse_close(b"\x03"), Err(CloseError::OneByte));
        assert_eq!(close_code(b"\x03"), None);
        assert_eq!(
            parse_close(b"\x03\xe8bye\xff"),
            Err(CloseError::ReasonNotUtf8)
        );
        // The code alone is still there for whoever wants it.
        assert_eq!(close_code(b"\x03\xe8bye\xff"), Some(1000));
    }

    #[test]
    fn codes_that_may_be_sent() {
        for code in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(valid_close_code(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!valid_close_code(code), "{code}");
        }
    }
}
