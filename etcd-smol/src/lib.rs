//! etcd v3 client for the smol runtime (and therefore async-std, which runs on the same
//! `async-io` reactor).
//!
//! This crate will hold a small `Runtime` implementation (connect over `async-net`, TLS over
//! `futures-rustls`, timers from `async-io`, spawn on smol's executor) that plugs into the
//! runtime-agnostic driver in `etcd-driver`, exactly as `etcd-tokio` does for tokio. No
//! protocol logic lives here.
#![forbid(unsafe_code)]
