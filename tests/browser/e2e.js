'use strict';
// End-to-end test of the chat page served at `/`, in headless Chromium (Debian's
// /usr/bin/chromium) driven by playwright-core. Run by tests/browser.rs:
//
//     node tests/browser/e2e.js http://127.0.0.1:PORT
//     NODE_EXTRA_CA_CERTS=ca.pem node tests/browser/e2e.js https://localhost:PORT
//
// Over https the pages' WebSockets must be wss://; Chromium is told to ignore certificate
// errors (a test CA it does not know), Node's fetch trusts NODE_EXTRA_CA_CERTS.
//
// Prints one `ok - ...` line per check; exits non-zero at the first failure. Every wait is
// bounded. Each simulated person has a browser context of their own (their own
// localStorage), as separate browsers would.
//
// permessage-deflate (RFC 7692): a page cannot read the handshake's response headers, so
// each page's WebSocket handshakes are recorded over the DevTools protocol (CDP
// Network.webSocket* events); the check after the first asserts that Chromium offered the
// extension and the server's `Sec-WebSocket-Extensions` answer accepted it.
//
// Resuming, as the page does it: it keeps per channel, in localStorage, the highest id it
// has seen and the last 100 messages, and subscribes (through pushloop.js, on its /v1
// WebSocket) with since=<that id>; it logs `pushloop: connecting <transport> ?since=<id>`
// each time. So check (c) closes a page, publishes, and opens a new page in the same
// context: it must show every message once, and must have asked for ?since=<the id it had
// seen>.

const { chromium } = require('playwright-core');
const fs = require('fs');
const os = require('os');
const path = require('path');

const base = process.argv[2];
if (!/^https?:\/\/[^/]+$/.test(base || '')) {
  console.error('usage: node e2e.js http[s]://HOST:PORT');
  process.exit(2);
}
const tls = base.startsWith('https:');
const WAIT = 10_000;  // the longest any single wait may take (ms)
const channel = `e2e-${process.pid}-${Date.now()}`;
const shots = fs.mkdtempSync(path.join(os.tmpdir(), 'pushloop-e2e-'));
setTimeout(() => { console.error('not ok - the whole test took over 100 s'); process.exit(1); }, 100_000).unref();

function check(cond, what) {
  if (!cond) throw new Error(what);
}

/** A browser context of its own (a person); over https it accepts the test CA's certificate. */
function newContext(browser) {
  return browser.newContext({ ignoreHTTPSErrors: tls });
}

/** Opens the page in `context` as `name` on `transport` (ws|sse|poll), waits until live. */
async function open(context, name, transport = 'ws') {
  const page = await context.newPage();
  page.consoleLines = [];
  page.errors = [];
  page.on('console', (m) => page.consoleLines.push(m.text()));
  page.on('pageerror', (e) => page.errors.push(String(e)));
  // The WebSocket handshakes the page makes, as Chromium's network stack saw them (the
  // page itself cannot read the response headers): by CDP request id.
  page.wsHandshakes = new Map();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const handshake = (id) => {
    if (!page.wsHandshakes.has(id)) page.wsHandshakes.set(id, {});
    return page.wsHandshakes.get(id);
  };
  cdp.on('Network.webSocketCreated', (e) => { handshake(e.requestId).url = e.url; });
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => {
    handshake(e.requestId).request = e.request.headers;
  });
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    Object.assign(handshake(e.requestId), { status: e.response.status, response: e.response.headers });
  });
  await page.goto(`${base}/#${channel}`);
  await page.fill('#name', name);
  if (transport !== 'ws') await page.check(`#t-${transport}`);
  await waitLive(page, { ws: 'WebSocket', sse: 'SSE', poll: 'long polling' }[transport]);
  page.who = name;
  return page;
}

async function waitLive(page, what) {
  await page.locator(`#status[data-state="live"]:has-text("${what}")`).waitFor({ timeout: WAIT });
}

