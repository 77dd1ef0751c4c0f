//! Schema drift check and regeneration tool for `src/generated/`.
//!
//! The Rust code in `src/generated/` is produced from the `.proto` files in
//! `proto/` by `protox` (a pure-Rust protobuf compiler) and `prost-build`.
//! It is checked in so normal builds need neither a build script nor protoc.
//!
//! * `cargo test -p etcd-proto --test schema_drift` regenerates into a
//!   scratch directory and fails if anything differs from the checked-in
//!   files.
//! * `ETCD_PROTO_REGENERATE=1 cargo test -p etcd-proto --test schema_drift`
//!   writes the fresh files into `src/generated/` instead.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const REGENERATE_ENV: &str = "ETCD_PROTO_REGENERATE";
const REGENERATE_CMD: &str = "ETCD_PROTO_REGENERATE=1 cargo test -p etcd-proto --test schema_drift";

/// Messages whose generated `Debug` impl is replaced by a hand-written one
/// that redacts secrets (see `src/redact.rs`).
const SKIP_DEBUG: &[&str] = &[
    ".etcdserverpb.AuthenticateRequest",
    ".etcdserverpb.AuthenticateResponse",
    ".etcdserverpb.AuthUserAddRequest",
    ".etcdserverpb.AuthUserChangePasswordRequest",
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn proto_root() -> PathBuf {
    crate_dir().join("proto")
}

fn generated_dir() -> PathBuf {
    crate_dir().join("src").join("generated")
}

/// All `.proto` files under `proto/`, as paths relative to it, sorted.
fn proto_files() -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).expect("read proto dir") {
            let path = entry.expect("read proto dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "proto") {
                let rel = path.strip_prefix(root).expect("path under proto root");
                let rel: Vec<_> = rel
                    .iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect();
                out.push(rel.join("/"));
            }
        }
    }
    let root = proto_root();
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "no .proto files found under {}",
        root.display()
    );
    files
}

/// Compiles every `.proto` file and writes prost's output into `out_dir`.
/// This is the one and only generation path (used both for the drift check
/// and for regeneration), so the two can never disagree.
fn generate(out_dir: &Path) {
    let fds = protox::compile(proto_files(), [proto_root()])
        .unwrap_or_else(|e| panic!("protox failed to compile proto/: {e:?}"));
    prost_build::Config::new()
        .out_dir(out_dir)
        .bytes(["."])
        .skip_debug(SKIP_DEBUG)
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("prost-build failed: {e}"));
}

fn rs_files(dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("read dir entry").path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "rs"))
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn read_normalized(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .replace("\r\n", "\n")
}

fn first_difference(expected: &str, actual: &str) -> String {
    let mut exp = expected.lines();
    let mut act = actual.lines();
    let mut line = 1;
    loop {
        match (exp.next(), act.next()) {
            (Some(e), Some(a)) if e == a => line += 1,
            (e, a) => {
                return format!(
                    "first difference at line {line}:\n    fresh:      {}\n    checked-in: {}",
                    e.unwrap_or("<end of file>"),
                    a.unwrap_or("<end of file>"),
                )
            }
        }
    }
}

fn scratch_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("etcd-proto-schema-drift-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("clean scratch dir");
    }
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn generated_code_matches_proto_files() {
    let scratch = scratch_dir();
    generate(&scratch);
    let fresh = rs_files(&scratch);
    assert!(!fresh.is_empty(), "prost-build produced no files");

    let target = generated_dir();
    if std::env::var(REGENERATE_ENV).is_ok_and(|v| v == "1") {
        fs::create_dir_all(&target).expect("create src/generated");
        for stale in rs_files(&target).difference(&fresh) {
            fs::remove_file(target.join(stale)).expect("remove stale generated file");
            eprintln!("removed stale src/generated/{stale}");
        }
        for name in &fresh {
            fs::copy(scratch.join(name), target.join(name)).expect("copy generated file");
            eprintln!("wrote src/generated/{name}");
        }
        fs::remove_dir_all(&scratch).ok();
        return;
    }

    let checked_in = rs_files(&target);
    let mut problems = Vec::new();
    for name in fresh.difference(&checked_in) {
        problems.push(format!("src/generated/{name} is missing"));
    }
    for name in checked_in.difference(&fresh) {
        problems.push(format!(
            "src/generated/{name} is not produced from proto/ any more (stale)"
        ));
    }
    for name in fresh.intersection(&checked_in) {
        let expected = read_normalized(&scratch.join(name));
        let actual = read_normalized(&target.join(name));
        if expected != actual {
            problems.push(format!(
                "src/generated/{name} differs from what proto/ generates; {}",
                first_difference(&expected, &actual)
            ));
        }
    }
    fs::remove_dir_all(&scratch).ok();

    assert!(
        problems.is_empty(),
        "generated code is out of date with proto/*.proto:\n  - {}\n\n\
         Regenerate with:\n    {REGENERATE_CMD}\n(run from the workspace root) and commit src/generated/.",
        problems.join("\n  - ")
    );
}
