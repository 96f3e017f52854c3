//! What the loop calls when something happens on a connection: the layer above (the
//! embedding API) implements this, and the loop knows nothing else about it.

use crate::http::Request;
use crate::server::backlog::Backlog;
use crate::server::connection::ConnId;
use crate::server::core::Core;
use crate::server::error::Error;
use crate::server::message::Message;
use crate::server::reply::{Refusal, Reply};
use crate::ws::close::CloseCode;
use std::time::Duration;

/// The loop's callbacks, each given the [`Core`] to act on.
pub(crate) trait Service {
    /// A client asks to upgrade; the 101 is queued. `Err` takes it back.
    fn on_open(&mut self, core: &mut Core, id: ConnId, req: &Request<'_>) -> Result<(), Refusal>;
    /// A whole message arrived.
    fn on_message(&mut self, core: &mut Core, id: ConnId, msg: Message<'_>);
    /// An opened connection ended (exactly once for each).
    fn on_close(&mut self, core: &mut Core, id: ConnId, code: CloseCode, reason: &str);
    /// Something went wrong on an open connection; `on_close` follows.
    fn on_error(&mut self, core: &mut Core, id: ConnId, error: &Error);
    /// The peer pinged.
    fn on_ping(&mut self, core: &mut Core, id: ConnId, payload: &[u8]);
    /// The peer answered the keepalive ping after `rtt`.
    fn on_pong(&mut self, core: &mut Core, id: ConnId, rtt: Duration);
    /// A backlog passed half its limit, or drained.
    fn on_backlog(&mut self, core: &mut Core, id: ConnId, backlog: Backlog);
    /// A plain HTTP request with its whole body.
    fn on_http(&mut self, core: &mut Core, id: ConnId, req: &Request<'_>, body: &[u8]) -> Reply;
    /// A streamed or held exchange ended without an answer from the program.
    fn on_exchange_end(&mut self, core: &mut Core, id: ConnId);
    /// Connections removed at the end of the turn (whatever they were).
    fn on_removed(&mut self, core: &mut Core, removed: &[ConnId]);
    /// Another thread woke the loop (through the waker) to have something done on it.
    fn on_wake(&mut self, core: &mut Core);
    /// A turn begins, before its events: take what other workers sent meanwhile.
    fn on_turn_start(&mut self, _core: &mut Core) {}
    /// Before the turn's bytes are written, and once more at its end: hand what the turn
    /// produced for other workers over. `true` if some of it could not go yet (their
    /// queues were full): the loop then turns again shortly.
    fn on_turn_end(&mut self, _core: &mut Core) -> bool {
        false
    }
}

/// Runs a callback so that a panic in it cannot stop the loop: the panic is caught and
/// logged, and the caller fails only the connection concerned. `None` if it panicked.
pub(crate) fn guard<R>(callback: &str, id: ConnId, f: impl FnOnce() -> R) -> Option<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => Some(result),
        Err(_) => {
            log::error!("{id}: the handler panicked in {callback}");
            None
        }
    }
}
