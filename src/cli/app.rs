//! The binary's application: channels over WebSocket, the HTTP publish API, presence,
//! Server-Sent Events and long polling, all on the one loop.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the browser chat demo (`page.html`, embedded) |
//! | `GET /pushloop.js` | the browser client (`clients/js/pushloop.js`, embedded; `ETag`, cached a week) |
//! | `GET /v1` (upgrade, `pushloop.v1`) | a WebSocket in no channel: `subscribe` commands add them (docs/protocol.md) |
//! | `GET /ws`, `/ws/<channel>` (upgrade) | WebSocket member of the channel (`lobby` for `/ws`); `?since=<id>` resumes |
//! | `POST /publish/<channel>` | publish the body; answers `{"id":..,"delivered":..}` |
//! | `GET /channels`, `/channels/<channel>` | subscriber counts per transport, last id; `?workers`: per worker too |
//! | `GET /sse/<channel>` | `text/event-stream`; `Last-Event-ID` or `?since=` resumes |
//! | `GET /sse?channel=a&channel=b` | one `text/event-stream` of several channels (envelopes, ids like `a=5,b=7`); `Last-Event-ID` or `?since=` resumes each |
//! | `GET /poll/<channel>?since=&timeout=` | long poll: `{"messages":[..],"next":..,"truncated":..}` |
//! | `GET /metrics` | Prometheus text format (the publish API's protection) |
//! | `GET /healthz`, `GET /readyz` | alive (200), ready (200, or 503 while draining or the broker is down) |

use crate::cli::access::AccessLog;
use crate::cli::client_js;
use crate::cli::limits::{Limits, Seat};
use crate::cli::metrics::{self, Scraper};
use crate::cli::protocol::{self, Command};
use crate::cli::static_files::{Lookup, StaticFiles};
use pushloop::codec::format::{self, Presence, PresenceChange};
use pushloop::{
    may_publish, may_subscribe, user_channel, valid_channel_name, CloseCode, ConnId, Context,
    Denied, Handler, Message, Refusal, Reply, Request, Response, Transport, ENVELOPE_PROTOCOL,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The browser demo served at `/`: one file, no build step, no CDN.
const PAGE: &str = include_str!("page.html");

/// The channel of a bare `/ws`.
pub const DEFAULT_CHANNEL: &str = "lobby";

/// The WebSocket path of a `pushloop.v1` session that starts in no channel.
pub const SESSION_PATH: &str = "/v1";

/// The longest a long poll may be held, whatever the client asks.
const MAX_POLL: Duration = Duration::from_secs(60);

/// The most channels one `GET /sse?channel=..` stream may name (its `Last-Event-ID`
/// names them all, and must fit in a request head).
pub const MAX_STREAM_CHANNELS: usize = 32;

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
#[derive(Debug, Clone)]
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
    pub static_files: Option<Arc<StaticFiles>>,
    /// Publish join/leave notices into channels (`--presence-events`).
    pub presence_events: bool,
    /// Connections per address and per user, handshake rate, trusted proxies.
    pub limits: Arc<Limits>,
    /// Answers `GET /metrics` of several workers (`None`: served on `--metrics-listen`
    /// instead, or with one worker, answered on the loop at once).
    pub scraper: Option<Scraper>,
    /// Whether `GET /metrics` is served on the main listener (not with `--metrics-listen`).
    pub metrics_here: bool,
    /// Whether the server is draining before it stops (shared with the signal thread).
    pub health: Arc<Health>,
    /// Log a line when each connection ends (`--access-log`).
    pub access_log: bool,
}

/// The application's settings as they stand, shared by the workers' handlers and
/// replaced whole on SIGHUP: each handler notices the new generation (one relaxed load
/// per callback) and takes the new settings.
#[derive(Debug)]
pub struct Shared {
    current: Mutex<Arc<Settings>>,
    generation: AtomicU64,
}

