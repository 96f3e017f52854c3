// What tests/client_js and tests/browser/client_e2e.mjs share: bounded waiting, a
// channel's member count, HS256 tokens, and a TCP proxy between a client and a pushloop
// server: `pause()` drops every connection and refuses new ones
// until `resume()`; `block("websocket")` answers upgrades 403 (as a proxy that strips
// `Upgrade` leaves a client without WebSockets), `block("websocket", "sse")` also
// answers `GET /sse/...` 502; `block()` forwards everything again.
import crypto from "node:crypto";
import net from "node:net";

/** Resolves when `pred()` holds, checking every 10 ms; throws after `limit` ms. */
export async function until(what, pred, limit = 10000) {
  const end = Date.now() + limit;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** `GET /channels/<channel>`: its subscribers on `transport` (0 when unknown or down). */
export async function members(addr, channel, transport) {
  try {
    const res = await fetch(`http://${addr}/channels/${channel}`);
    return res.status === 200 ? (await res.json()).subscribers[transport] : 0;
  } catch {
    return 0;
  }
}

/** A JWT with `claims`, signed HS256 with `secret`. */
export function hs256(claims, secret) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${body}.${crypto.createHmac("sha256", secret).update(body).digest("base64url")}`;
}

/** A TCP proxy: `pause()` drops and refuses; `block` refuses upgrades or SSE requests. */
export function proxy(upstream) {
  const [host, port] = upstream.split(":");
  const open = new Set();
  const state = { refuse: false, block: new Set() };
  const server = net.createServer((client) => {
    if (state.refuse) return client.destroy();
    client.once("data", (first) => {
      const head = first.toString("latin1").toLowerCase();
      const upgrade = /\r\nupgrade:\s*websocket/.test(head);
      const sse = head.startsWith("get /sse/");
      if (upgrade && state.block.has("websocket")) {
        client.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
      }
      if (sse && state.block.has("sse")) {
        client.end("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
      }
      const up = net.connect(Number(port), host, () => up.write(first));
      open.add(client).add(up);
      const done = () => {
        client.destroy();
        up.destroy();
        open.delete(client);
        open.delete(up);
      };
      client.pipe(up);
      up.pipe(client);
      client.on("error", done).on("close", done);
      up.on("error", done).on("close", done);
    });
    client.on("error", () => {});
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        pause() {
          state.refuse = true;
          for (const s of open) s.destroy();
        },
        resume() {
          state.refuse = false;
        },
        block(...what) {
          state.block = new Set(what);
          for (const s of open) s.destroy();
        },
        close() {
          for (const s of open) s.destroy();
          server.close();
        },
      }),
    ),
  );
}

