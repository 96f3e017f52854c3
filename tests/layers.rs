//! The dependency rule of `docs/architecture.md`, checked on the source: a module imports
//! only from its own layer or the layers below it, and no file imports, directly or
//! through others, a file that imports it back.
//!
//! It reads every `crate::…` path outside comments in `src/` (the library; the binary in
//! `src/main.rs` and `src/cli/` uses the library's public API only) and prints the layer
//! graph it found. Run it alone with `cargo test --test layers -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The library's layers, bottom first. `lib.rs` and `codec.rs` are the facade on top.
const LAYERS: [(&str, u8); 7] = [
    ("http", 0),
    ("ws", 1),
    ("server", 2),
    ("push", 3),
    ("api", 4),
    ("codec", 5),
    ("lib", 5),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

/// Every `.rs` file below `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top module a file under `src/` belongs to (`server` for src/server/core.rs).
fn top_module(rel: &Path) -> String {
    let first = rel.components().next().expect("component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_owned()
}

/// The file a path `crate::a::b…` names: `a/b.rs`, `a/b/mod.rs`, else `a/mod.rs` or `a.rs`.
fn target_file(src: &Path, a: &str, b: Option<&str>) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(b) = b {
        candidates.push(src.join(a).join(format!("{b}.rs")));
        candidates.push(src.join(a).join(b).join("mod.rs"));
    }
    candidates.push(src.join(a).join("mod.rs"));
    candidates.push(src.join(format!("{a}.rs")));
    candidates.into_iter().find(|p| p.is_file())
}

/// The `(a, b)` pairs of every `crate::a::b` (and `crate::a::{b, …}`) in `line`.
fn crate_paths(line: &str) -> Vec<(String, Option<String>)> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        let rest = &line[at + "crate::".len()..];
        let a = ident(rest);
        if a.is_empty() {
            continue;
        }
        let after = &rest[a.len()..];
        match after.strip_prefix("::") {
            Some(tail) if tail.starts_with('{') => {
                let inner: String = tail[1..].chars().take_while(|&c| c != '}').collect();
                for part in inner.split(',') {
                    let b = ident(part.trim());
                    found.push((a.clone(), (!b.is_empty()).then_some(b)));
                }
            }
            Some(tail) => {
                let b = ident(tail);
                found.push((a.clone(), (!b.is_empty()).then_some(b)));
            }
            None => found.push((a, None)),
        }
    }
    found
}

#[test]
fn dependencies_point_down_and_no_file_imports_itself_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.retain(|f| {
        let rel = f.strip_prefix(&src).expect("under src");
        rel != Path::new("main.rs") && !rel.starts_with("cli")
    });
    let mut violations = Vec::new();
    let mut graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    let mut layer_edges: BTreeSet<(String, String)> = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src").to_path_buf();
        let from = top_module(&rel);
        let from_layer = layer(&from).unwrap_or_else(|| panic!("{rel:?}: no layer"));
        let text = fs::read_to_string(file).expect("read file");
        let edges = graph.entry(rel.clone()).or_default();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue; // comments and doc links are not dependencies
            }
            for (a, b) in crate_paths(code) {
                let Some(to_layer) = layer(&a) else {
                    violations.push(format!(
                        "{}:{}: unknown module crate::{a}",
                        rel.display(),
                        n + 1
                    ));
                    continue;
                };
                if to_layer > from_layer {
                    violations.push(format!(
                        "{}:{}: {from} (layer {from_layer}) imports crate::{a} (layer {to_layer})",
                        rel.display(),
                        n + 1
                    ));
                }
                if a != from {
                    layer_edges.insert((from.clone(), a.clone()));
                }
                if let Some(target) = target_file(&src, &a, b.as_deref()) {
                    let target = target.strip_prefix(&src).expect("under src").to_path_buf();
                    if target != rel {
                        edges.insert(target);
                    }
                }
            }
        }
    }
    println!("layer imports found (from -> to):");
    for (from, to) in &layer_edges {
        println!("  {from} -> {to}");
    }
    // A circle is a file that reaches itself through its imports.
    for start in graph.keys() {
        let mut stack: Vec<PathBuf> = graph[start].iter().cloned().collect();
        let mut seen = BTreeSet::new();
        while let Some(next) = stack.pop() {
            if &next == start {
                violations.push(format!(
                    "{}: imports itself back (a circle)",
                    start.display()
                ));
                break;
            }
            if seen.insert(next.clone()) {
                stack.extend(graph.get(&next).into_iter().flatten().cloned());
            }
        }
    }
    println!(
        "{} files, {} file imports",
        graph.len(),
        graph.values().map(BTreeSet::len).sum::<usize>()
    );
    assert!(
        violations.is_empty(),
        "layering broken:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_paths_in_every_form() {
    assert_eq!(
        crate_paths("use crate::server::core::{Core, Delivery};"),
        [("server".to_owned(), Some("core".to_owned()))]
    );
    assert_eq!(
        crate_paths("use crate::ws::{close, frame::OpCode};"),
        [
            ("ws".to_owned(), Some("close".to_owned())),
            ("ws".to_owned(), Some("frame".to_owned()))
        ]
    );
    assert_eq!(
        crate_paths("    crate::http::write_error_with(a, b)"),
        [("http".to_owned(), Some("write_error_with".to_owned()))]
    );
}
