//! What the loop does with the bytes that arrived on a connection: HTTP requests
//! (keep-alive, pipelined, with bodies) and the upgrade to WebSocket, then frames and the
//! events they make. Calls the handler; never touches the poll.

use crate::close;
use crate::compress::Deflate;
use crate::connection::{Ending, Phase};
use crate::deflate::InflateError;
use crate::error::{Error, ProtocolError};
use crate::frame::OpCode;
use crate::handler::{guard, Context, Handler, Message, Reply};
use crate::handshake::{self, MAX_HEADERS};
use crate::http::{self, BodyLength};
use crate::pool::Pool;
use crate::protocol::{Event, Payload};

/// Feeds bytes that arrived on `key` to its phase: requests or frames.
pub fn feed<H: Handler>(pool: &mut Pool, key: usize, input: &mut [u8], handler: &mut H) {
    let head = match &mut pool.conns[key].phase {
        Phase::Handshaking(head) => head,
        Phase::Polling(poll) => return hold_pipelined(&mut poll.pipelined, input),
        _ => return feed_frames(pool, key, input, handler),
    };
    if head.is_empty() {
        // The common case: whole requests in one read, parsed where they lie.
        let used = feed_requests(pool, key, input, handler);
        if let Phase::Handshaking(head) = &mut pool.conns[key].phase {
            head.extend_from_slice(&input[used..]);
        }
        return;
    }
    head.extend_from_slice(input);
    let mut buffered = std::mem::take(head);
    let used = feed_requests(pool, key, &mut buffered, handler);
    if let Phase::Handshaking(head) = &mut pool.conns[key].phase {
        buffered.drain(..used);
        *head = buffered;
    }
}

/// Answers the complete requests at the start of `buf` in order, and hands what follows
/// an upgrade to the frame decoder. Returns the bytes used; the rest is an incomplete
/// request for the caller to keep.
fn feed_requests<H: Handler>(
    pool: &mut Pool,
    key: usize,
    buf: &mut [u8],
    handler: &mut H,
) -> usize {
    let mut pos = 0;
    while pos < buf.len() {
        let Some(used) = request(pool, key, &buf[pos..], handler) else {
            return pos;
        };
        pos += used;
        match pool.conns[key].phase {
            Phase::Handshaking(_) => {} // keep-alive: the next pipelined request
            Phase::Open | Phase::Closing(_) => {
                feed_frames(pool, key, &mut buf[pos..], handler);
                return buf.len();
            }
            Phase::Polling(ref mut poll) => {
                hold_pipelined(&mut poll.pipelined, &buf[pos..]);
                return buf.len();
            }
            _ => return buf.len(), // draining or streaming: the rest is not read
        }
    }
    pos
}

/// Answers one request from the start of `buf`. `None`: it is incomplete. `Some(n)`: it
/// took `n` bytes.
fn request<H: Handler>(pool: &mut Pool, key: usize, buf: &[u8], handler: &mut H) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (req, head_len) = match handshake::parse(buf, &mut headers, pool.config.max_head) {
        Ok(None) => return None,
        Ok(Some(parsed)) => parsed,
        Err(e) => {
            log::debug!("{} bad request: {e}", pool.id(key));
            pool.http_error(key, e.status(), &e.to_string());
            return Some(buf.len());
        }
    };
    if req.wants_upgrade() {
        return Some(upgrade(pool, key, req, head_len, handler));
    }
    let body_len = match http::body_length(&req, pool.config.max_message) {
        BodyLength::Fixed(n) => n,
        BodyLength::TooLarge => {
            pool.http_error(key, 413, "body too large");
            return Some(buf.len());
        }
        BodyLength::Unsupported(status) => {
            pool.http_error(key, status, "unsupported body framing");
            return Some(buf.len());
        }
    };
    let body = buf.get(head_len..head_len + body_len)?;
    let id = pool.id(key);
    let reply = guard("on_http", id, || {
        handler.on_http(&mut Context { pool }, id, &req, body)
    });
    let Some(reply) = reply else {
        pool.http_error(key, 500, "internal error");
        return Some(buf.len());
    };
    match reply {
        Reply::Response(response) => {
            let keep_alive = req.keep_alive() && response.status < 400;
            pool.http_reply(key, &response, req.method() == "HEAD", keep_alive);
        }
        Reply::EventStream {
            channel,
            since,
            headers,
        } => {
            pool.start_stream(key, &channel, since, &headers);
        }
        Reply::LongPoll {
            channel,
            since,
            timeout,
            headers,
        } => {
            pool.start_poll(key, &channel, since, timeout, &headers, req.keep_alive());
        }
    }
    Some(head_len + body_len)
}

