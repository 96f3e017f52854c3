//! [`Server`]: one event loop with the push layer on it, driven by a [`Handler`]; or
//! several, one per worker thread, sharing their channels.

use crate::api::config::Config;
use crate::api::context::Context;
use crate::api::data::Data;
use crate::api::handle::{Handle, Link};
use crate::api::handler::Handler;
use crate::api::users::Users;
use crate::api::worker::Worker;
use crate::push::hub::Hub;
use crate::push::in_process::InProcess;
use crate::push::redis::cluster::Cluster;
use crate::push::redis::functions::Keep;
use crate::server::event_loop::EventLoop;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::Duration;

/// A WebSocket and push server: a listener and a single-threaded event loop, or with
/// [`Config::workers`], one of each per worker thread.
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
    workers: Vec<Worker>,
    local_addr: SocketAddr,
    handle: Handle,
}

impl Server {
    /// Binds to `addr` with the default [`Config`].
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Server> {
        Server::bind_with(addr, Config::default())
    }

    /// Binds to `addr` with `config`: one listener per worker, all on the same address.
    /// With [`Config::redis`], each worker also connects to Redis: an error of kind
    /// [`NotConnected`](io::ErrorKind::NotConnected) names the URL (password masked) and
    /// why it could not.
    pub fn bind_with(addr: impl ToSocketAddrs, config: Config) -> io::Result<Server> {
        let n = config.get_workers();
        let mut addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
        let mut loops = Vec::with_capacity(n);
        for worker in 0..n {
            let mut settings = config.server.clone();
            settings.worker = worker as u8;
            settings.reuse_port = n > 1;
            let event_loop = EventLoop::bind(addr, settings)?;
            // The others bind the port the first got (port 0 picks one).
            addr = event_loop.local_addr();
            loops.push(event_loop);
        }
        let wakers: Vec<_> = loops.iter().map(EventLoop::waker).collect();
        // With Redis, each worker is a node of the cluster: no broker between them.
        let mut brokers: Vec<Option<InProcess>> = if n > 1 && config.push.redis.is_none() {
            InProcess::workers(&wakers).into_iter().map(Some).collect()
        } else {
            (0..n).map(|_| None).collect()
        };
        let mut links = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        for (event_loop, broker) in loops.into_iter().zip(brokers.iter_mut()) {
            let (tx, tasks) = mpsc::channel();
            links.push(Link {
                tx,
                waker: event_loop.waker(),
            });
            let mut hub = Hub::new(config.push.clone());
            if let Some(url) = &config.push.redis {
                let keep = Keep {
                    messages: config.push.history,
                    bytes: config.push.history_bytes,
                    ttl_secs: config.push.history_ttl.as_secs(),
                };
                let worker = event_loop.core.settings.worker;
                let cluster = Cluster::connect(url, keep, worker, event_loop.waker())
                    .map_err(|e| io::Error::new(io::ErrorKind::NotConnected, e))?;
                hub = hub.with_broker(Box::new(cluster)).history_elsewhere();
            } else if let Some(broker) = broker.take() {
                hub = hub.with_broker(Box::new(broker));
            }
            workers.push(Worker {
                event_loop,
                hub,
                data: Data::default(),
                users: Users::default(),
                auth: config.auth.clone(),
                tasks,
                next_expiry_check: 0,
            });
        }
        Ok(Server {
            workers,
            local_addr: addr,
            handle: Handle {
                links: links.into(),
            },
        })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many workers serve ([`Config::workers`]).
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs `f` with a [`Context`] now, between turns of a loop the program drives
    /// itself with [`poll_once`](Server::poll_once): publish, send, join, as a callback
    /// would. What it queues leaves on the next turn. (With several workers: on the
    /// first.)
    pub fn with_context<R>(&mut self, f: impl FnOnce(&mut Context<'_>) -> R) -> R {
        let peers = (self.workers.len() > 1).then(|| self.handle.clone());
        self.workers[0].with_context(peers.as_ref(), f)
    }

    /// Runs the loop until [`Handle::stop`] and the graceful shutdown complete. For one
    /// worker (the default); with several, use [`run_workers`](Server::run_workers).
    pub fn run(self, handler: impl Handler) -> io::Result<()> {
        if self.workers.len() > 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "several workers need one handler each: use Server::run_workers",
            ));
        }
        let worker = self.workers.into_iter().next().expect("one worker");
        worker.run(handler, None)
    }

    /// Runs every worker, each with its own handler from `factory`, until
    /// [`Handle::stop`] and every worker's graceful shutdown complete. With one worker
    /// it runs on this thread, as [`run`](Server::run) does; with several, each on a
    /// thread of its own. The first error (or panic outside the handler's callbacks,
    /// which are guarded) of any worker is returned once all have stopped.
    pub fn run_workers<H, F>(self, factory: F) -> io::Result<()>
    where
        H: Handler,
        F: Fn() -> H + Send + Sync,
    {
        if self.workers.len() == 1 {
            return self.run(factory());
        }
        let handle = self.handle;
        let factory = &factory;
        std::thread::scope(|scope| {
            let threads: Vec<_> = self
                .workers
                .into_iter()
                .enumerate()
                .map(|(i, worker)| {
                    let handle = handle.clone();
                    std::thread::Builder::new()
                        .name(format!("pushloop-worker-{i}"))
                        .spawn_scoped(scope, move || {
                            let result = worker.run(factory(), Some(&handle));
                            if result.is_err() {
                                // One worker failing stops the others.
                                let _ = handle.stop();
                            }
                            result
                        })
                })
                .collect::<io::Result<_>>()?;
            let mut first = Ok(());
            for thread in threads {
                let result = thread
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a worker thread panicked")));
                if first.is_ok() {
                    first = result;
                }
            }
            first
        })
    }

    /// Runs one turn of the loop: waits up to `timeout` (`None`: until something happens)
    /// and handles what is ready. Returns `false` once the server has stopped. (For a
    /// program that drives one worker itself; with several, the first only.)
    pub fn poll_once<H: Handler>(
        &mut self,
        handler: &mut H,
        timeout: Option<Duration>,
    ) -> io::Result<bool> {
        let peers = (self.workers.len() > 1).then(|| self.handle.clone());
        self.workers[0].poll_once(handler, peers.as_ref(), timeout)
    }
}
