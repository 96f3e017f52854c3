#!/usr/bin/env python3
"""Tokens from a second, independent JWT implementation: PyJWT (with `cryptography`).

Run by tests/auth.rs against the pushloop binary started with
`--jwt-secret SECRET --jwt-public-key rsa_public.pem --jwt-audience app`:

    pyjwt_client.py HOST:PORT SECRET RSA_PRIVATE_PEM

Mints HS256, HS512 and RS256 tokens with PyJWT, and the attacks (`alg: none`, an
expired token, `nbf` in the future, a wrong audience, another secret, a changed
payload), then upgrades with Python `websockets` (token in `?token=` or in
`Authorization: Bearer`) and checks the exact status and body of every answer. A
personal channel of another user must get 403; the user's own gets its messages.

Prints `summary: cases=N ok=N` and exits 0, or prints `FAIL: ...` and exits 1. Every
wait is bounded.
"""

import base64
import json
import sys
import time
import urllib.request

import jwt
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

WAIT = 10  # seconds, for any single wait


def upgrade(host, path, token=None, header=False):
    """(status, body) of a WebSocket upgrade; the connection is closed again."""
    url = f"ws://{host}{path}"
    headers = {}
    if token is not None and header:
        headers["Authorization"] = f"Bearer {token}"
    elif token is not None:
        url += ("&" if "?" in url else "?") + "token=" + token
    try:
        with connect(url, additional_headers=headers, open_timeout=WAIT, close_timeout=WAIT):
            return 101, ""
    except InvalidStatus as e:
        return e.response.status_code, e.response.body.decode().strip()


def main():
    host, secret, rsa_pem_path = sys.argv[1:4]
    with open(rsa_pem_path, "rb") as f:
        rsa_private = f.read()
    now = int(time.time())
    good = {"sub": "alice", "aud": "app", "exp": now + 600}
    hs256 = jwt.encode(good, secret, algorithm="HS256")
    hs512 = jwt.encode(good, secret, algorithm="HS512")
    rs256 = jwt.encode(good, rsa_private, algorithm="RS256")
    none = jwt.encode(good, None, algorithm="none")
    header, payload, signature = hs256.split(".")
    forged = dict(good, sub="mallory")
    changed = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    tampered = f"{header}.{changed}.{signature}"

    def err(text):
        return json.dumps({"error": text}, separators=(",", ":"))

    cases = [
        ("hs256 query", "/ws/news", hs256, False, 101, ""),
        ("hs256 bearer", "/ws/news", hs256, True, 101, ""),
        ("hs512", "/ws/news", hs512, False, 101, ""),
        ("rs256", "/ws/news", rs256, True, 101, ""),
        ("own personal channel", "/ws/user:alice", rs256, False, 101, ""),
        ("alg none", "/ws/news", none, False, 401, err("malformed token")),
        ("changed payload", "/ws/news", tampered, False, 401, err("bad token signature")),
        (
            "another secret",
            "/ws/news",
            jwt.encode(good, "another secret", algorithm="HS256"),
            False,
            401,
            err("bad token signature"),
        ),
        (
            "expired",
            "/ws/news",
            jwt.encode(dict(good, exp=now - 60), secret, algorithm="HS256"),
            True,
            401,
            err("token expired"),
        ),
        (
            "nbf in the future",
            "/ws/news",
            jwt.encode(dict(good, nbf=now + 600), secret, algorithm="HS256"),
            False,
            401,
            err("token not valid yet"),
        ),
        (
            "wrong audience",
            "/ws/news",
            jwt.encode(dict(good, aud="other"), secret, algorithm="HS256"),
            False,
            401,
            err("wrong token audience"),
        ),
        (
            "another user's channel",
            "/ws/user:bob",
            hs256,
            False,
            403,
            err("the personal channel of another user"),
        ),
    ]
    ok = 0
    for name, path, token, header, status, body in cases:
        got = upgrade(host, path, token, header)
        if got != (status, body):
            print(f"FAIL: {name}: expected {(status, body)}, got {got}")
            return 1
        ok += 1

    # The user's own channel gets what the backend publishes to the user.
    with connect(f"ws://{host}/ws/user:alice?token={rs256}", open_timeout=WAIT) as ws:
        for _ in range(100):  # until the server counts the member (bounded)
            with urllib.request.urlopen(f"http://{host}/channels/user:alice", timeout=WAIT) as r:
                if json.load(r)["subscribers"]["websocket"] >= 1:
                    break
            time.sleep(0.01)
        request = urllib.request.Request(
            f"http://{host}/publish/user/alice",
            data=b"hello alice",
            headers={"Content-Type": "text/plain"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=WAIT) as r:
            answer = json.load(r)
        got = ws.recv(timeout=WAIT)
        if got != "hello alice" or answer.get("delivered") != 1:
            print(f"FAIL: personal message: got {got!r}, publish answered {answer}")
            return 1
        ok += 1
    print(f"summary: cases={len(cases) + 1} ok={ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
