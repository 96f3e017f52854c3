//! `GET /pushloop.js`: the browser client (`clients/js/pushloop.js`, embedded), with an
//! `ETag` and a week-long cache lifetime, so pages import it from the server they talk to.

use pushloop::Response;
use std::sync::OnceLock;

/// The module, as published in `clients/js/`.
pub const SOURCE: &str = include_str!("../../clients/js/pushloop.js");

/// How long browsers and proxies may keep it without asking again (a week); after that
/// they revalidate with `If-None-Match` and get `304` while it did not change.
const CACHE_CONTROL: &str = "public, max-age=604800";

/// The entity tag: FNV-1a of the module, so it changes with every new version.
pub fn etag() -> &'static str {
    static ETAG: OnceLock<String> = OnceLock::new();
    ETAG.get_or_init(|| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in SOURCE.bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("\"{hash:016x}\"")
    })
}

/// Whether an `If-None-Match` value names the current version (RFC 9110 §13.1.2:
/// a list of tags, weak ones compared weakly, or `*`).
fn matches(if_none_match: &str) -> bool {
    if_none_match
        .split(',')
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag())
}

/// The answer to `GET /pushloop.js`: the module, or `304` when the client has it.
pub fn response(if_none_match: Option<&str>) -> Response {
    let response = if if_none_match.is_some_and(matches) {
        Response::new(304, "text/javascript; charset=utf-8", Vec::new())
    } else {
        Response::new(200, "text/javascript; charset=utf-8", SOURCE)
    };
    response
        .header("ETag", etag())
        .header("Cache-Control", CACHE_CONTROL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_quoted_and_matched_in_lists() {
        let tag = etag();
        assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() == 18);
        assert!(matches(tag));
        assert!(matches(&format!("\"x\", W/{tag}")));
        assert!(matches("*"));
        assert!(!matches("\"0000000000000000\""));
    }
}
