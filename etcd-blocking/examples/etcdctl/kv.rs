//! `get`, `put`, `del`, `txn` and `compaction`.

use std::io::Read;

use etcd_blocking::prefix_range_end;
use etcd_blocking::proto::etcdserverpb as pb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::range_request::{SortOrder, SortTarget};
use pb::request_op::Request;

use crate::ctx::{
    fail, go_err, Ctx, Format, EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT,
};
use crate::flags::Flags;
use crate::gofmt::{go_parse_int, go_quote_str};
use crate::print;

/// The request `get ARGS` makes (etcdctl's `getGetOp`); exits on bad arguments.
pub fn get_op(f: &Flags, args: &[String]) -> pb::RangeRequest {
    if args.is_empty() {
        fail(
            EXIT_BAD_ARGS,
            "get command needs one argument as key and an optional argument as range_end",
        );
    }
    let prefix = f.bool("prefix");
    let from_key = f.bool("from-key");
    if prefix && from_key {
        fail(
            EXIT_BAD_ARGS,
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        );
    }
    if f.bool("keys-only") && f.bool("count-only") {
        fail(
            EXIT_BAD_ARGS,
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
        );
    }
    let mut req = pb::RangeRequest::default();
    match f.str("consistency").as_str() {
        "s" => req.serializable = true,
        "l" => {}
        other => fail(
            EXIT_BAD_FEATURE,
            format!("unknown consistency flag {}", go_quote_str(other)),
        ),
    }
    let mut key = args[0].clone().into_bytes();
    if args.len() > 1 {
        if prefix || from_key {
            fail(
                EXIT_BAD_ARGS,
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            );
        }
        req.range_end = args[1].clone().into_bytes().into();
    }
    req.limit = f.int("limit");
    if f.int("rev") > 0 {
        req.revision = f.int("rev");
    }
    let order = f.str("order");
    let mut sort_order = match order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => fail(EXIT_BAD_FEATURE, format!("bad sort order {order}")),
    };
    let target = f.str("sort-by");
    let sort_target = match target.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        "" => SortTarget::Key,
        _ => fail(EXIT_BAD_FEATURE, format!("bad sort target {target}")),
    };
    // clientv3's WithSort: ascending by key is the server's natural order.
    if sort_target == SortTarget::Key && sort_order == SortOrder::Ascend {
        sort_order = SortOrder::None;
    }
    req.sort_order = sort_order as i32;
    req.sort_target = sort_target as i32;
    if prefix {
        if key.is_empty() {
            key = vec![0];
            req.range_end = vec![0].into();
        } else {
            req.range_end = prefix_range_end(&key);
        }
    }
    if from_key {
        if key.is_empty() {
            key = vec![0];
        }
        req.range_end = vec![0].into();
    }
    req.key = key.into();
    req.keys_only = f.bool("keys-only");
    req.count_only = f.bool("count-only");
    if f.has("min-mod-rev") {
        req.min_mod_revision = f.int("min-mod-rev");
        req.max_mod_revision = f.int("max-mod-rev");
        req.min_create_revision = f.int("min-create-rev");
        req.max_create_revision = f.int("max-create-rev");
    }
    req
}

pub fn get(ctx: &mut Ctx, args: Vec<String>) {
    let req = get_op(&ctx.flags, &args);
    let resp = ctx.must(req, EXIT_ERROR);
    if ctx.flags.bool("count-only") && ctx.format != Format::Fields {
        fail(
            EXIT_BAD_ARGS,
            "--count-only is only for `--write-out=fields`",
        );
    }
    let value_only = ctx.flags.bool("print-value-only");
    if value_only && ctx.format != Format::Simple {
        fail(
            EXIT_BAD_ARGS,
            "print-value-only is only for `--write-out=simple`",
        );
    }
    print::get(ctx, &resp, value_only);
}

/// Reads all of standard input (etcdctl's `argOrStdin`), as bytes.
fn read_stdin() -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    match std::io::stdin().lock().read_to_end(&mut buf) {
        Ok(_) if !buf.is_empty() => Some(buf),
        _ => None,
    }
}