/// Keeps bytes of requests pipelined behind a held long poll, up to one request head;
/// beyond that the client is not waiting for answers in order, and the rest is dropped.
fn hold_pipelined(pipelined: &mut Vec<u8>, bytes: &[u8]) {
    let room = (16usize << 10).saturating_sub(pipelined.len());
    pipelined.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// Checks an upgrade request, queues the 101 and asks the handler. Returns the bytes the
/// head took: what follows is frames.
fn upgrade<H: Handler>(
    pool: &mut Pool,
    key: usize,
    mut req: handshake::Request<'_>,
    len: usize,
    handler: &mut H,
) -> usize {
    let accept = match req.validate_upgrade(&pool.config.protocols) {
        Ok(accept) => accept,
        Err(e) => {
            log::debug!("{} refused upgrade: {e}", pool.id(key));
            pool.http_error(key, e.status(), &e.to_string());
            return len;
        }
    };
    // RFC 6455 §10.2: the Origin header lets a server refuse pages it does not trust.
    let origins = &pool.config.origins;
    if !origins.is_empty()
        && !req
            .header("origin")
            .is_some_and(|o| origins.iter().any(|a| a == o))
    {
        log::debug!("{} refused origin {:?}", pool.id(key), req.header("origin"));
        pool.http_error(key, 403, "origin not allowed");
        return len;
    }
    // RFC 7692: the first acceptable permessage-deflate offer, if any.
    let offers = req.headers_named("sec-websocket-extensions");
    let deflate = match crate::deflate::negotiate(offers, &pool.config.deflate) {
        Ok(deflate) => deflate,
        Err(e) => {
            log::debug!("{} bad extension offer: {e}", pool.id(key));
            pool.http_error(key, e.status(), &e.to_string());
            return len;
        }
    };
    let extensions = deflate.map(|params| params.response_value());
    let protocol = req.protocol();
    let conn = &mut pool.conns[key];
    conn.envelope = protocol == Some(crate::format::ENVELOPE_PROTOCOL);
    if let Some(params) = deflate {
        conn.deflate = Some(Box::new(Deflate::new(params)));
        conn.decoder.allow_compression();
    }
    conn.outbox.push_with(200, |out| {
        handshake::write_accept(&accept, protocol, extensions.as_deref(), out)
    });
    pool.opened(key);
    pool.mark_dirty(key);
    let id = pool.id(key);
    match guard("on_open", id, || {
        handler.on_open(&mut Context { pool }, id, &req)
    }) {
        Some(Ok(())) => {}
        Some(Err(refusal)) => {
            log::debug!("{id} refused by handler: {}", refusal.status);
            pool.http_error(key, refusal.status, &refusal.body);
        }
        None => pool.http_error(key, 500, "internal error"),
    }
    len
}

/// Decodes frames from `input` and acts on each event, until the input is used up or the
/// connection stops decoding.
fn feed_frames<H: Handler>(pool: &mut Pool, key: usize, input: &mut [u8], handler: &mut H) {
    let limits = pool.config.limits();
    let mut pos = 0;
    while pos < input.len() {
        let conn = &mut pool.conns[key];
        if !conn.is_announced() {
            return; // draining or dead: the rest is discarded
        }
        match conn.decoder.decode(&mut input[pos..], &limits) {
            Ok((used, event)) => {
                pos += used;
                if let Some(event) = event {
                    on_event(pool, key, event, handler);
                }
            }
            Err(e) => return fail(pool, key, e, handler),
        }
    }
}

/// Acts on one decoded event.
fn on_event<H: Handler>(pool: &mut Pool, key: usize, event: Event<'_>, handler: &mut H) {
    let open = pool.conns[key].is_open();
    match event {
        Event::Text(text) if open => deliver(pool, key, Message::Text(&text), handler),
        Event::Binary(payload) if open => deliver(pool, key, Message::Binary(&payload), handler),
        Event::Ping(payload) if open => {
            pool.conns[key].queue_urgent(OpCode::Pong, &payload);
            pool.mark_dirty(key);
            let id = pool.id(key);
            guard("on_ping", id, || {
                handler.on_ping(&mut Context { pool }, id, &payload)
            });
        }
        Event::Pong(payload) if open => {
            if let Some(rtt) = pool.pong(key, &payload, pool.now()) {
                let id = pool.id(key);
                guard("on_pong", id, || {
                    handler.on_pong(&mut Context { pool }, id, rtt)
                });
            }
        }
        Event::Compressed { text, data } if open => inflated(pool, key, text, &data, handler),
        Event::Close(payload) => on_close_frame(pool, key, &payload),
        // Data and pings after our Close are discarded (§5.5.1); pongs need no answer.
        Event::Text(_)
        | Event::Binary(_)
        | Event::Ping(_)
        | Event::Pong(_)
        | Event::Compressed { .. } => {}
    }
}

/// Inflates a compressed message (within the message size limit: 1009 beyond it, 1007
/// for data that is not DEFLATE), checks a text message's UTF-8, and delivers it.
fn inflated<H: Handler>(pool: &mut Pool, key: usize, text: bool, data: &[u8], handler: &mut H) {
    let limit = pool.config.max_message;
    let Some(deflate) = pool.conns[key].deflate.as_deref_mut() else {
        return fail(pool, key, ProtocolError::ReservedBits, handler);
    };
    let bytes = match pool.codecs.inflate(deflate, data, limit) {
        Ok(bytes) => bytes,
        Err(InflateError::TooBig) => return fail(pool, key, ProtocolError::MessageTooBig, handler),
        Err(InflateError::Corrupt) => {
            return fail(pool, key, ProtocolError::BadCompressedData, handler)
        }
    };
    if !text {
        return deliver(pool, key, Message::Binary(&bytes), handler);
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => deliver(pool, key, Message::Text(text), handler),
        Err(_) => fail(pool, key, ProtocolError::InvalidUtf8, handler),
    }
}

/// Hands a message to the handler; if the handler panics, closes the connection with
/// 1011 (internal error) and goes on serving the others.
fn deliver<H: Handler>(pool: &mut Pool, key: usize, msg: Message<'_>, handler: &mut H) {
    let id = pool.id(key);
    if guard("on_message", id, || {
        handler.on_message(&mut Context { pool }, id, msg)
    })
    .is_some()
    {
        return;
    }
    let reason = "internal error";
    if pool.conns[key].is_open() {
        pool.conns[key].queue_close(close::INTERNAL_ERROR, reason);
    }
    pool.finish(
        key,
        Ending {
            code: close::INTERNAL_ERROR,
            reason: reason.to_owned(),
        },
    );
}

/// The peer's Close frame: echo it if the peer started the close (§5.5.1), then drain.
fn on_close_frame(pool: &mut Pool, key: usize, payload: &Payload<'_>) {
    let Ok(body) = close::parse_payload(payload) else {
        return; // the decoder only hands out valid close bodies
    };
    let conn = &mut pool.conns[key];
    if conn.is_open() {
        conn.queue_close(body.code, "");
    }
    pool.finish(
        key,
        Ending {
            code: body.code,
            reason: body.reason.to_owned(),
        },
    );
}

/// Fails the connection (§7.1.7): Close with the error's code, then drain.
fn fail<H: Handler>(pool: &mut Pool, key: usize, error: ProtocolError, handler: &mut H) {
    let id = pool.id(key);
    log::debug!("{id} failed: {error}");
    let conn = &mut pool.conns[key];
    if conn.is_open() {
        conn.queue_close(error.close_code(), &error.to_string());
    }
    pool.finish(
        key,
        Ending {
            code: error.close_code(),
            reason: error.to_string(),
        },
    );
    guard("on_error", id, || {
        handler.on_error(&mut Context { pool }, id, &Error::Protocol(error))
    });
}
