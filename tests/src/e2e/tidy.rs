//! Repository checks: every Rust file opens with a `//!` doc saying what it owns, no source
//! file grows past the size where it should be split, and dependencies point one way: the
//! wire contract (`hydrant-proto`) ← the shared runtime (`hydrant-runtime`) ← components
//! (`hydrant-components`: doppler, agent, cell; the nozzle crates) ← the `hydrant` binary
//! and its CLI.

use std::path::{Path, PathBuf};

/// Split files before they pass this many lines.
const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_has_a_module_doc_and_a_sane_size() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for dir in [
        "src",
        "proto/src",
        "proto/benches",
        "proto/runtime/src",
        "tests/src",
        "nozzles",
    ] {
        let d = root.join(dir);
        if d.exists() {
            rust_files(&d, &mut files);
        }
    }
    assert!(
        files.len() > 20,
        "found only {} files under {}",
        files.len(),
        root.display()
    );
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{}: no //! module doc", f.display()));
        }
        let lines = text.lines().count();
        if lines > MAX_LINES {
            problems.push(format!(
                "{}: {lines} lines (split before {MAX_LINES})",
                f.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each library crate of the workspace and the `hydrant-*` crates it may depend on (normal
/// and build dependencies; tests may reach further). The binary (`hydrant`) and the test
/// crate (`hydrant-e2e`) sit on top and may use them all.
const LAYERS: &[(&str, &[&str])] = &[
    ("hydrant-proto", &[]),
    ("hydrant-runtime", &["hydrant-proto"]),
    ("hydrant-components", &["hydrant-proto", "hydrant-runtime"]),
    ("hydrant-promql", &["hydrant-proto"]),
    (
        "hydrant-logcache",
        &["hydrant-proto", "hydrant-runtime", "hydrant-promql"],
    ),
    (
        "hydrant-storage",
        &["hydrant-proto", "hydrant-runtime", "hydrant-promql"],
    ),
    ("hydrant-autoscaler", &["hydrant-proto", "hydrant-runtime"]),
    ("hydrant-otlp", &["hydrant-proto", "hydrant-runtime"]),
];

/// What the wire contract must never pull in: servers, `/proc` readers, process control.
const NOT_IN_THE_WIRE_CRATE: &[&str] = &["axum", "hyper", "procfs", "nix", "sysinfo"];

#[test]
fn crate_dependencies_point_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let deps = |name: &str| -> Vec<String> {
        let p = packages
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not a workspace package"));
        p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"] != "dev")
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut problems = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap();
        let placed = LAYERS.iter().any(|(k, _)| *k == name);
        if !placed && name != "hydrant" && name != "hydrant-e2e" {
            problems.push(format!("{name} has no place in LAYERS"));
        }
    }
    for (krate, allowed) in LAYERS {
        for d in deps(krate) {
            if d.starts_with("hydrant") && !allowed.contains(&d.as_str()) {
                problems.push(format!("{krate} depends on {d}"));
            }
        }
    }
    for d in deps("hydrant-proto") {
        if NOT_IN_THE_WIRE_CRATE.contains(&d.as_str()) {
            problems.push(format!("the wire crate hydrant-proto depends on {d}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The wire crate's sources name no server framework, no `/proc` path and not the runtime
/// (the crate graph above cannot see a path string).
#[test]
fn the_wire_crate_has_no_runtime_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut problems = Vec::new();
    let mut wire = Vec::new();
    rust_files(&root.join("proto/src"), &mut wire);
    assert!(!wire.is_empty(), "no sources under {}", root.display());
    for f in &wire {
        let text = std::fs::read_to_string(f).unwrap();
        for runtime in ["axum::", "\"/proc", "hydrant_runtime"] {
            if text.contains(runtime) {
                problems.push(format!("{}: the wire crate uses {runtime}", f.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