impl Shared {
    /// Shares `settings`.
    pub fn new(settings: Settings) -> Arc<Shared> {
        Arc::new(Shared {
            current: Mutex::new(Arc::new(settings)),
            generation: AtomicU64::new(0),
        })
    }

    /// The settings now.
    pub fn get(&self) -> Arc<Settings> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the settings with `f`; the handlers take them at their next callback.
    pub fn update(&self, f: impl FnOnce(&mut Settings)) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Settings::clone(&current);
        f(&mut next);
        *current = Arc::new(next);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// What `/readyz` reports besides the broker: set by the signal thread.
#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
    /// `--drain-timeout` in milliseconds (SIGHUP may change it).
    drain_ms: AtomicU64,
}

impl Health {
    /// Health with a drain of `drain` on SIGTERM.
    pub fn new(drain: Duration) -> Health {
        let health = Health::default();
        health.set_drain(drain);
        health
    }

    /// Sets how long the drain lasts.
    pub fn set_drain(&self, drain: Duration) {
        let ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX);
        self.drain_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the drain lasts.
    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms.load(Ordering::Relaxed))
    }

    /// The server stops taking new clients: `/readyz` and new WebSocket, SSE and poll
    /// requests get 503 (a load balancer stops sending traffic) until it stops.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether it is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// `503` for a new client while the server drains.
fn draining() -> Response {
    Response::text(503, "server shutting down").header("Retry-After", "5")
}

/// The binary's handler (one per worker, sharing the settings).
pub struct App {
    shared: Arc<Shared>,
    /// The settings of generation `seen`.
    settings: Arc<Settings>,
    seen: u64,
    /// The channels of each Server-Sent Events stream (for their leave notices).
    channels_of_stream: HashMap<ConnId, Vec<Box<str>>>,
    /// The connections followed for `--access-log`.
    access: AccessLog,
    /// The seats of the WebSockets and streams counted by the limits.
    seats: HashMap<ConnId, Seat>,
}

/// `405` for a route that only answers GET (and HEAD where noted).
fn use_get() -> Reply {
    Response::text(405, "use GET").header("Allow", "GET").into()
}

/// The refusal of a client that may not use a channel (401 or 403, JSON body).
fn refusal(denied: Denied) -> Refusal {
    match denied {
        Denied::NeedsToken => pushloop::unauthorized(&denied.to_string()),
        _ => Refusal::json(denied.status(), &denied.to_string()),
    }
}

/// Checks the token of a plain request (SSE, long poll) and whether it may subscribe
/// to `channel`; without an authenticator every channel is public.
fn admit(
    ctx: &mut Context<'_>,
    id: ConnId,
    req: &Request<'_>,
    channel: &str,
) -> Result<(), Refusal> {
    if !ctx.auth_enabled() {
        return Ok(());
    }
    let identity = ctx.authenticate(id, req)?;
    may_subscribe(identity, channel).map_err(refusal)
}

/// Whether `id` may subscribe to `channel` (always, without an authenticator).
fn may_join(ctx: &Context<'_>, id: ConnId, channel: &str) -> Result<(), Denied> {
    if !ctx.auth_enabled() {
        return Ok(());
    }
    may_subscribe(ctx.identity(id), channel)
}

/// Whether `id` may publish to `channel` (always, without an authenticator).
fn may_send(ctx: &Context<'_>, id: ConnId, channel: &str) -> Result<(), Denied> {
    if !ctx.auth_enabled() {
        return Ok(());
    }
    may_publish(ctx.identity(id), channel)
}

/// A `refresh` command: a fresh token for `id`, for the same user.
fn refresh_token(
    ctx: &mut Context<'_>,
    id: ConnId,
    token: &str,
    req: Option<u64>,
) -> Result<(), (u16, String)> {
    let Some(verified) = ctx.verify_token(token) else {
        return Err((400, "no token authentication on this server".to_owned()));
    };
    let fresh = verified.map_err(|e| (401, e.to_string()))?;
    if fresh.user.as_deref() != ctx.user_of(id) {
        return Err((403, "the token is for another user".to_owned()));
    }
    let expires = fresh.expires;
    ctx.set_identity(id, fresh);
    ctx.send_unwrapped(id, protocol::refreshed(expires, req));
    Ok(())
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
            Some(if valid_channel_name(name) {
                Ok(name)
            } else {
                Err(())
            })
        }
    }
}

