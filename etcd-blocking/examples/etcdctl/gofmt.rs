//! Go's text conventions, reproduced byte for byte: `strconv` parsing and its error texts,
//! `%q` quoting, `time.Duration` formatting, `encoding/json` string escaping, base64, and
//! go-humanize's byte sizes.

use std::time::Duration;

fn syntax(func: &str, s: &str) -> String {
    format!(
        "strconv.{func}: parsing {}: invalid syntax",
        go_quote_str(s)
    )
}

fn range(func: &str, s: &str) -> String {
    format!(
        "strconv.{func}: parsing {}: value out of range",
        go_quote_str(s)
    )
}

/// `strconv.ParseBool`.
pub fn go_parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(syntax("ParseBool", s)),
    }
}

/// Digits of `s` (sign already removed) in `base` (0: from the prefix), as Go's `ParseUint`;
/// `Err(true)` is a syntax error, `Err(false)` out of range.
fn parse_digits(s: &str, base: u32, bits: u32) -> Result<u64, bool> {
    if s.is_empty() {
        return Err(true);
    }
    let (digits, base, prefixed) = if base == 0 {
        let lower = s.to_ascii_lowercase();
        if s.len() >= 3 && lower.starts_with("0x") {
            (&s[2..], 16, true)
        } else if s.len() >= 3 && lower.starts_with("0b") {
            (&s[2..], 2, true)
        } else if s.len() >= 3 && lower.starts_with("0o") {
            (&s[2..], 8, true)
        } else if s.starts_with('0') && s.len() > 1 {
            (&s[1..], 8, true)
        } else {
            (s, 10, false)
        }
    } else {
        (s, base, false)
    };
    let underscores_ok = base_zero_underscores(s, base == 10 && !prefixed);
    let max: u64 = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut n: u64 = 0;
    let mut saw_underscore = false;
    let mut out_of_range = false;
    for c in digits.chars() {
        if c == '_' && underscores_ok {
            saw_underscore = true;
            continue;
        }
        let d = c.to_digit(36).ok_or(true)?;
        if d >= base {
            return Err(true);
        }
        if out_of_range {
            continue;
        }
        match n
            .checked_mul(base as u64)
            .and_then(|v| v.checked_add(d as u64))
        {
            Some(v) if v <= max => n = v,
            _ => out_of_range = true,
        }
    }
    let _ = saw_underscore;
    if out_of_range {
        return Err(false);
    }
    Ok(n)
}

/// Go allows underscores only with base 0 and then only between digits; we accept them in the
/// base-0 case only (callers pass base 0 for flags).
fn base_zero_underscores(s: &str, _decimal: bool) -> bool {
    if !s.contains('_') {
        return false;
    }
    // Go's underscoreOK: '_' must separate digits (or follow the base prefix).
    let b = s.as_bytes();
    let mut saw = '^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' {
        let c = b[1].to_ascii_lowercase();
        if c == b'x' || c == b'b' || c == b'o' {
            hex = c == b'x';
            i = 2;
            saw = '0';
        }
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = '0';
        } else if c == b'_' {
            if saw != '0' {
                return false;
            }
            saw = '_';
        } else {
            if saw == '_' {
                return false;
            }
            saw = '!';
        }
        i += 1;
    }
    saw != '_'
}

/// `strconv.ParseInt(s, base, bits)`.
pub fn go_parse_int(s: &str, base: u32, bits: u32) -> Result<i64, String> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let underscores = base == 0 && body.contains('_');
    if underscores && !base_zero_underscores(body, true) {
        return Err(syntax("ParseInt", s));
    }
    let limit: u64 = 1u64 << (bits - 1);
    match parse_digits(body, base, 64) {
        Err(true) => Err(syntax("ParseInt", s)),
        Err(false) => Err(range("ParseInt", s)),
        Ok(n) if !neg && n >= limit => Err(range("ParseInt", s)),
        Ok(n) if neg && n > limit => Err(range("ParseInt", s)),
        Ok(n) if neg => Ok((n as i64).wrapping_neg()),
        Ok(n) => Ok(n as i64),
    }
}

/// `strconv.ParseUint(s, base, 64)`.
pub fn go_parse_uint(s: &str, base: u32) -> Result<u64, String> {
    if base == 0 && s.contains('_') && !base_zero_underscores(s, true) {
        return Err(syntax("ParseUint", s));
    }
    match parse_digits(s, base, 64) {
        Err(true) => Err(syntax("ParseUint", s)),
        Err(false) => Err(range("ParseUint", s)),
        Ok(n) => Ok(n),
    }
}

