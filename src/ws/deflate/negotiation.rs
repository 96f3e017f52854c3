//! Negotiation of permessage-deflate in the opening handshake (RFC 7692 §5, §7.1): the
//! offers in `Sec-WebSocket-Extensions` are checked parameter by parameter, the first
//! acceptable one is answered with the [`Params`] agreed for the connection.

use super::extension_header::{parse_extension_list, Param};
use super::{DeflateConfig, EXTENSION, MAX_WINDOW_BITS, MIN_DEFLATE_WINDOW_BITS, MIN_WINDOW_BITS};
use std::fmt;

/// What was agreed for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// §7.1.1.1: the server starts every message from an empty window; its compressor is
    /// reset after each message (and may be shared between connections).
    pub server_no_context_takeover: bool,
    /// §7.1.1.2: the client starts every message from an empty window.
    pub client_no_context_takeover: bool,
    /// §7.1.2.1: the largest window the server compresses with, 8..=15; 8 means the server
    /// sends every message uncompressed ([`Params::server_compresses`]).
    pub server_max_window_bits: u8,
    /// §7.1.2.2: the largest window the client compresses with, 8..=15 (15 when the offer
    /// did not name `client_max_window_bits`: the client may then use any window).
    pub client_max_window_bits: u8,
    /// The offer carried `server_max_window_bits`, so the response names the agreed value
    /// even at 15 (§7.1.2.1: a server accepts such an offer "by including" the parameter).
    pub server_max_window_bits_offered: bool,
}

impl Params {
    /// The `Sec-WebSocket-Extensions` value of the response, e.g.
    /// `permessage-deflate; server_no_context_takeover; client_max_window_bits=10`.
    ///
    /// Window sizes are named only when they say something: below 15, or (for
    /// `server_max_window_bits`) when the offer asked. `client_max_window_bits` is always
    /// sent with a value (§7.1.2.2), never when the offer lacked it.
    pub fn response_value(&self) -> String {
        let mut value = String::from(EXTENSION);
        if self.server_no_context_takeover {
            push_param(&mut value, Parameter::ServerNoContextTakeover, None);
        }
        if self.client_no_context_takeover {
            push_param(&mut value, Parameter::ClientNoContextTakeover, None);
        }
        let server_bits = self.server_max_window_bits;
        if server_bits < MAX_WINDOW_BITS || self.server_max_window_bits_offered {
            push_param(
                &mut value,
                Parameter::ServerMaxWindowBits,
                Some(server_bits),
            );
        }
        let client_bits = self.client_max_window_bits;
        if client_bits < MAX_WINDOW_BITS {
            push_param(
                &mut value,
                Parameter::ClientMaxWindowBits,
                Some(client_bits),
            );
        }
        value
    }

    /// Whether the server compresses its messages at all: not when the client limited it to
    /// a 256-byte window, which zlib cannot honour. Every message may be sent uncompressed
    /// (RSV1 clear) whatever was negotiated, and the client's messages are still inflated.
    pub fn server_compresses(&self) -> bool {
        self.server_max_window_bits >= MIN_DEFLATE_WINDOW_BITS
    }
}

/// Appends `; name` or `; name=bits` to a response value.
fn push_param(value: &mut String, parameter: Parameter, bits: Option<u8>) {
    value.push_str("; ");
    value.push_str(parameter.name());
    if let Some(bits) = bits {
        value.push('=');
        value.push_str(&bits.to_string());
    }
}

/// An offer the server cannot even parse → the handshake is answered 400.
///
/// RFC 7692 §7.1 would have the server decline such an offer; the issue this implements
/// chose to reject the handshake instead, so that a broken client is told at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiationError {
    /// RFC 6455 §9.1: a `Sec-WebSocket-Extensions` value does not follow the
    /// extension-list grammar (in any extension, not only permessage-deflate: the header
    /// as a whole is malformed).
    Malformed,
    /// RFC 7692 §7.1: "the negotiation offer contains multiple extension parameters with
    /// the same name".
    DuplicateParameter(&'static str),
    /// §7.1.1.1, §7.1.1.2: the `*_no_context_takeover` parameters have no value.
    UnexpectedValue(&'static str),
    /// §7.1.2.1: `server_max_window_bits` needs a value.
    MissingValue(&'static str),
    /// §7.1.2: a window size is a decimal integer without leading zeroes, 8 to 15.
    InvalidValue(&'static str),
}

impl NegotiationError {
    /// The HTTP status answered for this error: 400 Bad Request.
    pub fn status(&self) -> u16 {
        400
    }
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NegotiationError::Malformed => f.write_str("malformed sec-websocket-extensions"),
            NegotiationError::DuplicateParameter(p) => write!(f, "duplicate parameter {p}"),
            NegotiationError::UnexpectedValue(p) => write!(f, "parameter {p} takes no value"),
            NegotiationError::MissingValue(p) => write!(f, "parameter {p} needs a value"),
            NegotiationError::InvalidValue(p) => write!(f, "invalid value for {p}"),
        }
    }
}

impl std::error::Error for NegotiationError {}

/// Picks the first acceptable permessage-deflate offer among all `Sec-WebSocket-Extensions`
/// header values (in order; a value may hold several comma-separated extensions and other
/// extensions are ignored).
///
/// Ok(None): nothing offered or every offer declined (connect without the extension —
/// never fail the handshake for an unacceptable but well-formed offer). An offer is
/// declined when it names a parameter RFC 7692 does not define for offers; every other
/// well-formed offer is acceptable. Every value is parsed to the end, so a malformed value
/// or offer is an error even after an acceptable offer. When `config.enabled` is false the
/// values are not looked at.
pub fn negotiate<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    config: &DeflateConfig,
) -> Result<Option<Params>, NegotiationError> {
    if !config.enabled {
        return Ok(None);
    }
    let mut chosen = None;
    for value in values {
        for extension in parse_extension_list(value)? {
            if !extension.name.eq_ignore_ascii_case(EXTENSION.as_bytes()) {
                continue;
            }
            let offer = Offer::parse(&extension.params)?;
            if chosen.is_none() {
                chosen = offer.map(|offer| offer.accept(config));
            }
        }
    }
    Ok(chosen)
}

