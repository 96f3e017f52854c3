//! Helpers for the operations tests: scrape `/metrics` and parse it with Python's
//! `prometheus_client` (an independent parser, in the virtualenv `target/py3`).

use super::push::get;
use super::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The virtualenv's python, with `prometheus_client` importable, or a panic saying how to
/// get it.
pub fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py3/bin/python");
    let mut command = Command::new(&python);
    command.args(["-c", "import prometheus_client.parser"]);
    let ok = output_within(command, TIMEOUT * 2).is_some_and(|o| o.status.success());
    assert!(
        ok,
        "`import prometheus_client.parser` failed in {}: run ./test.sh (it installs \
         prometheus_client==0.26.0 there)",
        python.display()
    );
    python
}

/// One scrape: every sample by `name{labels}` (labels sorted), and each family's type.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub samples: BTreeMap<String, f64>,
    pub types: BTreeMap<String, String>,
}

impl Scrape {
    /// The value of `key` (`name{label="v"}`, labels sorted; `name{}` for none).
    pub fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in {:#?}", self.samples.keys()))
    }

    /// How much `key` grew from `before` to here.
    pub fn delta(&self, before: &Scrape, key: &str) -> f64 {
        self.get(key) - before.get(key)
    }
}

/// Parses an exposition with `scrape.py`; panics with the parser's error if it does not
/// parse.
pub fn parse_exposition(text: &str) -> Scrape {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ops/scrape.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the exposition");
    let output = child.wait_with_output().expect("python output");
    assert!(
        output.status.success(),
        "prometheus_client could not parse the scrape: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut scrape = Scrape {
        samples: BTreeMap::new(),
        types: BTreeMap::new(),
    };
    for line in String::from_utf8(output.stdout).expect("UTF-8").lines() {
        let mut parts = line.splitn(3, ' ');
        let kind = parts.next().expect("type");
        let family = parts.next().expect("family");
        let rest = parts.next().expect("sample");
        let (key, value) = rest.rsplit_once(' ').expect("value");
        scrape.types.insert(family.to_owned(), kind.to_owned());
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        scrape.samples.insert(key.to_owned(), value);
    }
    scrape
}

/// `GET /metrics` on `addr` (with `headers`), asserted `200` in the Prometheus text
/// format, parsed.
pub fn scrape(addr: SocketAddr, headers: &[(&str, &str)]) -> Scrape {
    let response = get(addr, "/metrics", headers);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_exposition(std::str::from_utf8(&response.body).expect("UTF-8 metrics"))
}
