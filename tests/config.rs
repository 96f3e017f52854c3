//! The config file, the `PUSHLOOP_<FLAG>` variables and `pushloop check-config`: every
//! setting through each of the three gives the same effective configuration; precedence
//! flags > env > file > defaults; unknown keys and bad values are named with their line.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A non-default value for every setting, as TOML. A new flag must get one here (the
/// test fails naming it otherwise).
const SETTINGS: &[(&str, &str)] = &[
    ("listen", "\"127.0.0.1:9\""),
    ("workers", "2"),
    ("mode", "\"echo\""),
    ("protocol", "[\"chat.v2\"]"),
    ("max-message", "1000"),
    ("max-frame", "900"),
    ("max-connections", "50"),
    ("handshake-timeout", "3"),
    ("close-timeout", "4"),
    ("origin", "[\"https://example.com\"]"),
    ("max-backlog", "5000"),
    ("backlog-policy", "\"drop-newest\""),
    ("channel-policy", "[\"ticker.*=latest\"]"),
    ("ping-interval", "7.5"),
    ("pong-timeout", "8"),
    ("history", "9"),
    ("history-bytes", "1000"),
    ("max-channels", "11"),
    ("redis", "\"redis://127.0.0.1:1\""),
    ("history-ttl", "60"),
    ("publish-token", "\"tok-123\""),
    ("jwt-secret", "\"jwt-secret-123\""),
    ("jwt-public-key", "\"/tmp/jwt.pem\""),
    ("jwt-audience", "\"aud-1\""),
    ("jwt-issuer", "\"iss-1\""),
    ("auth", "\"required\""),
    ("max-connections-per-user", "3"),
    ("max-connections-per-ip", "4"),
    ("handshake-rate", "5"),
    ("trusted-proxy", "[\"10.0.0.0/8\"]"),
    ("cors-origin", "\"*\""),
    ("presence-events", "true"),
    ("static", "\"/tmp\""),
    ("deflate", "\"off\""),
    ("deflate-window-bits", "10"),
    ("deflate-client-window-bits", "9"),
    ("deflate-context-takeover", "true"),
    ("deflate-threshold", "12"),
    ("deflate-level", "3"),
    ("tls-cert", "\"/tmp/cert.pem\""),
    ("tls-key", "\"/tmp/key.pem\""),
    ("shutdown-timeout", "6"),
    ("drain-timeout", "1"),
    ("metrics-listen", "\"127.0.0.1:0\""),
    ("log-format", "\"json\""),
    ("log-level", "\"debug\""),
    ("access-log", "true"),
];

/// A scratch file under the target directory's tmp.
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("config");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// Runs the binary with `args` and `env` (nothing inherited that starts with
/// `PUSHLOOP_`); returns its status code, stdout and stderr.
fn run(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushloop"));
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("PUSHLOOP_")) {
        command.env_remove(name);
    }
    command.args(args).envs(env.iter().map(|(n, v)| (n, v)));
    let output = output_within(command, TIMEOUT * 2).expect("pushloop did not exit in time");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `check-config` of `file` with `args` before it and `env`; asserts exit 0.
fn check(file: &Path, args: &[&str], env: &[(String, String)]) -> String {
    let mut all = args.to_vec();
    let file = file.to_str().expect("UTF-8 path");
    all.extend(["check-config", file]);
    let (code, stdout, stderr) = run(&all, env);
    assert_eq!(code, 0, "{stderr}");
    stdout
}

/// The keys `check-config` prints, in order.
fn keys(effective: &str) -> Vec<String> {
    effective
        .lines()
        .map(|line| {
            let line = line.trim_start_matches("# ");
            line.split([' ', '=']).next().unwrap_or("").to_owned()
        })
        .collect()
}

/// A TOML value as a flag or variable value (arrays: their one element).
fn plain(value: &str) -> String {
    value
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_matches('"')
        .to_owned()
}

