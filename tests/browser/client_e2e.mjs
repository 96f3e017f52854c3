// pushloop.js (served at /pushloop.js) in headless Chromium, driven by playwright-core.
// Run by tests/browser.rs:
//
//     PUSHLOOP_BIN=target/release/pushloop node tests/browser/client_e2e.mjs
//
// It starts the binary itself (so it can kill and restart it), with --static
// tests/browser/static (client.html imports /pushloop.js), behind a proxy (../client_js/support.mjs)
// that can refuse WebSocket upgrades and SSE. Prints `ok - ...` per check; exits non-zero
// at the first failure. Every wait is bounded.
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { hs256, members, proxy, until } from "../client_js/support.mjs";

const BIN = process.env.PUSHLOOP_BIN;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SECRET = "client-e2e-secret-0123456789abcdef0123";
const WAIT = 10_000;
setTimeout(() => {
  console.error("not ok - the whole test took over 100 s");
  process.exit(1);
}, 100_000).unref();

function check(cond, what) {
  if (!cond) throw new Error(what);
}

/** Starts the binary on `listen`; resolves to { child, addr }. */
function startServer(listen) {
  const child = spawn(BIN, ["--listen", listen, "--static", path.join(HERE, "static"),
    "--history", "1000", "--jwt-secret", SECRET], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: process.env.SERVER_LOG ?? "warn" } });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no listening line")), WAIT);
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on ws:\/\/([^/ ]+)\//);
      if (m) {
        clearTimeout(timer);
        resolve({ child, addr: m[1] });
      }
    });
    child.on("exit", (code) => reject(new Error(`server exited (${code}): ${out}`)));
  });
}

async function publish(addr, channel, data) {
  const res = await fetch(`http://${addr}/publish/${channel}`, { method: "POST", body: data });
  check(res.status === 200, `publish: ${res.status}`);
  return (await res.json()).id;
}

/** In the page: a client with its events recorded in `window.log`. */
async function openClient(page, options) {
  await page.evaluate((options) => {
    window.log = { messages: {}, gaps: [], states: [], transports: [], refreshed: 0, acks: [] };
    const opts = { ...options, minDelay: 20, maxDelay: 100 };
    if (options.withToken) opts.token = () => window.mintToken();
    window.client = window.pushloop.connect("", opts);
    window.client.on("state", (s) => window.log.states.push(s));
    window.client.on("transport", (t) => window.log.transports.push(t));
    window.client.on("refreshed", () => (window.log.refreshed += 1));
    window.sub = (channel) => {
      const s = window.client.subscribe(channel);
      window.log.messages[channel] = [];
      s.on("message", (m) => window.log.messages[channel].push([m.id, m.data]));
      s.on("gap", (g) => window.log.gaps.push([channel, g.since, g.last_id]));
      return s;
    };
  }, options);
}

const range = (a, b, f) => Array.from({ length: b - a + 1 }, (_, i) => f(a + i));
const same = (x, y) => JSON.stringify(x) === JSON.stringify(y);

const server0 = await startServer("127.0.0.1:0");
let server = server0;
const addr = server.addr;
const p = await proxy(addr);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
const errors = [];
async function newPage() {
  const page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.exposeFunction("mintToken", () =>
    hs256({ sub: "carol", channels: ["private:*"], publish: ["room"], exp: Math.floor(Date.now() / 1000) + 33 }, SECRET));
  await page.goto(`${p.url}/client.html`);
  await page.waitForFunction(() => document.title === "ready", null, { timeout: WAIT });
  return page;
}

