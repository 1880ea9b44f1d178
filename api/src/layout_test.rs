//! `api/src` stays a tree a newcomer can follow: no module imports another that imports it
//! back (directly or through others). Read from the sources: every `crate::…` and `super::…`
//! path names the module it reaches (the longest prefix that is a module file), and the
//! strongly connected components of that graph must all be single modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The short names `lib.rs` re-exports, and the modules they stand for.
const ALIASES: &[(&str, &str)] = &[
    ("contract", "http::contract"),
    ("error", "http::error"),
    ("headers", "http::headers"),
    ("limits", "http::limits"),
    ("origin", "http::origin"),
    ("request_log", "http::request_log"),
    ("security", "http::security"),
    ("server", "http::server"),
    ("state", "http::state"),
    ("strict_json", "http::strict_json"),
    ("validate", "http::validate"),
    ("live", "telemetry::live"),
];

fn modules(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            modules(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let name = rel.to_string_lossy().replace('/', "::");
            let name = name.strip_suffix("::mod").unwrap_or(&name).to_owned();
            if name != "lib" {
                out.insert(name, std::fs::read_to_string(&path).expect("a source file"));
            }
        }
    }
}

/// Module paths following `prefix` in `text` (`crate::a::b::Item` gives `a::b::Item`).
fn paths<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = Vec<&'a str>> + 'a {
    text.match_indices(prefix).map(move |(i, _)| {
        let rest = &text[i + prefix.len()..];
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
        rest[..end].split("::").filter(|s| !s.is_empty()).collect()
    })
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut mods = BTreeMap::new();
    modules(&root, &root, &mut mods);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in &mods {
        let parent: Vec<&str> = m.split("::").collect::<Vec<_>>()[..m.split("::").count() - 1].to_vec();
        let mut targets: Vec<Vec<String>> = Vec::new();
        for p in paths(text, "crate::") {
            let mut full: Vec<String> = match ALIASES.iter().find(|(a, _)| Some(a) == p.first()) {
                Some((_, to)) => to.split("::").map(str::to_owned).collect(),
                None => p.first().map(|s| vec![s.to_string()]).unwrap_or_default(),
            };
            full.extend(p.iter().skip(1).map(|s| s.to_string()));
            targets.push(full);
        }
        for p in paths(text, "super::") {
            let mut full: Vec<String> = parent.iter().map(|s| s.to_string()).collect();
            full.extend(p.iter().map(|s| s.to_string()));
            targets.push(full);
        }
        let out = edges.entry(m.clone()).or_default();
        for t in targets {
            if let Some(k) = (1..=t.len()).rev().find(|k| mods.contains_key(&t[..*k].join("::"))) {
                let target = t[..k].join("::");
                if &target != m {
                    out.insert(target);
                }
            }
        }
    }
    edges
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        for w in t.edges.get(v).into_iter().flatten() {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                t.low.insert(v, t.low[v].min(lw));
            } else if t.stack.contains(&w.as_str()) {
                let iw = t.index[w.as_str()];
                t.low.insert(v, t.low[v].min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.found.push(comp);
            }
        }
    }
    let mut t = T { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.found
}

#[test]
fn api_src_has_no_import_cycles() {
    let found = cycles(&graph());
    assert!(found.is_empty(), "modules that import each other: {found:?}");
}

#[test]
fn a_cycle_is_seen() {
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    edges.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(cycles(&edges).len(), 1);
}
