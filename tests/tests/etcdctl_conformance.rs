//! Our `etcdctl` (the `etcdctl` example of `etcd-blocking`) against the real etcdctl 3.5.1.
//!
//! Every scenario runs twice, each time against a fresh, identical server (same name, same
//! ports, same cluster token, so the same member and cluster IDs): once with the real etcdctl,
//! once with ours. Each command of the scenario is a case; its standard output, standard
//! error and exit status must be the same.
//!
//! Only values that differ between two servers, or two runs, by nature are normalized:
//!
//! * lease IDs (a lease ID is the member ID's low bits followed by the time of day): each
//!   distinct lease ID, in hex or decimal, becomes `<lease-N>` in order of appearance;
//! * IDs of members added by `member add` (chosen from the time): `<member-N>`;
//! * timestamps of log lines (`"ts"`, grpc-go's date) and Go pointers in log lines
//!   (`0xc000...`);
//! * durations (`endpoint health`'s `took`), and with them the widths of its table;
//! * remaining TTLs of `lease timetolive` (they count down while the command runs);
//! * in the three-member scenario, raft terms (elections happen when they happen) and the
//!   member ID in response headers (which member answers depends on the balancing);
//! * database sizes in `endpoint status` (the backend file grows with commit timing);
//! * the order of members in `member` outputs, where it depends on the random ID of an
//!   added member (members are listed by ID);
//! * the order of grpc-go's `--debug` log lines (written by concurrent goroutines).
//!
//! Set `CONFORMANCE_VERBOSE=1` to see every case's output.
//!
//! Commands taking other commands' IDs refer to them as `{L1}` (the first lease seen),
//! `{M1}` (the first member added), `{SELF}` (the server's member ID), `{EP}` (its client
//! endpoint), `{DIR}` (the scenario's directory).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use etcd_tests::{etcdctl_binary, free_port, repo_root, EtcdServer, EtcdVersion, TestCerts};

// ---------------------------------------------------------------------------------------
// The binaries

/// Our etcdctl: `target/<profile>/examples/etcdctl`, built once per test process (a no-op
/// when `cargo test` / `cargo nextest` already built the workspace's examples).
fn ours() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/<test binary>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let bin = profile_dir.join("examples").join("etcdctl");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(repo_root())
            .args(["build", "-q", "-p", "etcd-blocking", "--example", "etcdctl"])
            .arg("--target-dir")
            .arg(&target_dir);
        if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building the etcdctl example failed");
        assert!(bin.is_file(), "no etcdctl example at {}", bin.display());
        bin
    })
}

fn real() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| etcdctl_binary().expect("etcdctl 3.5.1"))
}

// ---------------------------------------------------------------------------------------
// Scenario steps

/// Normalizations a case asks for besides the general ones.
#[derive(Debug, Clone, Copy, Default)]
struct Norm {
    took: bool,
    ttl: bool,
    sorted: bool,
    db_size: bool,
    members: bool,
}

#[derive(Debug, Clone, Default)]
struct Case {
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    /// Lines written to standard input one by one, each after a pause (background only).
    slow_stdin: Vec<(u64, String)>,
    env: Vec<(String, String)>,
    endpoints: bool,
    norm: Norm,
}

#[derive(Debug, Clone)]
enum Step {
    /// Runs a command to completion; compared.
    Run(Case),
    /// Starts a command in the background under a name.
    Start(&'static str, Case),
    /// Waits until the named background command printed `lines` lines, then signals it and
    /// collects it; compared.
    Stop(&'static str, usize, &'static str),
    Sleep(u64),
    /// Prepares the server with the blocking client; not compared.
    Setup(fn(&Env)),
    /// Kills member `i` of the scenario's servers.
    Kill(usize),
}

impl Case {
    fn stdin(mut self, s: &str) -> Case {
        self.stdin = Some(s.as_bytes().to_vec());
        self
    }
    fn slow(mut self, delay_ms: u64, line: &str) -> Case {
        self.slow_stdin.push((delay_ms, line.to_string()));
        self
    }
    fn env(mut self, k: &str, v: &str) -> Case {
        self.env.push((k.into(), v.into()));
        self
    }
    fn no_ep(mut self) -> Case {
        self.endpoints = false;
        self
    }
    fn took(mut self) -> Case {
        self.norm.took = true;
        self
    }
    fn ttl(mut self) -> Case {
        self.norm.ttl = true;
        self
    }
    fn sorted(mut self) -> Case {
        self.norm.sorted = true;
        self
    }
    fn db_size(mut self) -> Case {
        self.norm.db_size = true;
        self
    }
    fn members(mut self) -> Case {
        self.norm.members = true;
        self
    }
    fn run(self) -> Step {
        Step::Run(self)
    }
}

/// Shell-like words: spaces separate, '...' and "..." quote (no escapes).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c == ' ' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// A command of the scenario (with `--endpoints` of the server first).
fn c(args: &str) -> Case {
    Case {
        args: words(args),
        endpoints: true,
        ..Default::default()
    }
}

/// A command run to completion and compared.
fn r(args: &str) -> Step {
    c(args).run()
}

fn count_cases(steps: &[Step]) -> usize {
    steps
        .iter()
        .filter(|s| matches!(s, Step::Run(_) | Step::Stop(..)))
        .count()
}

// ---------------------------------------------------------------------------------------
// Running one scenario against one binary

#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    label: String,
    stdout: String,
    stderr: String,
    status: String,
}

/// What a run knows to fill in placeholders and to normalize: IDs it has seen.
#[derive(Debug, Default)]
struct Ids {
    /// The top 16 bits of every lease ID the server makes.
    lease_prefix: u64,
    leases: Vec<u64>,
    members: Vec<u64>,
    raft_term: bool,
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
}

/// Maximal runs of alphanumerics, with their offsets.
fn tokens(text: &str) -> Vec<(usize, &str)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphanumeric() {
            let start = i;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            out.push((start, &text[start..i]));
        } else {
            i += 1;
        }
    }
    out
}

impl Ids {
    fn lease_of(&self, tok: &str) -> Option<u64> {
        // Leading zeros are not always printed (`%x`), so shorter tokens count too.
        let v = if (12..=16).contains(&tok.len()) && tok.bytes().all(is_hex) {
            u64::from_str_radix(tok, 16).ok()?
        } else if (13..=19).contains(&tok.len()) && tok.bytes().all(|c| c.is_ascii_digit()) {
            tok.parse::<u64>().ok()?
        } else {
            return None;
        };
        (self.lease_prefix != 0 && v >> 48 == self.lease_prefix && v < (1 << 63)).then_some(v)
    }

    /// Shows base64 keys that hold a lease ID (lock and election keys) decoded, so that the
    /// ID can be normalized: `"key":"b64:mylock/<lease-1>"`.
    fn expand_keys(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find("\"key\":\"") {
            let start = i + 7;
            out.push_str(&rest[..start]);
            let tail = &rest[start..];
            let end = tail.find('"').unwrap_or(tail.len());
            let b64 = &tail[..end];
            match base64_decode(b64) {
                Some(decoded)
                    if tokens(&decoded)
                        .iter()
                        .any(|(_, t)| self.lease_of(t).is_some()) =>
                {
                    out.push_str("b64:");
                    out.push_str(&decoded);
                }
                _ => out.push_str(b64),
            }
            rest = &tail[end..];
        }
        out.push_str(rest);
        out
    }

