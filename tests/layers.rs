//! The architecture in layers (lib.rs): every top-level module of `src/` has a rank, and may
//! name only modules of a lower rank (`crate::x` paths outside `#[cfg(test)]` code). This test
//! walks `src/`, collects those edges, and fails on any edge that does not run down — so an
//! import cycle between modules cannot come back. `scripts/layers.sh` prints the edges.

#![allow(clippy::disallowed_methods)] // reads the source tree

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// (module, layer, rank): lower ranks are lower layers; within a layer, a module may use
/// modules of a lower rank only. Keep in step with lib.rs.
const LAYERS: &[(&str, &str, u32)] = &[
    // leaf: no knowledge of the gateway's model
    ("json", "leaf", 0),
    ("clock", "leaf", 0),
    ("secret", "leaf", 0),
    ("tokens", "leaf", 0),
    ("trace", "leaf", 0),
    ("expr", "leaf", 0),
    ("h1", "leaf", 1),
    ("error", "leaf", 1),
    ("strategy", "leaf", 1),
    ("metrics", "leaf", 2),
    // model: the config and the immutable values built from it
    ("presets", "model", 10),
    ("pricing", "model", 11),
    ("config", "model", 12),
    ("channel", "model", 13),
    ("catalog", "model", 14),
    ("live", "model", 15),
    ("auth", "model", 16),
    ("snapshot", "model", 17),
    // pure core: decisions and translations, no I/O
    ("routing", "core", 20),
    ("providers", "core", 21),
    ("limits", "core", 22),
    ("usage", "core", 23),
    ("ledger", "core", 24),
    // data plane: the workers
    ("upstream", "data plane", 30),
    ("worker", "data plane", 31),
    ("server", "data plane", 32),
    ("proxy", "data plane", 33),
    ("api", "data plane", 34),
    // control: the control thread and what runs beside it
    ("notify", "control", 40),
    ("logging", "control", 40),
    ("mock", "control", 41),
    ("cluster", "control", 42),
    ("telemetry", "control", 42),
    ("control", "control", 43),
    // entry: start-up and the command line
    ("bootstrap", "entry", 50),
    ("cmd", "entry", 51),
];

fn rank(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _, _)| *m == module).map(|l| l.2)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src/ readable") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments and without `#[cfg(test)]` items (tests may reach anywhere).
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_test = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        let code = match t.find("//") {
            // a `//` inside a string literal is rare in paths; good enough for `crate::` scans
            Some(i) if !t[..i].contains('"') => &t[..i],
            _ => t,
        };
        if code.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        let opens = code.matches('{').count() as i32;
        let closes = code.matches('}').count() as i32;
        if pending_test && skip_depth.is_none() {
            // `#[cfg(test)] use …;` is one line; a test module or item spans its braces.
            if opens == 0 && code.ends_with(';') {
                pending_test = false;
                continue;
            }
            if opens > 0 {
                skip_depth = Some(depth);
            }
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
                pending_test = false;
            }
            continue;
        }
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Every `crate::X` named in `code`, X a top-level module.
fn named(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + 7..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        out.insert(after[..end].to_string());
        rest = &after[end..];
    }
    out
}

/// Edges (from, to) between top-level modules, with one file that makes each.
fn edges() -> BTreeMap<(String, String), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a path");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("readable");
        for to in named(&code_of(&text)) {
            if to != module {
                out.entry((module.clone(), to))
                    .or_insert_with(|| rel.display().to_string());
            }
        }
    }
    out
}

#[test]
fn every_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for e in std::fs::read_dir(&src).expect("src/") {
        let p = e.expect("entry").path();
        let name = p
            .file_name()
            .expect("name")
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if name == "lib" || name == "main" {
            continue;
        }
        assert!(
            rank(&name).is_some(),
            "src/{name} has no layer in tests/layers.rs (and lib.rs)"
        );
    }
}

#[test]
fn every_edge_runs_down_a_layer() {
    let mut up = Vec::new();
    for ((from, to), file) in edges() {
        match (rank(&from), rank(&to)) {
            (Some(a), Some(b)) if b < a => {}
            (Some(_), None) => {} // `crate::VERSION` and other items of lib.rs
            _ => up.push(format!("{from} → {to} (src/{file})")),
        }
    }
    assert!(
        up.is_empty(),
        "{} import edge(s) run up or across a layer:\n  {}",
        up.len(),
        up.join("\n  ")
    );
}

#[test]
fn a_planted_cycle_is_caught() {
    // What the walk would see if `json` (a leaf) named `crate::config`.
    let planted = named(&code_of(
        "use crate::config::Config;\n#[cfg(test)]\nmod t { use crate::api; }\n",
    ));
    assert_eq!(planted, BTreeSet::from(["config".to_string()]));
    assert!(
        rank("config") > rank("json"),
        "the edge json → config runs up"
    );
}

/// `scripts/layers.sh` runs this to print the graph.
#[test]
#[ignore = "prints the module graph; run by scripts/layers.sh"]
fn print_edges() {
    let mut by_layer: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for (m, _, r) in LAYERS {
        by_layer.entry(*r).or_default().push(m);
    }
    println!("layers (rank: modules):");
    for (r, ms) in &by_layer {
        let layer = LAYERS.iter().find(|l| l.2 == *r).map_or("", |l| l.1);
        println!("  {r:>2} {layer:<10} {}", ms.join(" "));
    }
    println!("edges:");
    let mut from_prev = String::new();
    let mut line = String::new();
    for (from, to) in edges().keys() {
        if *from != from_prev {
            if !line.is_empty() {
                println!("{line}");
            }
            line = format!("  {from} →");
            from_prev = from.clone();
        }
        let mark = match (rank(from), rank(to)) {
            (Some(a), Some(b)) if b < a => "",
            (Some(_), None) => "",
            _ => "!",
        };
        line.push_str(&format!(" {to}{mark}"));
    }
    if !line.is_empty() {
        println!("{line}");
    }
}
