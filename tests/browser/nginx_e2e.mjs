// Two pushloop nodes sharing one Redis (--redis), behind nginx (the shipped
// docs/deploy/nginx.conf, round robin, no stickiness), and two Chromium pages loading
// tests/browser/static/client.html (which imports /pushloop.js) from nginx. Run by
// tests/browser.rs, which starts Redis, the nodes and nginx:
//
//     PUSHLOOP_NODES=127.0.0.1:A,127.0.0.1:B PUSHLOOP_PIDS=PID_A,PID_B \
//       node tests/browser/nginx_e2e.mjs http://NGINX
//
// 1. The two pages' WebSockets land on different nodes: each node's /metrics
//    (pushloop_connections{transport="websocket"}) tells which node holds which; the
//    second page reconnects (bounded) until it is on the other node.
// 2. They chat on channel "room" through nginx: each page receives every message of the
//    other once, in order, with the ids Redis gave (the acks), never its own.
// 3. The node holding page 1's WebSocket is killed (SIGKILL). Page 2 publishes while
//    page 1 is away and while it comes back; pushloop.js reconnects through nginx (to
//    the surviving node) and resumes from its last id: page 1 gets each of them once, in
//    order, no gap. Then page 1 chats again and page 2 receives it.
//
// Prints `ok - ...` per check; exits non-zero at the first failure. Every wait is bounded.
import { chromium } from "playwright-core";
import { until } from "../client_js/support.mjs";

const BASE = process.argv[2];
if (!/^http:\/\/[^/]+$/.test(BASE || "")) {
  console.error("usage: PUSHLOOP_NODES=A,B PUSHLOOP_PIDS=PA,PB node nginx_e2e.mjs http://HOST:PORT");
  process.exit(2);
}
const NODES = (process.env.PUSHLOOP_NODES ?? "").split(",").filter(Boolean);
const PIDS = (process.env.PUSHLOOP_PIDS ?? "").split(",").filter(Boolean).map(Number);
if (NODES.length !== 2 || PIDS.length !== 2) {
  console.error("PUSHLOOP_NODES and PUSHLOOP_PIDS must name two nodes");
  process.exit(2);
}
const WAIT = 10_000;
setTimeout(() => {
  console.error("not ok - the whole test took over 100 s");
  process.exit(1);
}, 100_000).unref();

function check(cond, what) {
  if (!cond) throw new Error(what);
}
const same = (x, y) => JSON.stringify(x) === JSON.stringify(y);
const show = (x) => JSON.stringify(x);
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/** Open WebSockets on the node at `addr`, from its /metrics (summed over workers). */
async function websockets(addr) {
  const res = await fetch(`http://${addr}/metrics`);
  check(res.status === 200, `GET /metrics on ${addr}: ${res.status}`);
  let n = 0;
  for (const line of (await res.text()).split("\n")) {
    const m = line.match(/^pushloop_connections\{([^}]*)\} (\d+)$/);
    if (m && /transport="websocket"/.test(m[1])) n += Number(m[2]);
  }
  return n;
}

/** The open WebSockets of each node in `alive` (indexes into NODES). */
async function spread(alive = [0, 1]) {
  return Promise.all(alive.map((i) => websockets(NODES[i])));
}

