//! [`Handle`]: how other threads reach a running server: push messages, publish to
//! channels, join and leave, close connections, run any code on the loop, stop it.

use crate::api::config::Config;
use crate::api::context::Context;
use crate::api::peers::{Peers, Then};
use crate::push::access::{user_channel, ChannelUsers};
use crate::push::hub::{JoinError, Published};
use crate::push::in_process::owner;
use crate::push::stats::Source;
use crate::server::connection::ConnId;
use crate::server::message::OwnedMessage;
use crate::server::reply::Response;
use crate::ws::close::CloseCode;
use mio::Waker;
use std::fmt;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// Work run on every worker, counting something there.
pub(crate) type EachWorker = Arc<dyn Fn(&mut Context<'_>) -> usize + Send + Sync>;

/// Work another thread asked the loop to do.
pub(crate) type Task = Box<dyn FnOnce(&mut Context<'_>) + Send>;

/// The server has stopped; what was asked was not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("server stopped")
    }
}

impl std::error::Error for Stopped {}

/// The result of something a [`Handle`] asked the loop to do, once the loop has done it.
/// Wait for it, look whether it is there, or drop it: the work is done either way.
#[derive(Debug)]
pub struct Pending<T> {
    rx: Receiver<T>,
}

impl<T> Pending<T> {
    /// Blocks until the loop has done it; `Err(Stopped)` if the server stopped first.
    pub fn wait(self) -> Result<T, Stopped> {
        self.rx.recv().map_err(|_| Stopped)
    }

    /// Like [`wait`](Pending::wait), for at most `timeout`: `None` if it is not done yet.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<T, Stopped>> {
        match self.rx.recv_timeout(timeout) {
            Ok(value) => Some(Ok(value)),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(Err(Stopped)),
        }
    }

    /// The result if the loop has done it already, without blocking.
    pub fn try_get(&self) -> Option<Result<T, Stopped>> {
        match self.rx.try_recv() {
            Ok(value) => Some(Ok(value)),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Err(Stopped)),
        }
    }
}

/// A `Clone + Send` handle to a server, for other threads. Each call queues the work for
/// the loop thread and wakes it through a [`mio::Waker`]; work from one thread is done in
/// the order it was asked (per worker, with [several](crate::Config::workers): `send`,
/// `close`, `join` and `leave` go to the worker that owns the connection, `publish` to
/// the one that owns the channel, `broadcast` and `stop` to every worker). `send`, `broadcast`, `close` and `stop` only fail once the
/// server has stopped; `publish`, `join`, `leave` and `defer` return a [`Pending`] with
/// what happened, which the caller may wait for or drop: it never blocks on the loop
/// unless it waits.
///
/// ```no_run
/// use pushloop::{Context, ConnId, Handler, Message, Server};
///
/// struct Quiet;
/// impl Handler for Quiet {
///     fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Message<'_>) {}
/// }
///
/// let server = Server::bind("127.0.0.1:0")?;
/// let handle = server.handle();
/// std::thread::spawn(move || {
///     for i in 0.. {
///         let sent = handle.publish("ticks", format!("tick {i}"));
///         if sent.wait().is_err() {
///             break; // the server stopped
///         }
///         std::thread::sleep(std::time::Duration::from_secs(1));
///     }
/// });
/// server.run(Quiet)
/// # ; Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) links: Arc<[Link]>,
}

/// The way into one worker's loop: its task queue and its waker.
pub(crate) struct Link {
    pub(crate) tx: Sender<Task>,
    pub(crate) waker: Arc<Waker>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Handle")
    }
}

impl Handle {
    /// Queues `task` for `worker` and wakes it.
    pub(crate) fn submit_to(&self, worker: usize, task: Task) -> Result<(), Stopped> {
        let link = &self.links[worker % self.links.len()];
        link.tx.send(task).map_err(|_| Stopped)?;
        link.waker.wake().map_err(|_| Stopped)
    }

    /// How many workers the server runs ([`Config::workers`](crate::Config::workers)).
    pub fn workers(&self) -> usize {
        self.links.len()
    }

    /// Runs `f` on the loop thread with a [`Context`], as soon as the loop wakes (like
    /// uWebSockets' `Loop::defer`); with several workers, on the first. Its result comes
    /// back through the [`Pending`].
    pub fn defer<R, F>(&self, f: F) -> Pending<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Context<'_>) -> R + Send + 'static,
    {
        self.defer_on(0, f)
    }

