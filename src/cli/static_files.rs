//! `--static DIR`: the files of a directory, read into memory at start so that serving
//! them never blocks the loop on the disk.

use std::collections::HashMap;
use std::io;
use std::path::Path;

/// At most this many files, and this many bytes in all, are loaded.
const MAX_FILES: usize = 2_000;
const MAX_BYTES: usize = 64 << 20;

/// A directory's files by URL path (`/index.html`, `/css/site.css`).
#[derive(Debug, Default)]
pub struct StaticFiles {
    files: HashMap<String, (&'static str, Vec<u8>)>,
}

/// The content type for a file name.
fn content_type(name: &str) -> &'static str {
    match name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .as_deref()
    {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Decodes `%XX` escapes; `None` if one is malformed or the result is not UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a request path maps to.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The file's content type and bytes.
    Found(&'a str, &'a [u8]),
    /// No such file.
    NotFound,
    /// A path that tries to leave the directory (`..`, encoded or not) or is malformed.
    Bad,
}

impl StaticFiles {
    /// Loads the regular files below `dir` (symbolic links are not followed).
    pub fn load(dir: &Path) -> io::Result<StaticFiles> {
        let mut files = StaticFiles::default();
        let mut total = 0;
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((path, url)) = pending.pop() {
            for entry in std::fs::read_dir(&path)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let url = format!("{url}/{name}");
                if kind.is_dir() {
                    pending.push((entry.path(), url));
                } else if kind.is_file() {
                    let bytes = std::fs::read(entry.path())?;
                    total += bytes.len();
                    if files.files.len() >= MAX_FILES || total > MAX_BYTES {
                        return Err(io::Error::other(
                            "static directory too large (2000 files, 64 MiB)",
                        ));
                    }
                    files.files.insert(url, (content_type(&name), bytes));
                }
            }
        }
        Ok(files)
    }

    /// The file for a request path (`/` is `/index.html`).
    pub fn get(&self, path: &str) -> Lookup<'_> {
        let Some(decoded) = percent_decode(path) else {
            return Lookup::Bad;
        };
        if decoded.split(['/', '\\']).any(|seg| seg == "..") || decoded.contains('\0') {
            return Lookup::Bad;
        }
        let key = if decoded.ends_with('/') {
            format!("{decoded}index.html")
        } else {
            decoded
        };
        match self.files.get(&key) {
            Some((kind, bytes)) => Lookup::Found(kind, bytes),
            None => Lookup::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_files_and_refuses_traversal() {
        let dir = std::env::temp_dir().join(format!("pushloop-static-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("css")).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(dir.join("css/a b.css"), "p{}").unwrap();
        let files = StaticFiles::load(&dir).unwrap();
        assert_eq!(
            files.get("/"),
            Lookup::Found("text/html; charset=utf-8", b"<h1>hi</h1>")
        );
        assert_eq!(
            files.get("/css/a%20b.css"),
            Lookup::Found("text/css; charset=utf-8", b"p{}")
        );
        assert_eq!(files.get("/nope.js"), Lookup::NotFound);
        for bad in [
            "/../etc/passwd",
            "/css/../../x",
            "/%2e%2e/x",
            "/%2E%2E%2Fx",
            "/..%5cx",
            "/%zz",
            "/a%00",
        ] {
            assert_eq!(files.get(bad), Lookup::Bad, "{bad}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
