//! The binary's application: channels over WebSocket, the HTTP publish API, presence,
//! Server-Sent Events and long polling, all on the one loop.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the browser chat demo (`page.html`, embedded) |
//! | `GET /ws`, `/ws/<channel>` (upgrade) | WebSocket member of the channel (`lobby` for `/ws`); `?since=<id>` resumes |
//! | `POST /publish/<channel>` | publish the body; answers `{"id":..,"delivered":..}` |
//! | `GET /channels`, `/channels/<channel>` | subscriber counts per transport, last id |
//! | `GET /sse/<channel>` | `text/event-stream`; `Last-Event-ID` or `?since=` resumes |
//! | `GET /poll/<channel>?since=&timeout=` | long poll: `{"messages":[..],"next":..,"truncated":..}` |

use crate::static_files::{Lookup, StaticFiles};
use pushloop::channel::valid_name;
use pushloop::format::{self, Presence};
use pushloop::{ConnId, Context, Handler, Message, Refusal, Reply, Request, Response};
use std::collections::HashMap;
use std::time::Duration;

/// The browser demo served at `/`: one file, no build step, no CDN.
const PAGE: &str = include_str!("page.html");

/// The channel of a bare `/ws`.
pub const DEFAULT_CHANNEL: &str = "lobby";

/// The longest a long poll may be held, whatever the client asks.
const MAX_POLL: Duration = Duration::from_secs(60);

/// The poll timeout when the client names none.
const DEFAULT_POLL: Duration = Duration::from_secs(25);

/// What the server does with a WebSocket client's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Publish it to every other member of its channel.
    Chat,
    /// Send it back to its sender.
    Echo,
}

/// Settings of the push application.
#[derive(Debug)]
pub struct Settings {
    /// Chat or echo.
    pub mode: Mode,
    /// `Authorization: Bearer` token required by the publish API.
    pub publish_token: Option<String>,
    /// Whether the listener is on a loopback address (publishing without a token is
    /// allowed only then).
    pub loopback: bool,
    /// `Access-Control-Allow-Origin` for the HTTP endpoints.
    pub cors_origin: Option<String>,
    /// Files served instead of the built-in page (`--static DIR`).
    pub static_files: Option<StaticFiles>,
    /// Publish join/leave notices into channels (`--presence-events`).
    pub presence_events: bool,
}

/// The binary's handler.
pub struct App {
    settings: Settings,
    /// The channel of each Server-Sent Events stream.
    stream_of: HashMap<ConnId, Box<str>>,
}

/// `405` for a route that only answers GET (and HEAD where noted).
fn use_get() -> Reply {
    Response::text(405, "use GET").header("Allow", "GET").into()
}

/// The value of `name` in a query string (no percent-decoding: only numbers are read).
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        pair.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

/// Parses an optional numeric parameter: `Ok(None)` when absent, `Err` when malformed.
fn number(value: Option<&str>) -> Result<Option<u64>, ()> {
    value
        .map(|v| v.trim().parse::<u64>().map_err(|_| ()))
        .transpose()
}

/// The channel a path names below `prefix` (`/ws` → lobby), or why not.
fn channel_below<'a>(path: &'a str, prefix: &str) -> Option<Result<&'a str, ()>> {
    let rest = path.strip_prefix(prefix)?;
    match rest {
        "" if prefix == "/ws" => Some(Ok(DEFAULT_CHANNEL)),
        "" => None,
        _ => {
            let name = rest.strip_prefix('/')?;
            Some(if valid_name(name) { Ok(name) } else { Err(()) })
        }
    }
}

impl App {
    /// An application with `settings`.
    pub fn new(settings: Settings) -> Self {
        App {
            settings,
            stream_of: HashMap::new(),
        }
    }

