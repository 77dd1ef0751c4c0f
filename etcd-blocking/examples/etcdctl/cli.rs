//! The command tree, found and parsed as cobra (v1.1.3, which etcdctl 3.5.1 uses) does, and
//! the usage texts.

use std::io::Read;

use crate::ctx::{exit, outln, Ctx, EXIT_ERROR};
use crate::flags::{flag, short, Flags, Kind, Spec};
use crate::{auth, cluster, conc, kv, lease, maint, watch};

type Run = fn(&mut Ctx, Vec<String>);

/// One command: its path, its own flags and what it runs (`None`: a group, which prints its
/// usage).
pub struct Command {
    pub path: &'static str,
    pub flags: &'static [Spec],
    pub run: Option<Run>,
}

use Kind::{Bool, Dur, Int, List, Str};

/// The global flags every command inherits.
pub const GLOBAL: &[Spec] = &[
    flag("cacert", Str, ""),
    flag("cert", Str, ""),
    flag("command-timeout", Dur, "5s"),
    flag("debug", Bool, "false"),
    flag("dial-timeout", Dur, "2s"),
    short("discovery-srv", 'd', Str, ""),
    flag("discovery-srv-name", Str, ""),
    flag("endpoints", List, "127.0.0.1:2379"),
    flag("hex", Bool, "false"),
    flag("insecure-discovery", Bool, "true"),
    flag("insecure-skip-tls-verify", Bool, "false"),
    flag("insecure-transport", Bool, "true"),
    flag("keepalive-time", Dur, "2s"),
    flag("keepalive-timeout", Dur, "6s"),
    flag("key", Str, ""),
    flag("password", Str, ""),
    flag("user", Str, ""),
    short("write-out", 'w', Str, "simple"),
];

/// Whether `name` is a global flag (`ETCDCTL_*` variables apply to these).
pub fn is_global(name: &str) -> bool {
    GLOBAL.iter().any(|s| s.name == name)
}

const HELP: Spec = short("help", 'h', Bool, "false");
const CLUSTER: Spec = flag("cluster", Bool, "false");

const fn cmd(path: &'static str, flags: &'static [Spec], run: Run) -> Command {
    Command {
        path,
        flags,
        run: Some(run),
    }
}

const fn group(path: &'static str, flags: &'static [Spec]) -> Command {
    Command {
        path,
        flags,
        run: None,
    }
}

