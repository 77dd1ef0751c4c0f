//! Replays the checked-in seed corpus of every cargo-fuzz target (`fuzz/corpus/<target>/`)
//! through the same target code the fuzzer runs (`fuzz/targets_impl/<target>.rs`), so the
//! targets' checks run on every `cargo test` without libFuzzer or a nightly toolchain.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/targets_impl/engine_unary.rs"]
mod engine_unary;
#[path = "../../fuzz/targets_impl/frame_decoder.rs"]
mod frame_decoder;
#[path = "../../fuzz/targets_impl/response_decode.rs"]
mod response_decode;
#[path = "../../fuzz/targets_impl/status_headers.rs"]
mod status_headers;
#[path = "../../fuzz/targets_impl/watch_decode.rs"]
mod watch_decode;
#[path = "../../fuzz/targets_impl/watch_sequence.rs"]
mod watch_sequence;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs `run` on every file of the target's corpus; fails if the corpus is empty. A panic
/// names the file that caused it.
fn replay(target: &str, run: fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seed inputs in {}", dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| run(&data));
        if let Err(panic) = outcome {
            eprintln!(
                "{target}: input {} ({} bytes) failed",
                file.display(),
                data.len()
            );
            std::panic::resume_unwind(panic);
        }
    }
    eprintln!("{target}: replayed {} inputs", files.len());
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", frame_decoder::run);
}

#[test]
fn response_decode_corpus() {
    replay("response_decode", response_decode::run);
}

#[test]
fn status_headers_corpus() {
    replay("status_headers", status_headers::run);
}

#[test]
fn engine_unary_corpus() {
    replay("engine_unary", engine_unary::run);
}

#[test]
fn watch_sequence_corpus() {
    replay("watch_sequence", watch_sequence::run);
}

/// The targets also hold on inputs nobody wrote down: a fixed pseudo-random sweep, cheap
/// enough for every test run.
/// A deterministic pseudo-random sequence (xorshift64) from `state`.
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[test]
fn targets_survive_pseudo_random_inputs() {
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15u64);
    for _ in 0..300 {
        let len = (next() % 200) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let outcome = std::panic::catch_unwind(|| {
            frame_decoder::run(&data);
            response_decode::run(&data);
            status_headers::run(&data);
            engine_unary::run(&data);
            watch_sequence::run(&data);
            watch_decode::run(&data);
        });
        if let Err(panic) = outcome {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            eprintln!("failing input ({} bytes): {hex}", data.len());
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn watch_decode_corpus() {
    replay("watch_decode", watch_decode::run);
}

/// Random inputs rarely get past a decoder's first bytes; mutating valid watch responses
/// (byte changes, insertions, deletions, cuts) explores the decoder's error paths and merges.
#[test]
fn watch_decode_agrees_with_prost_on_mutated_seeds() {
    let dir = corpus_dir("watch_decode");
    let mut next = xorshift(0x2545_F491_4F6C_DD1Du64);
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let seed = std::fs::read(entry.expect("entry").path()).expect("seed");
        for _ in 0..3000 {
            let mut data = seed.clone();
            for _ in 0..1 + next() % 3 {
                let at = if data.is_empty() {
                    0
                } else {
                    (next() as usize) % data.len()
                };
                match next() % 4 {
                    0 if !data.is_empty() => data[at] = next() as u8,
                    1 => data.insert(at, next() as u8),
                    2 if !data.is_empty() => {
                        data.remove(at);
                    }
                    _ => data.truncate(at),
                }
            }
            let outcome = std::panic::catch_unwind(|| watch_decode::run(&data));
            if let Err(panic) = outcome {
                let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                eprintln!("failing input ({} bytes): {hex}", data.len());
                std::panic::resume_unwind(panic);
            }
        }
    }
}
