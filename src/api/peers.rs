//! [`Peers`]: what a [`Context`](crate::Context) on one worker asks of the others (the
//! [`Handle`](crate::Handle) implements it), without the context knowing the handle.

use crate::push::access::ChannelUsers;
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
    /// Counts the users of `channel` on every worker, then answers the request held on
    /// `id` with `answer` of the total.
    fn channel_users(
        &self,
        channel: &str,
        id: ConnId,
        answer: Box<dyn FnOnce(ChannelUsers) -> crate::server::reply::Response + Send>,
    );
    /// Closes `user`'s connections on every worker but `skip`; once all did, does
    /// `then` with how many were closed.
    fn disconnect_user(&self, user: &str, skip: Option<usize>, then: Then);
}

/// What to do with a count from every worker (or node).
pub(crate) enum Then {
    /// Nothing.
    Nothing,
    /// Answer the request held on this connection with the response made of the sum.
    Respond(
        ConnId,
        Box<dyn FnOnce(usize) -> crate::server::reply::Response + Send>,
    ),
    /// Hand the sum to this (a [`Handle`](crate::Handle)'s caller waits for it).
    Call(Box<dyn FnOnce(usize) + Send>),
}

impl Then {
    /// Does it with `total`, on the loop of the connection it answers (`core`'s).
    pub(crate) fn run(self, core: &mut crate::server::core::Core, total: usize) {
        match self {
            Then::Nothing => {}
            Then::Respond(id, answer) => {
                core.respond(id, &answer(total));
            }
            Then::Call(call) => call(total),
        }
    }
}