pub const COMMANDS: &[Command] = &[
    group("", &[]),
    group("alarm", &[]),
    cmd("alarm disarm", &[], maint::alarm_disarm),
    cmd("alarm list", &[], maint::alarm_list),
    group("auth", &[]),
    cmd("auth disable", &[], auth::auth_disable),
    cmd("auth enable", &[], auth::auth_enable),
    cmd("auth status", &[], auth::auth_status),
    cmd(
        "compaction",
        &[flag("physical", Bool, "false")],
        kv::compaction,
    ),
    cmd(
        "defrag",
        &[CLUSTER, flag("data-dir", Str, "")],
        maint::defrag,
    ),
    cmd(
        "del",
        &[
            flag("from-key", Bool, "false"),
            flag("prefix", Bool, "false"),
            flag("prev-kv", Bool, "false"),
        ],
        kv::del,
    ),
    cmd("elect", &[short("listen", 'l', Bool, "false")], conc::elect),
    group("endpoint", &[CLUSTER]),
    cmd(
        "endpoint hashkv",
        &[CLUSTER, flag("rev", Int, "0")],
        cluster::endpoint_hashkv,
    ),
    cmd("endpoint health", &[CLUSTER], cluster::endpoint_health),
    cmd("endpoint status", &[CLUSTER], cluster::endpoint_status),
    cmd(
        "get",
        &[
            flag("consistency", Str, "l"),
            flag("count-only", Bool, "false"),
            flag("from-key", Bool, "false"),
            flag("keys-only", Bool, "false"),
            flag("limit", Int, "0"),
            flag("order", Str, ""),
            flag("prefix", Bool, "false"),
            flag("print-value-only", Bool, "false"),
            flag("rev", Int, "0"),
            flag("sort-by", Str, ""),
            // Not in etcdctl 3.5.1 (3.6 has them): filters on mod and create revisions.
            flag("min-mod-rev", Int, "0"),
            flag("max-mod-rev", Int, "0"),
            flag("min-create-rev", Int, "0"),
            flag("max-create-rev", Int, "0"),
        ],
        kv::get,
    ),
    group("lease", &[]),
    cmd("lease grant", &[], lease::grant),
    cmd(
        "lease keep-alive",
        &[flag("once", Bool, "false")],
        lease::keep_alive,
    ),
    cmd("lease list", &[], lease::list),
    cmd("lease revoke", &[], lease::revoke),
    cmd(
        "lease timetolive",
        &[flag("keys", Bool, "false")],
        lease::time_to_live,
    ),
    cmd("lock", &[flag("ttl", Int, "10")], conc::lock),
    group("member", &[]),
    cmd(
        "member add",
        &[flag("learner", Bool, "false"), flag("peer-urls", Str, "")],
        cluster::member_add,
    ),
    cmd("member list", &[], cluster::member_list),
    cmd("member promote", &[], cluster::member_promote),
    cmd("member remove", &[], cluster::member_remove),
    cmd(
        "member update",
        &[flag("peer-urls", Str, "")],
        cluster::member_update,
    ),
    cmd("move-leader", &[], maint::move_leader),
    cmd(
        "put",
        &[
            flag("ignore-lease", Bool, "false"),
            flag("ignore-value", Bool, "false"),
            flag("lease", Str, "0"),
            flag("prev-kv", Bool, "false"),
        ],
        kv::put,
    ),
    group("role", &[]),
    cmd("role add", &[], auth::role_add),
    cmd("role delete", &[], auth::role_delete),
    cmd("role get", &[], auth::role_get),
    cmd(
        "role grant-permission",
        &[
            flag("from-key", Bool, "false"),
            flag("prefix", Bool, "false"),
        ],
        auth::role_grant_permission,
    ),
    cmd("role list", &[], auth::role_list),
    cmd(
        "role revoke-permission",
        &[
            flag("from-key", Bool, "false"),
            flag("prefix", Bool, "false"),
        ],
        auth::role_revoke_permission,
    ),
    group("snapshot", &[]),
    cmd("snapshot save", &[], maint::snapshot_save),
    cmd("txn", &[short("interactive", 'i', Bool, "false")], kv::txn),
    group("user", &[]),
    cmd(
        "user add",
        &[
            flag("interactive", Bool, "true"),
            flag("new-user-password", Str, ""),
            flag("no-password", Bool, "false"),
        ],
        auth::user_add,
    ),
    cmd("user delete", &[], auth::user_delete),
    cmd("user get", &[flag("detail", Bool, "false")], auth::user_get),
    cmd("user grant-role", &[], auth::user_grant_role),
    cmd("user list", &[], auth::user_list),
    cmd(
        "user passwd",
        &[flag("interactive", Bool, "true")],
        auth::user_passwd,
    ),
    cmd("user revoke-role", &[], auth::user_revoke_role),
    cmd("version", &[], version),
    cmd(
        "watch",
        &[
            short("interactive", 'i', Bool, "false"),
            flag("prefix", Bool, "false"),
            flag("prev-kv", Bool, "false"),
            flag("progress-notify", Bool, "false"),
            flag("rev", Int, "0"),
        ],
        watch::watch,
    ),
];

fn find(path: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.path == path)
}

/// The flags a command sees: its own, those of its parent group, the globals and `-h`.
pub fn flags_of(c: &Command) -> Flags {
    let mut specs: Vec<Spec> = GLOBAL.to_vec();
    if let Some((parent, _)) = c.path.rsplit_once(' ') {
        if let Some(p) = find(parent) {
            specs.extend(p.flags.iter().copied());
        }
    }
    for s in c.flags {
        if !specs.iter().any(|x| x.name == s.name) {
            specs.push(*s);
        }
    }
    specs.push(HELP);
    Flags::new(specs)
}

/// The usage text of a command, as etcdctl prints it for `--help`.
pub fn usage(path: &str) -> String {
    const TEXT: &str = include_str!("help.txt");
    let sections: Vec<&str> = TEXT.split("\n@@").skip(1).collect();
    let mut global = String::new();
    let mut found = None;
    for (i, section) in sections.iter().enumerate() {
        let (name, body) = section.split_once('\n').unwrap_or((section, ""));
        // Splitting took the newline before the next section's marker.
        let body = if i + 1 < sections.len() {
            format!("{body}\n")
        } else {
            body.to_string()
        };
        let name = name.trim_start();
        if name == "GLOBAL" {
            global = body;
        } else if name == path {
            found = Some(body);
        }
    }
    found.unwrap_or_default().replace("@GLOBAL\n", &global)
}