/// The parameters RFC 7692 defines (§7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parameter {
    /// §7.1.1.1.
    ServerNoContextTakeover,
    /// §7.1.1.2.
    ClientNoContextTakeover,
    /// §7.1.2.1.
    ServerMaxWindowBits,
    /// §7.1.2.2.
    ClientMaxWindowBits,
}

impl Parameter {
    const ALL: [Parameter; 4] = [
        Parameter::ServerNoContextTakeover,
        Parameter::ClientNoContextTakeover,
        Parameter::ServerMaxWindowBits,
        Parameter::ClientMaxWindowBits,
    ];

    /// The parameter's name on the wire.
    fn name(self) -> &'static str {
        match self {
            Parameter::ServerNoContextTakeover => "server_no_context_takeover",
            Parameter::ClientNoContextTakeover => "client_no_context_takeover",
            Parameter::ServerMaxWindowBits => "server_max_window_bits",
            Parameter::ClientMaxWindowBits => "client_max_window_bits",
        }
    }

    /// The parameter called `name` (case-insensitive), if RFC 7692 defines it.
    fn named(name: &[u8]) -> Option<Parameter> {
        Parameter::ALL
            .into_iter()
            .find(|p| name.eq_ignore_ascii_case(p.name().as_bytes()))
    }
}

/// One permessage-deflate offer, its parameters checked (§7.1).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(15)` for the parameter without a value: the client merely supports it.
    client_max_window_bits: Option<u8>,
}

impl Offer {
    /// Checks the parameters of one offer. `Ok(None)`: a parameter this server does not
    /// know, so the offer is declined.
    fn parse(params: &[Param<'_>]) -> Result<Option<Offer>, NegotiationError> {
        let mut offer = Offer::default();
        let mut seen = [false; Parameter::ALL.len()];
        let mut unknown = false;
        for param in params {
            let Some(parameter) = Parameter::named(param.name) else {
                unknown = true;
                continue;
            };
            let name = parameter.name();
            if std::mem::replace(&mut seen[parameter as usize], true) {
                return Err(NegotiationError::DuplicateParameter(name));
            }
            let value = param.value.as_deref();
            match parameter {
                Parameter::ServerNoContextTakeover => {
                    no_value(value, name)?;
                    offer.server_no_context_takeover = true;
                }
                Parameter::ClientNoContextTakeover => {
                    no_value(value, name)?;
                    offer.client_no_context_takeover = true;
                }
                Parameter::ServerMaxWindowBits => {
                    let value = value.ok_or(NegotiationError::MissingValue(name))?;
                    offer.server_max_window_bits = Some(window_bits(value, name)?);
                }
                Parameter::ClientMaxWindowBits => {
                    let bits = value.map_or(Ok(MAX_WINDOW_BITS), |v| window_bits(v, name))?;
                    offer.client_max_window_bits = Some(bits);
                }
            }
        }
        Ok((!unknown).then_some(offer))
    }

    /// The response to this offer under `config` (§7.1.1, §7.1.2).
    fn accept(self, config: &DeflateConfig) -> Params {
        let server_limit = config
            .server_max_window_bits
            .clamp(MIN_DEFLATE_WINDOW_BITS, MAX_WINDOW_BITS);
        let client_limit = config
            .client_max_window_bits
            .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        Params {
            // §7.1.1.1: the server may add it unasked; it must honour it when asked.
            server_no_context_takeover: self.server_no_context_takeover
                || !config.server_context_takeover,
            // §7.1.1.2: echoing the client's hint is allowed.
            client_no_context_takeover: self.client_no_context_takeover
                || !config.client_context_takeover,
            // §7.1.2.1: "the same or smaller value as the offer", or any value unasked.
            server_max_window_bits: self
                .server_max_window_bits
                .unwrap_or(MAX_WINDOW_BITS)
                .min(server_limit),
            // §7.1.2.2: only when offered, then no more than the client's own hint.
            client_max_window_bits: self
                .client_max_window_bits
                .map_or(MAX_WINDOW_BITS, |offered| offered.min(client_limit)),
            server_max_window_bits_offered: self.server_max_window_bits.is_some(),
        }
    }
}

/// §7.1.1: the context takeover parameters have no value.
fn no_value(value: Option<&[u8]>, name: &'static str) -> Result<(), NegotiationError> {
    match value {
        None => Ok(()),
        Some(_) => Err(NegotiationError::UnexpectedValue(name)),
    }
}

/// §7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15, inclusive".
fn window_bits(value: &[u8], name: &'static str) -> Result<u8, NegotiationError> {
    match value {
        [d @ b'8'..=b'9'] => Ok(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Ok(10 + d - b'0'),
        _ => Err(NegotiationError::InvalidValue(name)),
    }
}

#[cfg(test)]
mod tests;
