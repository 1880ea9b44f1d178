//! Access is decided in one place: `nc_access::policy`. This test reads every source file
//! of the API and of the care records (`care/`, which the API's handlers call after asking
//! the policy) and refuses what re-states an access rule there instead of asking the policy:
//! comparing the caller's or an object's role, or comparing hospitals. A line that compares
//! roles for another reason (validating the kind of account a field names, a resource
//! mapping) says so in a comment on it or up to three lines above: "Not an access rule: …".

use std::path::Path;

/// The patterns of an access rule written in a handler.
const RULES: &[&str] = &[
    ".role ==",
    ".role !=",
    "== Role::",
    "!= Role::",
    "hospital_id ==",
    "hospital_id !=",
    "hospital() ==",
    "hospital() !=",
    "== auth.0.hospital",
    "!= auth.0.hospital",
    "matches!(u.role",
    "matches!(role",
];

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("api/src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("policy_lint.rs") {
            out.push((path.display().to_string(), std::fs::read_to_string(&path).expect("a source file")));
        }
    }
}

#[test]
fn no_access_rule_is_written_outside_the_policy() {
    let mut files = Vec::new();
    let api = Path::new(env!("CARGO_MANIFEST_DIR"));
    sources(&api.join("src"), &mut files);
    sources(&api.join("../care/src"), &mut files);
    let mut found = Vec::new();
    for (path, text) in &files {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !RULES.iter().any(|r| code.contains(r)) {
                continue;
            }
            let explained = lines[i.saturating_sub(3)..=i].iter().any(|l| l.contains("Not an access rule"));
            if !explained {
                found.push(format!("{path}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "access rules belong in nc_access::policy:\n{}", found.join("\n"));
}

#[test]
fn the_lint_sees_a_rule() {
    let code = "if auth.0.role == Role::Admin { allow() }";
    assert!(RULES.iter().any(|r| code.contains(r)));
}
