//! Embeds the web dashboard: every file of `dashboard/dist` (built from `dashboard/src` by
//! `scripts/dashboard.sh build` and committed, so building the service needs no Node.js)
//! becomes a static in `$OUT_DIR/dashboard_assets.rs`, with its content type.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("txt") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        Some("png") => "image/png",
        other => panic!("dashboard/dist: no content type for {path:?} (extension {other:?}): add it to api/build.rs"),
    }
}

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let index = dist.join("index.html");
    assert!(index.is_file(), "{index:?} is missing: run scripts/dashboard.sh build");
    let mut assets: Vec<PathBuf> = std::fs::read_dir(dist.join("assets"))
        .expect("dashboard/dist/assets")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    assets.sort();
    let mut out = String::new();
    writeln!(out, "/// `dashboard/dist/index.html`.\npub(crate) static INDEX: &str = include_str!({:?});", index)
        .unwrap();
    writeln!(out, "/// `dashboard/dist/assets/*`: (file name, content type, bytes).").unwrap();
    writeln!(out, "pub(crate) static ASSETS: &[(&str, &str, &[u8])] = &[").unwrap();
    for a in &assets {
        let name = a.file_name().and_then(|n| n.to_str()).expect("a UTF-8 file name");
        writeln!(out, "    ({name:?}, {:?}, include_bytes!({a:?})),", content_type(a)).unwrap();
    }
    writeln!(out, "];").unwrap();
    let target = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("dashboard_assets.rs");
    std::fs::write(target, out).expect("write dashboard_assets.rs");
}
