//! What the loop does with the bytes that arrived on a connection: HTTP requests
//! (keep-alive, pipelined, with bodies) and the upgrade to WebSocket, then frames and the
//! events they make. Calls the service; never touches the poll.

use crate::http::{self, BodyLength, MAX_HEADERS};
use crate::server::codecs::Deflate;
use crate::server::connection::{Ending, Phase};
use crate::server::core::Core;
use crate::server::error::Error;
use crate::server::message::Message;
use crate::server::reply::Reply;
use crate::server::service::{guard, Service};
use crate::ws::close::CloseCode;
use crate::ws::decoder::{parse_close_payload, Event, Payload};
use crate::ws::deflate::InflateError;
use crate::ws::error::ProtocolError;
use crate::ws::frame::OpCode;
use crate::ws::handshake;

/// Feeds bytes that arrived on `key` to its phase: requests or frames.
pub fn feed<S: Service>(core: &mut Core, key: usize, input: &mut [u8], service: &mut S) {
    core.meter.bytes_in(key, input.len());
    let head = match &mut core.conns[key].phase {
        Phase::Reading(head) => head,
        Phase::Held(held) => return Core::hold_pipelined(held, input),
        _ => return feed_frames(core, key, input, service),
    };
    if head.is_empty() {
        // The common case: whole requests in one read, parsed where they lie.
        let used = feed_requests(core, key, input, service);
        if let Phase::Reading(head) = &mut core.conns[key].phase {
            head.extend_from_slice(&input[used..]);
        }
        return;
    }
    head.extend_from_slice(input);
    let mut buffered = std::mem::take(head);
    let used = feed_requests(core, key, &mut buffered, service);
    if let Phase::Reading(head) = &mut core.conns[key].phase {
        buffered.drain(..used);
        *head = buffered;
    }
}

/// Answers the complete requests at the start of `buf` in order, and hands what follows
/// an upgrade to the frame decoder. Returns the bytes used; the rest is an incomplete
/// request for the caller to keep.
fn feed_requests<S: Service>(
    core: &mut Core,
    key: usize,
    buf: &mut [u8],
    service: &mut S,
) -> usize {
    let mut pos = 0;
    while pos < buf.len() {
        let Some(used) = request(core, key, &buf[pos..], service) else {
            return pos;
        };
        pos += used;
        match core.conns[key].phase {
            Phase::Reading(_) => {} // keep-alive: the next pipelined request
            Phase::Open | Phase::Closing(_) => {
                feed_frames(core, key, &mut buf[pos..], service);
                return buf.len();
            }
            Phase::Held(ref mut held) => {
                Core::hold_pipelined(held, &buf[pos..]);
                return buf.len();
            }
            _ => return buf.len(), // draining or streaming: the rest is not read
        }
    }
    pos
}

/// Answers one request from the start of `buf`. `None`: it is incomplete. `Some(n)`: it
/// took `n` bytes.
fn request<S: Service>(core: &mut Core, key: usize, buf: &[u8], service: &mut S) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (req, head_len) = match http::parse(buf, &mut headers, core.settings.max_head) {
        Ok(None) => return None,
        Ok(Some(parsed)) => parsed,
        Err(e) => {
            log::debug!("{} bad request: {e}", core.id(key));
            core.metrics.counters.refused(e.status());
            core.http_error(key, e.status(), &[], &e.to_string());
            return Some(buf.len());
        }
    };
    if req.wants_upgrade() {
        return Some(upgrade(core, key, req, head_len, service));
    }
    let body_len = match http::body_length(&req, core.settings.max_message) {
        BodyLength::Fixed(n) => n,
        BodyLength::TooLarge => {
            core.http_error(key, 413, &[], "body too large");
            return Some(buf.len());
        }
        BodyLength::Unsupported(status) => {
            core.http_error(key, status, &[], "unsupported body framing");
            return Some(buf.len());
        }
    };
    let body = buf.get(head_len..head_len + body_len)?;
    let id = core.id(key);
    let reply = guard("on_http", id, || service.on_http(core, id, &req, body));
    let Some(reply) = reply else {
        core.http_error(key, 500, &[], "internal error");
        return Some(buf.len());
    };
    match reply {
        Reply::Response(response) => {
            let keep_alive = req.keep_alive() && response.status < 400;
            core.http_reply(key, &response, req.method() == "HEAD", keep_alive);
        }
        Reply::Stream {
            response,
            heartbeat,
        } => core.stream(key, &response, heartbeat),
        Reply::Hold { timeout, fallback } => core.hold(key, timeout, fallback, req.keep_alive()),
    }
    Some(head_len + body_len)
}