/// `time.ParseDuration` (Go 1.16 error texts).
pub fn go_parse_duration(orig: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {}", go_quote_str(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next() {
        if c == '-' || c == '+' {
            neg = c == '-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let mut i = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int_part = &s[..i];
        let mut frac_part = "";
        let mut rest = &s[i..];
        if let Some(r) = rest.strip_prefix('.') {
            let rb = r.as_bytes();
            let mut k = 0;
            while k < rb.len() && rb[k].is_ascii_digit() {
                k += 1;
            }
            frac_part = &r[..k];
            rest = &r[k..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let rb = rest.as_bytes();
        let mut k = 0;
        while k < rb.len() && rb[k] != b'.' && !rb[k].is_ascii_digit() {
            k += 1;
        }
        let unit = &rest[..k];
        if unit.is_empty() {
            return Err(format!(
                "time: missing unit in duration {}",
                go_quote_str(orig)
            ));
        }
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote_str(unit),
                    go_quote_str(orig)
                ))
            }
        };
        let v: f64 = format!(
            "{}.{}",
            if int_part.is_empty() { "0" } else { int_part },
            if frac_part.is_empty() { "0" } else { frac_part }
        )
        .parse()
        .map_err(|_| invalid())?;
        total += v * scale;
        s = &rest[k..];
    }
    if neg {
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// `time.Duration.String()`.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos() as u64;
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 1_000));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 1_000_000));
    }
    let mut out = String::new();
    let h = ns / 3_600_000_000_000;
    let rem = ns % 3_600_000_000_000;
    let m = rem / 60_000_000_000;
    let s_ns = rem % 60_000_000_000;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", frac(s_ns, 1_000_000_000)));
    out
}

fn frac(v: u64, unit: u64) -> String {
    let int = v / unit;
    let mut f = v % unit;
    if f == 0 {
        return int.to_string();
    }
    let mut width = unit.to_string().len() - 1;
    while f.is_multiple_of(10) {
        f /= 10;
        width -= 1;
    }
    format!("{int}.{f:0width$}")
}

/// Whether Go's `unicode.IsPrint` holds (ASCII exactly, other runes approximately).
fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c as u32, 0xad | 0x600..=0x605 | 0x200b..=0x200f | 0x2028..=0x202e | 0x2060..=0x206f | 0xfeff | 0xfff9..=0xfffb | 0xe000..=0xf8ff | 0xf0000..)
        || (0xd800..=0xdfff).contains(&(c as u32)))
}

/// Decodes the next rune of `b` as Go does: `(Some(char), len)` or `(None, 1)` for a bad byte.
fn next_rune(b: &[u8]) -> (Option<char>, usize) {
    let n = match b[0] {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return (None, 1),
    };
    if b.len() < n {
        return (None, 1);
    }
    match std::str::from_utf8(&b[..n]) {
        Ok(s) => (s.chars().next(), n),
        Err(_) => (None, 1),
    }
}

/// `strconv.Quote(string(b))`: Go's `%q`.
pub fn go_quote(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() + 2);
    out.push('"');
    let mut i = 0;
    while i < b.len() {
        let (r, n) = next_rune(&b[i..]);
        match r {
            None => out.push_str(&format!("\\x{:02x}", b[i])),
            Some(c) => match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if is_print(c) => out.push(c),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push_str(&format!("\\U{:08x}", c as u32)),
            },
        }
        i += n;
    }
    out.push('"');
    out
}

pub fn go_quote_str(s: &str) -> String {
    go_quote(s.as_bytes())
}

/// A string as Go's `encoding/json` writes it (HTML-safe escaping, Go 1.16).
pub fn json_str(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(b.len() + 2);
    out.push('"');
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c < 0x80 {
            match c {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                c if c < 0x20 || c == b'<' || c == b'>' || c == b'&' => {
                    out.push_str("\\u00");
                    out.push(HEX[(c >> 4) as usize] as char);
                    out.push(HEX[(c & 0xf) as usize] as char);
                }
                c => out.push(c as char),
            }
            i += 1;
            continue;
        }
        let (r, n) = next_rune(&b[i..]);
        match r {
            None => out.push_str("\\ufffd"),
            Some('\u{2028}') => out.push_str("\\u2028"),
            Some('\u{2029}') => out.push_str("\\u2029"),
            Some(c) => out.push(c),
        }
        i += n;
    }
    out.push('"');
    out
}

/// Standard base64 with padding (Go's `[]byte` in JSON).
pub fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        out.push(T[(v >> 18) as usize & 63] as char);
        out.push(T[(v >> 12) as usize & 63] as char);
        out.push(if n > 1 {
            T[(v >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if n > 2 {
            T[v as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// go-humanize's `Bytes`: SI units.
pub fn humanize_bytes(s: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if s < 10 {
        return format!("{s} B");
    }
    let e = ((s as f64).ln() / 1000f64.ln()).floor();
    let suffix = SIZES[e as usize];
    let val = ((s as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {suffix}")
    } else {
        format!("{val:.0} {suffix}")
    }
}

/// `\x66\x6f\x6f`: how etcdctl prints bytes with `--hex`.
pub fn hex_escaped(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() * 4);
    for byte in b {
        out.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
    }
    out
}

/// Go's `%v` of a `[]string`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(go_duration(Duration::from_nanos(2_903_970)), "2.90397ms");
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3700)), "1h1m40s");
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(24608), "25 kB");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"b"), "Yg==");
        assert_eq!(go_quote(b"a\n\x00\xff"), "\"a\\n\\x00\\xff\"");
        assert_eq!(go_parse_int("0x10", 0, 64), Ok(16));
        assert!(go_parse_int("zz", 16, 64).is_err());
    }
}

/// An I/O error as Go's `syscall.Errno` reads (`no such file or directory`).
pub fn go_io_err(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}
