//! [`Server`]: the event loop with the push layer on it, driven by a [`Handler`].

use crate::api::config::Config;
use crate::api::context::Context;
use crate::api::data::Data;
use crate::api::handle::{Handle, Task};
use crate::api::handler::Handler;
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
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// A WebSocket and push server: a listener and a single-threaded event loop.
///
/// ```no_run
/// use pushloop::{Context, ConnId, Handler, Message, Server};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
///         ctx.send(id, msg);
///     }
/// }
///
/// Server::bind("127.0.0.1:9001")?.run(Echo)
/// # ; Ok::<(), std::io::Error>(())
/// ```
pub struct Server {
    event_loop: EventLoop,
    hub: Hub,
    data: Data,
    tasks: Receiver<Task>,
    handle: Handle,
}

impl Server {
    /// Binds to `addr` with the default [`Config`].
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Server> {
        Server::bind_with(addr, Config::default())
    }

    /// Binds to `addr` with `config`.
    pub fn bind_with(addr: impl ToSocketAddrs, config: Config) -> io::Result<Server> {
        let event_loop = EventLoop::bind(addr, config.server)?;
        let (tx, tasks) = mpsc::channel();
        let handle = Handle {
            tx,
            waker: event_loop.waker(),
        };
        Ok(Server {
            event_loop,
            hub: Hub::new(config.push),
            data: Data::default(),
            tasks,
            handle,
        })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.event_loop.local_addr()
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs `f` with a [`Context`] now, between turns of a loop the program drives
    /// itself with [`poll_once`](Server::poll_once): publish, send, join, as a callback
    /// would. What it queues leaves on the next turn.
    pub fn with_context<R>(&mut self, f: impl FnOnce(&mut Context<'_>) -> R) -> R {
        let mut ctx = Context {
            core: &mut self.event_loop.core,
            hub: &mut self.hub,
            data: &mut self.data,
        };
        f(&mut ctx)
    }

    /// Runs the loop until [`Handle::stop`] and the graceful shutdown complete.
    pub fn run(mut self, mut handler: impl Handler) -> io::Result<()> {
        while self.poll_once(&mut handler, None)? {}
        Ok(())
    }

    /// Runs one turn of the loop: waits up to `timeout` (`None`: until something happens)
    /// and handles what is ready. Returns `false` once the server has stopped.
    pub fn poll_once<H: Handler>(
        &mut self,
        handler: &mut H,
        timeout: Option<Duration>,
    ) -> io::Result<bool> {
        let mut app = App {
            handler,
            hub: &mut self.hub,
            data: &mut self.data,
            tasks: &self.tasks,
        };
        self.event_loop.poll_once(&mut app, timeout)
    }
}

/// The handler and the push layer, as the loop's [`Service`]: each callback gets a
/// [`Context`] over both, and the push layer forgets connections that ended.
struct App<'a, H> {
    handler: &'a mut H,
    hub: &'a mut Hub,
    data: &'a mut Data,
    tasks: &'a Receiver<Task>,
}

impl<H: Handler> App<'_, H> {
    fn context<'c>(&'c mut self, core: &'c mut Core) -> (&'c mut H, Context<'c>) {
        let (hub, data) = (&mut *self.hub, &mut *self.data);
        (&mut *self.handler, Context { core, hub, data })
    }

    /// Forgets what the push layer and the program attached to `id`.
    fn forget(&mut self, id: ConnId) {
        self.hub.forget(id);
        self.data.forget(id);
    }
}

impl<H: Handler> Service for App<'_, H> {
    fn on_open(&mut self, core: &mut Core, id: ConnId, req: &Request<'_>) -> Result<(), Refusal> {
        let (handler, mut ctx) = self.context(core);
        handler.on_open(&mut ctx, id, req)
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
    }
}