/// Checks an upgrade request, queues the 101 and asks the handler. Returns the bytes the
/// head took: what follows is frames.
fn upgrade<S: Service>(
    core: &mut Core,
    key: usize,
    req: http::Request<'_>,
    len: usize,
    service: &mut S,
) -> usize {
    let upgrade = match handshake::validate_upgrade(&req, &core.settings.protocols) {
        Ok(upgrade) => upgrade,
        Err(e) => {
            log::debug!("{} refused upgrade: {e}", core.id(key));
            core.metrics.counters.refused(e.status());
            core.http_error(key, e.status(), e.headers(), &e.to_string());
            return len;
        }
    };
    // RFC 6455 §10.2: the Origin header lets a server refuse pages it does not trust.
    let origins = &core.settings.origins;
    if !origins.is_empty()
        && !req
            .header("origin")
            .is_some_and(|o| origins.iter().any(|a| a == o))
    {
        log::debug!("{} refused origin {:?}", core.id(key), req.header("origin"));
        core.metrics.counters.refused(403);
        core.http_error(key, 403, &[], "origin not allowed");
        return len;
    }
    // RFC 7692: the first acceptable permessage-deflate offer, if any.
    let offers = req.headers_named("sec-websocket-extensions");
    let deflate = match crate::ws::deflate::negotiate(offers, &core.settings.deflate) {
        Ok(deflate) => deflate,
        Err(e) => {
            log::debug!("{} bad extension offer: {e}", core.id(key));
            core.metrics.counters.refused(e.status());
            core.http_error(key, e.status(), &[], &e.to_string());
            return len;
        }
    };
    let extensions = deflate.map(|params| params.response_value());
    let protocol = upgrade.protocol;
    let protocol_index = protocol.and_then(|p| core.settings.protocols.iter().position(|s| s == p));
    let conn = &mut core.conns[key];
    if let Some(params) = deflate {
        conn.deflate = Some(Box::new(Deflate::new(params)));
        conn.decoder.allow_compression();
    }
    conn.outbox.push_with(200, |out| {
        handshake::write_accept(&upgrade.accept, protocol, extensions.as_deref(), out)
    });
    core.opened(key, protocol_index);
    core.mark_dirty(key);
    let id = core.id(key);
    match guard("on_open", id, || service.on_open(core, id, &req)) {
        Some(Ok(())) => core.metrics.counters.handshakes_accepted += 1,
        Some(Err(refusal)) => {
            log::debug!("{id} refused by handler: {}", refusal.status);
            core.metrics.counters.refused(refusal.status);
            let headers: Vec<(&str, &str)> = refusal
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            core.http_error(key, refusal.status, &headers, &refusal.body);
        }
        None => {
            core.metrics.counters.refused(500);
            core.http_error(key, 500, &[], "internal error");
        }
    }
    len
}

/// Decodes frames from `input` and acts on each event, until the input is used up or the
/// connection stops decoding.
fn feed_frames<S: Service>(core: &mut Core, key: usize, input: &mut [u8], service: &mut S) {
    let limits = core.settings.limits();
    let mut pos = 0;
    while pos < input.len() {
        let conn = &mut core.conns[key];
        if !conn.is_announced() {
            return; // draining or dead: the rest is discarded
        }
        match conn.decoder.decode(&mut input[pos..], &limits) {
            Ok((used, event)) => {
                pos += used;
                if let Some(event) = event {
                    on_event(core, key, event, service);
                }
            }
            Err(e) => return fail(core, key, e, service),
        }
    }
}

