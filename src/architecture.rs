//! ARCHITECTURE.md's table of crate dependencies is the crates' real one: this test reads
//! each workspace crate's `Cargo.toml` and compares its workspace dependencies with the
//! table, and checks the layering rule that the table exists for (no capability, and
//! nothing below `api`, depends on the transport).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn real() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace: toml::Table = toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let members = workspace["workspace"]["members"].as_array().unwrap();
    let mut out = BTreeMap::new();
    for m in members.iter().map(|m| m.as_str().unwrap()) {
        let manifest: toml::Table =
            toml::from_str(&std::fs::read_to_string(root.join(m).join("Cargo.toml")).unwrap()).unwrap();
        let name = manifest["package"]["name"].as_str().unwrap().trim_start_matches("nephrocare-").to_owned();
        let deps = manifest
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|d| d.keys().filter_map(|k| k.strip_prefix("nc-")).map(str::to_owned).collect())
            .unwrap_or_default();
        out.insert(name, deps);
    }
    out
}

fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc = include_str!("../ARCHITECTURE.md");
    let table = doc.split("<!-- crate-deps -->").nth(1).and_then(|t| t.split("<!-- /crate-deps -->").next());
    table
        .expect("ARCHITECTURE.md has the crate-deps table")
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let deps = cells[1].split(',').map(str::trim).filter(|d| *d != "—" && !d.is_empty()).map(str::to_owned);
            (cells[0].trim_matches('`').to_owned(), deps.collect())
        })
        .collect()
}

#[test]
fn the_documented_crate_graph_is_the_real_one() {
    assert_eq!(documented(), real(), "ARCHITECTURE.md's crate-deps table vs the Cargo.toml files");
}

#[test]
fn no_capability_depends_on_the_transport() {
    let real = real();
    for (krate, deps) in &real {
        if !["api", "nephrocare", "broker"].contains(&krate.as_str()) {
            assert!(!deps.contains("broker"), "{krate} depends on broker: use nc_messaging");
        }
    }
}

#[test]
fn the_product_does_not_depend_on_the_tooling() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in ["app.rs", "config.rs", "bootstrap.rs", "logging.rs"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(!text.contains("tools::"), "src/{file} reaches into src/tools/ (demo data, simulator, benchmarks)");
    }
}
