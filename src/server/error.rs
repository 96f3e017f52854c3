//! The errors the loop reports to a handler or to the caller.

use crate::ws::error::ProtocolError;
use crate::ws::handshake::HandshakeError;
use std::fmt;

/// Any error the server reports to a handler or to the caller.
#[derive(Debug)]
pub enum Error {
    /// The peer broke RFC 6455; the connection was closed with the error's close code.
    Protocol(ProtocolError),
    /// The opening handshake was refused.
    Handshake(HandshakeError),
    /// A socket or poll operation failed.
    Io(std::io::Error),
    /// The close handshake or the opening handshake did not finish in time.
    Timeout,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Handshake(e) => write!(f, "handshake error: {e}"),
            Error::Io(e) => write!(f, "io error: {e}"),
            Error::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}
