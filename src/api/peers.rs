//! [`Peers`]: what a [`Context`](crate::Context) on one worker asks of the others (the
//! [`Handle`](crate::Handle) implements it), without the context knowing the handle.

use crate::server::connection::ConnId;
use crate::server::message::OwnedMessage;
use crate::ws::close::CloseCode;

/// The other workers, as a callback reaches them.
pub(crate) trait Peers {
    /// Sends `msg` to `id` on its worker; `false` if the server stopped.
    fn send(&self, id: ConnId, msg: OwnedMessage) -> bool;
    /// Closes `id` on its worker; `false` if the server stopped.
    fn close(&self, id: ConnId, code: CloseCode, reason: &str) -> bool;
    /// Broadcasts `msg` on every worker but `skip`, not to `except`.
    fn broadcast_others(&self, skip: usize, msg: OwnedMessage, except: Option<ConnId>);
    /// Stops every worker.
    fn stop_all(&self);
}
