//! gRPC status parsing (facts §7.4), HTTP and RST_STREAM mappings (§7.4, §7.5) and
//! `grpc-timeout` encoding (§7.2).

use std::time::Duration;

use etcd_proto_core::status::{encode_timeout, percent_decode};
use etcd_proto_core::{Code, Status};
use http::{HeaderMap, HeaderValue, StatusCode};

fn trailers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_bytes(value).unwrap());
    }
    map
}

#[test]
fn ok_status() {
    let s = Status::from_headers(&trailers(&[("grpc-status", b"0")])).unwrap();
    assert_eq!(s.code, Code::Ok);
    assert_eq!(s.raw_code, 0);
    assert_eq!(s.message, "");
    assert!(s.is_ok());

    let s =
        Status::from_headers(&trailers(&[("grpc-status", b"0"), ("grpc-message", b"")])).unwrap();
    assert!(s.is_ok());
    assert_eq!(s.message, "");
}

#[test]
fn code_and_plain_message() {
    let s = Status::from_headers(&trailers(&[
        ("grpc-status", b"3"),
        ("grpc-message", b"etcdserver: key is not provided"),
    ]))
    .unwrap();
    assert_eq!(s.code, Code::InvalidArgument);
    assert_eq!(s.raw_code, 3);
    assert_eq!(s.message, "etcdserver: key is not provided");
    assert!(!s.is_ok());
}

#[test]
fn percent_encoded_message() {
    // Space sent encoded, '%' encoded as %25, non-ASCII UTF-8 (é = C3 A9) byte by byte.
    let s = Status::from_headers(&trailers(&[
        ("grpc-status", b"14"),
        (
            "grpc-message",
            b"etcdserver:%20no leader 100%25 caf%C3%A9 %e2%9c%93",
        ),
    ]))
    .unwrap();
    assert_eq!(s.code, Code::Unavailable);
    assert_eq!(s.message, "etcdserver: no leader 100% café ✓");
}

#[test]
fn malformed_percent_sequences_are_kept() {
    for (raw, decoded) in [
        ("100%", "100%"),
        ("%zz", "%zz"),
        ("%4", "%4"),
        ("%", "%"),
        ("a%4g b", "a%4g b"),
        ("%%41", "%A"),
        ("%g1%41", "%g1A"),
        ("50%%", "50%%"),
    ] {
        let s = Status::from_headers(&trailers(&[
            ("grpc-status", b"2"),
            ("grpc-message", raw.as_bytes()),
        ]))
        .unwrap();
        assert_eq!(s.message, decoded, "raw {raw:?}");
        assert_eq!(percent_decode(raw.as_bytes()), decoded, "raw {raw:?}");
    }
}

#[test]
fn invalid_utf8_after_decoding_does_not_panic() {
    // A lone continuation byte and a truncated sequence: replaced, not a panic.
    let decoded = percent_decode(b"bad %C3 and %80 end");
    assert!(decoded.starts_with("bad "));
    assert!(decoded.ends_with(" end"));
    assert!(decoded.contains('\u{FFFD}'));
}

#[test]
fn missing_grpc_status_is_none() {
    assert_eq!(Status::from_headers(&HeaderMap::new()), None);
    assert_eq!(
        Status::from_headers(&trailers(&[("grpc-message", b"something")])),
        None
    );
    assert_eq!(
        Status::from_headers(&trailers(&[("content-type", b"application/grpc")])),
        None
    );
}

#[test]
fn non_numeric_status_is_unknown() {
    for raw in [
        &b"abc"[..],
        b"",
        b"-1",
        b"3.0",
        b"99999999999999999999",
        b"\xff\xfe",
    ] {
        let s = Status::from_headers(&trailers(&[("grpc-status", raw), ("grpc-message", b"msg")]))
            .unwrap();
        assert_eq!(s.code, Code::Unknown, "raw {raw:?}");
        assert!(!s.is_ok());
    }
}