/// Acts on one decoded event.
fn on_event<S: Service>(core: &mut Core, key: usize, event: Event<'_>, service: &mut S) {
    let open = core.conns[key].is_open();
    match event {
        Event::Text(text) if open => deliver(core, key, Message::Text(&text), service),
        Event::Binary(payload) if open => deliver(core, key, Message::Binary(&payload), service),
        Event::Ping(payload) if open => {
            core.conns[key].queue_urgent(OpCode::Pong, &payload);
            core.mark_dirty(key);
            let id = core.id(key);
            guard("on_ping", id, || service.on_ping(core, id, &payload));
        }
        Event::Pong(payload) if open => {
            if let Some(rtt) = core.pong(key, &payload, core.now()) {
                let id = core.id(key);
                guard("on_pong", id, || service.on_pong(core, id, rtt));
            }
        }
        Event::Compressed { text, data } if open => inflated(core, key, text, &data, service),
        Event::Close(payload) => on_close_frame(core, key, &payload),
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
fn inflated<S: Service>(core: &mut Core, key: usize, text: bool, data: &[u8], service: &mut S) {
    let limit = core.settings.max_message;
    let Some(deflate) = core.conns[key].deflate.as_deref_mut() else {
        return fail(core, key, ProtocolError::ReservedBits, service);
    };
    let bytes = match core.codecs.inflate(deflate, data, limit) {
        Ok(bytes) => bytes,
        Err(InflateError::TooBig) => return fail(core, key, ProtocolError::MessageTooBig, service),
        Err(InflateError::Corrupt) => {
            return fail(core, key, ProtocolError::BadCompressedData, service)
        }
    };
    if !text {
        return deliver(core, key, Message::Binary(&bytes), service);
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => deliver(core, key, Message::Text(text), service),
        Err(_) => fail(core, key, ProtocolError::InvalidUtf8, service),
    }
}

/// Hands a message to the handler; if the handler panics, closes the connection with
/// 1011 (internal error) and goes on serving the others.
fn deliver<S: Service>(core: &mut Core, key: usize, msg: Message<'_>, service: &mut S) {
    let counters = &mut core.metrics.counters;
    counters.messages_in += 1;
    counters.payload_bytes_in += msg.as_bytes().len() as u64;
    core.meter.message_in(key);
    let id = core.id(key);
    if guard("on_message", id, || service.on_message(core, id, msg)).is_some() {
        return;
    }
    let reason = "internal error";
    if core.conns[key].is_open() {
        core.conns[key].queue_close(CloseCode::INTERNAL_ERROR, reason);
    }
    core.finish(key, Ending::new(CloseCode::INTERNAL_ERROR, reason));
}

/// The peer's Close frame: echo it if the peer started the close (§5.5.1), then drain.
fn on_close_frame(core: &mut Core, key: usize, payload: &Payload<'_>) {
    let Ok(body) = parse_close_payload(payload) else {
        return; // the decoder only hands out valid close bodies
    };
    let conn = &mut core.conns[key];
    if conn.is_open() {
        conn.queue_close(body.code, "");
    }
    core.finish(key, Ending::new(body.code, body.reason));
}

/// Fails the connection (§7.1.7): Close with the error's code, then drain.
fn fail<S: Service>(core: &mut Core, key: usize, error: ProtocolError, service: &mut S) {
    let id = core.id(key);
    log::debug!("{id} failed: {error}");
    let conn = &mut core.conns[key];
    if conn.is_open() {
        conn.queue_close(error.close_code(), &error.to_string());
    }
    core.finish(key, Ending::new(error.close_code(), error.to_string()));
    guard("on_error", id, || {
        service.on_error(core, id, &Error::Protocol(error))
    });
}
