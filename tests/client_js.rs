//! `clients/js/pushloop.js` under Node.js 22, against the real binary: runs
//! `node --test tests/client_js/` (one socket for several channels, publish acks, resume
//! after a cut path, the SSE and long-poll fallbacks and the way back, tokens with a
//! private channel, a refresh and a gap). Two servers: one with `--history 1000`, one
//! with `--jwt-secret` and `--history 5`.
//!
//! Node.js 22 is the npm package `node` in `tests/client_js/node_modules` (the machine's
//! node is 20, without a global `WebSocket`); `./test.sh` installs it. A missing one fails
//! this test loudly: it never skips.

mod common;

use common::{output_within, Binary};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The longest the Node tests may run.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// The HS256 secret of the second server (a test value).
const SECRET: &str = "client-js-test-secret-0123456789abcdef";

fn node() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/client_js/node_modules/.bin/node")
}

#[test]
fn pushloop_js_under_node_22() {
    let node = node();
    assert!(
        node.is_file(),
        "{} is missing: run ./test.sh (it installs Node.js 22 there)",
        node.display()
    );
    let plain = Binary::start(&["--history", "1000"]);
    let auth = Binary::start(&["--history", "5", "--jwt-secret", SECRET]);
    let mut command = Command::new(&node);
    command
        .args([
            "--test",
            "--test-reporter=spec",
            "tests/client_js/client.test.mjs",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PUSHLOOP_ADDR", plain.addr.to_string())
        .env("PUSHLOOP_AUTH_ADDR", auth.addr.to_string())
        .env("PUSHLOOP_SECRET", SECRET);
    let out = output_within(command, TIME_LIMIT)
        .unwrap_or_else(|| panic!("node --test did not end within {TIME_LIMIT:?}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "node --test failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(stdout.contains("pass 4"), "{stdout}");
}