/// The request `put ARGS` makes (etcdctl's `getPutOp`). Inside `txn`, standard input has
/// already been read ahead by etcdctl's line reader, so a missing value finds none there.
pub fn put_op(f: &Flags, args: &[String], stdin: bool) -> pb::PutRequest {
    const NEEDS: &str = "put command needs 1 argument and input from stdin or 2 arguments";
    if args.is_empty() {
        fail(EXIT_BAD_ARGS, NEEDS);
    }
    let ignore_value = f.bool("ignore-value");
    if ignore_value && args.len() > 1 {
        fail(
            EXIT_BAD_ARGS,
            "put command needs only 1 argument when 'ignore-value' is set",
        );
    }
    let mut value = Vec::new();
    if !ignore_value {
        value = match args.get(1) {
            Some(v) => v.clone().into_bytes(),
            None => stdin
                .then(read_stdin)
                .flatten()
                .unwrap_or_else(|| fail(EXIT_BAD_ARGS, NEEDS)),
        };
    }
    let lease = go_parse_int(&f.str("lease"), 16, 64).unwrap_or_else(|e| {
        fail(
            EXIT_BAD_ARGS,
            format!("bad lease ID ({e}), expecting ID in Hex"),
        )
    });
    pb::PutRequest {
        key: args[0].clone().into_bytes().into(),
        value: value.into(),
        lease,
        prev_kv: f.bool("prev-kv"),
        ignore_value,
        ignore_lease: f.bool("ignore-lease"),
    }
}

pub fn put(ctx: &mut Ctx, args: Vec<String>) {
    let req = put_op(&ctx.flags, &args, true);
    let resp = ctx.must(req, EXIT_ERROR);
    print::put(ctx, &resp);
}

/// The request `del ARGS` makes (etcdctl's `getDelOp`).
pub fn del_op(f: &Flags, args: &[String]) -> pb::DeleteRangeRequest {
    if args.is_empty() || args.len() > 2 {
        fail(
            EXIT_BAD_ARGS,
            "del command needs one argument as key and an optional argument as range_end",
        );
    }
    let prefix = f.bool("prefix");
    let from_key = f.bool("from-key");
    if prefix && from_key {
        fail(
            EXIT_BAD_ARGS,
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        );
    }
    let mut key = args[0].clone().into_bytes();
    let mut req = pb::DeleteRangeRequest::default();
    if args.len() > 1 {
        if prefix || from_key {
            fail(
                EXIT_BAD_ARGS,
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            );
        }
        req.range_end = args[1].clone().into_bytes().into();
    }
    if prefix {
        if key.is_empty() {
            key = vec![0];
            req.range_end = vec![0].into();
        } else {
            req.range_end = prefix_range_end(&key);
        }
    }
    req.prev_kv = f.bool("prev-kv");
    if from_key {
        if key.is_empty() {
            key = vec![0];
        }
        req.range_end = vec![0].into();
    }
    req.key = key.into();
    req
}

pub fn del(ctx: &mut Ctx, args: Vec<String>) {
    let req = del_op(&ctx.flags, &args);
    let resp = ctx.must(req, EXIT_ERROR);
    print::del(ctx, &resp);
}

pub fn compaction(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(EXIT_BAD_ARGS, "compaction command needs 1 argument");
    }
    let rev = go_parse_int(&args[0], 10, 64).unwrap_or_else(|e| fail(EXIT_ERROR, e));
    let physical = ctx.flags.bool("physical");
    ctx.client();
    ctx.must(
        pb::CompactionRequest {
            revision: rev,
            physical,
        },
        EXIT_ERROR,
    );
    crate::ctx::outln(format!("compacted revision {rev}"));
}

// ---- txn ----

/// etcdctl's `argify`: splits a line into words, honouring "double" and 'single' quotes
/// (and reproducing its slicing of single-quoted words).
pub fn argify(s: &str) -> Vec<String> {
    let b: Vec<char> = s.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '"' {
            let mut j = i + 1;
            let mut closed = false;
            while j < b.len() {
                if b[j] == '\\' && j + 1 < b.len() {
                    j += 2;
                    continue;
                }
                if b[j] == '"' {
                    closed = true;
                    break;
                }
                if b[j] == '\\' {
                    break;
                }
                j += 1;
            }
            if closed {
                words.push(b[i..=j].iter().collect());
                i = j + 1;
                continue;
            }
        }
        if c == '\'' {
            if let Some(k) = b[i + 1..].iter().position(|&x| x == '\'') {
                let j = i + 1 + k;
                words.push(b[i..=j].iter().collect());
                i = j + 1;
                continue;
            }
        }
        if c != '\'' && c != '"' && !c.is_whitespace() {
            let mut j = i;
            while j < b.len() && !b[j].is_whitespace() {
                j += 1;
            }
            words.push(b[i..j].iter().collect());
            i = j;
            continue;
        }
        i += 1;
    }
    let n = words.len();
    for w in words.iter_mut() {
        if w.starts_with('\'') {
            let chars: Vec<char> = w.chars().collect();
            let end = n.saturating_sub(1).min(chars.len()).max(1);
            *w = chars[1..end].iter().collect();
        } else if w.starts_with('"') {
            match go_unquote(w) {
                Ok((v, _)) => *w = v,
                Err(e) => fail(EXIT_INVALID_INPUT, e),
            }
        }
    }
    words
}

