#!/usr/bin/env python3
"""Writes the hand-made seed inputs under fuzz/seeds/<target>/ (run from anywhere).

Decoder and utf8 seeds start with the chunking schedule of fuzz_targets/common/schedule.rs:
a first byte k (low 3 bits) and k chunk-size bytes. 0x00 means "one byte at a time";
0x01 0x85 means "chunks of 321 bytes" (the whole stream at once for these seeds).
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # RFC 6455 §5.7


def mask(payload, key=KEY):
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(opcode, payload, fin=True, key=KEY):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + key + mask(payload, key)


BYTEWISE = b"\x00"
WHOLE = b"\x01\x85"
MIXED = b"\x03\x02\x05\x81"  # chunks of 3, 6 and 65 bytes

hello = frame(0x1, b"Hello")
assert hello == bytes.fromhex("818537fa213d7f9f4d5158")  # RFC 6455 §5.7
fragmented = frame(0x1, b"Hel", fin=False) + frame(0x0, b"lo")
ping = frame(0x9, b"Hello")
close_1000 = frame(0x8, (1000).to_bytes(2, "big") + b"bye")
with_ping = (
    frame(0x1, "κό".encode(), fin=False)
    + frame(0x9, b"mid")
    + frame(0x0, b"", fin=False)
    + frame(0x0, "σμε".encode())
)
binary_256 = frame(0x2, bytes(range(256)))
all_in_one = hello + fragmented + ping + frame(0xA, b"pong") + binary_256 + close_1000

decoder = {
    "hello_rfc": WHOLE + hello,
    "hello_bytewise": BYTEWISE + hello,
    "fragmented": MIXED + fragmented,
    "ping": WHOLE + ping,
    "close_1000": BYTEWISE + close_1000,
    "fragments_with_ping": MIXED + with_ping,
    "binary_256": b"\x01\x10" + binary_256,
    "stream": MIXED + all_in_one,
    "invalid_utf8_in_fragment": BYTEWISE + frame(0x1, b"ok\xed\xa0\x80", fin=False),
    "unmasked_hello": WHOLE + bytes.fromhex("810548656c6c6f"),
}

upgrade = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
handshake = {
    "upgrade_rfc": upgrade,
    "upgrade_then_frame": upgrade + hello,
    "http10": upgrade.replace(b"HTTP/1.1", b"HTTP/1.0"),
    "bad_key": upgrade.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="),
    "post_body": b"POST /publish/news HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    "chunked": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
    "two_lengths": b"POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n",
    "malformed": b"GET /\x01 HTTP/1.1\r\n\r\n",
    "incomplete": b"GET / HTTP/1.1\r\nHost: h\r\n",
}

utf8 = {
    "greek": BYTEWISE + "κόσμε aé€𝄞".encode(),
    "greek_mixed": MIXED + "κόσμε aé€𝄞".encode(),
    "surrogate": BYTEWISE + b"ok\xed\xa0\x80",
    "over_max": b"\x01\x01" + b"ab\xf4\x90\x80\x80",
    "overlong": BYTEWISE + b"\xc0\xaf",
    "truncated": WHOLE + b"ab\xe2\x82",
}

for target, seeds in (("decoder", decoder), ("handshake", handshake), ("utf8", utf8)):
    folder = os.path.join(HERE, "seeds", target)
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seeds)} seeds in {folder}")
