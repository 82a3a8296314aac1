//! The Convex module (convex/) under its own tests (convex-test, tsc), and held to the mirror.

use std::process::Command;

const CONVEX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../convex");

fn npm(args: &[&str]) -> (bool, String) {
    let out = Command::new("npm")
        .args(args)
        .current_dir(CONVEX)
        .output()
        .expect("npm runs (Node 20+ and npm are needed)");
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn the_convex_module_passes_its_convex_test_suite_and_type_checks() {
    if !std::path::Path::new(CONVEX).join("node_modules/convex-test").exists() {
        let (ok, out) = npm(&["ci", "--no-audit", "--no-fund"]);
        assert!(ok, "npm ci in convex/:\n{out}");
    }
    let (ok, out) = npm(&["test"]);
    assert!(ok, "npm test in convex/:\n{out}");
    assert!(out.contains("passed"), "{out}");
}

#[test]
fn schema_ts_defines_exactly_the_mirrored_tables_in_their_order() {
    let text = std::fs::read_to_string(format!("{CONVEX}/schema.ts")).expect("convex/schema.ts");
    let start = text.find("export const TABLES = [").expect("TABLES");
    let end = start + text[start..].find("] as const").expect("end of TABLES");
    let tables: Vec<&str> = text[start..end].split('"').skip(1).step_by(2).collect();
    let mirror = schema::mirror::Mirror::default_mirror().expect("mirror");
    let want: Vec<&str> = mirror.tables.iter().map(|t| t.convex.as_str()).collect();
    assert_eq!(tables, want);
}