#[test]
fn unknown_numeric_code_keeps_raw_value() {
    let s = Status::from_headers(&trailers(&[
        ("grpc-status", b"99"),
        ("grpc-message", b"from the future"),
    ]))
    .unwrap();
    assert_eq!(s.code, Code::Unknown);
    assert_eq!(s.raw_code, 99);
    assert_eq!(s.message, "from the future");
    assert!(!s.is_ok());
    assert!(s.to_string().contains("99"));

    let s = Status::from_headers(&trailers(&[("grpc-status", b"17")])).unwrap();
    assert_eq!((s.code, s.raw_code), (Code::Unknown, 17));
}

#[test]
fn every_standard_code_round_trips() {
    // §7.6
    let names = [
        (0, Code::Ok, "OK"),
        (1, Code::Cancelled, "CANCELLED"),
        (2, Code::Unknown, "UNKNOWN"),
        (3, Code::InvalidArgument, "INVALID_ARGUMENT"),
        (4, Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
        (5, Code::NotFound, "NOT_FOUND"),
        (6, Code::AlreadyExists, "ALREADY_EXISTS"),
        (7, Code::PermissionDenied, "PERMISSION_DENIED"),
        (8, Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
        (9, Code::FailedPrecondition, "FAILED_PRECONDITION"),
        (10, Code::Aborted, "ABORTED"),
        (11, Code::OutOfRange, "OUT_OF_RANGE"),
        (12, Code::Unimplemented, "UNIMPLEMENTED"),
        (13, Code::Internal, "INTERNAL"),
        (14, Code::Unavailable, "UNAVAILABLE"),
        (15, Code::DataLoss, "DATA_LOSS"),
        (16, Code::Unauthenticated, "UNAUTHENTICATED"),
    ];
    for (n, code, name) in names {
        assert_eq!(Code::from_u32(n), code);
        assert_eq!(code.as_u32(), n);
        assert_eq!(code.name(), name);
        let raw = n.to_string();
        let s = Status::from_headers(&trailers(&[("grpc-status", raw.as_bytes())])).unwrap();
        assert_eq!((s.code, s.raw_code), (code, n));
    }
}

#[test]
fn http_status_fallback_table() {
    // §7.4: 400 → 13, 401 → 16, 403 → 7, 404 → 12, 429/502/503/504 → 14, 431 → 13, else → 2.
    let table = [
        (400, Code::Internal),
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (404, Code::Unimplemented),
        (429, Code::Unavailable),
        (502, Code::Unavailable),
        (503, Code::Unavailable),
        (504, Code::Unavailable),
        (431, Code::Internal),
        (200, Code::Unknown),
        (500, Code::Unknown),
        (405, Code::Unknown),
        (415, Code::Unknown),
        (301, Code::Unknown),
    ];
    for (http, code) in table {
        assert_eq!(
            Code::from_http_status(StatusCode::from_u16(http).unwrap()),
            code,
            "HTTP {http}"
        );
    }
}

#[test]
fn reset_reason_table() {
    // §7.5
    let table = [
        (0, Code::Internal),           // NO_ERROR
        (1, Code::Internal),           // PROTOCOL_ERROR
        (2, Code::Internal),           // INTERNAL_ERROR
        (3, Code::Internal),           // FLOW_CONTROL_ERROR
        (4, Code::Internal),           // SETTINGS_TIMEOUT
        (6, Code::Internal),           // FRAME_SIZE_ERROR
        (7, Code::Unavailable),        // REFUSED_STREAM
        (8, Code::Cancelled),          // CANCEL
        (9, Code::Internal),           // COMPRESSION_ERROR
        (10, Code::Internal),          // CONNECT_ERROR
        (11, Code::ResourceExhausted), // ENHANCE_YOUR_CALM
        (12, Code::PermissionDenied),  // INADEQUATE_SECURITY
    ];
    for (reason, code) in table {
        assert_eq!(Code::from_reset_reason(reason), code, "reason {reason}");
    }
}

/// Parses a `grpc-timeout` value and checks the §7.2 format.
fn parse_timeout(v: &HeaderValue) -> (u128, char, u128) {
    let s = v.to_str().unwrap();
    let (digits, unit) = s.split_at(s.len() - 1);
    assert!(
        !digits.is_empty() && digits.len() <= 8,
        "{s}: 1 to 8 digits"
    );
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{s}: digits");
    assert!(!digits.starts_with('0'), "{s}: positive, no leading zero");
    let value: u128 = digits.parse().unwrap();
    let unit = unit.chars().next().unwrap();
    (value, unit, value * unit_nanos(unit))
}

fn unit_nanos(unit: char) -> u128 {
    match unit {
        'n' => 1,
        'u' => 1_000,
        'm' => 1_000_000,
        'S' => 1_000_000_000,
        'M' => 60_000_000_000,
        'H' => 3_600_000_000_000,
        other => panic!("bad unit {other:?}"),
    }
}

/// The rule: at most 8 digits, never shorter than asked (rounded up), and in the finest unit in
/// which the rounded-up value fits in 8 digits.
fn check_timeout_rule(d: Duration) -> String {
    let v = encode_timeout(d);
    let (value, unit, encoded) = parse_timeout(&v);
    let want = d.as_nanos().max(1);
    let per = unit_nanos(unit);
    assert!(value * per >= want, "{d:?} -> {v:?}: shorter than asked");
    assert!(
        (value - 1) * per < want,
        "{d:?} -> {v:?}: not the smallest round-up"
    );
    let units = ['n', 'u', 'm', 'S', 'M', 'H'];
    let pos = units.iter().position(|u| *u == unit).unwrap();
    for finer in &units[..pos] {
        assert!(
            want.div_ceil(unit_nanos(*finer)) > 99_999_999,
            "{d:?} -> {v:?}: unit {finer} would fit"
        );
    }
    assert!(encoded >= d.as_nanos());
    v.to_str().unwrap().to_string()
}

#[test]
fn grpc_timeout_encoding() {
    assert_eq!(check_timeout_rule(Duration::from_nanos(1)), "1n");
    assert_eq!(check_timeout_rule(Duration::from_millis(1500)), "1500000u");
    assert_eq!(check_timeout_rule(Duration::from_secs(5)), "5000000u");
    assert_eq!(
        check_timeout_rule(Duration::from_secs(100 * 24 * 3600)),
        "8640000S"
    );
    // Zero becomes the smallest positive timeout rather than an invalid "0n".
    assert_eq!(encode_timeout(Duration::ZERO), "1n");
    // Largest value in nanoseconds, and the first that needs microseconds (rounded up).
    assert_eq!(
        check_timeout_rule(Duration::from_nanos(99_999_999)),
        "99999999n"
    );
    assert_eq!(
        check_timeout_rule(Duration::from_nanos(100_000_000)),
        "100000u"
    );
    assert_eq!(
        check_timeout_rule(Duration::from_nanos(100_000_001)),
        "100001u"
    );
    // Rounded up at the second/minute boundaries too.
    assert_eq!(
        check_timeout_rule(Duration::from_millis(99_999_999) + Duration::from_nanos(1)),
        "100000S"
    );
    for d in [
        Duration::from_micros(1),
        Duration::from_millis(1),
        Duration::from_secs(1),
        Duration::from_secs(3600),
        Duration::from_secs(99_999_999),
        Duration::from_secs(100_000_000),
        Duration::from_secs(100_000_001),
        Duration::from_secs(10 * 365 * 24 * 3600),
        Duration::new(12_345, 678_901_234),
    ] {
        check_timeout_rule(d);
    }
    // Beyond what 8 digits of hours can say: capped, still valid.
    let v = encode_timeout(Duration::MAX);
    let (_, unit, _) = parse_timeout(&v);
    assert_eq!(unit, 'H');
}
