// Types of pushloop.js, the client of the pushloop push server.

/** Where a client is: connecting, open (on the first transport), reconnecting,
 * fallback (on SSE or long polling), or closed for good. */
export type State = "connecting" | "open" | "reconnecting" | "fallback" | "closed";

/** How the client reaches the server. */
export type Transport = "websocket" | "sse" | "poll";

/** A token, or a function that gets a fresh one (called on every connect, on
 * `4001 token expired`, and before a token expires). */
export type TokenSource = string | (() => string | Promise<string>);

export interface Options {
  /** A JWT for channels that need one. */
  token?: TokenSource;
  /** The transports to try, in order (default: websocket, sse, poll). */
  transports?: Transport[];
  /** The first reconnect delay in ms (default 250); it doubles up to `maxDelay`. */
  minDelay?: number;
  /** The longest reconnect delay in ms (default 15000). */
  maxDelay?: number;
  /** A connection up this long (ms) resets the backoff (default 10000). */
  stableAfter?: number;
  /** Failed opens of a transport before the next one is tried (default 2). */
  failuresBeforeFallback?: number;
  /** How often (ms) a fallback tries a WebSocket again (default 30000). */
  probeInterval?: number;
  /** Seconds a long poll is held by the server (default 25). */
  pollTimeout?: number;
  /** How long (ms) before a token's `exp` a fresh one is sent (default 30000). */
  refreshBefore?: number;
}

/** A message of a channel: each id once, in order. */
export interface ChannelMessage {
  channel: string;
  id: number;
  /** Text, or the bytes of a binary message. */
  data: string | Uint8Array;
}

/** History no longer held everything after `since`: what came after `last_id` follows. */
export interface Gap {
  channel: string;
  since?: number;
  last_id: number;
}

/** A refusal: an HTTP-style code (401, 403, 404, 409, ...) and why. */
export interface PushError {
  code: number;
  message: string;
}

/** `GET /channels/<channel>`: subscribers per transport and the last id. */
export interface PresenceCounts {
  channel: string;
  subscribers: { websocket: number; sse: number; long_poll: number };
  last_id: number;
}

export declare class Subscription {
  readonly client: Client;
  readonly channel: string;
  /** The last id seen (undefined before the first message when no `since` was given). */
  lastId: number | undefined;
  publish(data: string): Promise<{ id: number }>;
  unsubscribe(): void;
  presence(): Promise<PresenceCounts>;
  on(event: "message", fn: (m: ChannelMessage) => void): this;
  on(event: "gap", fn: (g: Gap) => void): this;
  on(event: "subscribed", fn: (answer: object) => void): this;
  on(event: "error", fn: (e: PushError) => void): this;
  off(event: string, fn: (value: any) => void): this;
  once(event: string, fn: (value: any) => void): this;
}

export declare class Client {
  readonly state: State;
  readonly transport: Transport;
  readonly subscriptions: Map<string, Subscription>;
  subscribe(channel: string, options?: { since?: number }): Subscription;
  publish(channel: string, data: string): Promise<{ id: number }>;
  presence(channel: string): Promise<PresenceCounts>;
  /** Drops the connection and connects again, resuming every subscription. */
  reconnect(): void;
  close(): void;
  on(event: "state", fn: (s: State) => void): this;
  on(event: "transport", fn: (t: Transport) => void): this;
  on(event: "message", fn: (m: { data: string }) => void): this;
  on(event: "error", fn: (e: Partial<PushError>) => void): this;
  on(event: "refreshed", fn: (r: { expires?: number }) => void): this;
  on(event: "disconnected", fn: (r: { code: number }) => void): this;
  off(event: string, fn: (value: any) => void): this;
  once(event: string, fn: (value: any) => void): this;
}

/** Connects to a pushloop server ("" or omitted: the page's own origin). */
export declare function connect(url?: string, options?: Options): Client;
