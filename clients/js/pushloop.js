// pushloop.js: the browser and Node.js client of the pushloop push server.
// One WebSocket (subprotocol `pushloop.v1`) carries every subscription; it reconnects
// with backoff and jitter, resumes every subscription from its last id (each message
// once, in order, or a `gap` event), falls back to SSE and then to long polling when a
// WebSocket cannot be opened, and goes back to WebSockets when it can.
// No dependencies, no build step. Protocol: docs/protocol.md of the pushloop repository.

const RAW_PROTOCOL = "pushloop.v1";

/** Default options; see README.md. */
const DEFAULTS = {
  token: undefined,
  transports: ["websocket", "sse", "poll"],
  minDelay: 250,
  maxDelay: 15000,
  stableAfter: 10000,
  failuresBeforeFallback: 2,
  probeInterval: 30000,
  pollTimeout: 25,
  refreshBefore: 30000,
};

/** A small event emitter: `on`, `off`, `once`. */
class Emitter {
  constructor() {
    this._handlers = new Map();
  }
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return this;
  }
  off(event, fn) {
    this._handlers.get(event)?.delete(fn);
    return this;
  }
  once(event, fn) {
    const wrapped = (value) => {
      this.off(event, wrapped);
      fn(value);
    };
    return this.on(event, wrapped);
  }
  _emit(event, value) {
    for (const fn of [...(this._handlers.get(event) ?? [])]) {
      try {
        fn(value);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}

/** The `exp` claim of a JWT, in ms since the epoch, or undefined. */
function tokenExpiry(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return typeof claims.exp === "number" ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** http(s) and ws(s) bases from a server URL (a path in it is kept, for a server
 * behind a prefix; "" = this page's origin). */
function bases(url) {
  const origin = globalThis.location?.origin;
  const u = new URL(url || origin, origin);
  const secure = u.protocol === "https:" || u.protocol === "wss:";
  const path = u.pathname.replace(/\/+$/, "");
  return {
    http: `${secure ? "https" : "http"}://${u.host}${path}`,
    ws: `${secure ? "wss" : "ws"}://${u.host}${path}`,
  };
}

/** One channel the client listens to. Events: message, gap, subscribed, error. */
export class Subscription extends Emitter {
  constructor(client, channel, since) {
    super();
    this.client = client;
    this.channel = channel;
    /** The last id seen (undefined: none yet, and none asked for). */
    this.lastId = since;
    this.active = true;
    this._own = new Set();
  }

  /** Publishes `data` (a string) to this channel; resolves to `{ id }`. */
  publish(data) {
    return this.client.publish(this.channel, data);
  }

  /** Stops listening. */
  unsubscribe() {
    this.client._unsubscribe(this);
  }

  /** Current presence counts: `{ channel, subscribers: {...}, last_id }`. */
  presence() {
    return this.client.presence(this.channel);
  }

  /** A message from the server: delivered once, in order. */
  _message(id, data, extra) {
    if (typeof id === "number") {
      if (this.lastId !== undefined && id <= this.lastId) return;
      this.lastId = id;
    }
    this._emit("message", { channel: this.channel, id, data, ...extra });
    this._advance();
  }

  /** The id of this client's own message: counted as seen once its turn comes. */
  _ownId(id) {
    if (this.lastId !== undefined && id <= this.lastId) return;
    this._own.add(id);
    this._advance();
  }

  _advance() {
    while (this.lastId !== undefined && this._own.has(this.lastId + 1)) {
      this._own.delete(this.lastId + 1);
      this.lastId += 1;
    }
  }

  _gap(gap) {
    // What history still holds follows (from some id after `since` up to `last_id`).
    // A `last_id` below the id asked for means the server restarted without persistent
    // history and its ids started again: go on from there.
    if (typeof gap.last_id === "number" && (this.lastId === undefined || gap.last_id < this.lastId)) {
      this.lastId = gap.last_id;
      this._own.clear();
    }
    this._emit("gap", { channel: this.channel, ...gap });
  }
}

/** The connection to one server. Events: state, transport, error. */
export class Client extends Emitter {
  constructor(url, options = {}) {
    super();
    this.options = { ...DEFAULTS, ...options };
    this.base = bases(url);
    /** connecting | open | reconnecting | fallback | closed */
    this.state = "connecting";
    /** websocket | sse | poll (the transport in use or being tried) */
    this.transport = this.options.transports[0];
    this.subscriptions = new Map();
    this._req = 0;
    this._pending = new Map();
    this._attempt = 0;
    this._failures = 0;
    this._closed = false;
    this._timers = new Set();
    this._session = null;
    // After the caller attached its listeners and made its subscriptions.
    this._later(0, () => this._open());
  }

  /** Listens to `channel`; `since` resumes after that id. */
  subscribe(channel, { since } = {}) {
    const existing = this.subscriptions.get(channel);
    if (existing) return existing;
    const sub = new Subscription(this, channel, since);
    this.subscriptions.set(channel, sub);
    this._session?.add(sub);
    return sub;
  }

  /** Publishes `data` to `channel`; resolves to `{ id }`, rejects with `{ code, message }`. */
  publish(channel, data) {
    if (this._session?.kind === "websocket" && this._session.ready) {
      return this._request({ type: "publish", channel, data }).then((ack) => {
        this.subscriptions.get(channel)?._ownId(ack.id);
        return { id: ack.id };
      });
    }
    return this._post(channel, data);
  }

  /** Presence counts of `channel` (`GET /channels/<channel>`). */
  async presence(channel) {
    const res = await fetch(`${this.base.http}/channels/${encodeURIComponent(channel)}`);
    if (!res.ok) throw { code: res.status, message: await res.text() };
    return res.json();
  }

  /** Drops the current connection and connects again (after the backoff delay),
   * resuming every subscription: for a network that changed, or to test resuming. */
  reconnect() {
    const session = this._session;
    if (this._closed || !session) return;
    session.stop();
    for (const [, p] of this._pending) p.reject({ code: 0, message: "connection lost" });
    this._pending.clear();
    this._session = null;
    this._setState("reconnecting");
    this._retry(false);
  }

  /** Closes the connection for good. */
  close() {
    this._closed = true;
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    this._session?.stop();
    this._session = null;
    this._setState("closed");
  }

  // ---- internals ----

  _later(ms, fn) {
    const t = setTimeout(() => {
      this._timers.delete(t);
      fn();
    }, ms);
    this._timers.add(t);
    return t;
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state);
  }

  async _token() {
    const t = this.options.token;
    return typeof t === "function" ? await t() : t;
  }

  _unsubscribe(sub) {
    sub.active = false;
    this.subscriptions.delete(sub.channel);
    this._session?.remove(sub);
  }

  _request(command) {
    const req = ++this._req;
    return new Promise((resolve, reject) => {
      this._pending.set(req, { resolve, reject });
      if (!this._session?.send({ ...command, req })) {
        this._pending.delete(req);
        reject({ code: 0, message: "not connected" });
      }
    });
  }

  async _post(channel, data) {
    const headers = { "Content-Type": "text/plain; charset=utf-8" };
    const token = await this._token();
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(`${this.base.http}/publish/${encodeURIComponent(channel)}`, {
      method: "POST",
      headers,
      body: data,
    });
    const text = await res.text();
    if (!res.ok) throw { code: res.status, message: text };
    const { id } = JSON.parse(text);
    this.subscriptions.get(channel)?._ownId(id);
    return { id };
  }

  /** Opens a session on the current transport. */
  async _open() {
    if (this._closed) return;
    const kind = this.transport;
    this._emit("transport", kind);
    let token;
    try {
      token = await this._token();
    } catch (e) {
      this._emit("error", { message: `token: ${e}` });
    }
    if (this._closed) return;
    const make = { websocket: WsSession, sse: SseSession, poll: PollSession }[kind];
    this._session = new make(this, token);
  }

  /** A session opened: resets the backoff once it stays up. */
  _opened(session) {
    if (session !== this._session) return;
    this._failures = 0;
    this._setState(session.kind === this.options.transports[0] ? "open" : "fallback");
    const stable = this._later(this.options.stableAfter, () => {
      if (session === this._session) this._attempt = 0;
    });
    session.onStop = () => clearTimeout(stable);
    if (session.kind !== this.options.transports[0]) this._probeLater();
  }

  /** A session ended; `opened` tells whether it ever opened. */
  _ended(session, { opened, tokenExpired = false }) {
    if (session !== this._session || this._closed) return;
    this._session = null;
    for (const [, p] of this._pending) p.reject({ code: 0, message: "connection lost" });
    this._pending.clear();
    this._setState("reconnecting");
    if (!opened && !tokenExpired) {
      this._failures += 1;
      const next = this.options.transports.indexOf(this.transport) + 1;
      if (this._failures >= this.options.failuresBeforeFallback && next < this.options.transports.length) {
        // Falls back only when plain HTTP gets through: a server that is down is waited
        // for on the same transport, a transport that is blocked is given up.
        this._reachable().then((reachable) => {
          if (this._closed || this._session) return;
          if (!reachable) return this._retry(false);
          this.transport = this.options.transports[next];
          this._failures = 0;
          this._attempt = 0;
          this._setState("fallback");
          this._open();
        });
        return;
      }
    }
    this._retry(tokenExpired);
  }

  /** Whether the server answers plain HTTP (`HEAD /pushloop.js`, any status). */
  async _reachable() {
    try {
      await fetch(`${this.base.http}/pushloop.js`, { method: "HEAD" });
      return true;
    } catch {
      return false;
    }
  }

  /** Opens again after the backoff delay (at once after `4001 token expired`). */
  _retry(now) {
    const { minDelay, maxDelay } = this.options;
    const delay = now ? 0 : Math.min(maxDelay, minDelay * 2 ** this._attempt);
    this._attempt += 1;
    this._later(delay / 2 + (Math.random() * delay) / 2, () => this._open());
  }

  /** In a fallback: tries a WebSocket now and then, and goes back to it if it opens. */
  _probeLater() {
    this._later(this.options.probeInterval, () => {
      const current = this._session;
      if (this._closed || !current || current.kind === "websocket") return;
      this._token().then((token) => {
        const ws = new WebSocket(wsUrl(this, token), RAW_PROTOCOL);
        ws.onopen = () => {
          ws.close(1000);
          if (this._session !== current) return;
          current.stop();
          this._session = null;
          this.transport = this.options.transports[0];
          this._attempt = 0;
          this._setState("reconnecting");
          this._open();
        };
        ws.onerror = () => {
          ws.onopen = null;
          if (this._session === current) this._probeLater();
        };
      });
    });
  }

  _answer(msg) {
    const p = this._pending.get(msg.req);
    if (!p) return false;
    this._pending.delete(msg.req);
    if (msg.type === "error") p.reject({ code: msg.code, message: msg.message });
    else p.resolve(msg);
    return true;
  }
}

function wsUrl(client, token) {
  const q = token ? `?token=${encodeURIComponent(token)}` : "";
  return `${client.base.ws}/v1${q}`;
}

/** A `pushloop.v1` WebSocket carrying every subscription. */
class WsSession {
  constructor(client, token) {
    this.kind = "websocket";
    this.client = client;
    this.token = token;
    this.ready = false;
    this.stopped = false;
    this.onStop = null;
    this.ws = new WebSocket(wsUrl(client, token), RAW_PROTOCOL);
    this.ws.onopen = () => {
      if (this.ws.protocol !== RAW_PROTOCOL) {
        this.ws.close(1002);
        return;
      }
      this.ready = true;
      for (const sub of client.subscriptions.values()) this.add(sub);
      this._scheduleRefresh(token);
      client._opened(this);
    };
    this.ws.onmessage = (e) => this._frame(e.data);
    this.ws.onclose = (e) => this._closed(e.code);
    // Node.js 22 reports a failed handshake with `error` alone (no `close`).
    this.ws.onerror = () => {
      if (!this.ready) this._closed(1006);
    };
  }

  send(command) {
    if (!this.ready || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(command));
    return true;
  }

  add(sub) {
    const command = { type: "subscribe", channel: sub.channel };
    if (sub.lastId !== undefined) command.since = sub.lastId;
    if (!this.ready) return;
    // The `subscribed` answer itself is handled in `_frame`, in order with the messages.
    this.client._request(command).catch((err) => {
      if (err.code) sub._emit("error", err);
    });
  }

  remove(sub) {
    this.send({ type: "unsubscribe", channel: sub.channel, req: ++this.client._req });
  }

  stop() {
    this.stopped = true;
    this.ready = false;
    clearTimeout(this.refreshTimer);
    this.onStop?.();
    this.ws.onclose = null;
    this.ws.close(1000);
  }

  _scheduleRefresh(token) {
    const exp = token && tokenExpiry(token);
    if (!exp || typeof this.client.options.token !== "function") return;
    const wait = Math.max(0, exp - Date.now() - this.client.options.refreshBefore);
    this.refreshTimer = setTimeout(async () => {
      if (this.stopped) return;
      try {
        const fresh = await this.client._token();
        await this.client._request({ type: "refresh", token: fresh });
        this.client._emit("refreshed", { expires: tokenExpiry(fresh) });
        this._scheduleRefresh(fresh);
      } catch (e) {
        this.client._emit("error", { message: "token refresh failed", detail: e });
      }
    }, wait);
  }

  _frame(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    const client = this.client;
    const sub = msg.channel !== undefined ? client.subscriptions.get(msg.channel) : undefined;
    if (msg.type === "subscribed" && sub) {
      // Where a subscription without `since` starts: what it resumes from later.
      if (sub.lastId === undefined && typeof msg.last_id === "number") sub.lastId = msg.last_id;
      sub._emit("subscribed", msg);
    }
    if (msg.req !== undefined && client._answer(msg)) return;
    switch (msg.type) {
      case "message":
        if (sub) {
          const data = msg.encoding === "base64" ? decode64(msg.data) : msg.data;
          sub._message(msg.id, data);
        } else if (msg.channel === undefined) {
          client._emit("message", { data: msg.data });
        }
        break;
      case "gap":
        sub?._gap({ since: msg.since, last_id: msg.last_id });
        break;
      case "ack":
        if (typeof msg.id === "number") sub?._ownId(msg.id);
        break;
      case "error":
        client._emit("error", { code: msg.code, message: msg.message });
        break;
      default:
        break;
    }
  }

  _closed(code) {
    if (this.ended) return;
    this.ended = true;
    const opened = this.ready;
    this.ready = false;
    clearTimeout(this.refreshTimer);
    this.onStop?.();
    if (this.stopped) return;
    if (code === 4003) {
      this.client._emit("disconnected", { code });
      this.client.close();
      return;
    }
    this.client._ended(this, { opened, tokenExpired: code === 4001 });
  }
}

function decode64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Per-subscription HTTP sessions (SSE or long polling), sharing one controller. */
class HttpSession {
  constructor(client, token, kind) {
    this.kind = kind;
    this.client = client;
    this.token = token;
    this.ready = false;
    this.stopped = false;
    this.onStop = null;
    this.loops = new Map();
    this.abort = new AbortController();
    for (const sub of client.subscriptions.values()) this.add(sub);
    if (client.subscriptions.size === 0) this._up();
  }

  send() {
    return false;
  }

  add(sub) {
    if (this.loops.has(sub.channel) || this.stopped) return;
    const loop = { sub, abort: new AbortController() };
    this.loops.set(sub.channel, loop);
    this.run(loop).catch((e) => this._lost(loop, e));
  }

  remove(sub) {
    const loop = this.loops.get(sub.channel);
    this.loops.delete(sub.channel);
    loop?.abort.abort();
  }

  stop() {
    this.stopped = true;
    this.onStop?.();
    for (const loop of this.loops.values()) loop.abort.abort();
    this.loops.clear();
  }

  _up() {
    if (this.ready) return;
    this.ready = true;
    this.client._opened(this);
  }

  _query(sub, extra = {}) {
    const q = new URLSearchParams(extra);
    if (sub.lastId !== undefined) q.set("since", String(sub.lastId));
    if (this.token) q.set("token", this.token);
    const s = q.toString();
    return s ? `?${s}` : "";
  }

  _lost(loop, e) {
    if (this.stopped || !this.loops.has(loop.sub.channel)) return;
    if (e && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) {
      loop.sub._emit("error", { code: e.status, message: e.message });
      this.loops.delete(loop.sub.channel);
      return;
    }
    const opened = this.ready;
    this.stop();
    this.client._ended(this, { opened });
  }
}

/** Server-Sent Events over `fetch` (works in browsers and in Node.js). */
class SseSession extends HttpSession {
  constructor(client, token) {
    super(client, token, "sse");
  }

  async run(loop) {
    const { sub } = loop;
    const url = `${this.client.base.http}/sse/${encodeURIComponent(sub.channel)}${this._query(sub)}`;
    const res = await fetch(url, {
      headers: { Accept: "text/event-stream" },
      signal: loop.abort.signal,
    });
    if (!res.ok) throw { status: res.status, message: await res.text() };
    this._up();
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw { status: 0, message: "stream ended" };
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        this._event(sub, buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  _event(sub, block) {
    let id, event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") id = Number(value);
      else if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length === 0 && id === undefined) return;
    const text = data.join("\n");
    if (event === "gap") sub._gap(JSON.parse(text));
    else if (event === "binary") sub._message(id, decode64(text));
    else if (event === "message") sub._message(id, text);
  }
}

/** Long polling: one held `GET /poll/<channel>` per subscription at a time. */
class PollSession extends HttpSession {
  constructor(client, token) {
    super(client, token, "poll");
  }

  async run(loop) {
    const { sub } = loop;
    // The first request is answered at once (`timeout=0`), so the session counts as
    // open without waiting for a message; the next ones are held.
    let first = true;
    for (;;) {
      const timeout = first ? "0" : String(this.client.options.pollTimeout);
      first = false;
      const url = `${this.client.base.http}/poll/${encodeURIComponent(sub.channel)}${this._query(sub, { timeout })}`;
      const res = await fetch(url, { signal: loop.abort.signal });
      if (!res.ok) throw { status: res.status, message: await res.text() };
      this._up();
      const body = await res.json();
      if (body.truncated) sub._gap({ since: sub.lastId, last_id: body.next });
      for (const m of body.messages) {
        sub._message(m.id, m.encoding === "base64" ? decode64(m.data) : m.data);
      }
      if (sub.lastId === undefined || body.next > sub.lastId) sub.lastId = body.next;
      if (this.stopped || !this.loops.has(sub.channel)) return;
    }
  }
}

/** Connects to a pushloop server: `connect("wss://example.com", { token })`. */
export function connect(url = "", options = {}) {
  return new Client(url, options);
}
