//! [`Handle`]: how other threads push messages into a running server and stop it.

use crate::server::connection::ConnId;
use crate::server::message::OwnedMessage;
use crate::ws::close::CloseCode;
use mio::Waker;
use std::fmt;
use std::sync::mpsc::Sender;
use std::sync::Arc;

/// A command from another thread, carried out on the loop thread.
#[derive(Debug)]
pub(crate) enum Command {
    Send(ConnId, OwnedMessage),
    Broadcast(OwnedMessage),
    Close(ConnId, CloseCode, String),
    Stop,
}

/// The server has stopped; the command was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("server stopped")
    }
}

impl std::error::Error for Stopped {}

/// A `Clone + Send` handle to a server, for other threads: push messages, close
/// connections, stop the loop. Each call wakes the loop through a [`mio::Waker`].
#[derive(Clone)]
pub struct Handle {
    pub(crate) tx: Sender<Command>,
    pub(crate) waker: Arc<Waker>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Handle")
    }
}

impl Handle {
    fn submit(&self, cmd: Command) -> Result<(), Stopped> {
        self.tx.send(cmd).map_err(|_| Stopped)?;
        self.waker.wake().map_err(|_| Stopped)
    }

    /// Sends `msg` to connection `id` (ignored if it is gone by then).
    pub fn send(&self, id: ConnId, msg: impl Into<OwnedMessage>) -> Result<(), Stopped> {
        self.submit(Command::Send(id, msg.into()))
    }

    /// Sends `msg` to every open connection.
    pub fn broadcast(&self, msg: impl Into<OwnedMessage>) -> Result<(), Stopped> {
        self.submit(Command::Broadcast(msg.into()))
    }

    /// Closes connection `id` with `code` and `reason`.
    pub fn close(
        &self,
        id: ConnId,
        code: impl Into<CloseCode>,
        reason: impl Into<String>,
    ) -> Result<(), Stopped> {
        self.submit(Command::Close(id, code.into(), reason.into()))
    }

    /// Stops the server gracefully: no new connections, Close 1001 to every client, and
    /// `run` returns once they are closed or the shutdown timeout passed.
    pub fn stop(&self) -> Result<(), Stopped> {
        self.submit(Command::Stop)
    }
}