    /// With `--presence-events`, publishes `{"type":"presence","event":..}` into
    /// `channel`; `pending` counts a subscriber that is about to be added.
    fn announce(
        &self,
        ctx: &mut Context<'_>,
        event: &str,
        channel: &str,
        transport: &str,
        pending: usize,
    ) {
        if !self.settings.presence_events {
            return;
        }
        let counts = ctx.channels().counts(channel).unwrap_or_default();
        let total = counts.websocket + counts.sse + counts.long_poll + pending;
        let mut json = Vec::new();
        format::presence_event(event, channel, transport, total, &mut json);
        if let Ok(text) = std::str::from_utf8(&json) {
            ctx.publish(channel, text);
        }
    }

    /// Adds the CORS header, if configured.
    fn cors(&self, response: Response) -> Response {
        match &self.settings.cors_origin {
            Some(origin) => response.header("Access-Control-Allow-Origin", origin),
            None => response,
        }
    }

    /// Extra headers for streamed answers.
    fn cors_headers(&self) -> Vec<(String, String)> {
        self.settings
            .cors_origin
            .iter()
            .map(|o| ("Access-Control-Allow-Origin".to_owned(), o.clone()))
            .collect()
    }

    /// Whether a publish request may publish.
    fn authorize(&self, req: &Request<'_>) -> Result<(), Response> {
        match &self.settings.publish_token {
            Some(token) => {
                let given = req
                    .header("authorization")
                    .and_then(|v| v.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim());
                if given == Some(token.as_str()) {
                    Ok(())
                } else {
                    Err(Response::text(401, "missing or wrong bearer token")
                        .header("WWW-Authenticate", "Bearer"))
                }
            }
            None if self.settings.loopback => Ok(()),
            None => Err(Response::text(
                403,
                "publishing needs --publish-token on a non-loopback listener",
            )),
        }
    }