#[test]
fn every_setting_through_file_env_or_flag_gives_the_same_configuration() {
    let empty = scratch("empty.toml", "");
    let defaults = check(&empty, &[], &[]);
    let expected: Vec<String> = SETTINGS.iter().map(|(k, _)| (*k).to_owned()).collect();
    assert_eq!(
        keys(&defaults),
        expected,
        "every setting needs a value in SETTINGS"
    );

    let toml: String = SETTINGS
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    let file = scratch("every.toml", &toml);
    let from_file = check(&file, &[], &[]);

    let env: Vec<(String, String)> = SETTINGS
        .iter()
        .map(|(k, v)| {
            let name = format!("PUSHLOOP_{}", k.to_uppercase().replace('-', "_"));
            (name, plain(v))
        })
        .collect();
    let from_env = check(&empty, &[], &env);

    let flags: Vec<String> = SETTINGS
        .iter()
        .flat_map(|(k, v)| match *v {
            "true" => vec![format!("--{k}")],
            _ => vec![format!("--{k}={}", plain(v))],
        })
        .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let from_flags = check(&empty, &flags, &[]);

    assert_eq!(from_file, from_env);
    assert_eq!(from_file, from_flags);
    // Every line differs from the default, and the secret is masked.
    for (set, default) in from_file.lines().zip(defaults.lines()) {
        assert_ne!(set, default);
    }
    assert!(
        from_file.contains("publish-token = \"********\""),
        "{from_file}"
    );
    assert!(!from_file.contains("tok-123"));
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let file = scratch(
        "precedence.toml",
        "max-message = 1\nmax-frame = 2\nhistory = 3\n",
    );
    let env = [
        ("PUSHLOOP_MAX_MESSAGE".to_owned(), "10".to_owned()),
        ("PUSHLOOP_MAX_FRAME".to_owned(), "20".to_owned()),
    ];
    let out = check(&file, &["--max-message", "100"], &env);
    assert!(out.contains("max-message = 100\n"), "{out}");
    assert!(out.contains("max-frame = 20\n"), "{out}");
    assert!(out.contains("history = 3\n"), "{out}");
    assert!(out.contains("max-channels = 10000\n"), "{out}");
}

/// Exit 2, with the file, the line and the key in the message.
fn assert_refused(text: &str, expected: &str) {
    let file = scratch("bad.toml", text);
    let (code, stdout, stderr) = run(&["check-config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let want = format!("pushloop: {}:{expected}", file.display());
    assert!(
        stderr.starts_with(&want),
        "{stderr:?} does not start with {want:?}"
    );
    // Serving with the same file refuses to start the same way.
    let config = format!("--config={}", file.display());
    let (code, _, stderr) = run(&["--listen", "127.0.0.1:0", &config], &[]);
    assert_eq!(code, 2);
    assert!(stderr.starts_with(&want), "{stderr:?}");
}

#[test]
fn unknown_keys_and_bad_values_are_named_with_their_line() {
    assert_refused("history = 5\nmax-mesage = 5\n", "2: unknown key max-mesage");
    assert_refused(
        "\n\nmax-message = \"lots\"\n",
        "3: max-message: invalid value 'lots'",
    );
    assert_refused(
        "backlog-policy = \"sometimes\"\n",
        "1: backlog-policy: invalid value",
    );
    assert_refused(
        "deflate-level = 12\n",
        "1: deflate-level: invalid value '12'",
    );
    assert_refused(
        "max-frame = [1, 2]\n",
        "1: max-frame: takes one value, not an array",
    );
    assert_refused(
        "presence-events = \"yes\"\n",
        "1: presence-events: takes true or false",
    );
    assert_refused("config = \"other.toml\"\n", "1: unknown key config");
}

#[test]
fn a_missing_file_is_an_error() {
    let (code, _, stderr) = run(&["check-config", "/nonexistent/pushloop.toml"], &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read /nonexistent/pushloop.toml"),
        "{stderr}"
    );
}

#[test]
fn the_example_file_is_valid_and_lists_every_setting() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pushloop.toml");
    let text = std::fs::read_to_string(&example).expect("pushloop.toml");
    let out = check(&example, &[], &[]);
    for key in keys(&out) {
        assert!(
            text.lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} ="))),
            "pushloop.toml does not list {key}"
        );
    }
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/config.md");
    let docs = std::fs::read_to_string(docs).expect("docs/config.md");
    for key in keys(&out) {
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/config.md does not list {key}"
        );
    }
}