    /// [`defer`](Handle::defer) on worker `worker` (counted from 0; see
    /// [`ConnId::worker`]).
    pub fn defer_on<R, F>(&self, worker: usize, f: F) -> Pending<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Context<'_>) -> R + Send + 'static,
    {
        let (done, rx): (SyncSender<R>, _) = mpsc::sync_channel(1);
        let _ = self.submit_to(
            worker,
            Box::new(move |ctx| {
                let _ = done.send(f(ctx));
            }),
        );
        Pending { rx }
    }

    /// Sends `msg` to connection `id` (ignored if it is gone by then). To learn whether
    /// it was open, send through [`defer_on`](Handle::defer_on) its worker and wait for
    /// the `bool` of [`Context::send`].
    pub fn send(&self, id: ConnId, msg: impl Into<OwnedMessage>) -> Result<(), Stopped> {
        let msg = msg.into();
        self.submit_to(
            id.worker(),
            Box::new(move |ctx| {
                ctx.send(id, &msg);
            }),
        )
    }

    /// Sends `msg` to every open connection, on every worker.
    pub fn broadcast(&self, msg: impl Into<OwnedMessage>) -> Result<(), Stopped> {
        self.broadcast_from(None, msg.into(), None)
    }

    /// Sends `msg` to the open connections of every worker but `skip`, except `except`.
    pub(crate) fn broadcast_from(
        &self,
        skip: Option<usize>,
        msg: OwnedMessage,
        except: Option<ConnId>,
    ) -> Result<(), Stopped> {
        let msg = Arc::new(msg);
        for worker in (0..self.links.len()).filter(|&w| Some(w) != skip) {
            let msg = Arc::clone(&msg);
            self.submit_to(
                worker,
                Box::new(move |ctx| {
                    ctx.broadcast_here(msg.as_message(), except);
                }),
            )?;
        }
        Ok(())
    }

    /// Publishes `msg` to `channel` ([`Context::publish`]): its id and how many got it.
    /// With several workers it runs on the channel's owner, so the id is known.
    pub fn publish(
        &self,
        channel: impl Into<String>,
        msg: impl Into<OwnedMessage>,
    ) -> Pending<Published> {
        let (channel, msg) = (channel.into(), msg.into());
        let worker = owner(&channel, self.links.len());
        self.defer_on(worker, move |ctx| {
            ctx.publish_counted(Source::Handle, &channel, msg.as_message())
        })
    }

    /// Makes the open WebSocket `id` a member of `channel` ([`Context::join`]), or says
    /// why not.
    pub fn join(&self, id: ConnId, channel: impl Into<String>) -> Pending<Result<(), JoinError>> {
        let channel = channel.into();
        self.defer_on(id.worker(), move |ctx| ctx.join(id, &channel))
    }

    /// Removes `id` from `channel` ([`Context::leave`]): `false` if it was not a member.
    pub fn leave(&self, id: ConnId, channel: impl Into<String>) -> Pending<bool> {
        let channel = channel.into();
        self.defer_on(id.worker(), move |ctx| ctx.leave(id, &channel))
    }

    /// Closes connection `id` with `code` and `reason`.
    pub fn close(
        &self,
        id: ConnId,
        code: impl Into<CloseCode>,
        reason: impl Into<String>,
    ) -> Result<(), Stopped> {
        let (code, reason) = (code.into(), reason.into());
        self.submit_to(
            id.worker(),
            Box::new(move |ctx| {
                ctx.close(id, code, &reason);
            }),
        )
    }

    /// Applies the settings of `config` that can change while the server runs, on every
    /// worker between two of its turns, without dropping a connection: the size limits
    /// (`max_message`, `max_frame`, `max_head`), `max_connections`, the timeouts,
    /// `origins`, keepalive, `max_backlog`, the backlog policy and the channel policies,
    /// the SSE heartbeat, [`count_traffic`](Config::count_traffic). They apply to what comes next: the next frame read, the next
    /// upgrade, the next message queued. The rest of `config` (workers, subprotocols,
    /// compression, history bounds, the clock...) is ignored: it needs a new server.
    pub fn reload(&self, config: &Config) -> Result<(), Stopped> {
        let config = Arc::new(config.clone());
        for worker in 0..self.links.len() {
            let config = Arc::clone(&config);
            self.submit_to(
                worker,
                Box::new(move |ctx| {
                    ctx.core.settings.apply_live(&config.server);
                    ctx.hub.apply_live(&config.push);
                }),
            )?;
        }
        Ok(())
    }

    /// Closes every connection of `user` on every worker, and with
    /// [`Config::redis`] on every node ([`Context::disconnect_user`]): how many were
    /// closed (with Redis away, only this process's are, and a warning is logged).
    pub fn disconnect_user(&self, user: impl Into<String>) -> Pending<usize> {
        let user = user.into();
        let (tx, rx) = mpsc::sync_channel(1);
        let then = Then::Call(Box::new(move |n| {
            let _ = tx.send(n);
        }));
        // The first worker asks the others (or every node).
        let _ = self.submit_to(
            0,
            Box::new(move |ctx| ctx.disconnect_user_everywhere(&user, then)),
        );
        Pending { rx }
    }

