#!/usr/bin/env python3
"""wss:// through a real client: Python `websockets` (its asyncio client), trusting a
private CA.

Run by tests/tls.rs:

    client.py echo wss://localhost:PORT/ws CA.pem
    client.py chat wss://localhost:PORT/ws/room CA.pem

Offers permessage-deflate (websockets' default) and checks that the server agreed.
`echo` sends text and binary messages at the frame-size boundaries (0, 125, 126,
65535, 65536 bytes and 1 MiB; compressible and random) and checks every echo. `chat`
opens two clients on the same channel; each message one sends, the other receives.

The asyncio client, not the sync one: the sync client reads on a thread of its own while
the caller writes, which OpenSSL does not allow on one connection (TLS 1.3 session
tickets then fail it at random).

Prints `summary: ...` and exits 0, or `FAIL: ...` and exits 1. Every wait is bounded.
"""

import asyncio
import os
import ssl
import sys

from websockets.asyncio.client import connect

SIZES = [0, 125, 126, 65535, 65536, 1 << 20]
WAIT = 10  # seconds, for any single wait


class Fail(Exception):
    pass


def payloads():
    for size in SIZES:
        text = ("pushloop " * (size // 9 + 1))[:size]
        yield text
        yield text.encode()
        yield os.urandom(size)


async def open_client(url, context):
    ws = await asyncio.wait_for(
        connect(url, ssl=context, max_size=None, open_timeout=WAIT), WAIT
    )
    extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    if "permessage-deflate" not in extensions:
        raise Fail(f"permessage-deflate not agreed: {extensions!r}")
    return ws


async def echo(url, context):
    ws = await open_client(url, context)
    n = 0
    async with ws:
        for message in payloads():
            await asyncio.wait_for(ws.send(message), WAIT)
            got = await asyncio.wait_for(ws.recv(), WAIT)
            if got != message:
                raise Fail(f"echo of {type(message).__name__} {len(message)} differs")
            n += 1
    print(f"summary: echo messages={n} ok={n} cipher={cipher(ws)}")


async def chat(url, context):
    a = await open_client(url, context)
    b = await open_client(url, context)
    n = 0
    async with a, b:
        for message in payloads():
            for sender, receiver in ((a, b), (b, a)):
                await asyncio.wait_for(sender.send(message), WAIT)
                got = await asyncio.wait_for(receiver.recv(), WAIT)
                if got != message:
                    raise Fail(f"chat {type(message).__name__} {len(message)} differs")
                n += 1
    print(f"summary: chat messages={n} ok={n}")


def cipher(ws):
    ssl_object = ws.transport.get_extra_info("ssl_object")
    return f"{ssl_object.version()}/{ssl_object.selected_alpn_protocol()}"


def main():
    mode, url, ca = sys.argv[1:4]
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["http/1.1"])
    try:
        asyncio.run({"echo": echo, "chat": chat}[mode](url, context))
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        print(f"FAIL: {type(e).__name__}: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
