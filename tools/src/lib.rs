//! What the tools in `src/bin` share. They speak the wire with `pushloop-wire`.

pub mod sockets;
pub mod tls;