/// Go's quoted-string syntax (`%q` scanning): `"..."` with escapes or a `` `raw` `` string;
/// returns the value and the number of bytes used.
pub fn go_unquote(s: &str) -> Result<(String, usize), String> {
    let b = s.as_bytes();
    match b.first() {
        Some(b'`') => {
            let end = s[1..]
                .find('`')
                .ok_or_else(|| "unexpected EOF".to_string())?;
            Ok((s[1..1 + end].to_string(), end + 2))
        }
        Some(b'"') => {
            let mut out: Vec<u8> = Vec::new();
            let mut i = 1;
            while i < b.len() {
                match b[i] {
                    b'"' => return Ok((String::from_utf8_lossy(&out).into_owned(), i + 1)),
                    b'\\' => {
                        let e = *b.get(i + 1).ok_or("invalid syntax")?;
                        i += 2;
                        match e {
                            b'a' => out.push(7),
                            b'b' => out.push(8),
                            b'f' => out.push(12),
                            b'n' => out.push(b'\n'),
                            b'r' => out.push(b'\r'),
                            b't' => out.push(b'\t'),
                            b'v' => out.push(11),
                            b'\\' => out.push(b'\\'),
                            b'"' => out.push(b'"'),
                            b'\'' => out.push(b'\''),
                            b'x' | b'u' | b'U' => {
                                let n = match e {
                                    b'x' => 2,
                                    b'u' => 4,
                                    _ => 8,
                                };
                                let hex = s.get(i..i + n).ok_or("invalid syntax")?;
                                let v = u32::from_str_radix(hex, 16)
                                    .map_err(|_| "invalid syntax".to_string())?;
                                i += n;
                                if e == b'x' {
                                    out.push(v as u8);
                                } else {
                                    let c = char::from_u32(v).ok_or("invalid syntax")?;
                                    let mut buf = [0; 4];
                                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                                }
                            }
                            b'0'..=b'7' => {
                                let oct = s.get(i - 1..i + 2).ok_or("invalid syntax")?;
                                let v = u32::from_str_radix(oct, 8)
                                    .map_err(|_| "invalid syntax".to_string())?;
                                if v > 255 {
                                    return Err("invalid syntax".into());
                                }
                                out.push(v as u8);
                                i += 2;
                            }
                            _ => return Err("invalid syntax".into()),
                        }
                    }
                    b'\n' => return Err("invalid syntax".into()),
                    c => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            Err("unexpected EOF".into())
        }
        _ => Err("expected quoted string".into()),
    }
}

/// `fmt.Sscanf(s, "%q) %s %q")`: how many values it read, and them.
fn scan_compare(s: &str) -> (usize, String, String, String) {
    let (mut key, mut op, mut val) = (String::new(), String::new(), String::new());
    let rest = s.trim_start_matches(' ');
    let Ok((k, used)) = go_unquote(rest) else {
        return (0, key, op, val);
    };
    key = k;
    let rest = &rest[used..];
    let Some(rest) = rest.strip_prefix(')') else {
        return (1, key, op, val);
    };
    let rest = rest.trim_start_matches(' ');
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if end == 0 {
        return (1, key, op, val);
    }
    op = rest[..end].to_string();
    let rest = rest[end..].trim_start_matches(' ');
    match go_unquote(rest) {
        Ok((v, _)) => {
            val = v;
            (3, key, op, val)
        }
        Err(_) => (2, key, op, val),
    }
}

fn go_panic(msg: &str) -> ! {
    crate::ctx::flush();
    eprintln!("panic: {msg}\n\ngoroutine 1 [running]:");
    crate::ctx::exit(2)
}

/// etcdctl's `parseCompare`.
fn parse_compare(line: &str) -> Result<pb::Compare, String> {
    let Some((target, rest)) = line.split_once('(') else {
        return Err(format!("malformed comparison: {line}"));
    };
    let (n, key, op, val) = scan_compare(rest);
    if n != 3 {
        return Err(format!(
            "malformed comparison: {line}; got {target}({}) {op} {}",
            go_quote_str(&key),
            go_quote_str(&val)
        ));
    }
    let int = |v: &str| {
        go_parse_int(v, 10, 64).map_err(|_| format!("invalid txn compare request: {line}"))
    };
    let (t, u) = match target {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(int(&val)?)),
        "c" | "create" => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(int(&val)?),
        ),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(int(&val)?)),
        "val" | "value" => (
            CompareTarget::Value,
            TargetUnion::Value(val.into_bytes().into()),
        ),
        // etcdctl 3.5.1 passes the value as a string, which its client rejects.
        "lease" => go_panic("bad value"),
        _ => {
            return Err(format!(
                "malformed comparison: {line} (unknown target {target})"
            ))
        }
    };
    let result = match op.as_str() {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        ">" => CompareResult::Greater,
        "<" => CompareResult::Less,
        _ => go_panic("Unknown result op"),
    };
    let mut cmp = pb::Compare {
        result: result as i32,
        key: key.into_bytes().into(),
        ..Default::default()
    };
    cmp.target = t as i32;
    cmp.target_union = Some(u);
    Ok(cmp)
}

