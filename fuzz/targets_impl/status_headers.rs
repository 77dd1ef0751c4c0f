//! `status_headers`: parsing of `grpc-status` / `grpc-message` trailers and what is built from
//! them (typed errors, etcd error kinds), plus `percent_decode`, `grpc-timeout` encoding and the
//! HTTP-status / RST_STREAM code mappings.
//!
//! Input layout: lines separated by `\n`.
//!
//! * line 0: the `grpc-status` value (absent when `HeaderValue::from_bytes` rejects it, e.g. a
//!   line holding a NUL byte);
//! * line 1 (optional): the `grpc-message` value (absent when missing or rejected);
//! * lines 2.. (optional): further `grpc-status` values appended after the first (only when
//!   the first is present).
//!
//! The whole input also feeds `percent_decode`, `EtcdErrorKind::from_message`, an HTTP status,
//! a reset code and a timeout.
//!
//! This file is shared by the cargo-fuzz binary and `etcd-proto-core/tests/fuzz_corpus.rs`,
//! so it may only use crates both can reach.

use std::time::Duration;

use etcd_proto_core::status::{encode_timeout, percent_decode};
use etcd_proto_core::{Code, Error, EtcdErrorKind, Status};
use http::{HeaderMap, HeaderValue, StatusCode};

pub fn run(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let status_line = lines.next().unwrap_or_default();
    let message_line = lines.next();

    let mut headers = HeaderMap::new();
    let status_value = HeaderValue::from_bytes(status_line).ok();
    if let Some(v) = &status_value {
        headers.insert("grpc-status", v.clone());
    }
    let message_value = message_line.and_then(|m| HeaderValue::from_bytes(m).ok());
    if let Some(v) = &message_value {
        headers.insert("grpc-message", v.clone());
    }
    if status_value.is_some() {
        // Repeated grpc-status values: the first one counts.
        for extra in lines {
            if let Ok(v) = HeaderValue::from_bytes(extra) {
                headers.append("grpc-status", v);
            }
        }
    }

    let parsed = Status::from_headers(&headers);
    match (&status_value, &parsed) {
        (None, None) => {}
        (Some(raw), Some(status)) => check_status(raw, message_value.as_ref(), status),
        _ => panic!("grpc-status present: {status_value:?}, but parsed as {parsed:?}"),
    }
    if let Some(status) = parsed {
        check_error(status);
    }

    // grpc-message decoding on arbitrary bytes.
    let decoded = percent_decode(data);
    if !data.contains(&b'%') {
        assert_eq!(decoded, String::from_utf8_lossy(data));
    }
    let text = String::from_utf8_lossy(data);
    assert_eq!(percent_decode(percent_encode(&text).as_bytes()), text);

    // Error kinds on arbitrary text.
    if let Some(kind) = EtcdErrorKind::from_message(&text) {
        check_kind(kind, &text);
    }

    // Mappings of numbers taken from the input.
    let mut num = [0u8; 8];
    let n = data.len().min(8);
    num[..n].copy_from_slice(&data[..n]);
    let num = u64::from_le_bytes(num);

    let code = Code::from_u32(num as u32);
    if num as u32 <= 16 {
        assert_eq!(code.as_u32(), num as u32);
    } else {
        assert_eq!(code, Code::Unknown);
    }
    assert_eq!(Code::from_u32(code.as_u32()), code);
    let _ = format!("{code} {}", code.name());
    let _ = Code::from_reset_reason(num as u32);
    if let Ok(http_status) = StatusCode::from_u16(100 + (num % 900) as u16) {
        let c = Code::from_http_status(http_status);
        assert_ne!(c, Code::Ok, "HTTP {http_status} must not be OK");
    }

    check_timeout(Duration::from_nanos(num));
    check_timeout(Duration::new(num, (num % 1_000_000_000) as u32));
}

fn check_status(raw: &HeaderValue, message: Option<&HeaderValue>, status: &Status) {
    let expected_message = message
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    let number = std::str::from_utf8(raw.as_bytes())
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    match number {
        Some(n) => {
            assert_eq!(status.raw_code, n);
            assert_eq!(status.code, Code::from_u32(n));
            assert_eq!(status.message, expected_message);
            assert_eq!(status.is_ok(), n == 0);
        }
        None => {
            assert_eq!(status.code, Code::Unknown, "malformed grpc-status {raw:?}");
            assert!(!status.is_ok());
            assert!(status.message.ends_with(&expected_message));
        }
    }
    let _ = status.to_string();
}

fn check_error(status: Status) {
    let kind = EtcdErrorKind::from_message(&status.message);
    let error = Error::from_status(status.clone());
    match (&error, kind) {
        (Error::Etcd(e), Some(k)) => {
            assert_eq!(e.kind, k);
            assert_eq!(e.code, status.code);
            assert_eq!(e.message, status.message);
            assert_eq!(error.etcd_kind(), Some(k));
            assert_eq!(error.code(), k.canonical_code());
            check_kind(k, &status.message);
        }
        (Error::Status(s), None) => {
            assert_eq!(s, &status);
            assert_eq!(error.etcd_kind(), None);
            assert_eq!(error.code(), status.code);
        }
        _ => panic!("from_status({status:?}) gave {error:?}, kind {kind:?}"),
    }
    assert!(
        !error.outcome_unknown(),
        "a received status is a definite outcome"
    );
    let _ = error.is_retryable();
    let _ = error.to_string();
}

/// A matched kind is either the exact message or the `... desc = MESSAGE` rendering.
fn check_kind(kind: EtcdErrorKind, text: &str) {
    let exact = text == kind.message();
    let desc = text
        .split_once(" desc = ")
        .is_some_and(|(_, d)| d == kind.message());
    assert!(exact || desc, "{text:?} matched {kind:?}");
    assert_eq!(EtcdErrorKind::from_message(kind.message()), Some(kind));
    let _ = (kind.canonical_code(), kind.is_retryable(), kind.to_string());
}

/// The sender's side of `grpc-message` (PROTOCOL-HTTP2.md): bytes outside 0x20..=0x7E and `%`
/// itself as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `grpc-timeout`: 1 to 8 digits and a unit, never shorter than asked (unless capped at the
/// largest expressible value).
fn check_timeout(timeout: Duration) {
    let value = encode_timeout(timeout);
    let text = value.to_str().expect("ascii");
    let (digits, unit) = text.split_at(text.len() - 1);
    assert!(!digits.is_empty() && digits.len() <= 8, "{text}");
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{text}");
    let per: u128 = match unit {
        "n" => 1,
        "u" => 1_000,
        "m" => 1_000_000,
        "S" => 1_000_000_000,
        "M" => 60_000_000_000,
        "H" => 3_600_000_000_000,
        _ => panic!("bad unit in {text}"),
    };
    let n: u128 = digits.parse().expect("digits");
    let sent = n * per;
    if text != "99999999H" {
        assert!(sent >= timeout.as_nanos().max(1), "{text} < {timeout:?}");
        // Rounded up by less than one unit.
        assert!(
            sent - timeout.as_nanos().max(1) < per,
            "{text} vs {timeout:?}"
        );
    }
}