    /// Publishes `msg` to the personal channel `user:<user>` ([`Context::send_to_user`]):
    /// every connection of that user subscribed to it gets it, on any worker.
    pub fn send_to_user(&self, user: &str, msg: impl Into<OwnedMessage>) -> Pending<Published> {
        self.publish(user_channel(user), msg)
    }

    /// Runs `each` on every worker; once all ran, `done` gets the sum of their results
    /// (on the thread of the last; a stopped worker counts 0).
    pub(crate) fn sum_over_workers(&self, each: EachWorker, done: Box<dyn FnOnce(usize) + Send>) {
        struct Tally {
            left: usize,
            total: usize,
            done: Option<Box<dyn FnOnce(usize) + Send>>,
        }
        let tally = Arc::new(std::sync::Mutex::new(Tally {
            left: self.links.len(),
            total: 0,
            done: Some(done),
        }));
        let count = |tally: &std::sync::Mutex<Tally>, n: usize| {
            let finished = {
                let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                t.total += n;
                t.left -= 1;
                (t.left == 0).then(|| (t.done.take(), t.total))
            };
            if let Some((Some(done), total)) = finished {
                done(total);
            }
        };
        for worker in 0..self.links.len() {
            let (each, tally2) = (Arc::clone(&each), Arc::clone(&tally));
            let sent = self.submit_to(
                worker,
                Box::new(move |ctx| {
                    let n = each(ctx);
                    count(&tally2, n);
                }),
            );
            if sent.is_err() {
                count(&tally, 0);
            }
        }
    }

    /// Stops the server gracefully: no new connections, Close 1001 to every client of
    /// every worker, and `run` returns once they are closed or the shutdown timeout
    /// passed.
    pub fn stop(&self) -> Result<(), Stopped> {
        let mut result = Ok(());
        for worker in 0..self.links.len() {
            // A worker that has stopped already is no reason not to stop the others.
            if self
                .submit_to(worker, Box::new(|ctx| ctx.core.stop_requested = true))
                .is_err()
            {
                result = Err(Stopped);
            }
        }
        result
    }
}

impl Peers for Handle {
    fn send(&self, id: ConnId, msg: OwnedMessage) -> bool {
        Handle::send(self, id, msg).is_ok()
    }

    fn close(&self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        Handle::close(self, id, code, reason).is_ok()
    }

    fn broadcast_others(&self, skip: usize, msg: OwnedMessage, except: Option<ConnId>) {
        let _ = self.broadcast_from(Some(skip), msg, except);
    }

    fn stop_all(&self) {
        let _ = self.stop();
    }

    fn channel_users(
        &self,
        channel: &str,
        id: ConnId,
        answer: Box<dyn FnOnce(ChannelUsers) -> Response + Send>,
    ) {
        let total = Arc::new(std::sync::Mutex::new(ChannelUsers::default()));
        let (channel, sum) = (channel.to_owned(), Arc::clone(&total));
        let each: EachWorker = Arc::new(move |ctx| {
            let here = ctx.channel_users_here(&channel);
            sum.lock().unwrap_or_else(|e| e.into_inner()).merge(here);
            0
        });
        let handle = self.clone();
        let done: Box<dyn FnOnce(usize) + Send> = Box::new(move |_| {
            let users = std::mem::take(&mut *total.lock().unwrap_or_else(|e| e.into_inner()));
            let response = answer(users);
            let _ = handle.submit_to(
                id.worker(),
                Box::new(move |ctx| {
                    ctx.respond(id, &response);
                }),
            );
        });
        Handle::sum_over_workers(self, each, done)
    }

    fn disconnect_user(&self, user: &str, skip: Option<usize>, then: Then) {
        let done: Box<dyn FnOnce(usize) + Send> = match then {
            Then::Nothing => Box::new(|_| {}),
            Then::Call(call) => call,
            Then::Respond(id, answer) => {
                let handle = self.clone();
                Box::new(move |n| {
                    let response = answer(n);
                    let _ = handle.submit_to(
                        id.worker(),
                        Box::new(move |ctx| {
                            ctx.respond(id, &response);
                        }),
                    );
                })
            }
        };
        let user = user.to_owned();
        let each: EachWorker = Arc::new(move |ctx| {
            if Some(usize::from(ctx.core.settings.worker)) == skip {
                0
            } else {
                ctx.disconnect_user_here(&user)
            }
        });
        Handle::sum_over_workers(self, each, done)
    }
}
