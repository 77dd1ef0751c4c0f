//! `watch`: keys, ranges and prefixes from a revision, with previous values, progress
//! notifications, an interactive mode, and a command run for each event.

use std::sync::Mutex;

use etcd_blocking::proto::etcdserverpb as pb;
use etcd_blocking::proto::mvccpb;
use etcd_blocking::{Client, Error, Watch, WatchResponse, WatchResponseKind};

use crate::ctx::{
    exit, fail, flush, go_err, outln, Ctx, Format, EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
};
use crate::flags::Flags;
use crate::gofmt::{go_quote, go_quote_str};
use crate::json;
use crate::print::{fields_hdr, fields_kv, kv_simple};

const BAD_ARGS_NUM: &str = "bad number of arguments";
const BAD_ARGS_CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";
const BAD_ARGS_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";

/// One watch's options.
#[derive(Debug, Clone, Default)]
struct Opts {
    rev: i64,
    prefix: bool,
    prev_kv: bool,
    progress_notify: bool,
    require_leader: bool,
}

/// Serializes the output of concurrent watchers (line by line, as Go's `fmt` calls do).
static PRINT: Mutex<()> = Mutex::new(());

fn event_type(t: i32) -> &'static str {
    if t == mvccpb::event::EventType::Delete as i32 {
        "DELETE"
    } else {
        "PUT"
    }
}