    /// Learns the lease IDs and added member IDs an output shows.
    fn discover(&mut self, text: &str) {
        let text = &self.expand_keys(text);
        for (_, tok) in tokens(text) {
            if let Some(v) = self.lease_of(tok) {
                if !self.leases.contains(&v) {
                    self.leases.push(v);
                }
            }
        }
        let mut add = |v: u64| {
            if !self.members.contains(&v) {
                self.members.push(v);
            }
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("Member ") {
                if let Some((id, tail)) = rest.split_once(" added to cluster") {
                    let _ = tail;
                    if let Ok(v) = u64::from_str_radix(id.trim(), 16) {
                        add(v);
                    }
                }
            }
            if let Some(i) = line.find("\"member\":{\"ID\":") {
                let digits: String = line[i + 15..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                if let Ok(v) = digits.parse() {
                    add(v);
                }
            }
        }
    }

    fn normalize(&self, text: &str, norm: Norm) -> String {
        let mut s = self.expand_keys(text);
        // Lease IDs, by token.
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for (at, tok) in tokens(&s) {
            if let Some(v) = self.lease_of(tok) {
                let n = self.leases.iter().position(|l| *l == v).unwrap_or(99) + 1;
                out.push_str(&s[last..at]);
                out.push_str(&format!("<lease-{n}>"));
                last = at + tok.len();
            }
        }
        out.push_str(&s[last..]);
        s = out;
        for (i, m) in self.members.iter().enumerate() {
            let name = format!("<member-{}>", i + 1);
            s = s.replace(&format!("{m:16x}"), &name);
            s = s.replace(&format!("{m:x}"), &name);
            s = s.replace(&m.to_string(), &name);
        }
        s = replace_after(&s, "\"ts\":\"", |r| r.find('"'), "<ts>");
        s = replace_after(&s, "\"ts\":", |r| r.find([',', '}']), "<ts>");
        s = replace_after(
            &s,
            "0xc",
            |r| Some(r.bytes().take_while(|c| is_hex(*c)).count()),
            "<ptr>",
        );
        s = grpc_dates(&s);
        if norm.took {
            s = replace_after(&s, "took = ", |r| r.find('\n'), "<took>");
            s = replace_after(&s, "\"took\":\"", |r| r.find('"'), "<took>");
            s = replace_after(&s, "\"Took\" : ", |r| r.find('\n'), "<took>");
        }
        if norm.took || norm.db_size {
            s = s
                .lines()
                .map(|l| {
                    if l.starts_with('+') {
                        "+---+".to_string()
                    } else if l.starts_with('|') {
                        l.split('|')
                            .map(|cell| {
                                let t = cell.trim();
                                if norm.took && looks_like_duration(t) {
                                    "<took>".to_string()
                                } else if norm.db_size && looks_like_size(t) {
                                    "<size>".to_string()
                                } else {
                                    t.to_string()
                                }
                            })
                            .collect::<Vec<_>>()
                            .join("|")
                    } else {
                        l.to_string()
                    }
                })
                .map(|l| l + "\n")
                .collect();
        }
        if norm.ttl {
            s = replace_after(&s, "remaining(", |r| r.find(')'), "<ttl>");
            s = replace_after(&s, "\"ttl\":", |r| r.find(','), "<ttl>");
            s = replace_after(&s, "\"TTL\" : ", |r| r.find('\n'), "<ttl>");
        }
        if self.raft_term {
            s = replace_after(&s, "\"raft_term\":", |r| r.find([',', '}']), "<term>");
            s = replace_after(&s, "\"raftTerm\":", |r| r.find([',', '}']), "<term>");
            s = replace_after(&s, "\"RaftTerm\" : ", |r| r.find('\n'), "<term>");
            // Which member answers depends on the client's balancing.
            s = replace_after(&s, "\"member_id\":", |r| r.find([',', '}']), "<responder>");
            s = replace_after(&s, "\"MemberID\" : ", |r| r.find('\n'), "<responder>");
        }
        if norm.db_size {
            s = replace_after(&s, "\"dbSize\":", |r| r.find([',', '}']), "<size>");
            s = replace_after(&s, "\"dbSizeInUse\":", |r| r.find([',', '}']), "<size>");
            s = replace_after(&s, "\"DBSize\" : ", |r| r.find('\n'), "<size>");
            s = s
                .lines()
                .map(|l| {
                    let cells: Vec<&str> = l.split(", ").collect();
                    if !l.starts_with(['|', '+']) && cells.len() >= 10 && looks_like_size(cells[3])
                    {
                        let mut cells: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
                        cells[3] = "<size>".into();
                        cells.join(", ") + "\n"
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
        }
        if norm.members {
            s = sort_members(&s);
        }
        if norm.sorted {
            let mut lines: Vec<&str> = s.lines().collect();
            lines.sort();
            s = lines.iter().map(|l| format!("{l}\n")).collect();
        }
        s
    }
}

/// Puts member lists in one order: members are listed by ID, and the IDs of added members
/// are random, so where a new member lands differs between runs.
fn sort_members(s: &str) -> String {
    let mut s = s.to_string();
    // ETCD_INITIAL_CLUSTER="a=...,b=..."
    if let Some(i) = s.find("ETCD_INITIAL_CLUSTER=\"") {
        let start = i + 22;
        let end = start + s[start..].find('"').unwrap_or(0);
        let mut items: Vec<&str> = s[start..end].split(',').collect();
        items.sort();
        s = format!("{}{}{}", &s[..start], items.join(","), &s[end..]);
    }
    // JSON: the objects of "members":[...].
    if let Some(i) = s.find("\"members\":[") {
        let start = i + 11;
        let mut depth = 0;
        let mut items = Vec::new();
        let mut item_start = start;
        let mut end = s.len();
        for (j, ch) in s[start..].char_indices() {
            match ch {
                '{' => {
                    if depth == 0 {
                        item_start = start + j;
                    }
                    depth += 1;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        items.push(s[item_start..=start + j].to_string());
                    }
                }
                ']' if depth == 0 => {
                    end = start + j;
                    break;
                }
                _ => {}
            }
        }
        items.sort();
        s = format!("{}{}{}", &s[..start], items.join(","), &s[end..]);
    }
    // Lines: member rows (simple) and table rows; fields blocks.
    let lines: Vec<&str> = s.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    let flush = |rows: &mut Vec<String>, out: &mut Vec<String>| {
        rows.sort();
        out.append(rows);
    };
    let mut border = 0;
    for l in lines {
        let is_row = (l.starts_with('|') && border == 2) || l.matches(", ").count() >= 5;
        if l.starts_with('+') {
            border += 1;
        }
        if is_row {
            rows.push(l.to_string());
        } else {
            flush(&mut rows, &mut out);
            out.push(l.to_string());
        }
    }
    flush(&mut rows, &mut out);
    let mut text = out.join("\n");
    if s.ends_with('\n') {
        text.push('\n');
    }
    // fields: blocks from "ID" to the blank line.
    if text.contains("\"IsLearner\" :") && text.contains("\"PeerURL\"") {
        let (head, rest) = text.split_at(text.find("\"ID\" :").unwrap_or(0));
        let mut blocks: Vec<&str> = rest.split_inclusive("\n\n").collect();
        blocks.sort();
        text = format!("{head}{}", blocks.concat());
    }
    text
}

fn looks_like_size(t: &str) -> bool {
    let Some((n, unit)) = t.split_once(' ') else {
        return false;
    };
    ["B", "kB", "MB", "GB"].contains(&unit) && n.parse::<f64>().is_ok()
}

fn looks_like_duration(t: &str) -> bool {
    !t.is_empty()
        && t.as_bytes()[0].is_ascii_digit()
        && (t.ends_with("ms") || t.ends_with("µs") || t.ends_with("ns") || t.ends_with('s'))
        && t.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || "msµnh".contains(c))
}

fn base64_decode(s: &str) -> Option<String> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let s = s.trim_end_matches('=');
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = T.iter().position(|t| *t == c)? as u32;
        bits = bits << 6 | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Replaces what follows each `marker` (up to where `end` says) with `with`.
fn replace_after(s: &str, marker: &str, end: impl Fn(&str) -> Option<usize>, with: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        let tail = &rest[i + marker.len()..];
        let n = end(tail).unwrap_or(tail.len());
        out.push_str(with);
        rest = &tail[n..];
    }
    out.push_str(rest);
    out
}

/// grpc-go's log dates (`2006/01/02 15:04:05`).
fn grpc_dates(s: &str) -> String {
    s.lines()
        .map(|l| {
            for p in ["INFO: ", "WARNING: "] {
                if let Some(rest) = l.strip_prefix(p) {
                    if rest.len() > 19 && rest.as_bytes()[4] == b'/' {
                        return format!("{p}<date>{}\n", &rest[19..]);
                    }
                }
            }
            format!("{l}\n")
        })
        .collect::<String>()
        .strip_suffix('\n')
        .map(|x| {
            if s.ends_with('\n') {
                format!("{x}\n")
            } else {
                x.to_string()
            }
        })
        .unwrap_or_default()
}

/// The environment a scenario runs in.
struct Env {
    endpoints: Vec<String>,
    dir: PathBuf,
    self_id: u64,
    /// The IDs of the scenario's members (`{ID0}`, `{ID1}`, ...).
    member_ids: Vec<u64>,
    /// CA, client certificate and key, for the TLS scenario.
    tls: Option<[String; 3]>,
}

fn fill(arg: &str, env: &Env, ids: &Ids) -> String {
    let mut a = arg
        .replace("{EP}", &env.endpoints[0])
        .replace("{EPS}", &env.endpoints.join(","))
        .replace("{DIR}", &env.dir.display().to_string())
        .replace("{SELF}", &format!("{:x}", env.self_id));
    for (i, id) in env.member_ids.iter().enumerate() {
        a = a.replace(&format!("{{ID{i}}}"), &format!("{id:x}"));
    }
    for (i, ep) in env.endpoints.iter().enumerate() {
        a = a.replace(&format!("{{EP{i}}}"), ep);
    }
    if let Some([ca, cert, key]) = &env.tls {
        a = a
            .replace("{CA}", ca)
            .replace("{CERT}", cert)
            .replace("{KEY}", key);
    }
    for (i, l) in ids.leases.iter().enumerate() {
        a = a.replace(&format!("{{L{}}}", i + 1), &format!("{l:x}"));
    }
    for (i, m) in ids.members.iter().enumerate() {
        a = a.replace(&format!("{{M{}}}", i + 1), &format!("{m:x}"));
    }
    a
}

fn command(bin: &Path, case: &Case, env: &Env, ids: &Ids) -> Command {
    let mut cmd = Command::new(bin);
    if case.endpoints {
        cmd.arg(format!("--endpoints={}", env.endpoints.join(",")));
    }
    cmd.args(case.args.iter().map(|a| fill(a, env, ids)));
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("ETCDCTL_") || k.starts_with("ETCD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("ETCDCTL_API", "3");
    for (k, v) in &case.env {
        cmd.env(k, fill(v, env, ids));
    }
    cmd.current_dir(&env.dir);
    cmd
}

fn label(case: &Case) -> String {
    let mut l = String::new();
    for (k, v) in &case.env {
        l.push_str(&format!("{k}={v} "));
    }
    l.push_str("etcdctl ");
    if case.endpoints {
        l.push_str("--endpoints=... ");
    }
    l.push_str(&case.args.join(" "));
    if let Some(input) = &case.stdin {
        let shown: String = String::from_utf8_lossy(input).chars().take(60).collect();
        l.push_str(&format!(" <<< {shown:?}"));
    }
    l
}

fn status_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "?".into(),
    }
}

