//! One worker: an event loop with the push layer on it, its per-connection data and the
//! tasks other threads send it; and [`App`], which adapts a [`Handler`] to the loop's
//! callbacks.

use crate::api::auth::Auth;
use crate::api::context::Context;
use crate::api::data::Data;
use crate::api::handle::{Handle, Task};
use crate::api::handler::Handler;
use crate::api::peers::Peers;
use crate::api::users::Users;
use crate::http::Request;
use crate::push::hub::Hub;
use crate::server::backlog::Backlog;
use crate::server::connection::ConnId;
use crate::server::core::Core;
use crate::server::error::Error;
use crate::server::event_loop::EventLoop;
use crate::server::message::Message;
use crate::server::reply::{Refusal, Reply};
use crate::server::service::Service;
use crate::ws::close::CloseCode;
use std::io;
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// An event loop, its hub, its data and its task queue.
pub(crate) struct Worker {
    pub(crate) event_loop: EventLoop,
    pub(crate) hub: Hub,
    pub(crate) data: Data,
    pub(crate) users: Users,
    pub(crate) auth: Option<Auth>,
    pub(crate) tasks: Receiver<Task>,
    /// When (Unix seconds) to look for expired identities next.
    pub(crate) next_expiry_check: u64,
}

impl Worker {
    /// A [`Context`] over this worker, between turns.
    pub(crate) fn with_context<R>(
        &mut self,
        peers: Option<&Handle>,
        f: impl FnOnce(&mut Context<'_>) -> R,
    ) -> R {
        let mut ctx = Context {
            core: &mut self.event_loop.core,
            hub: &mut self.hub,
            data: &mut self.data,
            users: &mut self.users,
            auth: self.auth.as_ref(),
            peers: peers.map(|p| p as &dyn Peers),
        };
        f(&mut ctx)
    }

    /// One turn of the loop with `handler`.
    pub(crate) fn poll_once<H: Handler>(
        &mut self,
        handler: &mut H,
        peers: Option<&Handle>,
        timeout: Option<Duration>,
    ) -> io::Result<bool> {
        let mut app = App {
            handler,
            hub: &mut self.hub,
            data: &mut self.data,
            users: &mut self.users,
            auth: self.auth.as_ref(),
            tasks: &self.tasks,
            next_expiry_check: &mut self.next_expiry_check,
            peers,
        };
        self.event_loop.poll_once(&mut app, timeout)
    }

    /// Runs the loop with `handler` until it has stopped.
    pub(crate) fn run<H: Handler>(
        mut self,
        mut handler: H,
        peers: Option<&Handle>,
    ) -> io::Result<()> {
        loop {
            // Expiring identities are looked at once a second, even when all is quiet.
            let timeout = self.users.has_expiring().then_some(Duration::from_secs(1));
            if !self.poll_once(&mut handler, peers, timeout)? {
                break;
            }
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch (the unit of a token's `exp`).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The handler and the push layer, as the loop's [`Service`]: each callback gets a
/// [`Context`] over both, and the push layer forgets connections that ended.
struct App<'a, H> {
    handler: &'a mut H,
    hub: &'a mut Hub,
    data: &'a mut Data,
    users: &'a mut Users,
    auth: Option<&'a Auth>,
    tasks: &'a Receiver<Task>,
    next_expiry_check: &'a mut u64,
    peers: Option<&'a Handle>,
}

impl<H: Handler> App<'_, H> {
    fn context<'c>(&'c mut self, core: &'c mut Core) -> (&'c mut H, Context<'c>) {
        let (hub, data, users) = (&mut *self.hub, &mut *self.data, &mut *self.users);
        let peers = self.peers.map(|p| p as &dyn Peers);
        (
            &mut *self.handler,
            Context {
                core,
                hub,
                data,
                users,
                auth: self.auth,
                peers,
            },
        )
    }

    /// Acts on what the broker brought, then runs the commands other nodes asked of
    /// this one, answering them.
    fn receive(&mut self, core: &mut Core) {
        self.hub.receive(core);
        if self.hub.commands.is_empty() {
            return;
        }
        for (command, asker) in self.hub.take_commands() {
            let (_, mut ctx) = self.context(core);
            let outcome = ctx.run_command(&command);
            if let Some(asker) = asker {
                self.hub.broker.answer(asker, outcome);
            }
        }
    }

    /// Forgets what the push layer and the program attached to `id`.
    fn forget(&mut self, id: ConnId) {
        self.hub.forget(id);
        self.data.forget(id);
        self.users.forget(id);
    }
}

impl<H: Handler> Service for App<'_, H> {
    fn on_open(&mut self, core: &mut Core, id: ConnId, req: &Request<'_>) -> Result<(), Refusal> {
        if let Some(auth) = self.auth {
            if let Some(identity) = auth.check(req)? {
                self.users.set(id, identity);
            }
        }
        let (handler, mut ctx) = self.context(core);
        let opened = handler.on_open(&mut ctx, id, req);
        if opened.is_err() {
            self.users.forget(id);
        }
        opened
    }

    fn on_message(&mut self, core: &mut Core, id: ConnId, msg: Message<'_>) {
        let (handler, mut ctx) = self.context(core);
        handler.on_message(&mut ctx, id, msg)
    }

    fn on_close(&mut self, core: &mut Core, id: ConnId, code: CloseCode, reason: &str) {
        let (handler, mut ctx) = self.context(core);
        handler.on_close(&mut ctx, id, code, reason);
        // After the handler, which may still ask about `id`'s channels and data.
        self.forget(id);
    }

    fn on_error(&mut self, core: &mut Core, id: ConnId, error: &Error) {
        let (handler, mut ctx) = self.context(core);
        handler.on_error(&mut ctx, id, error)
    }

    fn on_ping(&mut self, core: &mut Core, id: ConnId, payload: &[u8]) {
        let (handler, mut ctx) = self.context(core);
        handler.on_ping(&mut ctx, id, payload)
    }

    fn on_pong(&mut self, core: &mut Core, id: ConnId, rtt: Duration) {
        let (handler, mut ctx) = self.context(core);
        handler.on_pong(&mut ctx, id, rtt)
    }

    fn on_backlog(&mut self, core: &mut Core, id: ConnId, backlog: Backlog) {
        let (handler, mut ctx) = self.context(core);
        handler.on_backlog(&mut ctx, id, backlog)
    }

    fn on_http(&mut self, core: &mut Core, id: ConnId, req: &Request<'_>, body: &[u8]) -> Reply {
        let (handler, mut ctx) = self.context(core);
        handler.on_http(&mut ctx, id, req, body)
    }

    fn on_exchange_end(&mut self, core: &mut Core, id: ConnId) {
        let (handler, mut ctx) = self.context(core);
        handler.on_http_end(&mut ctx, id);
        self.forget(id);
    }

    fn on_removed(&mut self, _core: &mut Core, removed: &[ConnId]) {
        for &id in removed {
            self.forget(id);
        }
    }

    fn on_wake(&mut self, core: &mut Core) {
        while let Ok(task) = self.tasks.try_recv() {
            let (_, mut ctx) = self.context(core);
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(&mut ctx))).is_err() {
                log::error!("a task deferred from another thread panicked");
            }
        }
        self.receive(core);
    }

    fn on_turn_start(&mut self, core: &mut Core) {
        self.receive(core);
        if self.users.has_expiring() {
            let now = unix_now();
            if now >= *self.next_expiry_check {
                *self.next_expiry_check = now + 1;
                let (_, mut ctx) = self.context(core);
                ctx.expire_identities(now);
            }
        }
    }

    fn on_turn_end(&mut self, _core: &mut Core) -> bool {
        self.hub.end_turn()
    }
}
