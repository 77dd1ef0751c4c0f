//! Synchronous etcd v3 client for scripts, CLIs and plain threads.
//!
//! This crate will hold a `Client` whose methods block the calling thread: a background I/O
//! thread runs the runtime-agnostic driver (`etcd-driver`) on a private single-threaded
//! executor, and callers wait on the results; watch events come out as an iterator. No
//! protocol logic lives here.
#![forbid(unsafe_code)]