/// etcdctl's `parseRequestUnion`: `get|put|del ARGS` with their flags.
fn parse_op(line: &str) -> Result<pb::RequestOp, String> {
    let args = argify(line);
    if args.len() < 2 {
        return Err(format!("invalid txn compare request: {line}"));
    }
    let invalid = || format!("invalid txn request: {line}");
    let path = match args[0].as_str() {
        "get" | "put" | "del" => args[0].as_str(),
        _ => return Err(invalid()),
    };
    let command = crate::cli::COMMANDS
        .iter()
        .find(|c| c.path == path)
        .expect("command");
    let mut specs: Vec<crate::flags::Spec> = command.flags.to_vec();
    specs.push(crate::flags::short(
        "help",
        'h',
        crate::flags::Kind::Bool,
        "false",
    ));
    let mut f = Flags::new(specs);
    let positional = f.parse(&args[1..]).map_err(|_| invalid())?;
    let request = match path {
        "get" => Request::RequestRange(get_op(&f, &positional)),
        "put" => Request::RequestPut(put_op(&f, &positional, false)),
        _ => Request::RequestDeleteRange(del_op(&f, &positional)),
    };
    Ok(pb::RequestOp {
        request: Some(request),
    })
}

/// One line of standard input with its newline; `None` at the end (Go's `ReadString('\n')`
/// returning an error, even after a partial line).
fn read_line_nl() -> Option<String> {
    let mut line = Vec::new();
    let mut stdin = std::io::stdin().lock();
    let mut b = [0u8; 1];
    loop {
        match stdin.read(&mut b) {
            Ok(1) => {
                line.push(b[0]);
                if b[0] == b'\n' {
                    return Some(String::from_utf8_lossy(&line).into_owned());
                }
            }
            _ => return None,
        }
    }
}

fn read_section<T>(parse: impl Fn(&str) -> Result<T, String>) -> Vec<T> {
    let mut items = Vec::new();
    loop {
        let Some(line) = read_line_nl() else {
            fail(EXIT_INVALID_INPUT, "EOF");
        };
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        match parse(line) {
            Ok(item) => items.push(item),
            Err(e) => fail(EXIT_INVALID_INPUT, e),
        }
    }
    items
}

pub fn txn(ctx: &mut Ctx, args: Vec<String>) {
    if !args.is_empty() {
        fail(EXIT_BAD_ARGS, "txn command does not accept argument");
    }
    ctx.client();
    let interactive = ctx.flags.bool("interactive");
    let prompt = |s: &str| {
        if interactive {
            crate::ctx::outln(s);
        }
    };
    prompt("compares:");
    let compare = read_section(parse_compare);
    prompt("success requests (get, put, del):");
    let success = read_section(parse_op);
    prompt("failure requests (get, put, del):");
    let failure = read_section(parse_op);
    let req = pb::TxnRequest {
        compare,
        success,
        failure,
    };
    let resp = match ctx.call_untimed(req) {
        Ok(r) => r,
        Err(e) => fail(EXIT_ERROR, go_err(&e)),
    };
    print::txn(ctx, &resp);
}
