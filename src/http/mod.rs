//! HTTP/1.1, sans-IO: request heads over httparse, body framing, response heads. Knows
//! nothing of WebSockets or sockets.

pub mod request;
pub mod response;

pub use request::{body_length, parse, BodyLength, Request, RequestError, MAX_HEADERS};
pub use response::{write_error, write_error_with, write_head, write_response};