fn print_response(format: Format, hex: bool, resp: &WatchResponse) {
    let _guard = PRINT.lock().unwrap_or_else(|e| e.into_inner());
    if resp.kind == WatchResponseKind::Progress {
        outln(format!("progress notify: {}", resp.header.revision));
    }
    match format {
        Format::Simple => {
            for e in &resp.events {
                outln(event_type(e.r#type));
                if let Some(prev) = &e.prev_kv {
                    kv_simple(hex, false, prev);
                }
                kv_simple(hex, false, &e.kv.clone().unwrap_or_default());
            }
        }
        Format::Json => outln(json::watch(&resp.header, &resp.events, 0, false, false)),
        Format::Fields => {
            fields_hdr(&Some(resp.header));
            for e in &resp.events {
                outln(format!("\"Type\" : {}", event_type(e.r#type)));
                if let Some(prev) = &e.prev_kv {
                    fields_kv("Prev", prev);
                }
                fields_kv("", &e.kv.clone().unwrap_or_default());
            }
        }
        Format::Protobuf => crate::print::protobuf(&pb::WatchResponse {
            header: Some(resp.header),
            events: resp.events.to_vec(),
            ..Default::default()
        }),
        Format::Table => format.unsupported(),
    }
    flush();
}

/// The message of the spawn failure as Go's `os/exec` words it.
pub fn exec_error(program: &str, e: &std::io::Error) -> String {
    if !program.contains('/') && e.kind() == std::io::ErrorKind::NotFound {
        format!(
            "exec: {}: executable file not found in $PATH",
            go_quote_str(program)
        )
    } else {
        format!("fork/exec {program}: {}", crate::gofmt::go_io_err(e))
    }
}

/// Go's text of a finished command's failure (`exit status 3`, `signal: killed`).
pub fn status_error(status: std::process::ExitStatus) -> Option<(String, i32)> {
    use std::os::unix::process::ExitStatusExt;
    if status.success() {
        return None;
    }
    if let Some(code) = status.code() {
        return Some((format!("exit status {code}"), code));
    }
    let sig = status.signal().unwrap_or(0);
    let name = match sig {
        libc::SIGKILL => "killed".to_string(),
        libc::SIGTERM => "terminated".to_string(),
        libc::SIGINT => "interrupt".to_string(),
        libc::SIGHUP => "hangup".to_string(),
        libc::SIGPIPE => "broken pipe".to_string(),
        libc::SIGABRT => "aborted".to_string(),
        libc::SIGSEGV => "segmentation fault".to_string(),
        s => format!("signal {s}"),
    };
    Some((format!("signal: {name}"), 255))
}

fn run_exec(exec: &[String], revision: i64, e: &mvccpb::Event) {
    flush();
    let kv = e.kv.clone().unwrap_or_default();
    let result = std::process::Command::new(&exec[0])
        .args(&exec[1..])
        .env("ETCD_WATCH_REVISION", revision.to_string())
        .env("ETCD_WATCH_EVENT_TYPE", go_quote_str(event_type(e.r#type)))
        .env("ETCD_WATCH_KEY", go_quote(&kv.key))
        .env("ETCD_WATCH_VALUE", go_quote(&kv.value))
        .stdin(std::process::Stdio::null())
        .status();
    let err = match result {
        Ok(status) => status_error(status).map(|(m, _)| m),
        Err(err) => Some(exec_error(&exec[0], &err)),
    };
    if let Some(err) = err {
        let quoted: Vec<String> = exec.iter().map(|a| go_quote_str(a)).collect();
        eprintln!("command [{}] error ({err})", quoted.join(" "));
        exit(1);
    }
}

/// The header of a cancelled watch's last response (cluster, member and term; no
/// revision), which the driver does not hand out with the error: a member list's header
/// carries the same.
fn cancel_header(client: &Client) -> pb::ResponseHeader {
    client
        .call(pb::MemberListRequest {
            linearizable: false,
        })
        .ok()
        .and_then(|r| r.header)
        .map(|h| pb::ResponseHeader { revision: 0, ..h })
        .unwrap_or_default()
}

/// etcdctl's `printWatchCh`: prints every response until the watcher ends.
fn print_watch(
    client: &Client,
    format: Format,
    hex: bool,
    mut watcher: etcd_blocking::Watcher,
    exec: &[String],
) {
    for item in watcher.by_ref() {
        match item {
            Ok(resp) => {
                print_response(format, hex, &resp);
                if !exec.is_empty() {
                    for e in &resp.events {
                        run_exec(exec, resp.header.revision, e);
                    }
                }
            }
            Err(e) => {
                let _guard = PRINT.lock().unwrap_or_else(|e| e.into_inner());
                flush();
                eprintln!("watch was canceled ({})", go_err(&e));
                let compact = match &e {
                    Error::WatchCompacted { compact_revision } => *compact_revision,
                    _ => 0,
                };
                match format {
                    Format::Json => outln(json::watch(
                        &cancel_header(client),
                        &[],
                        compact,
                        true,
                        false,
                    )),
                    Format::Fields => fields_hdr(&Some(cancel_header(client))),
                    _ => {}
                }
                break;
            }
        }
    }
}

/// etcdctl's `getWatchChan`: the watch of `args` (key, optional range end).
fn make_watch(args: &[String], o: &Opts) -> Result<Watch, String> {
    if args.is_empty() {
        return Err(BAD_ARGS_NUM.into());
    }
    let key = args[0].as_bytes().to_vec();
    let mut w = Watch::new(key.clone()).start_revision(o.rev);
    if args.len() >= 2 {
        if o.prefix {
            return Err("`range_end` and `--prefix` are mutually exclusive".into());
        }
        w = w.range_end(args[1].as_bytes().to_vec());
    }
    if o.prefix {
        w = if key.is_empty() {
            Watch::new(vec![0u8])
                .start_revision(o.rev)
                .range_end(vec![0u8])
        } else {
            w.prefix()
        };
    }
    if o.prev_kv {
        w = w.prev_kv();
    }
    if o.progress_notify {
        w = w.progress_notify();
    }
    // etcdctl watches with `WithRequireLeader`. The driver's `request_progress` only reaches
    // the stream of watchers without it, so interactive watches (where `progress` may be
    // asked for) go without.
    Ok(if o.require_leader {
        w.require_leader()
    } else {
        w
    })
}

fn start(client: &Client, args: &[String], o: &Opts) -> Result<etcd_blocking::Watcher, String> {
    let w = make_watch(args, o)?;
    client.watch(w).map_err(|e| go_err(&e))
}

fn env_key() -> (String, String) {
    let key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    (key, range)
}

pub fn watch(ctx: &mut Ctx, args: Vec<String>) {
    let (env_key, env_range) = env_key();
    if env_key.is_empty() && !env_range.is_empty() {
        fail(
            EXIT_BAD_ARGS,
            format!(
                "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
                go_quote_str(&env_range)
            ),
        );
    }
    let opts = Opts {
        rev: ctx.flags.int("rev"),
        prefix: ctx.flags.bool("prefix"),
        prev_kv: ctx.flags.bool("prev-kv"),
        progress_notify: ctx.flags.bool("progress-notify"),
        require_leader: true,
    };
    if ctx.flags.bool("interactive") {
        interactive(ctx, &env_key, &env_range, opts);
    }
    // etcdctl's parseWatchArgs, non-interactive.
    let raw: Vec<String> = match ctx.raw_args.iter().position(|a| a == "watch") {
        Some(i) => ctx.raw_args[i + 1..].to_vec(),
        None => Vec::new(),
    };
    let sep = raw.iter().position(|a| a == "--");
    if sep == Some(raw.len().saturating_sub(1)) && sep.is_some() {
        fail(EXIT_BAD_ARGS, BAD_ARGS_SEPARATOR);
    }
    if sep.is_none() && raw.is_empty() && env_key.is_empty() {
        fail(EXIT_BAD_ARGS, BAD_ARGS_NUM);
    }
    if sep.is_none() && !args.is_empty() && !env_key.is_empty() {
        fail(EXIT_BAD_ARGS, BAD_ARGS_CONFLICT_ENV);
    }
    let exec: Vec<String> = match sep {
        Some(i) => raw[i + 1..].to_vec(),
        None => Vec::new(),
    };
    let mut watch_args = args;
    if !env_key.is_empty() {
        let mut ranges = vec![env_key.clone()];
        if !env_range.is_empty() {
            ranges.push(env_range.clone());
        }
        ranges.extend(watch_args);
        watch_args = ranges;
    }
    if let Some(first) = exec.first() {
        let end = watch_args.iter().rposition(|a| a == first).unwrap_or(0);
        watch_args.truncate(end);
    }
    let client = ctx.client().clone();
    let watcher = match start(&client, &watch_args, &opts) {
        Ok(w) => w,
        Err(e) => fail(EXIT_BAD_ARGS, e),
    };
    print_watch(&client, ctx.format, ctx.hex, watcher, &exec);
    fail(EXIT_INTERRUPTED, "watch is canceled by the server");
}

/// The watch options and arguments of an interactive `watch ...` line.
fn parse_interactive(
    words: &[String],
    env_key: &str,
    env_range: &str,
    progress_notify: bool,
) -> Result<(Vec<String>, Vec<String>, Opts), String> {
    let watch_args = &words[1..];
    let sep = watch_args.iter().position(|a| a == "--");
    if sep.is_some() && sep == Some(watch_args.len() - 1) {
        return Err(BAD_ARGS_SEPARATOR.into());
    }
    let specs: Vec<_> = crate::cli::COMMANDS
        .iter()
        .find(|c| c.path == "watch")
        .expect("watch")
        .flags
        .to_vec();
    let mut f = Flags::new(specs.clone());
    let positional = f.parse(watch_args)?;
    if sep.is_none() && env_key.is_empty() && positional.is_empty() {
        return Err(BAD_ARGS_NUM.into());
    }
    if sep.is_none() && !positional.is_empty() && !env_key.is_empty() {
        return Err(BAD_ARGS_CONFLICT_ENV.into());
    }
    let exec: Vec<String> = match sep {
        Some(i) => watch_args[i + 1..].to_vec(),
        None => Vec::new(),
    };
    let mut f = Flags::new(specs);
    let mut args = f.parse(watch_args)?;
    let opts = Opts {
        rev: f.int("rev"),
        prefix: f.bool("prefix"),
        prev_kv: f.bool("prev-kv"),
        progress_notify,
        require_leader: false,
    };
    if !env_key.is_empty() {
        let mut ranges = vec![env_key.to_string()];
        if !env_range.is_empty() {
            ranges.push(env_range.to_string());
        }
        ranges.extend(args);
        args = ranges;
    }
    if let Some(first) = exec.first() {
        let end = args.iter().rposition(|a| a == first).unwrap_or(0);
        args.truncate(end);
    }
    Ok((args, exec, opts))
}

fn interactive(ctx: &mut Ctx, env_key: &str, env_range: &str, opts: Opts) -> ! {
    let client = ctx.client().clone();
    let (format, hex) = (ctx.format, ctx.hex);
    loop {
        let Some(line) = read_line_nl() else {
            fail(EXIT_INVALID_INPUT, "error reading watch request line: EOF");
        };
        let l = line.strip_suffix('\n').unwrap_or(&line).to_string();
        let words = crate::kv::argify(&l);
        let say = |msg: String| {
            let _guard = PRINT.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("{msg}");
        };
        if words.is_empty() {
            say(format!(
                "Invalid command: {l} (watch and progress supported)"
            ));
            continue;
        }
        match words[0].as_str() {
            "watch" => {
                if words.len() < 2 && env_key.is_empty() {
                    say(format!(
                        "Invalid command {l} (command type or key is not provided)"
                    ));
                    continue;
                }
                let (args, exec, o) =
                    match parse_interactive(&words, env_key, env_range, opts.progress_notify) {
                        Ok(p) => p,
                        Err(e) => fail(EXIT_BAD_ARGS, e),
                    };
                match start(&client, &args, &o) {
                    Ok(w) => {
                        let client = client.clone();
                        std::thread::spawn(move || print_watch(&client, format, hex, w, &exec));
                    }
                    Err(e) => say(format!("Invalid command {l} ({e})")),
                }
            }
            "progress" => {
                if let Err(e) = client.request_progress() {
                    fail(EXIT_ERROR, go_err(&e));
                }
            }
            _ => say(format!("Invalid command {l} (only support watch)")),
        }
    }
}

/// One line of standard input with its newline; `None` at the end of input.
fn read_line_nl() -> Option<String> {
    use std::io::BufRead;
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) => None,
        Ok(_) if line.ends_with('\n') => Some(line),
        _ => None,
    }
}
