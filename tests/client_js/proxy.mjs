// A TCP proxy between a client and a pushloop server, for tests/client_js and
// tests/browser/client_e2e.mjs: `pause()` drops every connection and refuses new ones
// until `resume()`; `block("websocket")` answers upgrades 403 (as a proxy that strips
// `Upgrade` leaves a client without WebSockets), `block("websocket", "sse")` also
// answers `GET /sse/...` 502; `block()` forwards everything again.
import net from "node:net";

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