impl App {
    /// An application with the `shared` settings.
    pub fn new(shared: Arc<Shared>) -> Self {
        App {
            settings: shared.get(),
            seen: shared.generation.load(Ordering::Acquire),
            shared,
            channels_of_stream: HashMap::new(),
            access: AccessLog::default(),
            seats: HashMap::new(),
        }
    }

    /// Counts a new connection of `id` against the limits: the handshake rate, then
    /// (`long`: a WebSocket or a stream) a seat for its address and user.
    fn limit(
        &mut self,
        ctx: &Context<'_>,
        id: ConnId,
        req: &Request<'_>,
        long: bool,
    ) -> Result<(), Refusal> {
        let limits = &self.settings.limits;
        let Some(peer) = ctx.peer_addr(id).filter(|_| limits.active()) else {
            return Ok(());
        };
        let ip = limits.client_ip(peer.ip(), req);
        limits.knock(ip, std::time::Instant::now())?;
        if long {
            let seat = limits.sit(ip, ctx.user_of(id))?;
            self.seats.insert(id, seat);
        }
        Ok(())
    }

    /// Gives back `id`'s seat, if it has one.
    fn unseat(&mut self, id: ConnId) {
        if let Some(seat) = self.seats.remove(&id) {
            self.settings.limits.stand(&seat);
        }
    }

