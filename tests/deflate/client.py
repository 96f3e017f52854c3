#!/usr/bin/env python3
"""permessage-deflate round trips through a real client: Python `websockets`.

Run by tests/deflate.rs against a pushloop server that echoes:

    client.py ws://127.0.0.1:PORT/ws --expect 'permessage-deflate; ...' [options]

Offers permessage-deflate as `websockets` does (by default
`permessage-deflate; client_max_window_bits`, or what the options ask for), checks the
`Sec-WebSocket-Extensions` the server answered (`--expect none`: no header at all),
then sends text and binary messages of 0, 10, 63, 64, 1000, 100 KB and 1 MB bytes,
compressible and random, plus fragmented ones, and checks every echo.

It counts the bytes on the socket, so it also checks what went over the wire: messages
under the server's threshold come back uncompressed (exactly header + payload bytes),
compressible messages of 100 KB and more come back compressed (unless --server-compresses
no), and a repeated message shrinks the second time only when the server keeps its context.

Prints `summary: messages=N ok=N ...` and exits 0, or prints `FAIL: ...` and exits 1.
Every wait is bounded (open, recv and close timeouts).
"""

import argparse
import random
import socket
import sys
import urllib.parse

from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect

SIZES = [0, 10, 63, 64, 1000, 100_000, 1_000_000]
WAIT = 10  # seconds, for any single wait
THRESHOLD = 64  # the server's default: shorter messages are sent uncompressed


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


