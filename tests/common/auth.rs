//! Helpers of the authentication tests: tokens minted with `jsonwebtoken`, raw upgrade
//! requests, `pushloop.v1` commands.

use super::push::*;
use super::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use std::io::Write;
use std::net::SocketAddr;

/// The HMAC secret the test servers are started with.
pub const SECRET: &str = "test-secret-0123456789";

/// The RSA key pair of the RS256 tests.
pub const RSA_PRIVATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/auth/rsa_private.pem");
/// Its public half (the server's `--jwt-public-key`).
pub const RSA_PUBLIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/auth/rsa_public.pem");

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token with `claims`, signed with `secret`.
pub fn mint_with(claims: serde_json::Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

/// An HS256 token with `claims`, signed with [`SECRET`].
pub fn mint(claims: serde_json::Value) -> String {
    mint_with(claims, SECRET.as_bytes())
}

/// An RS256 token with `claims`, signed with the test RSA key.
pub fn mint_rs256(claims: serde_json::Value) -> String {
    let pem = std::fs::read(RSA_PRIVATE).unwrap();
    encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

/// The answer to a WebSocket upgrade of `path` on a raw socket, with `extra` headers
/// (a `101` has no body; a refusal is read whole).
pub fn upgrade(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> HttpResponse {
    let mut stream = tcp(addr);
    stream
        .write_all(&upgrade_head(path, &[], extra))
        .expect("send the upgrade");
    let response = read_response_head(&mut stream);
    if response.status == 101 {
        return response;
    }
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut rest);
    HttpResponse {
        body: rest.into_bytes(),
        ..response
    }
}

/// Asserts `response` is `status` with the JSON body `{"error":"<error>"}`.
pub fn assert_refused(response: &HttpResponse, status: u16, error: &str) {
    assert_eq!(
        (response.status, body(response).trim()),
        (status, format!("{{\"error\":\"{error}\"}}").as_str()),
        "{response:?}"
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
}

/// A `pushloop.v1` client of `path` (a query `token=` if given).
pub fn v1(addr: SocketAddr, path: &str) -> Client {
    ws(addr, path, true)
}

/// Sends `json` as a text message.
pub fn send_json(client: &mut Client, json: serde_json::Value) {
    client
        .send(tungstenite::Message::text(json.to_string()))
        .expect("send");
}

/// The next text message as JSON.
pub fn recv_json(client: &mut Client) -> serde_json::Value {
    let text = recv_text(client);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}
