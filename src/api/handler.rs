//! The [`Handler`] trait a program implements: the shape of Ratchet's components.

use crate::api::context::Context;
use crate::http::Request;
use crate::server::backlog::Backlog;
use crate::server::connection::ConnId;
use crate::server::error::Error;
use crate::server::message::Message;
use crate::server::reply::{Refusal, Reply, Response};
use crate::ws::close::CloseCode;

/// The callbacks of a WebSocket application (the shape of Ratchet's components).
///
/// Only [`on_message`](Handler::on_message) is required; the others default to logging.
/// Callbacks run on the loop thread: they must not block.
pub trait Handler {
    /// A client asks to upgrade. Return `Err` to refuse with an HTTP status. `req` lives
    /// only during the call: keep what you need (the server keeps no headers).
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
    ) -> Result<(), Refusal> {
        let _ = ctx;
        log::debug!("{id} open {}", req.path());
        Ok(())
    }

    /// A whole message arrived.
    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>);

    /// The connection ended; called exactly once for every connection that was opened.
    /// `code` is the peer's close code, the server's when it closed first, or 1006
    /// ([`CloseCode::ABNORMAL`]) when the connection was lost.
    ///
    /// [`Context::traffic`] still answers for `id` here, with final counts (the echo of
    /// the peer's Close frame included).
    fn on_close(&mut self, ctx: &mut Context<'_>, id: ConnId, code: CloseCode, reason: &str) {
        let _ = ctx;
        log::debug!("{id} closed {code} {reason}");
    }

    /// Something went wrong on the connection (a protocol error or a timeout);
    /// [`on_close`](Handler::on_close) follows.
    fn on_error(&mut self, ctx: &mut Context<'_>, id: ConnId, error: &Error) {
        let _ = ctx;
        log::debug!("{id} error: {error}");
    }

    /// The peer pinged (the pong is already queued).
    fn on_ping(&mut self, ctx: &mut Context<'_>, id: ConnId, payload: &[u8]) {
        let _ = (ctx, id, payload);
    }

    /// The peer answered the server's keepalive ping after `rtt`.
    fn on_pong(&mut self, ctx: &mut Context<'_>, id: ConnId, rtt: std::time::Duration) {
        let _ = ctx;
        log::trace!("{id} round trip {rtt:?}");
    }

    /// A streamed or held HTTP response ([`Reply::Stream`], [`Reply::Hold`]) ended
    /// without the program answering it: the client went away, a held request's
    /// deadline passed (its fallback was sent), or the server is shutting down.
    ///
    /// [`Context::traffic`] still answers for `id` here, with final counts (a fallback
    /// answer, the end of a stream included).
    fn on_http_end(&mut self, ctx: &mut Context<'_>, id: ConnId) {
        let _ = ctx;
        log::debug!("{id} http exchange ended");
    }

    /// `id`'s outbound queue passed half of the backlog limit ([`Backlog::High`]: its
    /// reader is slow; consider sending less), or emptied again afterwards
    /// ([`Backlog::Drained`]).
    fn on_backlog(&mut self, ctx: &mut Context<'_>, id: ConnId, backlog: Backlog) {
        let _ = ctx;
        log::debug!("{id} backlog {backlog:?}");
    }

    /// A plain HTTP request (no `Upgrade` header) with its whole body. The default
    /// answers 426.
    fn on_http(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
        body: &[u8],
    ) -> Reply {
        let _ = (ctx, id, req, body);
        Response::upgrade_required().into()
    }
}

impl<H: Handler + ?Sized> Handler for &mut H {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
    ) -> Result<(), Refusal> {
        (**self).on_open(ctx, id, req)
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
        (**self).on_message(ctx, id, msg)
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, id: ConnId, code: CloseCode, reason: &str) {
        (**self).on_close(ctx, id, code, reason)
    }
    fn on_error(&mut self, ctx: &mut Context<'_>, id: ConnId, error: &Error) {
        (**self).on_error(ctx, id, error)
    }
    fn on_http(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
        body: &[u8],
    ) -> Reply {
        (**self).on_http(ctx, id, req, body)
    }
    fn on_http_end(&mut self, ctx: &mut Context<'_>, id: ConnId) {
        (**self).on_http_end(ctx, id)
    }
    fn on_backlog(&mut self, ctx: &mut Context<'_>, id: ConnId, backlog: Backlog) {
        (**self).on_backlog(ctx, id, backlog)
    }
    fn on_ping(&mut self, ctx: &mut Context<'_>, id: ConnId, payload: &[u8]) {
        (**self).on_ping(ctx, id, payload)
    }
    fn on_pong(&mut self, ctx: &mut Context<'_>, id: ConnId, rtt: std::time::Duration) {
        (**self).on_pong(ctx, id, rtt)
    }
}