const checks = [
  ["three subscriptions on one socket, one private with a token; a token refresh; publish acks with ids", async () => {
    const page = await newPage();
    await openClient(page, { withToken: true, refreshBefore: 31000 });
    await page.evaluate(() => ["news", "room", "private:ops"].forEach((c) => window.sub(c)));
    await until("three members", async () => (await members(addr, "private:ops", "websocket")) === 1
      && (await members(addr, "room", "websocket")) === 1);
    for (const c of ["news", "private:ops"]) await publish(addr, c, `to ${c}`);
    const acks = await page.evaluate(async () => [
      await window.client.publish("room", "from the page"),
      await window.client.subscriptions.get("room").publish("again"),
    ]);
    check(same(acks, [{ id: 1 }, { id: 2 }]), `acks ${JSON.stringify(acks)}`);
    await until("the messages", async () => page.evaluate(() =>
      window.log.messages.news.length === 1 && window.log.messages["private:ops"].length === 1));
    await until("a refresh", async () => page.evaluate(() => window.log.refreshed >= 1));
    const log = await page.evaluate(() => window.log);
    check(same(log.messages["private:ops"], [[1, "to private:ops"]]), JSON.stringify(log.messages));
    check(same(log.messages.room, []), "own messages are not echoed");
    check(same(log.states, ["open"]) && same(log.transports, ["websocket"]), JSON.stringify(log));
    await page.close();
  }],
  ["the path cut while 500 messages are published (history survives): each once, in order, no gap", async () => {
    const page = await newPage();
    await openClient(page, {});
    await page.evaluate(() => window.sub("stream"));
    await until("subscribed", async () => (await members(addr, "stream", "websocket")) === 1);
    for (let i = 1; i <= 100; i++) await publish(addr, "stream", `s${i}`);
    await until("the first 100", async () => page.evaluate(() => window.log.messages.stream.length === 100));
    p.pause();
    await until("the server saw it go", async () => (await members(addr, "stream", "websocket")) === 0);
    for (let i = 101; i <= 500; i++) await publish(addr, "stream", `s${i}`);
    p.resume();
    await until("all 500", async () => page.evaluate(() => window.log.messages.stream.length === 500));
    const log = await page.evaluate(() => window.log);
    check(same(log.messages.stream, range(1, 500, (i) => [i, `s${i}`])), "every message once, in order");
    check(same(log.gaps, []), `gaps ${JSON.stringify(log.gaps)}`);
    await page.close();
  }],
  ["the server killed and restarted while 500 messages are published: each once, in order, and a gap", async () => {
    const page = await newPage();
    await openClient(page, {});
    await page.evaluate(() => window.sub("ticker"));
    await until("subscribed", async () => (await members(addr, "ticker", "websocket")) === 1);
    for (let i = 1; i <= 250; i++) await publish(addr, "ticker", `t${i}`);
    server.child.kill("SIGKILL");
    await new Promise((r) => server.child.once("exit", r));
    server = await startServer(addr);
    await until("back", async () => (await members(addr, "ticker", "websocket")) === 1);
    for (let i = 251; i <= 500; i++) await publish(addr, "ticker", `t${i}`);
    await until("the new messages", async () => page.evaluate(() =>
      window.log.messages.ticker.at(-1)?.[1] === "t500"));
    const log = await page.evaluate(() => window.log);
    const got = log.messages.ticker;
    const before = got.findIndex(([, d]) => d === "t251");
    const old = got.slice(0, before);
    check(same(old, range(1, old.length, (i) => [i, `t${i}`])), "before the kill: in order, once");
    check(old.length >= 1 && old.length <= 250, `before the kill: ${old.length}`);
    check(same(got.slice(before), range(1, 250, (i) => [i, `t${250 + i}`])), "after the restart");
    check(same(log.gaps, [["ticker", old.length, 0]]), `gaps ${JSON.stringify(log.gaps)}`);
    await page.close();
  }],
  ["WebSockets blocked: SSE, then long polling, every message; back to WebSockets", async () => {
    p.block("websocket");
    const page = await newPage();
    await openClient(page, { probeInterval: 300 });
    await page.evaluate(() => window.sub("feed"));
    await until("SSE", async () => (await members(addr, "feed", "sse")) === 1);
    for (let i = 1; i <= 100; i++) await publish(addr, "feed", `f${i}`);
    await until("100 over SSE", async () => page.evaluate(() => window.log.messages.feed.length === 100));
    p.block("websocket", "sse");
    await until("long polling", async () => page.evaluate(() => window.client.transport === "poll"));
    for (let i = 101; i <= 200; i++) await publish(addr, "feed", `f${i}`);
    await until("100 over polls", async () => page.evaluate(() => window.log.messages.feed.length === 200));
    p.block();
    await until("WebSocket again", async () => (await members(addr, "feed", "websocket")) === 1);
    for (let i = 201; i <= 300; i++) await publish(addr, "feed", `f${i}`);
    await until("100 over the WebSocket", async () => page.evaluate(() => window.log.messages.feed.length === 300));
    const log = await page.evaluate(() => window.log);
    check(same(log.messages.feed, range(1, 300, (i) => [i, `f${i}`])), "every message once, in order");
    const t = log.transports.filter((x, i) => x !== log.transports[i - 1]);
    check(same(t, ["websocket", "sse", "poll", "websocket"]), `transports ${JSON.stringify(t)}`);
    await page.close();
  }],
];

let failed = false;
for (const [name, run] of checks) {
  try {
    await run();
    console.log(`ok - ${name}`);
  } catch (e) {
    console.log(`not ok - ${name}: ${e.stack || e}`);
    for (const page of browser.contexts().flatMap((c) => c.pages())) {
      console.log(`page log: ${JSON.stringify(await page.evaluate(() => window.log).catch(String))}`);
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
p.close();
server.child.kill();
process.exit(failed ? 1 : 0);
