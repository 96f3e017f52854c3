//! RFC 6455 and RFC 7692 conformance: the Autobahn|Testsuite fuzzingclient against the
//! binary in echo mode and against `examples/echo.rs`. Every case must be OK or
//! INFORMATIONAL, strictly.
//!
//! Sections 1-10 run whole against both servers, and against the binary over `wss://`. Sections 12 and 13 (permessage-deflate,
//! 216 cases) take ~20 minutes whatever the server, so the test command runs a
//! representative subset against the binary (see [`DEFLATE_SUBSET`]); the full run is
//! done by hand (README, "Conformance").

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// The permessage-deflate cases the test command runs: every message size of 12.1 and
/// 12.2 (small and medium messages, no context takeover from the client), and the
/// first sizes of each of the seven parameter sets of section 13 (context takeover both
/// ways, `server_no_context_takeover`, `server_max_window_bits` 9 and 15, and several
/// offers in one header).
const DEFLATE_SUBSET: &str = "12.1.*,12.2.*,13.1.1,13.1.2,13.2.1,13.2.2,13.3.1,13.3.2,13.4.1,13.4.2,13.5.1,13.5.2,13.6.1,13.6.2,13.7.1,13.7.2";

/// Sections 1-10: everything but permessage-deflate.
const WITHOUT_DEFLATE: &str = "12.*,13.*";

/// One wstest at a time: each uses a core.
static SERIAL: Mutex<()> = Mutex::new(());

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/autobahn")
}

/// Starts `program args..`, reads its first stdout line, and returns the `host:port`
/// it names (the first token containing `127.0.0.1:`).
fn start(program: &Path, args: &[&str]) -> (Running, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("listening line");
    let addr = line
        .split_whitespace()
        .find_map(|w| {
            w.split("://")
                .nth(1)
                .or(Some(w))
                .filter(|a| a.starts_with("127.0.0.1:"))
        })
        .map(|a| a.split('/').next().unwrap_or(a).to_owned())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (running, addr)
}

/// Runs the `cases` (minus `exclude`) against `url` and checks the summary: no FAILED or
/// NON-STRICT case, no unclean close, at least `min_ok` OK.
fn conformance(agent: &str, url: &str, cases: &str, exclude: &str, min_ok: usize) {
    let setup = Command::new(suite_dir().join("setup.sh"))
        .status()
        .expect("run setup.sh");
    assert!(
        setup.success(),
        "autobahn setup (tests/autobahn/setup.sh) failed: run ./test.sh (it installs it)"
    );
    let outdir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("autobahn-{agent}"));
    let _ = std::fs::remove_dir_all(&outdir);
    let output = Command::new(suite_dir().join("run.sh"))
        .args([url, cases, exclude])
        .env("AUTOBAHN_AGENT", agent)
        .env("AUTOBAHN_OUTDIR", &outdir)
        .env("AUTOBAHN_TIMEOUT", "900")
        .output()
        .expect("run run.sh");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    // CI prints these after the test run, passed or failed.
    std::fs::write(outdir.join("summary.txt"), report.as_bytes()).expect("write summary");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let summary = report
        .lines()
        .find(|l| l.starts_with("autobahn: ") && l.contains(" OK, "))
        .unwrap_or_else(|| panic!("no summary line from run.sh for {agent}"));
    let words: Vec<&str> = summary
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .collect();
    let number_near = |label: &str, offset: isize| -> usize {
        let at = words
            .iter()
            .position(|w| *w == label)
            .unwrap_or_else(|| panic!("no {label} in {summary}"));
        words[(at as isize + offset) as usize]
            .parse()
            .expect("a count")
    };
    let ok = number_near("OK", -1);
    let failed = number_near("failed", -1);
    let non_strict = number_near("non-strict", 1);
    let close_notes: Vec<&str> = report.lines().filter(|l| l.starts_with("close ")).collect();
    assert_eq!(failed, 0, "{agent}: FAILED cases\n{report}");
    assert_eq!(non_strict, 0, "{agent}: NON-STRICT cases\n{report}");
    assert!(
        close_notes.is_empty(),
        "{agent}: unclean closes {close_notes:?}"
    );
    assert!(ok >= min_ok, "{agent}: only {ok} OK\n{report}");
    assert!(
        output.status.success(),
        "{agent}: run.sh exit {:?}",
        output.status
    );
}

#[test]
fn binary_in_echo_mode_passes_autobahn() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_server, addr) = start(
        Path::new(env!("CARGO_BIN_EXE_pushloop")),
        &["--mode", "echo", "--listen", "127.0.0.1:0"],
    );
    conformance(
        "pushloop-binary",
        &format!("ws://{addr}/ws"),
        "*",
        WITHOUT_DEFLATE,
        298,
    );
}

#[test]
fn binary_passes_autobahn_permessage_deflate_subset() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_server, addr) = start(
        Path::new(env!("CARGO_BIN_EXE_pushloop")),
        &["--mode", "echo", "--listen", "127.0.0.1:0"],
    );
    let cases = DEFLATE_SUBSET
        .split(',')
        .map(|c| if c.ends_with('*') { 18 } else { 1 });
    conformance(
        "pushloop-binary-deflate",
        &format!("ws://{addr}/ws"),
        DEFLATE_SUBSET,
        "",
        cases.sum(),
    );
}

/// Sections 1-10 over `wss://` (`--tls-cert`). wstest (Twisted's `ClientContextFactory`)
/// does not check the server's certificate, so it cannot be told to trust the test CA;
/// the certificate still comes from it.
#[test]
fn binary_over_wss_passes_autobahn() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let certs = common::tls::Certs::new("autobahn", 1);
    let tls = certs.args();
    let mut args = vec!["--mode", "echo", "--listen", "127.0.0.1:0"];
    args.extend(tls.iter().map(String::as_str));
    let (_server, addr) = start(Path::new(env!("CARGO_BIN_EXE_pushloop")), &args);
    conformance(
        "pushloop-binary-wss",
        &format!("wss://{addr}/ws"),
        "*",
        WITHOUT_DEFLATE,
        298,
    );
}

#[test]
fn echo_example_passes_autobahn() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // `cargo test` builds the examples next to the test binaries' profile directory.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_pushloop"))
        .parent()
        .expect("bin dir")
        .to_owned();
    let example = bin_dir.join("examples/echo");
    assert!(
        example.exists(),
        "{} not built (cargo test builds examples)",
        example.display()
    );
    let (_server, addr) = start(&example, &["127.0.0.1:0"]);
    conformance(
        "pushloop-echo-example",
        &format!("ws://{addr}/"),
        "*",
        WITHOUT_DEFLATE,
        298,
    );
}