/// A pipe read into a buffer by a thread.
struct Drain {
    buf: Arc<Mutex<Vec<u8>>>,
    reader: thread::JoinHandle<()>,
}

impl Drain {
    /// Everything read so far.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    fn lines(&self) -> usize {
        self.buf
            .lock()
            .unwrap()
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    }

    /// Everything, once the writer closed the pipe (or after 5 s).
    fn finish(self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.reader.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        self.text()
    }
}

/// Collects a pipe into a shared buffer on a thread.
fn drain(mut r: impl Read + Send + 'static) -> Drain {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    let reader = thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    Drain { buf, reader }
}

struct Background {
    child: Child,
    stdout: Drain,
    stderr: Drain,
    label: String,
    norm: Norm,
}

fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the steps with `bin` and returns one outcome per compared case (normalized).
fn run_steps(
    bin: &Path,
    steps: &[Step],
    env: &Env,
    running: &Running,
    ids: &mut Ids,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut background: HashMap<&'static str, Background> = HashMap::new();
    for step in steps {
        match step {
            Step::Sleep(ms) => thread::sleep(Duration::from_millis(*ms)),
            Step::Setup(f) => f(env),
            Step::Kill(i) => running.0[*i].kill().expect("kill a member"),
            Step::Run(case) => {
                let mut cmd = command(bin, case, env, ids);
                cmd.stdin(if case.stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
                let mut child = cmd.spawn().expect("spawn etcdctl");
                if let Some(input) = &case.stdin {
                    let mut w = child.stdin.take().unwrap();
                    let input = input.clone();
                    thread::spawn(move || {
                        let _ = w.write_all(&input);
                    });
                }
                let out = drain(child.stdout.take().unwrap());
                let err = drain(child.stderr.take().unwrap());
                let status = match wait_for_exit(&mut child, COMMAND_TIMEOUT) {
                    Some(s) => status_text(s),
                    None => {
                        let _ = child.kill();
                        let _ = child.wait();
                        "timeout".into()
                    }
                };
                let stdout = out.finish();
                let stderr = err.finish();
                ids.discover(&stdout);
                ids.discover(&stderr);
                outcomes.push(Outcome {
                    label: label(case),
                    stdout: ids.normalize(&stdout, case.norm),
                    stderr: ids.normalize(&stderr, case.norm),
                    status,
                });
            }
            Step::Start(name, case) => {
                let mut cmd = command(bin, case, env, ids);
                cmd.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = cmd.spawn().expect("spawn etcdctl");
                let mut w = child.stdin.take().unwrap();
                let slow = case.slow_stdin.clone();
                let input = case.stdin.clone();
                thread::spawn(move || {
                    if let Some(input) = input {
                        let _ = w.write_all(&input);
                    }
                    for (delay, line) in slow {
                        thread::sleep(Duration::from_millis(delay));
                        let _ = w.write_all(line.as_bytes());
                        let _ = w.flush();
                    }
                    // Standard input stays open until the process is stopped.
                    thread::sleep(Duration::from_secs(120));
                    drop(w);
                });
                let stdout = drain(child.stdout.take().unwrap());
                let stderr = drain(child.stderr.take().unwrap());
                background.insert(
                    name,
                    Background {
                        child,
                        stdout,
                        stderr,
                        label: label(case),
                        norm: case.norm,
                    },
                );
            }
            Step::Stop(name, lines, signal) => {
                let mut bg = background
                    .remove(name)
                    .unwrap_or_else(|| panic!("no background command {name}"));
                let deadline = Instant::now() + Duration::from_secs(20);
                while bg.stdout.lines() < *lines
                    && Instant::now() < deadline
                    && bg.child.try_wait().ok().flatten().is_none()
                {
                    thread::sleep(Duration::from_millis(20));
                }
                if bg.stdout.lines() < *lines {
                    eprintln!(
                        "note: {} printed {} of the {lines} lines waited for",
                        bg.label,
                        bg.stdout.lines()
                    );
                }
                // Anything printed right after.
                thread::sleep(Duration::from_millis(300));
                if bg.child.try_wait().ok().flatten().is_none() {
                    let _ = Command::new("kill")
                        .arg(format!("-{signal}"))
                        .arg(bg.child.id().to_string())
                        .status();
                }
                let status = match wait_for_exit(&mut bg.child, Duration::from_secs(10)) {
                    Some(s) => status_text(s),
                    None => {
                        let _ = bg.child.kill();
                        let _ = bg.child.wait();
                        "hung".into()
                    }
                };
                let stdout = bg.stdout.finish();
                let stderr = bg.stderr.finish();
                ids.discover(&stdout);
                ids.discover(&stderr);
                outcomes.push(Outcome {
                    label: format!("[background] {}", bg.label),
                    stdout: ids.normalize(&stdout, bg.norm),
                    stderr: ids.normalize(&stderr, bg.norm),
                    status,
                });
            }
        }
    }
    for (_, mut bg) in background {
        let _ = bg.child.kill();
        let _ = bg.child.wait();
    }
    outcomes
}

// ---------------------------------------------------------------------------------------
// Servers

/// How a scenario's servers are made.
#[derive(Clone)]
enum Servers {
    /// One member, with extra flags.
    Single(Vec<(&'static str, String)>),
    /// One member serving clients over TLS (client certificates required).
    Tls(Arc<TestCerts>),
    /// Three members; member 0 is made the leader.
    Three,
}

/// The members of a scenario's server (one, or three).
struct Running(Vec<EtcdServer>);

impl Running {
    fn endpoints(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|m| m.client_url().trim_start_matches("http://").to_string())
            .collect()
    }
    fn member_ids(&self) -> Vec<u64> {
        self.0
            .iter()
            .map(|m| m.status().map(|s| s.member_id).unwrap_or(0))
            .collect()
    }
}

const TOKEN: &str = "etcdctl-conformance";

fn start(servers: &Servers, ports: &[(u16, u16)]) -> std::io::Result<Running> {
    match servers {
        Servers::Single(flags) => {
            let mut b = EtcdServer::builder(EtcdVersion::V3_5)
                .name("m0")
                .client_port(ports[0].0)
                .peer_port(ports[0].1)
                .cluster_token(TOKEN);
            for (k, v) in flags {
                b = b.flag(k, v.clone());
            }
            Ok(Running(vec![b.start()?]))
        }
        Servers::Tls(certs) => {
            let s = EtcdServer::builder(EtcdVersion::V3_5)
                .name("m0")
                .client_port(ports[0].0)
                .peer_port(ports[0].1)
                .cluster_token(TOKEN)
                .tls(certs, true)
                .start()?;
            Ok(Running(vec![s]))
        }
        Servers::Three => {
            let initial = (0..3)
                .map(|i| format!("m{i}=http://127.0.0.1:{}", ports[i].1))
                .collect::<Vec<_>>()
                .join(",");
            let mut members = Vec::new();
            for (i, (c, p)) in ports.iter().enumerate().take(3) {
                members.push(
                    EtcdServer::builder(EtcdVersion::V3_5)
                        .name(format!("m{i}"))
                        .client_port(*c)
                        .peer_port(*p)
                        .initial_cluster(initial.clone())
                        .cluster_token(TOKEN)
                        .start_no_wait()?,
                );
            }
            for m in &members {
                m.wait_healthy(Duration::from_secs(30))?;
            }
            make_leader(&members, 0)?;
            Ok(Running(members))
        }
    }
}

/// Moves the leadership to member `want`, so both runs see the same leader.
fn make_leader(members: &[EtcdServer], want: usize) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let statuses: Vec<_> = members.iter().map(|m| m.status().ok()).collect();
        let target = statuses[want].as_ref().map(|s| s.member_id).unwrap_or(0);
        let leader = statuses
            .iter()
            .flatten()
            .map(|s| s.leader_id)
            .find(|l| *l != 0)
            .unwrap_or(0);
        if leader != 0 && leader == target {
            return Ok(());
        }
        if leader != 0 {
            if let Some(i) = statuses
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.member_id == leader))
            {
                let client = etcd_blocking::Client::connect([members[i].client_url()])
                    .map_err(std::io::Error::other)?
                    .with_timeout(Duration::from_secs(5));
                let _ = client.move_leader(target);
            }
        }
        if Instant::now() >= deadline {
            return Err(std::io::Error::other("could not move the leadership"));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a scenario with both binaries, each against fresh servers on the same ports, and
/// asserts every case matches.
fn scenario(name: &str, servers: Servers, steps: Vec<Step>) {
    let members = if matches!(servers, Servers::Three) {
        3
    } else {
        1
    };
    let dir =
        std::env::temp_dir().join(format!("etcdctl-conformance-{name}-{}", std::process::id()));
    let mut last_err = None;
    for _attempt in 0..3 {
        let ports: Vec<(u16, u16)> = (0..members).map(|_| (free_port(), free_port())).collect();
        let mut results = Vec::new();
        let mut failed = None;
        for bin in [real(), ours()] {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let running = match start(&servers, &ports) {
                Ok(r) => r,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let tls = match &servers {
                Servers::Tls(certs) => Some([
                    certs.ca_path().display().to_string(),
                    certs.client_cert_path().display().to_string(),
                    certs.client_key_path().display().to_string(),
                ]),
                _ => None,
            };
            let member_ids = running.member_ids();
            let env = Env {
                endpoints: running.endpoints(),
                dir: dir.clone(),
                self_id: member_ids[0],
                member_ids,
                tls,
            };
            let mut ids = Ids {
                lease_prefix: env.self_id & 0x7fff,
                raft_term: members > 1,
                ..Default::default()
            };
            results.push(run_steps(bin, &steps, &env, &running, &mut ids));
            drop(running);
        }
        let _ = std::fs::remove_dir_all(&dir);
        if let Some(e) = failed {
            last_err = Some(e);
            continue;
        }
        compare(name, &results[0], &results[1]);
        return;
    }
    panic!("scenario {name}: servers did not start: {last_err:?}");
}

fn compare(name: &str, real: &[Outcome], ours: &[Outcome]) {
    assert_eq!(real.len(), ours.len());
    let mut bad = 0;
    let verbose = std::env::var_os("CONFORMANCE_VERBOSE").is_some();
    for (a, b) in real.iter().zip(ours) {
        if verbose {
            eprintln!(
                "---- {name}: {} [{}]\n{}\n{}",
                a.label,
                a.status,
                indent(&a.stdout),
                indent(&a.stderr)
            );
        }
        if a != b {
            bad += 1;
            eprintln!("---- {name}: MISMATCH: {}", a.label);
            if a.status != b.status {
                eprintln!("  status: etcdctl {} / ours {}", a.status, b.status);
            }
            if a.stdout != b.stdout {
                eprintln!("  stdout etcdctl:\n{}", indent(&a.stdout));
                eprintln!("  stdout ours:\n{}", indent(&b.stdout));
            }
            if a.stderr != b.stderr {
                eprintln!("  stderr etcdctl:\n{}", indent(&a.stderr));
                eprintln!("  stderr ours:\n{}", indent(&b.stderr));
            }
        }
    }
    eprintln!(
        "scenario {name}: {} cases, {} identical, {bad} differ",
        real.len(),
        real.len() - bad
    );
    assert_eq!(
        bad,
        0,
        "scenario {name}: {bad} of {} cases differ",
        real.len()
    );
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    |{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// Scenarios

fn kv_steps() -> Vec<Step> {
    vec![
        r("put foo bar"),
        r("put foo bar2 --prev-kv"),
        c("put foo --prev-kv -w json").stdin("from stdin\n").run(),
        r("put a 1 -w fields --prev-kv"),
        r("put b 2"),
        r("put c 3 -w json"),
        r("put p/1 x"),
        r("put p/2 y"),
        r("put foo --ignore-value --prev-kv -w json"),
        r("put dash -- -v"),
        r("put k v --ignore-value"),
        r("put"),
        r("put foo bar --lease=zz"),
        r("put x y --lease=1234"),
        r("put foo bar -w table"),
        r("put foo bar -w protobuf"),
        r("get foo"),
        r("get foo -w json"),
        r("get foo -w fields"),
        r("get foo -w table"),
        r("get '' --prefix"),
        r("get a --from-key --limit 2 -w json"),
        r("get '' --prefix --keys-only"),
        r("get '' --prefix --count-only -w fields"),
        r("get '' --prefix --count-only"),
        r("get a z --sort-by=VALUE --order=DESCEND"),
        r("get a z --sort-by=create --order=ascend -w json"),
        r("get a z --sort-by=MODIFY --order=DESCEND --limit=2 --keys-only"),
        r("get a z --sort-by=version --print-value-only"),
        r("get a z --sort-by=KEY --order=descend"),
        r("get a --order=sideways"),
        r("get a --sort-by=size"),
        r("get '' --prefix --print-value-only"),
        r("get foo --print-value-only -w json"),
        r("get foo --rev=2"),
        r("get foo --consistency=s -w json"),
        r("get foo --consistency=x"),
        r("get ''"),
        r("get"),
        r("get a --prefix --from-key"),
        r("get a b --prefix"),
        r("get a --keys-only --count-only"),
        r("--hex get foo"),
        r("get foo --hex -w fields"),
        r("get foo --limit=abc"),
        r("get foo --limit=0x1 --sort-by=key --order=ascend"),
        r("get foo -wjson"),
        r("get foo --write-out=fields"),
        r("del a"),
        r("del b --prev-kv -w json"),
        r("del p --prefix --prev-kv -w fields"),
        r("del c --from-key -w json"),
        r("del zzz"),
        r("del"),
        r("del a b c"),
        r("del a --prefix --from-key"),
        r("del ''"),
        r("del x y -w protobuf"),
        r("compaction 3"),
        r("compaction 3"),
        r("compaction 1000"),
        r("compaction abc"),
        r("compaction"),
        r("compaction 5 --physical -w json"),
        r("get foo --rev=1"),
    ]
}

fn txn_steps() -> Vec<Step> {
    vec![
        r("put k1 v1"),
        r("put k2 v2"),
        c("txn")
            .stdin("value(\"k1\") = \"v1\"\n\nput k1 v1b --prev-kv\nget k2\ndel k2 --prev-kv\n\nput k3 never\n\n")
            .run(),
        c("txn -w json")
            .stdin("mod(\"k1\") > \"0\"\nversion(\"k1\") = \"2\"\n\nget k --prefix\nput k4 four\n\n\n")
            .run(),
        c("txn -w fields")
            .stdin("create(\"k1\") < \"2\"\n\nget k1\n\nput k5 five\ndel k1\n\n")
            .run(),
        c("txn -i")
            .stdin("value(\"k1\") != \"v1b\"\n\nput k6 six\n\nput k7 seven --prev-kv\nget k --from-key --keys-only\n\n")
            .run(),
        c("txn -w json").stdin("val(\"k7\") = \"seven\"\nc(\"k7\") > \"1\"\nm(\"k7\") > \"1\"\nver(\"k7\") = \"1\"\n\ndel k --prefix\n\n\n").run(),
        c("txn").stdin("\n\n\n").run(),
        c("txn -w json").stdin("\n\n\n").run(),
        c("txn").stdin("bogus\n\n\n").run(),
        c("txn").stdin("value(k1) = \"x\"\n\n\n").run(),
        c("txn").stdin("value(\"k1\") = x\n\n\n").run(),
        c("txn").stdin("size(\"k1\") = \"1\"\n\n\n").run(),
        c("txn").stdin("version(\"k1\") = \"one\"\n\n\n").run(),
        c("txn").stdin("\nbogus k1\n\n").run(),
        c("txn").stdin("\nget\n\n").run(),
        c("txn").stdin("\nput a\n\n").run(),
        c("txn").stdin("\nget ''\n\n").run(),
        c("txn").stdin("\nput a b --lease=zz\n\n").run(),
        c("txn").stdin("\nput \"quoted key\" \"a value\\n\"\n\n").run(),
        r("get quoted --prefix -w json"),
        c("txn").stdin("").run(),
        c("txn").stdin("value(\"k1\") = \"v1b\"\n").run(),
        r("txn extra"),
    ]
}

fn lease_steps() -> Vec<Step> {
    vec![
        r("lease grant 1000"),
        r("lease grant 1000 -w json"),
        r("lease grant 1000 -w fields"),
        r("lease grant abc"),
        r("lease grant"),
        r("lease grant 99999999999"),
        r("lease grant 10000000000000000000"),
        r("put lk v --lease={L1}"),
        r("put lk2 v -w json --lease={L2}"),
        r("put lk --ignore-lease --prev-kv -w json"),
        r("get lk -w fields"),
        c("lease timetolive {L1}").ttl().run(),
        c("lease timetolive {L1} --keys").ttl().run(),
        c("lease timetolive {L1} --keys -w json").ttl().run(),
        c("lease timetolive {L1} --keys -w fields").ttl().run(),
        r("lease timetolive 1234"),
        r("lease timetolive 1234 -w json"),
        r("lease timetolive zz"),
        r("lease timetolive"),
        r("lease list"),
        r("lease list -w json"),
        r("lease list -w fields"),
        r("lease keep-alive --once {L1}"),
        r("lease keep-alive --once {L1} -w json"),
        r("lease keep-alive --once {L1} -w fields"),
        r("lease keep-alive --once 1234"),
        r("lease keep-alive"),
        r("lease keep-alive 1234"),
        Step::Start("keepalive", c("lease keep-alive {L1}")),
        Step::Stop("keepalive", 1, "TERM"),
        Step::Start("keepalive-json", c("lease keep-alive -w json {L2}")),
        Step::Stop("keepalive-json", 1, "TERM"),
        r("lease revoke {L2}"),
        r("lease revoke {L2}"),
        r("lease revoke {L3} -w json"),
        r("lease revoke zz"),
        r("lease revoke"),
        r("lease grant 100 -w table"),
        r("lease list"),
        r("lease revoke {L1} -w fields"),
        r("get lk --prefix"),
        r("lease revoke {L4} -w protobuf"),
        r("lease grant 1000 -w protobuf"),
        r("lease list -w protobuf"),
        r("lease timetolive {L1} -w protobuf"),
    ]
}

fn watch_steps() -> Vec<Step> {
    let echo = "sh -c 'echo \"$ETCD_WATCH_REVISION $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE\"'";
    vec![
        r("put w/a 1"),
        r("put w/b 2"),
        r("del w/a"),
        Step::Start("prefix", c("watch w/ --prefix --rev=1")),
        Step::Stop("prefix", 9, "TERM"),
        Step::Start("json", c("watch w/ --prefix --rev=1 --prev-kv -w json")),
        Step::Stop("json", 1, "TERM"),
        Step::Start("fields", c("watch w/ --prefix --rev=1 --prev-kv -w fields")),
        Step::Stop("fields", 31, "TERM"),
        Step::Start("range", c("watch w/a w/c --rev=1")),
        Step::Stop("range", 9, "TERM"),
        Step::Start("key", c("watch --rev=2 w/a --prev-kv")),
        Step::Stop("key", 8, "TERM"),
        Step::Start("exec", c(&format!("watch w/ --prefix --rev=1 -- {echo}"))),
        Step::Stop("exec", 12, "TERM"),
        Step::Start("hex", c("watch --hex w/ --prefix --rev=3")),
        Step::Stop("hex", 6, "TERM"),
        // A live watch: events after it started.
        Step::Start("live", c("watch live --prefix --rev=5")),
        r("put live/1 x"),
        r("put live/2 y"),
        r("del live/1"),
        Step::Stop("live", 9, "TERM"),
        Step::Start(
            "interactive",
            c("watch -i")
                .slow(0, "watch w/ --prefix --rev 1\n")
                .slow(300, "bogus\n")
                .slow(100, "watch\n")
                .slow(100, "\n")
                // Last: its answer is the line the test waits for.
                .slow(300, "progress\n"),
        ),
        Step::Stop("interactive", 10, "TERM"),
        Step::Start(
            "interactive-json",
            c("watch -i -w json")
                .slow(0, "watch w/b --rev 1 -- echo ran\n")
                .slow(700, "progress\n"),
        ),
        Step::Stop("interactive-json", 4, "TERM"),
        Step::Start("progress", c("watch w/ --prefix --progress-notify")),
        Step::Stop("progress", 1, "TERM"),
        r("watch"),
        r("watch w/a --"),
        r("watch w/a w/b --prefix"),
        c("watch -i").stdin("watch w/ --prefix --rev\n").run(),
        c("watch").env("ETCDCTL_WATCH_RANGE_END", "z").run(),
        Step::Start("env", c("watch --rev=1").env("ETCDCTL_WATCH_KEY", "w/b")),
        Step::Stop("env", 3, "TERM"),
        c("watch w/b --rev=1").env("ETCDCTL_WATCH_KEY", "w/b").run(),
        r("watch w/a --rev=1 -w table"),
        r("compaction 5"),
        r("watch w/ --prefix --rev=2"),
        r("watch w/ --prefix --rev=2 -w json"),
        r("watch w/ --prefix --rev=2 -w fields"),
    ]
}

fn maintenance_steps() -> Vec<Step> {
    vec![
        r("put foo bar"),
        r("member list"),
        r("member list -w json"),
        r("member list -w fields"),
        r("member list -w table"),
        r("member list --hex -w json"),
        c("member add m1 --peer-urls=http://127.0.0.1:1 --learner")
            .members()
            .run(),
        c("member list").members().run(),
        c("member list -w table").members().run(),
        c("member list -w json").members().run(),
        c("member list -w fields").members().run(),
        r("member add m9 --peer-urls=http://127.0.0.1:9 --learner -w json"),
        r("member promote {M1}"),
        r("member update {M1} --peer-urls=http://127.0.0.1:2"),
        c("member update {M1} --peer-urls=http://127.0.0.1:3 -w json")
            .members()
            .run(),
        r("member update {M1} --peer-urls=http://127.0.0.1:3 -w fields"),
        r("member update zz --peer-urls=http://a:1"),
        r("member update {M1}"),
        r("member remove {M1}"),
        r("member remove {M1}"),
        r("member remove"),
        r("member promote zz"),
        r("member add m4 --peer-urls=bogus"),
        r("member add m4 --peer-urls=http://127.0.0.1:4/path"),
        r("member add m4 --peer-urls=http://127.0.0.1"),
        r("member add"),
        r("member add m4"),
        r("member add m4 http://127.0.0.1:4"),
        c("member add m5 --peer-urls=http://127.0.0.1:5 --learner -w json")
            .members()
            .run(),
        c("member remove {M2} -w json").members().run(),
        c("endpoint status").db_size().run(),
        c("endpoint status -w json").db_size().run(),
        c("endpoint status -w fields").db_size().run(),
        c("endpoint status -w table").db_size().run(),
        c("endpoint status --cluster").db_size().run(),
        r("endpoint hashkv"),
        r("endpoint hashkv -w json"),
        r("endpoint hashkv -w fields"),
        r("endpoint hashkv -w table"),
        r("endpoint hashkv --rev=1 --cluster -w json"),
        c("endpoint health").took().run(),
        c("endpoint health -w json").took().run(),
        c("endpoint health -w fields").took().run(),
        c("endpoint health -w table").took().run(),
        c("endpoint health --cluster").took().run(),
        r("alarm list"),
        r("alarm list -w json"),
        r("alarm list -w fields"),
        r("alarm disarm"),
        r("alarm disarm -w json"),
        r("alarm list extra"),
        r("defrag"),
        r("defrag -w json"),
        r("defrag --cluster"),
        r("snapshot save {DIR}/snap.db"),
        r("snapshot save"),
        r("snapshot save /nonexistent-dir/x.db"),
        c("--endpoints={EP},{EP} snapshot save {DIR}/x.db")
            .no_ep()
            .run(),
        r("move-leader {SELF}"),
        r("move-leader {SELF} -w json"),
        r("move-leader 1234"),
        r("move-leader zz"),
        r("move-leader"),
        r("version"),
        r("version -w json"),
        r("endpoint status --bogus"),
    ]
}

/// Raises the NOSPACE alarm of the server (as a full backend would).
fn raise_nospace(env: &Env) {
    use etcd_blocking::proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
    let client = etcd_blocking::Client::connect([format!("http://{}", env.endpoints[0])])
        .expect("client")
        .with_timeout(Duration::from_secs(10));
    client
        .call(AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: env.self_id,
            alarm: AlarmType::Nospace as i32,
        })
        .expect("raise NOSPACE");
}

fn nospace_steps() -> Vec<Step> {
    vec![
        r("put small x"),
        Step::Setup(raise_nospace),
        r("alarm list"),
        r("alarm list -w json"),
        r("alarm list -w fields"),
        r("alarm list -w protobuf"),
        r("put another x"),
        c("endpoint health").took().run(),
        c("endpoint health -w json").took().run(),
        c("endpoint health -w fields").took().run(),
        c("endpoint status -w table").db_size().run(),
        c("endpoint status").db_size().run(),
        r("get small"),
        r("alarm disarm"),
        r("alarm disarm -w json"),
        r("alarm list"),
        r("put after disarm"),
        Step::Setup(raise_nospace),
        r("alarm disarm -w json"),
        // (`alarm disarm -w fields` with no alarm makes etcdctl 3.5.1 panic on the missing
        // header; not compared.)
    ]
}

fn auth_steps() -> Vec<Step> {
    vec![
        r("auth status"),
        r("auth status -w json"),
        r("auth status -w fields"),
        r("auth enable"),
        r("user add root:rootpw"),
        r("user add root:x"),
        r("user add bob --new-user-password=bpw -w json"),
        c("user add carl --interactive=false").stdin("cpw\n").run(),
        c("user add dave").stdin("dpw\ndpw\n").run(),
        c("user add eve").stdin("a\nb\n").run(),
        c("user add fay").stdin("\n").run(),
        r("user add nopw --no-password -w fields"),
        r("user add :x"),
        r("user add"),
        r("user list"),
        r("user list -w json"),
        r("user list -w fields"),
        r("role add r1"),
        r("role add r1"),
        r("role add r2 -w fields"),
        r("role add r3 -w json"),
        r("role list"),
        r("role list -w json"),
        r("role list -w fields"),
        r("role grant-permission r1 read foo"),
        r("role grant-permission r1 write foo bar"),
        r("role grant-permission r1 readwrite p/ --prefix"),
        r("role grant-permission r1 READWRITE z --from-key -w json"),
        r("role grant-permission r1 read '' --prefix"),
        r("role grant-permission r1 bogus a"),
        r("role grant-permission r1"),
        r("role grant-permission r1 read a b --prefix"),
        r("role grant-permission r1 read a --prefix --from-key"),
        r("role grant-permission nope read a"),
        r("role get r1"),
        r("role get r1 -w json"),
        r("role get r1 -w fields"),
        r("role get nope"),
        r("role revoke-permission r1 foo"),
        r("role revoke-permission r1 foo bar"),
        r("role revoke-permission r1 p/ --prefix -w json"),
        r("role revoke-permission r1 z --from-key"),
        r("role revoke-permission r1 nope"),
        r("role revoke-permission r1"),
        r("role get r1"),
        r("user grant-role bob r1"),
        r("user grant-role bob r3 -w json"),
        r("user grant-role bob nope"),
        r("user grant-role bob"),
        r("user get bob"),
        r("user get bob -w json"),
        r("user get bob --detail"),
        r("user get bob -w fields"),
        r("user get nope"),
        r("user revoke-role bob r3"),
        r("user revoke-role bob r3"),
        r("user revoke-role bob"),
        c("user passwd bob --interactive=false")
            .stdin("newpw\n")
            .run(),
        c("user passwd bob").stdin("p\np\n").run(),
        r("user passwd"),
        r("role delete r2"),
        r("role delete r2 -w json"),
        r("user delete nopw"),
        r("user delete nopw -w json"),
        r("auth enable"),
        r("auth enable"),
        r("get foo"),
        r("--user=root:rootpw put foo bar"),
        r("--user=root --password=rootpw get foo -w json"),
        r("--user=root:bad get foo"),
        r("--user=carl:cpw put foo no"),
        r("--user=bob:p get foo"),
        c("--user=root get foo").stdin("rootpw\n").run(),
        c("get foo").env("ETCDCTL_USER", "root:rootpw").run(),
        r("--user=root:rootpw auth status"),
        r("--user=root:rootpw user list"),
        r("--user=root:rootpw role get root"),
        r("--user=root:rootpw auth disable"),
        r("auth status"),
        r("auth disable"),
        r("auth status extra"),
    ]
}

fn global_steps() -> Vec<Step> {
    vec![
        r("put foo bar"),
        c("get foo").no_ep().env("ETCDCTL_ENDPOINTS", "{EP}").run(),
        c("get foo").env("ETCDCTL_WRITE_OUT", "json").run(),
        c("get foo").env("ETCDCTL_HEX", "true").run(),
        c("get foo").env("ETCDCTL_FOO", "bar").run(),
        c("get foo").env("ETCDCTL_DIAL_TIMEOUT", "abc").run(),
        c("get foo -w fields").env("ETCDCTL_COMMAND_TIMEOUT", "9s").run(),
        r("--dial-timeout=3s --command-timeout=4s --keepalive-time=3s --keepalive-timeout=5s get foo"),
        r("--insecure-transport=true --insecure-skip-tls-verify --insecure-discovery=false get foo"),
        r("--write-out json get foo"),
        r("-w=json get foo"),
        r("get -w json foo"),
        // grpc-go logs from concurrent goroutines: its lines are compared in sorted order.
        c("--debug get foo").sorted().run(),
        c("--endpoints=http://{EP} get foo").no_ep().run(),
        c("--endpoints=127.0.0.1:1 --dial-timeout=300ms --command-timeout=1s get foo")
            .no_ep()
            .run(),
        r("--command-timeout=abc get foo"),
        r("--dial-timeout get foo"),
        r("bogus"),
        r("--bogus get foo"),
        r("get foo -x"),
        r("get foo --endpoints"),
        r("get foo -w"),
        r("get foo --prefix=maybe"),
        r("help get"),
        r("get --help"),
        r("help bogus"),
        r("help"),
        r("member"),
        r("lease bogus"),
        r("-h"),
        r("version"),
        r("get foo -w bogus"),
        c("get foo").no_ep().env("ETCDCTL_ENDPOINTS", "{EP}").env("ETCDCTL_WRITE_OUT", "fields").run(),
    ]
}

fn tls_steps() -> Vec<Step> {
    vec![
        c("--cacert={CA} --cert={CERT} --key={KEY} put foo bar").run(),
        c("--cacert={CA} --cert={CERT} --key={KEY} get foo -w json").run(),
        c("get foo --cacert={CA} --cert={CERT} --key={KEY} --insecure-transport=false").run(),
        c("get foo --cacert= --cert={CERT} --key={KEY}").run(),
        c("get foo --cert=").run(),
        // No CA: the server is not verified at all (the client certificate is still sent).
        c("--cert={CERT} --key={KEY} --insecure-skip-tls-verify get foo").run(),
    ]
}

fn concurrency_steps() -> Vec<Step> {
    vec![
        r("lock"),
        r("lock mylock echo hello"),
        r("lock mylock -- sh -c 'echo key=$ETCD_LOCK_KEY rev=$ETCD_LOCK_REV; exit 3'"),
        r("lock --ttl=5 mylock -w json echo hi"),
        r("lock mylock /nonexistent/cmd"),
        r("lock mylock no-such-command-anywhere"),
        Step::Start("holder", c("lock held")),
        Step::Stop("holder", 2, "TERM"),
        r("get held --prefix --count-only -w fields"),
        r("elect"),
        r("elect e1"),
        r("elect e1 v -l"),
        r("elect a b c"),
        Step::Start("observer", c("elect -l e1")),
        Step::Sleep(500),
        Step::Start("leader", c("elect e1 first")),
        Step::Stop("leader", 2, "TERM"),
        Step::Stop("observer", 2, "INT"),
        Step::Start("leader-json", c("elect e1 second -w json")),
        Step::Stop("leader-json", 1, "TERM"),
        r("get e1 --prefix --count-only -w fields"),
    ]
}

fn three_member_steps() -> Vec<Step> {
    // Raft indexes and database sizes of a three-member cluster depend on its elections and
    // timing, so `endpoint status` is compared on one member only (in `maintenance`).
    vec![
        r("member list"),
        r("member list -w table"),
        r("member list -w json"),
        r("endpoint hashkv --cluster"),
        r("endpoint hashkv --cluster -w table"),
        c("endpoint health --cluster").took().sorted().run(),
        r("defrag --cluster"),
        r("put foo bar"),
        r("member add m3 --peer-urls=http://127.0.0.1:1"),
        r("member list"),
        r("member remove {M1}"),
        r("member list -w fields"),
        c("--endpoints={EPS} snapshot save {DIR}/snap.db")
            .no_ep()
            .run(),
        c("--endpoints={EPS} move-leader {SELF}").no_ep().run(),
        c("--endpoints={EPS} move-leader {ID1}").no_ep().run(),
        c("--endpoints={EP2} move-leader {ID0}").no_ep().run(),
        c("--endpoints={EPS} move-leader {ID0}").no_ep().run(),
        r("get foo"),
        Step::Kill(2),
        c("endpoint health --cluster --command-timeout=2s")
            .took()
            .sorted()
            .run(),
        c("endpoint hashkv --cluster --command-timeout=2s").run(),
        c("--endpoints={EP2} --command-timeout=1s get foo")
            .no_ep()
            .run(),
        c("--endpoints={EP2},{EP0} put after kill").no_ep().run(),
    ]
}

#[test]
fn kv() {
    scenario("kv", Servers::Single(vec![]), kv_steps());
}

#[test]
fn txn() {
    scenario("txn", Servers::Single(vec![]), txn_steps());
}

#[test]
fn lease() {
    scenario("lease", Servers::Single(vec![]), lease_steps());
}

#[test]
fn watch() {
    scenario(
        "watch",
        Servers::Single(vec![(
            "--experimental-watch-progress-notify-interval",
            "800ms".into(),
        )]),
        watch_steps(),
    );
}

#[test]
fn maintenance() {
    scenario("maintenance", Servers::Single(vec![]), maintenance_steps());
}

#[test]
fn nospace_alarm() {
    scenario("nospace", Servers::Single(vec![]), nospace_steps());
}

#[test]
fn auth() {
    scenario("auth", Servers::Single(vec![]), auth_steps());
}

#[test]
fn global_flags() {
    scenario("global", Servers::Single(vec![]), global_steps());
}

#[test]
fn tls() {
    let certs = Arc::new(TestCerts::generate_temp().expect("certs"));
    scenario("tls", Servers::Tls(certs), tls_steps());
}

#[test]
fn concurrency() {
    scenario("concurrency", Servers::Single(vec![]), concurrency_steps());
}

#[test]
fn three_members() {
    scenario("three", Servers::Three, three_member_steps());
}

#[test]
fn at_least_eighty_cases() {
    let total: usize = [
        kv_steps(),
        txn_steps(),
        lease_steps(),
        watch_steps(),
        maintenance_steps(),
        nospace_steps(),
        auth_steps(),
        global_steps(),
        tls_steps(),
        concurrency_steps(),
        three_member_steps(),
    ]
    .iter()
    .map(|s| count_cases(s))
    .sum();
    eprintln!("{total} compared cases");
    assert!(total >= 80, "only {total} cases");
}

// ---------------------------------------------------------------------------------------
// Our etcdctl under failures and contention

/// Our etcdctl against `endpoints`, without the test's own `ETCDCTL_*` variables.
fn ours_with(endpoints: &str) -> Command {
    let mut cmd = Command::new(ours());
    cmd.arg(format!("--endpoints={endpoints}"));
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("ETCDCTL_") || k.starts_with("ETCD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("ETCDCTL_API", "3");
    cmd
}

/// `watch --prefix` through our etcdctl, connected to all three members of a cluster whose
/// leader is killed while another client writes 1000 keys: every event, once, in order.
#[test]
fn watch_through_leader_kill_prints_every_event_once_in_order() {
    use etcd_blocking::{Compare, CompareOp, Config, Put, Txn};
    const KEYS: usize = 1000;
    let cluster = etcd_tests::EtcdCluster::start(EtcdVersion::V3_5, 3).expect("cluster");
    let urls = cluster.client_urls();
    let mut config = Config::from_endpoints(&urls).expect("config");
    config.default_timeout = Some(Duration::from_secs(5));
    let writer = etcd_blocking::Client::with_config(config).expect("client");
    let start_rev = writer
        .get("fo/")
        .expect("get")
        .header
        .expect("header")
        .revision
        + 1;

    let mut watch = ours_with(&urls.join(","))
        .args(["watch", "--prefix", "fo/", &format!("--rev={start_rev}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn our etcdctl");
    let out = drain(watch.stdout.take().unwrap());
    let err = drain(watch.stderr.take().unwrap());

    let leader = cluster.leader().expect("leader");
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..KEYS {
        if i == KEYS / 3 {
            cluster.member(leader).kill().expect("kill the leader");
        }
        let key = format!("fo/{i:04}");
        // Create-if-absent: a retried write never makes a second event.
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([Put::new(key.as_str(), format!("v{i}"))]);
        loop {
            match writer.txn(txn.clone()) {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "write {i} keeps failing: {e}");
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    let wait_until = Instant::now() + Duration::from_secs(60);
    while out.lines() < 3 * KEYS && Instant::now() < wait_until {
        thread::sleep(Duration::from_millis(50));
    }
    // Anything extra would show now.
    thread::sleep(Duration::from_millis(500));
    let still_running = watch.try_wait().ok().flatten().is_none();
    let _ = watch.kill();
    let _ = watch.wait();
    let stdout = out.finish();
    let stderr = err.finish();
    assert!(still_running, "the watch ended: {stderr}");
    assert_eq!(stderr, "", "the watch complained");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        3 * KEYS,
        "expected {KEYS} events of 3 lines, got {} lines",
        lines.len()
    );
    for (i, event) in lines.chunks(3).enumerate() {
        assert_eq!(
            event,
            [
                "PUT",
                format!("fo/{i:04}").as_str(),
                format!("v{i}").as_str()
            ],
            "event {i}"
        );
    }
}

/// `lock NAME -- COMMAND` from five processes at once: the commands never overlap.
#[test]
fn lock_from_five_processes_never_overlaps() {
    let server = EtcdServer::start(EtcdVersion::V3_5).expect("etcd");
    let dir = std::env::temp_dir().join(format!("etcdctl-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // `mkdir` fails if another holder is inside: the command then exits 42.
    let script = format!(
        "mkdir {d}/held || exit 42; echo $$ >> {d}/log; sleep 0.3; rmdir {d}/held",
        d = dir.display()
    );
    let started = Instant::now();
    let children: Vec<Child> = (0..5)
        .map(|_| {
            ours_with(&server.client_url())
                .args(["lock", "conformance-lock", "--", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn our etcdctl")
        })
        .collect();
    for mut child in children {
        let err = drain(child.stderr.take().unwrap());
        let status = wait_for_exit(&mut child, Duration::from_secs(60)).expect("lock finishes");
        assert!(
            status.success(),
            "a lock holder failed: {status} {}",
            err.finish()
        );
    }
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    assert_eq!(log.lines().count(), 5, "every command ran once: {log}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "five 0.3 s commands ran one after the other"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `get --min-mod-rev/--max-mod-rev/--min-create-rev/--max-create-rev`: etcdctl 3.5.1 has no
/// such flags (3.6 added them), so ours is checked against the data instead.
#[test]
fn get_revision_filters() {
    let server = EtcdServer::start(EtcdVersion::V3_5).expect("etcd");
    let url = server.client_url();
    let run = |args: &[&str]| {
        let out = ours_with(&url)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run our etcdctl");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["put", "a", "1"]); // a: created and modified at 2
    run(&["put", "b", "2"]); // b: created and modified at 3
    run(&["put", "a", "3"]); // a: modified at 4
    let get = |flag: &str| run(&["get", "", "--prefix", flag]);
    assert_eq!(get("--min-mod-rev=4"), "a\n3\n");
    assert_eq!(get("--max-mod-rev=3"), "b\n2\n");
    assert_eq!(get("--min-create-rev=3"), "b\n2\n");
    assert_eq!(get("--max-create-rev=2"), "a\n3\n");
    assert_eq!(get("--max-create-rev=1"), "");
}