async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** The value of header `name` (case-insensitive) in a CDP headers object, or undefined. */
function header(headers, name) {
  const key = Object.keys(headers || {}).find((k) => k.toLowerCase() === name);
  return key === undefined ? undefined : headers[key];
}

/** The numbered messages a page shows, in order: {id, name, text, cls}. */
function shownMessages(page) {
  return page.$$eval('#log li[data-id]', (lis) => lis.map((li) => ({
    id: Number(li.dataset.id),
    name: li.querySelector('.name').textContent,
    text: li.querySelector('.text').textContent,
    cls: li.className,
  })));
}

/** Waits until `page` shows each of `texts` as a numbered (confirmed) message. */
async function waitFor(page, texts) {
  await page.waitForFunction((want) => {
    const have = new Set([...document.querySelectorAll('#log li[data-id] .text')].map((e) => e.textContent));
    return want.every((t) => have.has(t));
  }, texts, { timeout: WAIT }).catch((e) => {
    throw new Error(`${page.who} did not show all of ${JSON.stringify(texts)}: ${e.message.split('\n')[0]}`);
  });
}

/** Checks that `page` shows each of `texts` exactly once, in id order, nothing pending. */
async function assertOnce(page, texts) {
  const msgs = await shownMessages(page);
  for (const t of texts) {
    const n = msgs.filter((m) => m.text === t).length;
    check(n === 1, `${page.who} shows ${JSON.stringify(t)} ${n} times`);
  }
  const ids = msgs.map((m) => m.id);
  check(ids.every((id, i) => i === 0 || id > ids[i - 1]), `${page.who}: ids out of order or repeated: ${ids}`);
  const stuck = await page.locator('#log li.pending, #log li.unsure, #log li.failed').count();
  check(stuck === 0, `${page.who} has ${stuck} unconfirmed messages`);
  check(page.errors.length === 0, `${page.who} had script errors: ${page.errors.join('; ')}`);
  return msgs;
}

