//! gRPC status: codes, `grpc-status` / `grpc-message` parsing (trailers and trailers-only
//! responses), the HTTP-status fallback, `grpc-timeout` encoding and RST_STREAM code mapping.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};

/// gRPC status code. Values the server may add later decode as [`Code::Unknown`], with the raw
/// number kept in [`Status::raw_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// Code 0.
    Ok,
    /// Code 1.
    Cancelled,
    /// Code 2.
    Unknown,
    /// Code 3.
    InvalidArgument,
    /// Code 4.
    DeadlineExceeded,
    /// Code 5.
    NotFound,
    /// Code 6.
    AlreadyExists,
    /// Code 7.
    PermissionDenied,
    /// Code 8.
    ResourceExhausted,
    /// Code 9.
    FailedPrecondition,
    /// Code 10.
    Aborted,
    /// Code 11.
    OutOfRange,
    /// Code 12.
    Unimplemented,
    /// Code 13.
    Internal,
    /// Code 14.
    Unavailable,
    /// Code 15.
    DataLoss,
    /// Code 16.
    Unauthenticated,
}

impl Code {
    /// Maps a wire value; unknown values become [`Code::Unknown`].
    pub fn from_u32(value: u32) -> Code {
        use Code::*;
        match value {
            0 => Ok,
            1 => Cancelled,
            3 => InvalidArgument,
            4 => DeadlineExceeded,
            5 => NotFound,
            6 => AlreadyExists,
            7 => PermissionDenied,
            8 => ResourceExhausted,
            9 => FailedPrecondition,
            10 => Aborted,
            11 => OutOfRange,
            12 => Unimplemented,
            13 => Internal,
            14 => Unavailable,
            15 => DataLoss,
            16 => Unauthenticated,
            _ => Unknown,
        }
    }

    /// The wire value.
    pub fn as_u32(self) -> u32 {
        use Code::*;
        match self {
            Ok => 0,
            Cancelled => 1,
            Unknown => 2,
            InvalidArgument => 3,
            DeadlineExceeded => 4,
            NotFound => 5,
            AlreadyExists => 6,
            PermissionDenied => 7,
            ResourceExhausted => 8,
            FailedPrecondition => 9,
            Aborted => 10,
            OutOfRange => 11,
            Unimplemented => 12,
            Internal => 13,
            Unavailable => 14,
            DataLoss => 15,
            Unauthenticated => 16,
        }
    }

    /// The conventional gRPC name, e.g. `UNAVAILABLE`.
    pub fn name(self) -> &'static str {
        use Code::*;
        match self {
            Ok => "OK",
            Cancelled => "CANCELLED",
            Unknown => "UNKNOWN",
            InvalidArgument => "INVALID_ARGUMENT",
            DeadlineExceeded => "DEADLINE_EXCEEDED",
            NotFound => "NOT_FOUND",
            AlreadyExists => "ALREADY_EXISTS",
            PermissionDenied => "PERMISSION_DENIED",
            ResourceExhausted => "RESOURCE_EXHAUSTED",
            FailedPrecondition => "FAILED_PRECONDITION",
            Aborted => "ABORTED",
            OutOfRange => "OUT_OF_RANGE",
            Unimplemented => "UNIMPLEMENTED",
            Internal => "INTERNAL",
            Unavailable => "UNAVAILABLE",
            DataLoss => "DATA_LOSS",
            Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// gRPC code synthesized from an HTTP status when a response carries no `grpc-status`.
    pub fn from_http_status(status: StatusCode) -> Code {
        match status.as_u16() {
            400 | 431 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// gRPC code for an HTTP/2 RST_STREAM error code.
    pub fn from_reset_reason(reason: u32) -> Code {
        match reason {
            7 => Code::Unavailable,        // REFUSED_STREAM: nothing was processed
            8 => Code::Cancelled,          // CANCEL
            11 => Code::ResourceExhausted, // ENHANCE_YOUR_CALM
            12 => Code::PermissionDenied,  // INADEQUATE_SECURITY
            _ => Code::Internal,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u32())
    }
}

/// A gRPC status as received from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The code.
    pub code: Code,
    /// The raw `grpc-status` value (differs from `code` only for values unknown to this crate).
    pub raw_code: u32,
    /// The percent-decoded `grpc-message` (empty when absent).
    pub message: String,
}

impl Status {
    /// A status with the given code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            raw_code: code.as_u32(),
            message: message.into(),
        }
    }

    /// Reads `grpc-status` and `grpc-message` from a trailer block (or from the headers of a
    /// trailers-only response). `None` when `grpc-status` is absent. A malformed
    /// `grpc-status` is reported as [`Code::Unknown`], never as a panic.
    pub fn from_headers(headers: &HeaderMap) -> Option<Status> {
        let raw = headers.get("grpc-status")?;
        let message = headers
            .get("grpc-message")
            .map(|v| percent_decode(v.as_bytes()))
            .unwrap_or_default();
        let parsed = std::str::from_utf8(raw.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        Some(match parsed {
            Some(value) => Status {
                code: Code::from_u32(value),
                raw_code: value,
                message,
            },
            None => Status::new(
                Code::Unknown,
                format!(
                    "malformed grpc-status {:?}: {message}",
                    String::from_utf8_lossy(raw.as_bytes())
                ),
            ),
        })
    }

    /// Whether this is the OK status.
    pub fn is_ok(&self) -> bool {
        self.code == Code::Ok
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.raw_code == self.code.as_u32() {
            write!(f, "{}: {}", self.code, self.message)
        } else {
            write!(f, "unknown code {}: {}", self.raw_code, self.message)
        }
    }
}

/// Decodes a percent-encoded `grpc-message`. Malformed `%` sequences are kept as they are, and
/// invalid UTF-8 is replaced, so this never fails.
pub fn percent_decode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Encodes a `grpc-timeout` value: at most 8 digits and a unit, using the finest unit that fits.
/// The value is rounded up so the server never sees a shorter deadline than the client's.
pub fn encode_timeout(timeout: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos().max(1);
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (per, unit) in units {
        let value = nanos.div_ceil(per);
        if value <= MAX {
            return HeaderValue::from_str(&format!("{value}{unit}")).expect("ascii digits");
        }
    }
    HeaderValue::from_static("99999999H")
}
