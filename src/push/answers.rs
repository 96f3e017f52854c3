//! What a hub sends besides live messages: a replay of missed messages (WebSocket frames
//! or SSE events), the long-poll answer, the publish answer.

use crate::push::broker::Failure;
use crate::push::channels::{Replay, Stored};
use crate::push::format;
use crate::server::message::Kind;
use crate::server::reply::Response;
use crate::ws::frame::{encode_frame, OpCode};
use std::sync::Arc;

/// Appends a WebSocket text frame carrying `json`.
pub(crate) fn text_frame(json: &[u8], out: &mut Vec<u8>) {
    encode_frame(OpCode::Text, json, out);
}

/// The WebSocket opcode of a message of `kind`.
pub(crate) fn opcode(kind: Kind) -> OpCode {
    match kind {
        Kind::Text => OpCode::Text,
        Kind::Binary => OpCode::Binary,
    }
}

/// Appends the frames of `replay` for a WebSocket member of `channel`: a `gap` notice
/// first if history lost some (envelope clients only), then the messages.
pub(crate) fn replay_frames(
    channel: &str,
    since: u64,
    replay: &Replay,
    envelope: bool,
    out: &mut Vec<u8>,
) {
    let mut json = Vec::new();
    if replay.truncated && envelope {
        format::ws_gap(channel, since, replay.last_id, &mut json);
        text_frame(&json, out);
    }
    for m in &replay.messages {
        if envelope {
            json.clear();
            format::ws_message(channel, m.id, m.kind, &m.data, &mut json);
            text_frame(&json, out);
        } else {
            encode_frame(opcode(m.kind), &m.data, out);
        }
    }
}

/// Appends the events of `replay` for a Server-Sent Events member: a `gap` comment
/// first if history lost some, then the messages.
pub(crate) fn replay_events(since: u64, replay: &Replay, out: &mut Vec<u8>) {
    if replay.truncated {
        format::sse_gap(since, replay.last_id, out);
    }
    for m in &replay.messages {
        format::sse_event(m.id, m.kind, &m.data, out);
    }
}

/// The answer to `POST /publish`: `{"id":..,"delivered":..}` with `headers`.
pub(crate) fn publish_answer(id: u64, delivered: usize, headers: &[(String, String)]) -> Response {
    let mut json = Vec::new();
    format::publish_body(id, delivered, &mut json);
    let mut response = Response::json(200, json);
    response.headers.extend_from_slice(headers);
    response
}

/// The long-poll answer: `messages` as JSON, with `headers`.
pub(crate) fn poll_answer(
    messages: &[Arc<Stored>],
    truncated: bool,
    next: u64,
    headers: &[(String, String)],
) -> Response {
    let mut body = Vec::new();
    format::poll_body(messages, truncated, next, &mut body);
    let mut response = Response::json(200, body);
    response.headers.extend_from_slice(headers);
    response
}

/// The answer to `POST /publish` when the message got no id: `503` (not published) or
/// `504` (may have been published), `{"error":..}`, `Retry-After: 1` and `headers`.
pub(crate) fn failed_answer(failure: Failure, headers: &[(String, String)]) -> Response {
    retry_later(failure.status(), failure.message(), headers)
}

/// `status` with `{"error":why}`, `Retry-After: 1` and `headers`: the broker could not
/// do it now.
pub(crate) fn retry_later(status: u16, why: &str, headers: &[(String, String)]) -> Response {
    let mut body = Vec::new();
    body.extend_from_slice(b"{\"error\":");
    format::json_string(why, &mut body);
    body.push(b'}');
    let mut response = Response::json(status, body).header("Retry-After", "1");
    response.headers.extend_from_slice(headers);
    response
}