/** Publishes `text` as the page would, from Node, over HTTP: returns the id. */
async function publish(name, text) {
  const r = await fetch(`${base}/publish/${channel}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name, text }),
  });
  check(r.ok, `POST /publish answered ${r.status}`);
  return (await r.json()).id;
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  const pages = [];
  const checks = [
    ['two pages chat over WebSocket; each message shows once on both', async () => {
      const alice = await open(await newContext(browser), 'alice');
      const bob = await open(await newContext(browser), 'bob');
      pages.push(alice, bob);
      await send(alice, 'hello from alice');
      await waitFor(bob, ['hello from alice']);
      await waitFor(alice, ['hello from alice']);  // numbered by the ack
      await send(bob, 'hi alice, <b>bob</b> here');
      await waitFor(alice, ['hi alice, <b>bob</b> here']);
      await waitFor(bob, ['hi alice, <b>bob</b> here']);
      const texts = ['hello from alice', 'hi alice, <b>bob</b> here'];
      const a = await assertOnce(alice, texts);
      const b = await assertOnce(bob, texts);
      check(JSON.stringify(a.map((m) => [m.id, m.name, m.text])) === JSON.stringify(b.map((m) => [m.id, m.name, m.text])),
        `alice and bob differ: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
      const hers = (msgs) => msgs.find((m) => m.text === 'hello from alice');
      check(hers(a).cls.includes('own') && !hers(b).cls.includes('own'), 'own messages are not marked as such');
      check(await alice.locator('#log b').count() === 0, 'message text was parsed as HTML');
    }],
    ['the WebSockets negotiate permessage-deflate and carry a long message through it', async () => {
      const [alice, bob] = pages;
      const answers = [];
      for (const p of [alice, bob]) {
        const done = [...p.wsHandshakes.values()].filter((h) => h.response);
        check(done.length > 0, `${p.who}: no WebSocket handshake seen over CDP: ${JSON.stringify([...p.wsHandshakes.values()])}`);
        const last = done[done.length - 1];
        check(last.status === 101 && /\/v1$/.test(last.url || ''), `${p.who}: handshake ${JSON.stringify(last)}`);
        check((last.url || '').startsWith(tls ? 'wss://' : 'ws://'), `${p.who}: WebSocket at ${last.url} from ${base}`);
        const offer = header(last.request, 'sec-websocket-extensions') || '';
        check(offer.includes('permessage-deflate'), `${p.who}: Chromium did not offer permessage-deflate: ${JSON.stringify(offer)}`);
        const answer = header(last.response, 'sec-websocket-extensions') || '';
        check(answer.includes('permessage-deflate'), `${p.who}: the server answered Sec-WebSocket-Extensions ${JSON.stringify(answer)}`);
        answers.push(answer);
      }
      console.log(`# Sec-WebSocket-Extensions: ${answers[0]}`);
      // Over the 64-byte threshold, both ways: Chromium compresses what it sends, and the
      // server compresses what it broadcasts (text that repeats, as chat often does).
      const long = `a long message that the server compresses: ${'deflate me, '.repeat(20)}end`;
      check(long.length > 200, 'the long message is long');
      await send(alice, long);
      await waitFor(bob, [long]);
      await waitFor(alice, [long]);
      await assertOnce(bob, ['hello from alice', 'hi alice, <b>bob</b> here', long]);
      await assertOnce(alice, ['hello from alice', 'hi alice, <b>bob</b> here', long]);
    }],
    ['a page on SSE + POST gets the history and new messages, and its POSTs reach the others', async () => {
      const [alice, bob] = pages;
      const carol = await open(await newContext(browser), 'carol', 'sse');
      pages.push(carol);
      await waitFor(carol, ['hello from alice', 'hi alice, <b>bob</b> here']);
      await send(alice, 'alice again');
      await waitFor(carol, ['alice again']);
      await send(carol, 'carol over POST');
      await waitFor(alice, ['carol over POST']);
      await waitFor(bob, ['carol over POST']);
      await waitFor(carol, ['carol over POST']);
      const texts = ['hello from alice', 'hi alice, <b>bob</b> here', 'alice again', 'carol over POST'];
      for (const p of [alice, bob, carol]) await assertOnce(p, texts);
      await carol.screenshot({ path: path.join(shots, 'carol-sse.png') });
    }],
    ['a closed page reopened resumes with ?since= and shows every message once', async () => {
      const [alice, bob] = pages;
      const context = await newContext(browser);
      let dave = await open(context, 'dave');
      const before = ['hello from alice', 'hi alice, <b>bob</b> here', 'alice again', 'carol over POST'];
      await waitFor(dave, before);
      const seen = Math.max(...(await assertOnce(dave, before)).map((m) => m.id));
      await dave.close();
      const away = [];
      for (let i = 1; i <= 3; i++) {
        away.push(`while dave was away ${i}`);
        await publish('node', away[away.length - 1]);
      }
      await send(alice, 'alice while dave was away');
      away.push('alice while dave was away');
      await waitFor(bob, away);
      dave = await open(context, 'dave');
      pages.push(dave);
      const all = [...before, ...away];
      await waitFor(dave, all);
      const msgs = await assertOnce(dave, all);
      const last = msgs[msgs.length - 1].id;
      check(msgs.length === last && msgs.every((m, i) => m.id === i + 1),
        `dave does not show ids 1..${last}: ${msgs.map((m) => m.id)}`);
      const asked = dave.consoleLines.find((l) => l.startsWith('pushloop: connecting'));
      check(asked && asked.endsWith(`?since=${seen}`), `dave reconnected with ${asked}, not ?since=${seen}`);
    }],
    ['a page on long polling gets a message published over HTTP, and its POSTs reach the others', async () => {
      const [alice] = pages;
      const erin = await open(await newContext(browser), 'erin', 'poll');
      pages.push(erin);
      await publish('node', 'for the long poll');
      await waitFor(erin, ['for the long poll']);
      await send(erin, 'erin over POST');
      await waitFor(alice, ['erin over POST']);
      await waitFor(erin, ['erin over POST']);
      await assertOnce(erin, ['for the long poll', 'erin over POST', 'alice again']);
      await erin.screenshot({ path: path.join(shots, 'erin-poll.png') });
    }],
    ['a dropped WebSocket reconnects (backoff) and resumes without loss', async () => {
      const [alice, bob] = pages;
      const connects = alice.consoleLines.length;
      await alice.evaluate(() => window.client.reconnect());  // drops the page's connection
      await alice.locator('#status[data-state="retrying"]').waitFor({ timeout: WAIT });
      await publish('node', 'while alice reconnects');
      await send(bob, 'bob while alice reconnects');
      await waitLive(alice, 'WebSocket');
      await waitFor(alice, ['while alice reconnects', 'bob while alice reconnects']);
      const texts = ['hello from alice', 'carol over POST', 'erin over POST',
        'while alice reconnects', 'bob while alice reconnects'];
      const msgs = await assertOnce(alice, texts);
      check(msgs.every((m, i) => m.id === i + 1), `alice has holes: ${msgs.map((m) => m.id)}`);
      const again = alice.consoleLines.slice(connects).find((l) => l.startsWith('pushloop: connecting'));
      check(/\?since=[1-9]/.test(again || ''), `alice reconnected with ${again}`);
      await alice.screenshot({ path: path.join(shots, 'alice-ws.png') });
    }],
    ['a page that missed more than the server keeps shows a gap notice, then the rest', async () => {
      const context = await newContext(browser);
      let frank = await open(context, 'frank');
      await waitFor(frank, ['bob while alice reconnects']);
      const seen = Math.max(...(await shownMessages(frank)).map((m) => m.id));
      await frank.close();
      let last = 0;
      for (let i = 1; i <= 105; i++) last = await publish('node', `burst ${i}`);
      frank = await open(context, 'frank');
      pages.push(frank);
      await frank.locator('#log li.notice', { hasText: `after #${seen}` }).waitFor({ timeout: WAIT });
      await waitFor(frank, ['burst 105']);
      const msgs = await assertOnce(frank, ['bob while alice reconnects', 'burst 105']);
      const ids = msgs.map((m) => m.id);
      // Everything up to what it had seen, then a hole, then the newest ones without a hole.
      const after = ids.filter((id) => id > seen);
      check(ids.slice(0, seen).every((id, i) => id === i + 1) && ids.length === seen + after.length
        && after[0] > seen + 1 && after.every((id, i) => id === after[0] + i) && after.includes(last),
      `frank shows ids ${ids}`);
      check(!msgs.some((m) => m.text === 'burst 1'), 'frank shows a message the server no longer had');
      await frank.locator('#log li.notice').scrollIntoViewIfNeeded();
      await frank.screenshot({ path: path.join(shots, 'frank-gap.png') });
    }],
  ];
  let passed = 0;
  try {
    for (const [name, run] of checks) {
      try {
        await run();
      } catch (e) {
        console.log(`not ok - ${name}\n  ${e.stack || e}`);
        for (const p of pages) {
          if (p.isClosed()) continue;
          console.log(`  ${p.who} console: ${JSON.stringify(p.consoleLines)}; errors: ${JSON.stringify(p.errors)}`);
          await p.screenshot({ path: path.join(shots, `failed-${p.who}.png`) }).catch(() => {});
        }
        console.log(`screenshots: ${shots}\n${passed} passed, 1 failed`);
        process.exitCode = 1;
        return;
      }
      console.log(`ok - ${name}`);
      passed++;
    }
    console.log(`screenshots: ${shots}\n${passed} passed, 0 failed`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.log(`not ok - ${e.stack || e}`);
  process.exit(1);
});