    /// Takes the settings a reload made, if any.
    fn refresh(&mut self) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation != self.seen {
            self.settings = self.shared.get();
            self.seen = generation;
        }
    }

    /// With `--presence-events`, publishes `{"type":"presence","event":..}` into
    /// `channel` for `id` (named by its user, if its token gave one); `pending` counts a
    /// subscriber that is about to be added.
    fn announce(
        &self,
        ctx: &mut Context<'_>,
        id: ConnId,
        change: PresenceChange,
        channel: &str,
        transport: Transport,
        pending: usize,
    ) {
        if !self.settings.presence_events {
            return;
        }
        let counts = ctx.channel(channel).map(|c| c.counts()).unwrap_or_default();
        let total = counts.websocket + counts.sse + counts.long_poll + pending;
        let mut json = Vec::new();
        let user = ctx.user_of(id);
        format::presence_event(change, channel, transport, total, user, &mut json);
        if let Ok(text) = std::str::from_utf8(&json) {
            ctx.publish(channel, text);
        }
    }

    /// A `pushloop.v1` command from `id` (docs/protocol.md).
    fn command(&mut self, ctx: &mut Context<'_>, id: ConnId, command: Command) {
        let req = command.req();
        let done = match command {
            Command::Subscribe { channel, since, .. } => {
                self.subscribe(ctx, id, &channel, since, req)
            }
            Command::Unsubscribe { channel, .. } => {
                if ctx.leave(id, &channel) {
                    self.announce(
                        ctx,
                        id,
                        PresenceChange::Leave,
                        &channel,
                        Transport::WebSocket,
                        0,
                    );
                    ctx.send_unwrapped(id, protocol::unsubscribed(&channel, req));
                    Ok(())
                } else {
                    Err((404, "not subscribed to this channel".to_owned()))
                }
            }
            Command::Publish { channel, data, .. } => {
                if valid_channel_name(&channel) {
                    may_send(ctx, id, &channel)
                        .map(|()| {
                            // The ack (with `req`) follows.
                            ctx.publish_from(&channel, data.as_str(), id, req);
                        })
                        .map_err(|denied| (denied.status(), denied.to_string()))
                } else {
                    Err((400, "invalid channel name".to_owned()))
                }
            }
            Command::Refresh { token, .. } => refresh_token(ctx, id, &token, req),
        };
        if let Err((code, message)) = done {
            ctx.send_unwrapped(id, protocol::error(code, &message, req));
        }
    }

    /// A `subscribe` command: the answer, then the replay and live messages.
    fn subscribe(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        channel: &str,
        since: Option<u64>,
        req: Option<u64>,
    ) -> Result<(), (u16, String)> {
        if !valid_channel_name(channel) {
            return Err((400, "invalid channel name".to_owned()));
        }
        may_join(ctx, id, channel).map_err(|d| (d.status(), d.to_string()))?;
        if ctx.has_joined(id, channel) {
            return Err((409, "already subscribed".to_owned()));
        }
        // The answer goes ahead of the replay.
        let last_id = ctx.channel(channel).map_or(0, |c| c.last_id());
        ctx.send_unwrapped(id, protocol::subscribed(channel, last_id, req));
        // Without `since`, the subscription starts where the answer said: with several
        // workers or nodes the known last id may lag the channel's, and what came after
        // it is then replayed rather than skipped (the client resumes from `last_id`).
        let joined = ctx.join_since(id, channel, since.unwrap_or(last_id));
        joined.map_err(|e| (409, e.to_string()))?;
        self.announce(
            ctx,
            id,
            PresenceChange::Join,
            channel,
            Transport::WebSocket,
            0,
        );
        Ok(())
    }

    /// Adds the CORS header, if configured (and not there yet).
    fn cors(&self, response: Response) -> Response {
        let has = |r: &Response| {
            r.headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("Access-Control-Allow-Origin"))
        };
        match &self.settings.cors_origin {
            Some(origin) if !has(&response) => {
                response.header("Access-Control-Allow-Origin", origin)
            }
            _ => response,
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

    /// A request to the publish API's protected endpoints: `405` unless its method is
    /// `method`, then the token check ([`authorize`](App::authorize)).
    fn admit_api(&self, req: &Request<'_>, method: &str) -> Result<(), Reply> {
        if req.method() != method {
            return Err(Response::text(405, &format!("use {method}"))
                .header("Allow", method)
                .into());
        }
        self.authorize(req).map_err(Reply::from)
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

    /// `POST /publish/<channel>`: answered once the message has its id (with several
    /// workers, from the channel's owner).
    fn publish(
        &self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
        channel: &str,
        body: &[u8],
    ) -> Reply {
        if let Err(refused) = self.admit_api(req, "POST") {
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
        ctx.publish_request(id, channel, msg, &self.cors_headers())
    }

    /// `GET /metrics`: at once with one worker, else held while the scraper asks every
    /// worker.
    fn metrics(&self, ctx: &mut Context<'_>, id: ConnId, req: &Request<'_>) -> Reply {
        if !self.settings.metrics_here {
            return Response::text(404, "not found").into();
        }
        if let Err(refused) = self.authorize(req) {
            return refused.into();
        }
        match &self.settings.scraper {
            Some(scraper) => {
                scraper.scrape(id);
                Reply::Hold {
                    timeout: Duration::from_secs(10),
                    fallback: Response::text(503, "metrics not gathered in time"),
                }
            }
            None => {
                Response::new(200, metrics::CONTENT_TYPE, metrics::render(&[ctx.stats()])).into()
            }
        }
    }

    /// `GET /readyz`: 200 while serving, 503 while draining or the broker is down.
    fn ready(&self, ctx: &Context<'_>) -> Response {
        if self.settings.health.is_draining() {
            Response::text(503, "draining")
        } else if ctx.broker_state() != pushloop::stats::BrokerState::Up {
            Response::text(503, "broker down")
        } else {
            Response::text(200, "ready")
        }
    }

    /// `GET /channels` and `GET /channels/<channel>`; with `?workers`, members per worker
    /// too (`"workers":[..]`, when there are several).
    fn presence(&self, ctx: &Context<'_>, req: &Request<'_>, channel: Option<&str>) -> Response {
        let per_worker = req.query("workers").is_some();
        let list = ctx.channel_list();
        let presences: Vec<Presence<'_>> = list
            .iter()
            .filter(|info| channel.is_none_or(|c| c == info.name))
            .map(|info| Presence {
                channel: &info.name,
                websocket: info.counts.websocket,
                sse: info.counts.sse,
                long_poll: info.counts.long_poll,
                last_id: info.last_id,
                workers: if per_worker { &info.workers } else { &[] },
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
                    workers: &[],
                };
                format::presence_body(presences.first().unwrap_or(&empty), &mut json);
            }
        }
        Response::json(200, json)
    }

    /// `GET /sse?channel=a&channel=b`: one Server-Sent Events stream of several channels
    /// (each named once; repeats are ignored), resumed from `Last-Event-ID` or `?since=`
    /// (a stream id, `a=5,b=7`). Every channel passes the checks of `/sse/<channel>`:
    /// the first one refused answers `401` or `403`.
    fn streams(&mut self, ctx: &mut Context<'_>, id: ConnId, req: &Request<'_>) -> Reply {
        if req.method() != "GET" {
            return use_get();
        }
        let mut names: Vec<std::borrow::Cow<'_, str>> = Vec::new();
        for name in req.query_all("channel") {
            if !valid_channel_name(&name) {
                return Response::text(400, "channel names are 1-128 of A-Z a-z 0-9 _ . : -")
                    .into();
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if names.is_empty() {
            return Response::text(400, "name the channels: /sse?channel=a&channel=b").into();
        }
        if names.len() > MAX_STREAM_CHANNELS {
            let text = format!("at most {MAX_STREAM_CHANNELS} channels per stream");
            return Response::text(400, &text).into();
        }
        let resume = req
            .header("last-event-id")
            .map(std::borrow::Cow::Borrowed)
            .or_else(|| req.query("since"));
        let resume = resume
            .as_deref()
            .map(|text| format::parse_stream_id(text.trim()));
        let positions = match resume {
            Some(None) => {
                return Response::text(400, "Last-Event-ID and since are stream ids: a=5,b=7")
                    .into()
            }
            Some(Some(positions)) => positions,
            None => Vec::new(),
        };
        if ctx.auth_enabled() {
            let identity = match ctx.authenticate(id, req) {
                Ok(identity) => identity,
                Err(refused) => return refused.into_response().into(),
            };
            for name in &names {
                if let Err(denied) = may_subscribe(identity, name) {
                    return refusal(denied).into_response().into();
                }
            }
        }
        if let Err(refused) = self.limit(ctx, id, req, true) {
            return refused.into_response().into();
        }
        let channels: Vec<(&str, Option<u64>)> = names
            .iter()
            .map(|name| {
                let since = positions.iter().find(|(c, _)| c == name).map(|&(_, at)| at);
                (&**name, since)
            })
            .collect();
        for &(channel, _) in &channels {
            self.announce(ctx, id, PresenceChange::Join, channel, Transport::Sse, 1);
        }
        self.channels_of_stream
            .insert(id, names.iter().map(|name| (&**name).into()).collect());
        if self.settings.access_log {
            let all = names.join(",");
            self.access.opened(id, "sse", ctx.peer_addr(id), &all);
        }
        let headers = self.cors_headers();
        ctx.multi_event_stream(id, &channels, &headers)
    }

    /// Answers a plain HTTP request.
    fn answer(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
        body: &[u8],
    ) -> Reply {
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
        let route = match Route::of(req.path(), self.settings.static_files.is_some()) {
            Ok(route) => route,
            Err(refused) => return refused.into(),
        };
        let since = match route
            .channel()
            .map(|_| number(req.query("since").as_deref()))
        {
            Some(Err(())) => return Response::text(400, "since must be a message id").into(),
            Some(Ok(since)) => since,
            None => None,
        };
        match route {
            Route::Page => get_only(Response::new(200, "text/html; charset=utf-8", PAGE).into()),
            Route::Metrics if req.method() == "GET" => self.metrics(ctx, id, req),
            Route::Metrics => use_get(),
            Route::Health => get_only(Response::text(200, "ok").into()),
            Route::Ready => get_only(self.ready(ctx).into()),
            Route::Events(_) | Route::Poll(_) | Route::Streams
                if self.settings.health.is_draining() =>
            {
                draining().into()
            }
            Route::ChannelList => get_only(self.presence(ctx, req, None).into()),
            Route::ClientScript => {
                get_only(client_js::response(req.header("if-none-match")).into())
            }
            Route::WebSocket(_) | Route::Session => Response::upgrade_required().into(),
            Route::Publish(channel) => self.publish(ctx, id, req, channel, body),
            Route::PublishUser(user) => self.publish(ctx, id, req, &user_channel(user), body),
            Route::ChannelUsers(channel) => {
                if let Err(refused) = self.admit_api(req, "GET") {
                    return refused;
                }
                let headers = self.cors_headers();
                ctx.channel_users_request(id, channel, &headers)
            }
            Route::DisconnectUser(user) => {
                if let Err(refused) = self.admit_api(req, "POST") {
                    return refused;
                }
                let headers = self.cors_headers();
                ctx.disconnect_user_request(id, user, &headers)
            }
            Route::Channel(channel) => get_only(self.presence(ctx, req, Some(channel)).into()),
            Route::Streams => self.streams(ctx, id, req),
            Route::Events(channel) => {
                let Ok(last_event) = number(req.header("last-event-id")) else {
                    return Response::text(400, "Last-Event-ID must be a message id").into();
                };
                if req.method() != "GET" {
                    return use_get();
                }
                if let Err(refused) = admit(ctx, id, req, channel) {
                    return refused.into_response().into();
                }
                if let Err(refused) = self.limit(ctx, id, req, true) {
                    return refused.into_response().into();
                }
                self.announce(ctx, id, PresenceChange::Join, channel, Transport::Sse, 1);
                self.channels_of_stream.insert(id, vec![channel.into()]);
                if self.settings.access_log {
                    self.access.opened(id, "sse", ctx.peer_addr(id), channel);
                }
                let headers = self.cors_headers();
                ctx.event_stream(id, channel, last_event.or(since), &headers)
            }
            Route::Poll(channel) => {
                let Ok(timeout) = number(req.query("timeout").as_deref()) else {
                    return Response::text(400, "timeout must be whole seconds").into();
                };
                let timeout = timeout
                    .map_or(DEFAULT_POLL, Duration::from_secs)
                    .min(MAX_POLL);
                if req.method() != "GET" {
                    return use_get();
                }
                if let Err(refused) = admit(ctx, id, req, channel) {
                    return refused.into_response().into();
                }
                if let Err(refused) = self.limit(ctx, id, req, false) {
                    return refused.into_response().into();
                }
                let headers = self.cors_headers();
                ctx.long_poll(id, channel, since, timeout, &headers)
            }
            Route::Other => {
                if let Some(files) = &self.settings.static_files {
                    match files.get(req.path()) {
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
    }
}

/// The route of a channel below a path prefix.
type RouteOf<'a> = fn(&'a str) -> Route<'a>;

/// Where a request goes, by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    /// `/` or `/index.html` without `--static`: the built-in page.
    Page,
    /// `/pushloop.js`: the browser client.
    ClientScript,
    /// `/v1`: a `pushloop.v1` WebSocket in no channel yet (plain requests get 426).
    Session,
    /// `/channels`: every channel's presence.
    ChannelList,
    /// `/metrics`: Prometheus metrics.
    Metrics,
    /// `/healthz`: alive.
    Health,
    /// `/readyz`: ready for traffic.
    Ready,
    /// `/ws`, `/ws/<channel>`: a WebSocket endpoint (plain requests get 426).
    WebSocket(&'a str),
    /// `/publish/<channel>`.
    Publish(&'a str),
    /// `/publish/user/<id>`: publish to the personal channel `user:<id>`.
    PublishUser(&'a str),
    /// `/disconnect/user/<id>`: close every connection of the user.
    DisconnectUser(&'a str),
    /// `/channels/<channel>/presence`: the channel's users.
    ChannelUsers(&'a str),
    /// `/channels/<channel>`: one channel's presence.
    Channel(&'a str),
    /// `/sse/<channel>`: a Server-Sent Events stream.
    Events(&'a str),
    /// `/sse?channel=a&channel=b`: one Server-Sent Events stream of several channels.
    Streams,
    /// `/poll/<channel>`: a long poll.
    Poll(&'a str),
    /// Anything else: a static file, or 404.
    Other,
}

impl<'a> Route<'a> {
    /// The route of `path`, or the answer to a path that names an invalid channel.
    fn of(path: &'a str, static_files: bool) -> Result<Route<'a>, Response> {
        if !static_files && (path == "/" || path == "/index.html") {
            return Ok(Route::Page);
        }
        match path {
            "/channels" => return Ok(Route::ChannelList),
            "/metrics" => return Ok(Route::Metrics),
            "/healthz" => return Ok(Route::Health),
            "/readyz" => return Ok(Route::Ready),
            "/sse" => return Ok(Route::Streams),
            _ => {}
        }
        if let Some(channel) = path
            .strip_prefix("/channels/")
            .and_then(|rest| rest.strip_suffix("/presence"))
            .filter(|c| valid_channel_name(c))
        {
            return Ok(Route::ChannelUsers(channel));
        }
        if path == "/pushloop.js" {
            return Ok(Route::ClientScript);
        }
        if path == SESSION_PATH {
            return Ok(Route::Session);
        }
        let users: [(&str, RouteOf<'a>); 2] = [
            ("/publish/user/", Route::PublishUser),
            ("/disconnect/user/", Route::DisconnectUser),
        ];
        for (prefix, route) in users {
            if let Some(user) = path.strip_prefix(prefix) {
                return if valid_channel_name(&user_channel(user)) {
                    Ok(route(user))
                } else {
                    Err(Response::text(
                        400,
                        "user ids are 1-123 of A-Z a-z 0-9 _ . : -",
                    ))
                };
            }
        }
        let kinds: [(&str, RouteOf<'a>); 5] = [
            ("/ws", Route::WebSocket),
            ("/publish", Route::Publish),
            ("/channels", Route::Channel),
            ("/sse", Route::Events),
            ("/poll", Route::Poll),
        ];
        for (prefix, route) in kinds {
            match channel_below(path, prefix) {
                None => continue,
                Some(Ok(channel)) => return Ok(route(channel)),
                Some(Err(())) => {
                    return Err(Response::text(
                        400,
                        "channel names are 1-128 of A-Z a-z 0-9 _ . : -",
                    ))
                }
            }
        }
        Ok(Route::Other)
    }

    /// The channel the route names, if any.
    fn channel(self) -> Option<&'a str> {
        match self {
            Route::WebSocket(c)
            | Route::Publish(c)
            | Route::Channel(c)
            | Route::Events(c)
            | Route::Poll(c) => Some(c),
            Route::Page
            | Route::ClientScript
            | Route::Session
            | Route::ChannelList
            | Route::Metrics
            | Route::Health
            | Route::Ready
            | Route::PublishUser(_)
            | Route::DisconnectUser(_)
            | Route::ChannelUsers(_)
            | Route::Streams
            | Route::Other => None,
        }
    }
}

impl Handler for App {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
    ) -> Result<(), Refusal> {
        self.refresh();
        if self.settings.health.is_draining() {
            return Err(Refusal::new(503, "server shutting down"));
        }
        if req.path() == SESSION_PATH {
            // A `pushloop.v1` connection with no channel of its own: every subscription
            // is a `subscribe` command (what pushloop.js opens).
            if ctx.protocol(id) != Some(ENVELOPE_PROTOCOL) {
                return Err(Refusal::new(
                    400,
                    "/v1 needs the pushloop.v1 subprotocol (Sec-WebSocket-Protocol)",
                ));
            }
            self.limit(ctx, id, req, true)?;
            log::debug!("{id} opened a pushloop.v1 session");
            return Ok(());
        }
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
        let Ok(since) = number(req.query("since").as_deref()) else {
            return Err(Refusal::new(400, "since must be a message id"));
        };
        may_join(ctx, id, channel).map_err(refusal)?;
        self.limit(ctx, id, req, true)?;
        let joined = match since {
            Some(since) => ctx.join_since(id, channel, since),
            None => ctx.join(id, channel),
        };
        if let Err(e) = joined {
            log::debug!("{id} could not join {channel}: {e}");
        }
        self.announce(
            ctx,
            id,
            PresenceChange::Join,
            channel,
            Transport::WebSocket,
            0,
        );
        if self.settings.access_log {
            self.access
                .opened(id, "websocket", ctx.peer_addr(id), channel);
        }
        log::debug!("{id} joined {channel}");
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
        self.refresh();
        if self.settings.access_log {
            self.access.message(id, msg.as_bytes().len());
        }
        match self.settings.mode {
            Mode::Echo => {
                ctx.send(id, msg);
            }
            Mode::Chat => {
                let envelope = ctx.protocol(id) == Some(ENVELOPE_PROTOCOL);
                if let (true, Message::Text(text)) = (envelope, msg) {
                    match Command::parse(text) {
                        Some(Ok(command)) => return self.command(ctx, id, command),
                        Some(Err(e)) => {
                            let req = protocol::req_of(text);
                            ctx.send_unwrapped(id, protocol::error(400, &e, req));
                            return;
                        }
                        None => {}
                    }
                }
                // The library keeps each connection's channel: no per-connection map here.
                let Some(channel) = ctx.first_channel_of(id) else {
                    if envelope {
                        let text = protocol::error(
                            400,
                            "not a command, and no channel to chat in (docs/protocol.md)",
                            None,
                        );
                        ctx.send_unwrapped(id, text);
                    }
                    return;
                };
                match may_send(ctx, id, &channel) {
                    Ok(()) => {
                        ctx.publish_except(&channel, msg, id);
                    }
                    Err(denied) if envelope => {
                        let text = protocol::error(denied.status(), &denied.to_string(), None);
                        ctx.send_unwrapped(id, text);
                    }
                    Err(denied) => {
                        ctx.close(id, CloseCode::POLICY_VIOLATION, &denied.to_string());
                    }
                }
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, id: ConnId, code: CloseCode, _reason: &str) {
        self.refresh();
        self.access
            .closed(id, Some(u16::from(code)), ctx.traffic(id));
        for channel in ctx.channels_of(id) {
            ctx.leave(id, &channel);
            self.announce(
                ctx,
                id,
                PresenceChange::Leave,
                &channel,
                Transport::WebSocket,
                0,
            );
        }
        self.unseat(id);
        log::debug!("{id} closed {code}");
    }

    fn on_http_end(&mut self, ctx: &mut Context<'_>, id: ConnId) {
        self.access.closed(id, None, ctx.traffic(id));
        self.unseat(id);
        for channel in self.channels_of_stream.remove(&id).unwrap_or_default() {
            ctx.leave(id, &channel);
            self.announce(ctx, id, PresenceChange::Leave, &channel, Transport::Sse, 0);
        }
    }

    fn on_http(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
        body: &[u8],
    ) -> Reply {
        self.refresh();
        match self.answer(ctx, id, req, body) {
            Reply::Response(response) => self.cors(response).into(),
            other => other,
        }
    }
}
