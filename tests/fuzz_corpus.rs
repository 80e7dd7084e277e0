//! Replays the fuzz corpus as ordinary tests: every file of `fuzz/corpus/<target>/` (the
//! committed seeds) and `fuzz/regressions/<target>/` (inputs that once crashed) goes through the
//! same target body libFuzzer runs. The bodies live in `fuzz/src/lib.rs` (the fuzz crate's
//! library, included here as a module), so a corpus file means the same thing to both, and
//! the invariants are asserted here too. See fuzz/README.md.

#![allow(clippy::disallowed_methods)] // reads the corpus files

#[allow(unreachable_pub, missing_docs)]
#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(target: &str, run: targets::Target) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        for path in files(&root.join(kind).join(target)) {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let caught = std::panic::catch_unwind(|| run(&data));
            if let Err(p) = caught {
                let msg = p
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                panic!("{target}: {} fails: {msg}", path.display());
            }
            n += 1;
        }
    }
    n
}

#[test]
fn every_target_has_seeds_and_every_corpus_a_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, _) in targets::TARGETS {
        assert!(
            !files(&root.join("corpus").join(name)).is_empty(),
            "fuzz/corpus/{name}/ has no seed"
        );
        assert!(
            root.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "no fuzz/fuzz_targets/{name}.rs"
        );
    }
    for kind in ["corpus", "regressions"] {
        let Ok(dirs) = std::fs::read_dir(root.join(kind)) else {
            continue;
        };
        for d in dirs {
            let d = d.unwrap().path();
            if d.is_dir() {
                let name = d.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    targets::TARGETS.iter().any(|(t, _)| *t == name),
                    "fuzz/{kind}/{name}/ names no target"
                );
            }
        }
    }
}

/// One `#[test]` per target (a failure names its target), plus the list of names, checked
/// against `TARGETS` below so a new target cannot be left out.
macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let run = targets::TARGETS
                    .iter()
                    .find(|(t, _)| *t == stringify!($name))
                    .expect("a target of that name")
                    .1;
                assert!(replay(stringify!($name), run) > 0);
            }
        )*
        const LISTED: &[&str] = &[$(stringify!($name)),*];
    };
}

replay_tests!(
    h1_head,
    chunked,
    sse,
    chat_features,
    model_expr,
    request_translate,
    anthropic_stream,
    gemini_stream,
    openai_stream,
    anthropic_response,
    gemini_response,
    openai_response,
    header_policy,
    responses_translate,
);

#[test]
fn replay_tests_cover_every_target() {
    let names: Vec<&str> = targets::TARGETS.iter().map(|(t, _)| *t).collect();
    assert_eq!(names, LISTED);
}