class CountingSocket(socket.socket):
    """A TCP socket that counts the bytes read and written through it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rx = 0
        self.tx = 0

    def recv(self, *args, **kwargs):
        data = super().recv(*args, **kwargs)
        self.rx += len(data)
        return data

    def sendall(self, data, *args, **kwargs):
        self.tx += len(data)
        return super().sendall(data, *args, **kwargs)


def header_len(n):
    """RFC 6455 §5.2: the length of an unmasked (server) frame header."""
    return 2 if n < 126 else 4 if n < 65536 else 10


WORDS = [
    "push", "loop", "socket", "frame", "deflate", "window", "message", "server",
    "client", "channel", "broadcast", "context", "takeover", "héllo", "wörld",
    "日本語", "🎉", "compressed", "inflate", "header",
]


def words(rng, n):
    """About n bytes of text made of random words: compresses to roughly half."""
    out, size = [], 0
    while size < n:
        w = rng.choice(WORDS) + " "
        out.append(w)
        size += len(w.encode())
    return "".join(out)


def exact_text(s, n):
    """`s` cut to at most n UTF-8 bytes at a character boundary, padded with '.' to n."""
    b = s.encode()[:n]
    while True:
        try:
            t = b.decode()
            break
        except UnicodeDecodeError:
            b = b[:-1]
    return t + "." * (n - len(t.encode()))


def compressible_text(rng, n):
    # A 2 KB block of random words, repeated: back-references reach 2 KB back, beyond a
    # 1 KB window, so a server that ignores a smaller agreed window breaks the client.
    block = words(rng, 2048)
    return exact_text(block * (n // len(block.encode()) + 1), n)


def random_text(rng, n):
    return exact_text("".join(chr(rng.randrange(0x21, 0x7F)) for _ in range(n)), n)


def compressible_bytes(rng, n):
    block = bytes(rng.randrange(256) for _ in range(2048))
    return (block * (n // 2048 + 1))[:n]


def random_bytes(rng, n):
    return rng.randbytes(n)


def window_bits(extensions, name):
    """The value of `name=N` in a Sec-WebSocket-Extensions answer; 15 when not named."""
    for param in (extensions or "").split(";"):
        key, _, value = param.strip().partition("=")
        if key == name and value:
            return int(value)
    return 15


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--expect", required=True,
                    help="the exact Sec-WebSocket-Extensions answer, or 'none'")
    ap.add_argument("--server-no-context-takeover", action="store_true")
    ap.add_argument("--client-no-context-takeover", action="store_true")
    ap.add_argument("--server-max-window-bits", type=int)
    ap.add_argument("--client-max-window-bits", default="bare",
                    help="N, 'bare' (offered without a value) or 'none' (not offered)")
    ap.add_argument("--server-compresses", choices=["yes", "no"], default="yes")
    ap.add_argument("--server-takeover", choices=["yes", "no"], required=True,
                    help="whether the server is expected to keep its context")
    args = ap.parse_args()

    cmwb = {"bare": True, "none": None}.get(args.client_max_window_bits)
    if cmwb is None and args.client_max_window_bits not in ("bare", "none"):
        cmwb = int(args.client_max_window_bits)
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=args.server_no_context_takeover,
        client_no_context_takeover=args.client_no_context_takeover,
        server_max_window_bits=args.server_max_window_bits,
        client_max_window_bits=cmwb,
    )

    url = urllib.parse.urlparse(args.url)
    sock = CountingSocket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect((url.hostname, url.port))
    progress = {"ok": 0}
    try:
        with connect(
            args.url,
            sock=sock,
            extensions=[factory],
            compression=None,
            proxy=None,
            open_timeout=WAIT,
            close_timeout=WAIT,
            ping_interval=None,
            max_size=4 << 20,
        ) as ws:
            run(ws, sock, args, progress)
    except Fail as e:
        print(f"FAIL: {e}")
        return 1
    except ConnectionClosed as e:
        print(f"FAIL: connection closed after {progress['ok']} echoes: {e!r}")
        return 1
    except TimeoutError:
        print(f"FAIL: no echo within {WAIT} s after {progress['ok']} echoes")
        return 1
    return 0


def run(ws, sock, args, progress):
    """The checks on one connection; raises Fail at the first one that fails."""
    messages = 0
    got = ws.response.headers.get("Sec-WebSocket-Extensions")
    print(f"negotiated: {got}")
    if args.expect == "none":
        check(got is None, f"expected no Sec-WebSocket-Extensions, got {got!r}")
    else:
        check(got == args.expect, f"Sec-WebSocket-Extensions {got!r}, expected {args.expect!r}")
    deflating = got is not None
    server_compresses = deflating and args.server_compresses == "yes"
    # The windows agreed (15 unless named): compressible data repeats a 2 KB block, which
    # only a window of 2^12 or more can refer back to.
    server_window = window_bits(got, "server_max_window_bits")
    client_window = window_bits(got, "client_max_window_bits")

    def echo(msg, what, compressible):
        """Sends msg, checks the echo; returns the bytes the echo took on the wire."""
        nonlocal messages
        messages += 1
        size = len(msg.encode()) if isinstance(msg, str) else len(msg)
        rx0, tx0 = sock.rx, sock.tx
        ws.send(msg)
        back = ws.recv(timeout=WAIT)
        rx, tx = sock.rx - rx0, sock.tx - tx0
        check(type(back) is type(msg), f"{what}: echo is {type(back).__name__}")
        check(back == msg, f"{what}: echo differs ({len(back)} vs {size} long)")
        plain = header_len(size) + size
        if not server_compresses or size < THRESHOLD:
            check(rx == plain, f"{what}: echo took {rx} bytes, not {plain} uncompressed")
        elif compressible and size >= 100_000 and server_window >= 12:
            check(rx < size // 4, f"{what}: echo took {rx} bytes: not compressed")
        elif compressible and size >= 100_000 and isinstance(msg, bytes):
            # Only back-references beyond the agreed window could shrink this.
            check(rx > size * 9 // 10,
                  f"{what}: echo took {rx} bytes: server used a window over 2^{server_window}")
        if deflating and compressible and size >= 100_000 and client_window >= 12:
            check(tx < size // 4, f"{what}: we sent {tx} bytes: client did not compress")
        print(f"ok {what}: {size} bytes, echo {rx} bytes on the wire, sent {tx}")
        progress["ok"] += 1
        return rx

    rng = random.Random(7692)
    for size in SIZES:
        echo(compressible_text(rng, size), f"text compressible {size}", True)
        echo(random_text(rng, size), f"text random {size}", False)
        echo(compressible_bytes(rng, size), f"binary compressible {size}", True)
        echo(random_bytes(rng, size), f"binary random {size}", False)

    # Fragmented messages: the first frame has RSV1, the others continue the stream.
    for kind, parts in [
        ("text", [compressible_text(rng, 30_000) for _ in range(3)]),
        ("binary", [compressible_bytes(rng, 30_000) for _ in range(3)]),
    ]:
        messages += 1
        ws.send(iter(parts))
        back = ws.recv(timeout=WAIT)
        whole = "".join(parts) if kind == "text" else b"".join(parts)
        check(back == whole, f"fragmented {kind}: echo differs ({len(back)} vs {len(whole)})")
        print(f"ok fragmented {kind}: 3 fragments, {len(whole)} long")
        progress["ok"] += 1

    # The same message twice: with the server's context kept, the second echo refers
    # back to the first and shrinks; without it, both are compressed alike.
    repeated = words(rng, 300)  # within even a 1 KB window
    first = echo(repeated, "repeat 1", True)
    second = echo(repeated, "repeat 2", True)
    if server_compresses and args.server_takeover == "yes":
        check(second < first // 4, f"repeat: {second} vs {first} bytes: no context kept")
    elif server_compresses:
        check(second == first, f"repeat: {second} vs {first} bytes: context kept")
    print(f"summary: messages={messages} ok={progress['ok']} repeat={first},{second}")


if __name__ == "__main__":
    sys.exit(main())
