//! `etcdctl` on the blocking client: the commands, flags, output formats (simple, json,
//! fields, table), error texts and exit codes of etcdctl 3.5.1 (`ETCDCTL_API=3`).
//!
//! ```text
//! cargo run -p etcd-blocking --example etcdctl -- --endpoints=127.0.0.1:2379 put foo bar
//! ```
//!
//! Flags are parsed by hand with pflag's rules (`--flag=value`, `--flag value`, `-w json`,
//! `--` ends the flags), so the library needs no command-line parser.

mod auth;
mod cli;
mod cluster;
mod conc;
mod ctx;
mod flags;
mod gofmt;
mod json;
mod kv;
mod lease;
mod maint;
mod print;
mod signals;
mod watch;

fn main() {
    // Arguments that are not UTF-8 are taken lossily rather than refused.
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    cli::run(args)
}