/** Waits until the nodes in `alive` hold `want` WebSockets (an array, per node). */
async function placed(what, want, alive = [0, 1]) {
  let last;
  await until(`${what}: WebSockets per node ${show(want)}`, async () => {
    last = await spread(alive);
    return same(last, want);
  }, WAIT).catch((e) => {
    throw new Error(`${e.message}; last seen ${show(last)}`);
  });
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
const errors = [];
const pages = [];

async function newPage() {
  const page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  pages.push(page);
  await page.goto(`${BASE}/client.html`);
  await page.waitForFunction(() => document.title === "ready", null, { timeout: WAIT });
  return page;
}

/** In `page`: a pushloop.js client (a new one; the old one closed) through nginx,
 * subscribed to "room", with everything it sees recorded in `window.log`. */
async function openClient(page, options) {
  await page.evaluate((options) => {
    window.client?.close();
    const log = { room: [], gaps: [], states: [], transports: [], errors: [], subscribed: [] };
    window.log = log;
    const client = window.pushloop.connect("", options);
    window.client = client;
    client.on("state", (s) => log.states.push(s));
    client.on("transport", (t) => log.transports.push(t));
    client.on("error", (e) => log.errors.push(JSON.stringify(e)));
    const room = client.subscribe("room");
    room.on("message", (m) => log.room.push([m.id, m.data]));
    room.on("gap", (g) => log.gaps.push(g));
    room.on("subscribed", (m) => log.subscribed.push(m.last_id));
    // Publishes `texts` to "room" (sent at once, in order, on the one socket); resolves
    // to their ids.
    window.say = async (texts) =>
      (await Promise.all(texts.map((t) => client.publish("room", t)))).map((a) => a.id);
  }, options);
}

const log = (page) => page.evaluate(() => window.log);
const say = (page, texts) => page.evaluate((texts) => window.say(texts), texts);
const lines = (who, from, to) => range(from, to).map((i) => `${who} #${i}`);
const subscribedTimes = (page, n) => until(`subscribed ${n} time(s)`, async () =>
  (await log(page)).subscribed.length >= n, WAIT);
const received = (page, n) => until(`${n} messages received`, async () =>
  (await log(page)).room.length >= n, WAIT);

// Fast reconnects for page 2 (it should never need one); page 1's first reconnect waits
// 1-2 s (minDelay 2000: half to all of it), long enough for page 2 to publish a batch
// while page 1 is certainly away.
const FAST = { minDelay: 20, maxDelay: 100 };
const AWAY = { minDelay: 2000, maxDelay: 2000 };

const page1 = await newPage();
const page2 = await newPage();
let node1; // the node holding page 1's WebSocket
const sent1 = []; // [id, data] page 1 published, in order
const sent2 = [];

const checks = [
  ["the two pages' WebSockets land on different nodes (through nginx, round robin)", async () => {
    check(same(await spread(), [0, 0]), "no WebSocket before the pages connect");
    await openClient(page1, AWAY);
    await subscribedTimes(page1, 1);
    let counts;
    await until("page 1's WebSocket on a node", async () => {
      counts = await spread();
      return counts[0] + counts[1] === 1;
    }, WAIT);
    node1 = counts.indexOf(1);
    const want = [1, 1];
    let attempts = 0;
    for (; attempts < 10; attempts++) {
      await openClient(page2, FAST);
      await subscribedTimes(page2, 1);
      await until("page 2's WebSocket on a node", async () => {
        counts = await spread();
        return counts[0] + counts[1] === 2;
      }, WAIT);
      if (same(counts, want)) break;
      // Both on page 1's node: close page 2's client and try again.
      await page2.evaluate(() => window.client.close());
      const alone = node1 === 0 ? [1, 0] : [0, 1];
      await placed("page 2's WebSocket closed", alone);
    }
    check(same(counts, want), `page 2 never landed on the other node: ${show(counts)}`);
    console.log(`# page 1 on node ${node1} (${NODES[node1]}), page 2 on node ${1 - node1} ` +
      `(${NODES[1 - node1]}), after ${attempts + 1} attempt(s) of page 2`);
    // Presence is the cluster's: nginx (either node) counts both members of "room".
    await until("presence of both through nginx", async () => {
      const res = await fetch(`${BASE}/channels/room`);
      return res.status === 200 && (await res.json()).subscribers.websocket === 2;
    }, WAIT);
  }],
  ["page 1 -> page 2: each message once, in order, with the ids of the acks", async () => {
    const ids = await say(page1, lines("one", 1, 20));
    check(same(ids, range(1, 20)), `page 1's acks ${show(ids)}`);
    ids.forEach((id, i) => sent1.push([id, `one #${i + 1}`]));
    await received(page2, 20);
    const got = (await log(page2)).room;
    check(same(got, sent1), `page 2 got ${show(got)}`);
    check(same((await log(page1)).room, []), "page 1 does not get its own messages");
  }],
  ["page 2 -> page 1: each message once, in order", async () => {
    const ids = await say(page2, lines("two", 1, 20));
    check(same(ids, range(21, 40)), `page 2's acks ${show(ids)}`);
    ids.forEach((id, i) => sent2.push([id, `two #${i + 1}`]));
    await received(page1, 20);
    const got = (await log(page1)).room;
    check(same(got, sent2), `page 1 got ${show(got)}`);
  }],
  ["both at once (50 each): each gets the other's, in order; the ids are 41..140", async () => {
    const [ids1, ids2] = await Promise.all([
      say(page1, lines("one", 21, 70)),
      say(page2, lines("two", 21, 70)),
    ]);
    ids1.forEach((id, i) => sent1.push([id, `one #${21 + i}`]));
    ids2.forEach((id, i) => sent2.push([id, `two #${21 + i}`]));
    check(same([...ids1, ...ids2].sort((a, b) => a - b), range(41, 140)), `ids ${show([ids1, ids2])}`);
    check(same(ids1, [...ids1].sort((a, b) => a - b)) && same(ids2, [...ids2].sort((a, b) => a - b)),
      `acks out of order ${show([ids1, ids2])}`);
    await received(page1, sent2.length);
    await received(page2, sent1.length);
    const [got1, got2] = [(await log(page1)).room, (await log(page2)).room];
    check(same(got1, sent2), `page 1 got ${show(got1)}`);
    check(same(got2, sent1), `page 2 got ${show(got2)}`);
  }],
  ["page 1's node killed: page 1 resumes on the other node through nginx, every message once, in order", async () => {
    const survivor = 1 - node1;
    await placed("before the kill", [1, 1]);
    process.kill(PIDS[node1], "SIGKILL");
    console.log(`# SIGKILL to node ${node1} (pid ${PIDS[node1]})`);
    await until("page 1 reconnecting", async () => (await log(page1)).states.includes("reconnecting"), WAIT);
    // While page 1 is away (its reconnect waits at least 1 s).
    const away = await say(page2, lines("two", 71, 100));
    const state = await page1.evaluate(() => window.client.state);
    check(state === "reconnecting", `page 1 was back before the batch was published (${state})`);
    away.forEach((id, i) => sent2.push([id, `two #${71 + i}`]));
    check(same(away, range(141, 170)), `acks ${show(away)}`);
    // While it comes back: one message every 10 ms until it is open again, then 20 more.
    let n = 100;
    for (let i = 0; i < 500 && (await page1.evaluate(() => window.client.state)) !== "open"; i++) {
      n += 1;
      const [id] = await say(page2, [`two #${n}`]);
      sent2.push([id, `two #${n}`]);
      await new Promise((r) => setTimeout(r, 10));
    }
    await until("page 1 open again", async () => (await page1.evaluate(() => window.client.state)) === "open", WAIT);
    const during = n - 100;
    const after = await say(page2, lines("two", n + 1, n + 20));
    after.forEach((id, i) => sent2.push([id, `two #${n + 1 + i}`]));
    check(same(sent2.map(([id]) => id).slice(70), range(141, 141 + 30 + during + 20 - 1)),
      `page 2's acks ${show(sent2)}`);
    await subscribedTimes(page1, 2);
    await placed("page 1 on the surviving node", [2], [survivor]);
    await received(page1, sent2.length);
    const l1 = await log(page1);
    check(same(l1.room, sent2), `page 1 got ${show(l1.room)}; expected ${show(sent2)}`);
    check(same(l1.gaps, []), `gaps ${show(l1.gaps)}`);
    check(same(l1.states, ["open", "reconnecting", "open"]), `page 1's states ${show(l1.states)}`);
    check(same(l1.transports, ["websocket", "websocket"]), `page 1's transports ${show(l1.transports)}`);
    console.log(`# page 2 published 30 while page 1 was away, ${during} while it came back, 20 after`);
  }],
  ["page 1 chats again (through the surviving node): page 2 receives it; nothing else changed", async () => {
    const last = sent2.at(-1)[0];
    const ids = await say(page1, lines("one", 71, 90));
    check(same(ids, range(last + 1, last + 20)), `page 1's acks ${show(ids)}`);
    ids.forEach((id, i) => sent1.push([id, `one #${71 + i}`]));
    await received(page2, sent1.length);
    const [l1, l2] = [await log(page1), await log(page2)];
    check(same(l2.room, sent1), `page 2 got ${show(l2.room)}`);
    check(same(l1.room, sent2), `page 1 got ${show(l1.room)}`);
    check(same(l2.gaps, []) && same(l2.states, ["open"]) && same(l2.transports, ["websocket"]),
      `page 2: ${show({ gaps: l2.gaps, states: l2.states, transports: l2.transports })}`);
    check(same(l1.errors, []) && same(l2.errors, []), `client errors ${show([l1.errors, l2.errors])}`);
  }],
  ["GET /channels/room through nginx stays current while its node is busy (a publish every 100 ms)", async () => {
    // Each node reads the cluster's channel list from Redis once a second; it must do so
    // however often it writes to Redis.
    let first, body, i = 0;
    while (++i <= 60) {
      const [id] = await say(page2, [`busy #${i}`]);
      sent2.push([id, `busy #${i}`]);
      first ??= id;
      body = await (await fetch(`${BASE}/channels/room`)).json();
      if (body.last_id >= first) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    check(body.last_id >= first, `after ${i - 1} publishes GET /channels/room still says ` +
      `${show(body)}; the first was ${first}`);
    // Both pages, on the surviving node; the killed node's count may stay until its
    // presence expires in Redis (45 s), so at least 2.
    check(body.subscribers.websocket >= 2, `presence ${show(body)}`);
    console.log(`# presence through nginx: ${show(body)}`);
    await received(page1, sent2.length);
    const l1 = await log(page1);
    check(same(l1.room, sent2), `page 1 got ${show(l1.room)}; expected ${show(sent2)}`);
  }],
];

let failed = false;
for (const [name, run] of checks) {
  try {
    await run();
    console.log(`ok - ${name}`);
  } catch (e) {
    console.log(`not ok - ${name}: ${e.stack || e}`);
    for (const [i, page] of pages.entries()) {
      console.log(`page ${i + 1} log: ${show(await page.evaluate(() => window.log).catch(String))}`);
    }
    failed = true;
    break;
  }
}
if (errors.length) {
  console.log(`not ok - page errors: ${errors.join("; ")}`);
  failed = true;
}
await browser.close();
process.exit(failed ? 1 : 0);
