// clients/js/pushloop.js under Node.js 22 (global WebSocket, fetch) against the real
// binary, started by tests/client_js.rs:
//   PUSHLOOP_ADDR        host:port of a server with --history 1000
//   PUSHLOOP_AUTH_ADDR   host:port of a server with --jwt-secret $PUSHLOOP_SECRET, --history 5
// A proxy (support.mjs) stands between the client and the server, to cut the path
// (resume), or to refuse WebSocket upgrades and then SSE (the fallbacks).
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../../clients/js/pushloop.js";
import { hs256 as sign, members, proxy, until } from "./support.mjs";

const ADDR = process.env.PUSHLOOP_ADDR;
const AUTH_ADDR = process.env.PUSHLOOP_AUTH_ADDR;
const SECRET = process.env.PUSHLOOP_SECRET;

async function publish(addr, channel, data) {
  const res = await fetch(`http://${addr}/publish/${channel}`, {
    method: "POST",
    headers: { "Content-Type": "text/plain" },
    body: data,
  });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()).id;
}

/** Collects a subscription's messages. */
function collect(sub) {
  const got = [];
  sub.on("message", (m) => got.push([m.id, m.data]));
  return got;
}

const range = (from, to, f) => Array.from({ length: to - from + 1 }, (_, i) => f(from + i));

test("one socket carries every subscription; publish answers with the id", async () => {
  const client = connect(`http://${ADDR}`, { minDelay: 50 });
  const states = [];
  client.on("state", (s) => states.push(s));
  const a = client.subscribe("js-a");
  const b = client.subscribe("js-b");
  const gotA = collect(a);
  const gotB = collect(b);
  await until("both subscriptions", async () =>
    (await members(ADDR, "js-a", "websocket")) === 1 && (await members(ADDR, "js-b", "websocket")) === 1);
  assert.equal(client.transport, "websocket");
  assert.deepEqual(states, ["open"]);
  for (let i = 1; i <= 20; i++) await publish(ADDR, "js-a", `a${i}`);
  await publish(ADDR, "js-b", "b1");
  const own = await b.publish("mine");
  assert.deepEqual(own, { id: 2 });
  await publish(ADDR, "js-b", "b3");
  await until("messages", () => gotA.length === 20 && gotB.length === 2);
  assert.deepEqual(gotA, range(1, 20, (i) => [i, `a${i}`]));
  // Its own message is not echoed, and counts as seen.
  assert.deepEqual(gotB, [[1, "b1"], [3, "b3"]]);
  assert.equal(b.lastId, 3);
  client.close();
  assert.equal(client.state, "closed");
});

test("a cut path: reconnects and resumes every subscription exactly once, in order", async () => {
  const p = await proxy(ADDR);
  const client = connect(p.url, { minDelay: 50, maxDelay: 200 });
  const subs = ["js-r1", "js-r2", "js-r3"].map((c) => client.subscribe(c));
  const got = subs.map(collect);
  await until("subscribed", async () => (await members(ADDR, "js-r3", "websocket")) === 1);
  for (const c of ["js-r1", "js-r2", "js-r3"]) await publish(ADDR, c, "first");
  await until("first", () => got.every((g) => g.length === 1));
  const states = [];
  client.on("state", (s) => states.push(s));
  p.pause();
  await until("the server saw it go", async () => (await members(ADDR, "js-r1", "websocket")) === 0);
  for (let i = 2; i <= 301; i++) {
    for (const c of ["js-r1", "js-r2", "js-r3"]) await publish(ADDR, c, `m${i}`);
  }
  p.resume();
  await until("the missed 300", () => got.every((g) => g.length === 301));
  for (const g of got) {
    assert.deepEqual(g, [[1, "first"], ...range(2, 301, (i) => [i, `m${i}`])]);
  }
  assert.equal(states[0], "reconnecting");
  assert.equal(states.at(-1), "open");
  client.close();
  p.close();
});

test("no WebSockets: SSE, then long polling, then back to WebSockets", async () => {
  const p = await proxy(ADDR);
  p.block("websocket");
  const client = connect(p.url, { minDelay: 20, maxDelay: 50, probeInterval: 300 });
  const transports = [];
  client.on("transport", (t) => transports.push(t));
  const sub = client.subscribe("js-f");
  const got = collect(sub);
  await until("SSE", async () => (await members(ADDR, "js-f", "sse")) === 1);
  assert.equal(client.transport, "sse");
  assert.equal(client.state, "fallback");
  await publish(ADDR, "js-f", "over sse");
  // Publishing without a WebSocket goes through POST /publish.
  assert.deepEqual(await sub.publish("posted"), { id: 2 });
  await until("sse message", () => got.length === 1);

  p.block("websocket", "sse");
  await until("long polling", () => client.transport === "poll");
  await until("the poll is held", async () => (await members(ADDR, "js-f", "long_poll")) === 1);
  await publish(ADDR, "js-f", "over poll");
  await until("poll message", () => got.length === 2);

  p.block();
  await until("back to WebSockets", async () => (await members(ADDR, "js-f", "websocket")) === 1);
  assert.equal(client.state, "open");
  await publish(ADDR, "js-f", "over ws");
  await until("ws message", () => got.length === 3);
  assert.deepEqual(got, [[1, "over sse"], [3, "over poll"], [4, "over ws"]]);
  assert.deepEqual(transports.filter((t, i) => t !== transports[i - 1]), ["websocket", "sse", "poll", "websocket"]);
  client.close();
  p.close();
});

test("tokens: a private channel, a refresh before expiry, a gap when history ran out", async () => {
  let minted = 0;
  const token = () => {
    minted += 1;
    return sign({ sub: "ann", channels: ["private:*"], exp: Math.floor(Date.now() / 1000) + 32 }, SECRET);
  };
  const p = await proxy(AUTH_ADDR);
  const client = connect(p.url, { token, minDelay: 20, maxDelay: 50, refreshBefore: 30500 });
  const refreshed = [];
  client.on("refreshed", (r) => refreshed.push(r));
  const priv = client.subscribe("private:board");
  const mine = client.subscribe("user:ann");
  const errors = [];
  const other = client.subscribe("user:bob");
  other.on("error", (e) => errors.push(e.code));
  const gotP = collect(priv);
  const gotM = collect(mine);
  const gaps = [];
  priv.on("gap", (g) => gaps.push(g));
  await until("refused user:bob", () => errors.length === 1);
  assert.deepEqual(errors, [403]);
  await until("subscribed", async () => (await members(AUTH_ADDR, "user:ann", "websocket")) === 1);
  await publish(AUTH_ADDR, "private:board", "p1");
  await publish(AUTH_ADDR, "user:ann", "hi ann");
  await until("messages", () => gotP.length === 1 && gotM.length === 1);
  // The token lives 32 s and is refreshed 30.5 s before: within 2 s, on the same socket.
  await until("a refresh", () => refreshed.length === 1);
  assert.ok(minted >= 2);
  assert.equal(client.state, "open");

  // History keeps 5 messages: 8 missed ones make a gap, then the kept 5.
  p.pause();
  await until("gone", async () => (await members(AUTH_ADDR, "private:board", "websocket")) === 0);
  for (let i = 2; i <= 9; i++) await publish(AUTH_ADDR, "private:board", `p${i}`);
  p.resume();
  await until("the kept five", () => gotP.length === 6);
  assert.deepEqual(gaps.map((g) => [g.since, g.last_id]), [[1, 9]]);
  assert.deepEqual(gotP, [[1, "p1"], ...range(5, 9, (i) => [i, `p${i}`])]);
  client.close();
  p.close();
});