/// cobra's `stripFlags`: the words of `args` that are not flags or flag values.
fn strip_flags(args: &[String], flags: &Flags) -> Vec<String> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let s = &args[i];
        i += 1;
        if s == "--" {
            break;
        }
        let takes_value = if let Some(name) = s.strip_prefix("--") {
            !s.contains('=') && !flags.is_bool(name)
        } else if s.starts_with('-') && !s.contains('=') && s.chars().count() == 2 {
            let c = s.chars().nth(1).unwrap_or(' ');
            !flags.is_bool_short(c)
        } else {
            false
        };
        if takes_value {
            if args.len() - i <= 1 {
                break;
            }
            i += 1;
            continue;
        }
        if !s.is_empty() && !s.starts_with('-') {
            words.push(s.clone());
        }
    }
    words
}

fn flag_error(path: &str, e: &str) -> ! {
    crate::ctx::out(usage(path).as_bytes());
    crate::ctx::flush();
    eprintln!("Error: {e}\n");
    eprintln!("Error: {e}");
    exit(EXIT_ERROR)
}

fn unknown_command(word: &str) -> ! {
    eprintln!("Error: unknown command \"{word}\" for \"etcdctl\"");
    eprintln!("Run 'etcdctl --help' for usage.");
    eprintln!("Error: unknown command \"{word}\" for \"etcdctl\"");
    exit(EXIT_ERROR)
}

fn print_usage(path: &str) -> ! {
    crate::ctx::out(usage(path).as_bytes());
    exit(0)
}

/// Runs etcdctl with these arguments (without the program name).
pub fn run(args: Vec<String>) -> ! {
    let root = flags_of(find("").expect("root"));
    let words = strip_flags(&args, &root);
    // `help [command]`
    if words.first().map(String::as_str) == Some("help") {
        let topic = &words[1..];
        let path = topic.join(" ");
        if topic.is_empty() {
            print_usage("");
        }
        if find(&path).is_some() {
            print_usage(&path);
        }
        let quoted: Vec<String> = topic.iter().map(|t| format!("`{t}`")).collect();
        eprintln!("Unknown help topic [{}]", quoted.join(" "));
        // cobra has not added the root's help flag at that point.
        let text = usage("").replace("  -h, --help[=false]\t\t\t\thelp for etcdctl\n", "");
        crate::ctx::out(text.as_bytes());
        exit(0);
    }
    let mut path = String::new();
    let mut rest = args.clone();
    for w in &words {
        let candidate = if path.is_empty() {
            w.clone()
        } else {
            format!("{path} {w}")
        };
        if find(&candidate).is_some() {
            if let Some(i) = rest.iter().position(|a| a == w) {
                rest.remove(i);
            }
            path = candidate;
        } else {
            break;
        }
    }
    if path.is_empty() && !words.is_empty() {
        unknown_command(&words[0]);
    }
    let command = find(&path).expect("found");
    let mut flags = flags_of(command);
    let positional = match flags.parse(&rest) {
        Ok(p) => p,
        Err(e) => flag_error(command.path, &e),
    };
    if flags.bool("help") {
        print_usage(command.path);
    }
    let Some(run) = command.run else {
        print_usage(command.path);
    };
    let mut ctx = Ctx::new(command.path, flags, args);
    run(&mut ctx, positional);
    exit(0)
}

fn version(_ctx: &mut Ctx, _args: Vec<String>) {
    outln("etcdctl version: 3.5.1");
    outln("API version: 3.5");
}

/// Reads one line from standard input, byte by byte (speakeasy's `readline`).
pub fn read_line() -> String {
    let mut line = Vec::new();
    let mut stdin = std::io::stdin().lock();
    let mut b = [0u8; 1];
    loop {
        match stdin.read(&mut b) {
            Ok(1) if b[0] != b'\n' => line.push(b[0]),
            _ => break,
        }
    }
    let s = String::from_utf8_lossy(&line).to_string();
    s.strip_suffix('\r').map(str::to_string).unwrap_or(s)
}

fn stty(arg: &str) {
    use std::os::unix::process::CommandExt;
    let _ = std::process::Command::new("/bin/stty")
        .arg0("stty")
        .arg(arg)
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .status();
}

/// speakeasy's `Ask`: the prompt, the terminal's echo off while a line is read, a newline.
pub fn ask_password(prompt: &str) -> Result<String, String> {
    crate::ctx::out(prompt.as_bytes());
    crate::ctx::flush();
    stty("-echo");
    let line = read_line();
    stty("echo");
    outln("");
    Ok(line.trim().to_string())
}

/// Go's `fmt.Scanf("%s", &s)` on standard input: one word of the first line.
pub fn scan_word() -> String {
    let line = read_line();
    line.split_whitespace().next().unwrap_or("").to_string()
}