    /// `POST /publish/<channel>`.
    fn publish(
        &self,
        ctx: &mut Context<'_>,
        req: &Request<'_>,
        channel: &str,
        body: &[u8],
    ) -> Response {
        if req.method() != "POST" {
            return Response::text(405, "use POST").header("Allow", "POST");
        }
        if let Err(refused) = self.authorize(req) {
            return refused;
        }
        let content_type = req
            .header("content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        let textual = content_type.starts_with("text/") || content_type.contains("json");
        let msg = match std::str::from_utf8(body) {
            Ok(text) if textual => Message::Text(text),
            _ => Message::Binary(body),
        };
        let published = ctx.publish(channel, msg);
        let mut json = Vec::new();
        format::publish_body(published.id, published.delivered, &mut json);
        Response::json(200, json)
    }

    /// `GET /channels` and `GET /channels/<channel>`.
    fn presence(&self, ctx: &Context<'_>, channel: Option<&str>) -> Response {
        let list = ctx.channels().list();
        let presences: Vec<Presence<'_>> = list
            .iter()
            .filter(|(name, _, _)| channel.is_none_or(|c| c == name))
            .map(|(name, counts, last_id)| Presence {
                channel: name,
                websocket: counts.websocket,
                sse: counts.sse,
                long_poll: counts.long_poll,
                last_id: *last_id,
            })
            .collect();
        let mut json = Vec::new();
        match channel {
            None => format::channels_body(&presences, &mut json),
            Some(name) => {
                let empty = Presence {
                    channel: name,
                    websocket: 0,
                    sse: 0,
                    long_poll: 0,
                    last_id: 0,
                };
                format::presence_body(presences.first().unwrap_or(&empty), &mut json);
            }
        }
        Response::json(200, json)
    }

    /// Routes a plain HTTP request.
    fn route(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
        body: &[u8],
    ) -> Reply {
        let path = req.path();
        let get_only = |reply: Reply| -> Reply {
            if req.method() == "GET" || req.method() == "HEAD" {
                reply
            } else {
                use_get()
            }
        };
        if req.method() == "OPTIONS" && self.settings.cors_origin.is_some() {
            return Response::new(204, "text/plain", Vec::new())
                .header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
                .header(
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, Last-Event-ID",
                )
                .into();
        }
        if self.settings.static_files.is_none() && (path == "/" || path == "/index.html") {
            return get_only(Response::new(200, "text/html; charset=utf-8", PAGE).into());
        }
        if path == "/channels" {
            return get_only(self.presence(ctx, None).into());
        }
        let since = number(query_param(req.query(), "since"));
        for prefix in ["/ws", "/publish", "/channels", "/sse", "/poll"] {
            let Some(channel) = channel_below(path, prefix) else {
                continue;
            };
            let Ok(channel) = channel else {
                return Response::text(400, "channel names are 1-128 of A-Z a-z 0-9 _ . : -")
                    .into();
            };
            let Ok(since) = since else {
                return Response::text(400, "since must be a message id").into();
            };
            return match prefix {
                "/ws" => Response::text(426, "websocket upgrade required").into(),
                "/publish" => self.publish(ctx, req, channel, body).into(),
                "/channels" => get_only(self.presence(ctx, Some(channel)).into()),
                "/sse" => {
                    let Ok(last_event) = number(req.header("last-event-id")) else {
                        return Response::text(400, "Last-Event-ID must be a message id").into();
                    };
                    if req.method() != "GET" {
                        return use_get();
                    }
                    self.announce(ctx, "join", channel, "sse", 1);
                    self.stream_of.insert(id, channel.into());
                    Reply::EventStream {
                        channel: channel.to_owned(),
                        since: last_event.or(since),
                        headers: self.cors_headers(),
                    }
                }
                _ => {
                    let Ok(timeout) = number(query_param(req.query(), "timeout")) else {
                        return Response::text(400, "timeout must be whole seconds").into();
                    };
                    let timeout = timeout
                        .map_or(DEFAULT_POLL, Duration::from_secs)
                        .min(MAX_POLL);
                    if req.method() != "GET" {
                        return use_get();
                    }
                    Reply::LongPoll {
                        channel: channel.to_owned(),
                        since,
                        timeout,
                        headers: self.cors_headers(),
                    }
                }
            };
        }
        if let Some(files) = &self.settings.static_files {
            match files.get(path) {
                Lookup::Found(kind, bytes) => {
                    return get_only(Response::new(200, kind, bytes).into())
                }
                Lookup::Bad => return Response::text(400, "bad path").into(),
                Lookup::NotFound => {}
            }
        }
        Response::text(404, "not found").into()
    }
}

impl Handler for App {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
    ) -> Result<(), Refusal> {
        let channel = match channel_below(req.path(), "/ws") {
            None => return Err(Refusal::new(404, "not found")),
            Some(Err(())) => {
                return Err(Refusal::new(
                    400,
                    "channel names are 1-128 of A-Z a-z 0-9 _ . : -",
                ))
            }
            Some(Ok(channel)) => channel,
        };
        let Ok(since) = number(query_param(req.query(), "since")) else {
            return Err(Refusal::new(400, "since must be a message id"));
        };
        match since {
            Some(since) => ctx.join_since(id, channel, since),
            None => ctx.join(id, channel),
        };
        self.announce(ctx, "join", channel, "websocket", 0);
        log::debug!("{id} joined {channel}");
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
        match self.settings.mode {
            Mode::Echo => {
                ctx.send(id, msg);
            }
            Mode::Chat => {
                // The library keeps each connection's channel: no per-connection map here.
                if let Some(channel) = ctx.channels().first_channel_of(id.as_u64()) {
                    ctx.publish_except(&channel, msg, id);
                }
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, id: ConnId, code: u16, _reason: &str) {
        if let Some(channel) = ctx.channels().first_channel_of(id.as_u64()) {
            ctx.leave(id, &channel);
            self.announce(ctx, "leave", &channel, "websocket", 0);
        }
        log::debug!("{id} closed {code}");
    }

    fn on_event_stream_end(&mut self, ctx: &mut Context<'_>, id: ConnId) {
        if let Some(channel) = self.stream_of.remove(&id) {
            ctx.leave(id, &channel);
            self.announce(ctx, "leave", &channel, "sse", 0);
        }
    }

    fn on_http(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
        body: &[u8],
    ) -> Reply {
        match self.route(ctx, id, req, body) {
            Reply::Response(response) => self.cors(response).into(),
            other => other,
        }
    }
}
