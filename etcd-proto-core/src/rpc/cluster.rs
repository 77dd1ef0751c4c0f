//! Membership requests of the Go client's `Cluster` interface: [`MemberList`], [`MemberAdd`],
//! [`MemberRemove`], [`MemberUpdate`] and [`MemberPromote`].
//!
//! Peer URLs are checked before anything is sent, exactly as the Go client does with
//! `types.NewURLs` (the server would otherwise answer
//! [`EtcdErrorKind::MemberBadUrls`](crate::EtcdErrorKind)):
//!
//! * the list must not be empty ([`InvalidRequest::NoPeerUrls`]);
//! * each URL, with surrounding white space trimmed, must parse as Go's `url.Parse` would;
//! * its scheme (any case) must be `http`, `https`, `unix` or `unixs`;
//! * an `http`/`https` URL must have a `host:port` authority (as Go's `net.SplitHostPort`
//!   reads it, so `[::1]:2380` is fine and, as in Go, an empty port after the colon passes)
//!   and no path at all, not even `/` (a query or fragment is ignored);
//! * a `unix`/`unixs` URL needs nothing more.
//!
//! Failures are [`InvalidRequest::InvalidPeerUrl`] with a [`PeerUrlError`] reason. The URLs are
//! sent as given (untrimmed, in order), as Go sends them.

use etcd_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

use super::{Method, RetryClass, UnaryRpc};
use crate::error::{Error, InvalidRequest, PeerUrlError};

/// Lists the cluster members (`Cluster/MemberList`).
///
/// Sent linearizable by default, as the Go 3.5 client does (a 3.4 server ignores the flag and
/// answers from its local view).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MemberList {
    req: MemberListRequest,
}

impl Default for MemberList {
    fn default() -> Self {
        MemberList::new()
    }
}

impl MemberList {
    /// A linearizable member list.
    pub fn new() -> MemberList {
        MemberList {
            req: MemberListRequest { linearizable: true },
        }
    }

    /// Answers from the member's local view without going through consensus (Go's
    /// `WithSerializable` on `MemberList`): works without quorum, may be stale.
    pub fn serializable(mut self) -> Self {
        self.req.linearizable = false;
        self
    }
}

impl UnaryRpc for MemberList {
    type Request = MemberListRequest;
    type Response = MemberListResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Cluster/MemberList",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<MemberListRequest, Error> {
        Ok(self.req)
    }
}

/// Adds a member (`Cluster/MemberAdd`). The peer URLs are validated when the request is sent
/// (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MemberAdd {
    peer_urls: Vec<String>,
    is_learner: bool,
}

impl MemberAdd {
    /// Adds a voting member reachable at `peer_urls`.
    pub fn new<I>(peer_urls: I) -> MemberAdd
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        MemberAdd {
            peer_urls: peer_urls
                .into_iter()
                .map(|url| url.as_ref().to_owned())
                .collect(),
            is_learner: false,
        }
    }

    /// Adds the member as a non-voting learner (Go's `MemberAddAsLearner`).
    pub fn as_learner(mut self) -> Self {
        self.is_learner = true;
        self
    }

    /// The wire request.
    pub fn build(self) -> Result<MemberAddRequest, Error> {
        validate_peer_urls(&self.peer_urls)?;
        Ok(MemberAddRequest {
            peer_ur_ls: self.peer_urls,
            is_learner: self.is_learner,
        })
    }
}

impl UnaryRpc for MemberAdd {
    type Request = MemberAddRequest;
    type Response = MemberAddResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Cluster/MemberAdd",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<MemberAddRequest, Error> {
        self.build()
    }
}

/// Removes a member (`Cluster/MemberRemove`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MemberRemove {
    req: MemberRemoveRequest,
}

impl MemberRemove {
    /// Removes member `id`.
    pub fn new(id: u64) -> MemberRemove {
        MemberRemove {
            req: MemberRemoveRequest { id },
        }
    }
}

impl UnaryRpc for MemberRemove {
    type Request = MemberRemoveRequest;
    type Response = MemberRemoveResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Cluster/MemberRemove",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<MemberRemoveRequest, Error> {
        Ok(self.req)
    }
}

/// Replaces a member's peer URLs (`Cluster/MemberUpdate`). The peer URLs are validated when
/// the request is sent (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MemberUpdate {
    id: u64,
    peer_urls: Vec<String>,
}

impl MemberUpdate {
    /// Gives member `id` the peer URLs `peer_urls`.
    pub fn new<I>(id: u64, peer_urls: I) -> MemberUpdate
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        MemberUpdate {
            id,
            peer_urls: peer_urls
                .into_iter()
                .map(|url| url.as_ref().to_owned())
                .collect(),
        }
    }

    /// The wire request.
    pub fn build(self) -> Result<MemberUpdateRequest, Error> {
        validate_peer_urls(&self.peer_urls)?;
        Ok(MemberUpdateRequest {
            id: self.id,
            peer_ur_ls: self.peer_urls,
        })
    }
}

impl UnaryRpc for MemberUpdate {
    type Request = MemberUpdateRequest;
    type Response = MemberUpdateResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Cluster/MemberUpdate",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<MemberUpdateRequest, Error> {
        self.build()
    }
}

/// Promotes a learner to a voting member (`Cluster/MemberPromote`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MemberPromote {
    req: MemberPromoteRequest,
}

impl MemberPromote {
    /// Promotes learner `id`.
    pub fn new(id: u64) -> MemberPromote {
        MemberPromote {
            req: MemberPromoteRequest { id },
        }
    }
}

impl UnaryRpc for MemberPromote {
    type Request = MemberPromoteRequest;
    type Response = MemberPromoteResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Cluster/MemberPromote",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<MemberPromoteRequest, Error> {
        Ok(self.req)
    }
}

/// Checks a list of peer URLs as Go's `types.NewURLs` does (see the [module docs](self)).
pub fn validate_peer_urls<S: AsRef<str>>(urls: &[S]) -> Result<(), InvalidRequest> {
    if urls.is_empty() {
        return Err(InvalidRequest::NoPeerUrls);
    }
    for url in urls {
        let url = url.as_ref();
        check_peer_url(url).map_err(|reason| InvalidRequest::InvalidPeerUrl {
            url: url.to_owned(),
            reason,
        })?;
    }
    Ok(())
}

/// One URL of `types.NewURLs`.
fn check_peer_url(raw: &str) -> Result<(), PeerUrlError> {
    let parsed = parse_url(raw.trim()).map_err(PeerUrlError::Malformed)?;
    match parsed.scheme.as_str() {
        "http" | "https" => {
            if !split_host_port(&parsed.host) {
                return Err(PeerUrlError::NotHostPort);
            }
            if parsed.has_path {
                return Err(PeerUrlError::HasPath);
            }
            Ok(())
        }
        "unix" | "unixs" => Ok(()),
        _ => Err(PeerUrlError::Scheme),
    }
}

/// What the check needs of a parsed URL.
struct ParsedUrl {
    /// Lower-cased scheme ("" when there is none).
    scheme: String,
    /// The host with its port, percent-decoded (empty for opaque URLs).
    host: Vec<u8>,
    /// Whether the path is non-empty.
    has_path: bool,
}

/// Go's `url.Parse` (not via a request), reduced to what `types.NewURLs` looks at; fails
/// wherever Go fails, with Go's reason.
fn parse_url(raw: &str) -> Result<ParsedUrl, String> {
    let (before_fragment, fragment) = match raw.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (raw, None),
    };
    let parsed = parse_without_fragment(before_fragment)?;
    if let Some(fragment) = fragment {
        unescape(fragment.as_bytes(), Mode::Other)?;
    }
    Ok(parsed)
}

fn parse_without_fragment(raw: &str) -> Result<ParsedUrl, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("invalid control character in URL".into());
    }
    let (scheme, rest) = split_scheme(raw)?;
    let scheme = scheme.to_ascii_lowercase();

    let rest = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        &rest[..rest.len() - 1]
    } else {
        rest.split_once('?').map_or(rest, |(before, _query)| before)
    };

    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            // A rootless URL such as `http:host:1` is opaque: no host, no path.
            return Ok(ParsedUrl {
                scheme,
                host: Vec::new(),
                has_path: false,
            });
        }
        let first_segment = rest.split('/').next().unwrap_or("");
        if first_segment.contains(':') {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }

    let mut host = Vec::new();
    let mut path = rest;
    if (!scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let after = &rest[2..];
        let (authority, remainder) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        host = parse_authority(authority)?;
        path = remainder;
    }
    unescape(path.as_bytes(), Mode::Other)?;
    Ok(ParsedUrl {
        scheme,
        host,
        has_path: !path.is_empty(),
    })
}

/// Go's `getScheme`.
fn split_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                if i == 0 {
                    return Ok(("", raw));
                }
            }
            b':' => {
                if i == 0 {
                    return Err("missing protocol scheme".into());
                }
                return Ok((&raw[..i], &raw[i + 1..]));
            }
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// Go's `parseAuthority`: returns the decoded host (with port).
fn parse_authority(authority: &str) -> Result<Vec<u8>, String> {
    let at = authority.rfind('@');
    let host = parse_host(match at {
        Some(i) => &authority[i + 1..],
        None => authority,
    })?;
    if let Some(i) = at {
        let userinfo = &authority[..i];
        let valid = userinfo.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '-' | '.'
                        | '_'
                        | ':'
                        | '~'
                        | '!'
                        | '$'
                        | '&'
                        | '\''
                        | '('
                        | ')'
                        | '*'
                        | '+'
                        | ','
                        | ';'
                        | '='
                        | '%'
                        | '@'
                )
        });
        if !valid {
            return Err("net/url: invalid userinfo".into());
        }
        unescape(userinfo.as_bytes(), Mode::Other)?;
    }
    Ok(host)
}

/// Go's `parseHost`, including the IP-literal check of current Go releases (a bracketed host
/// without a zone must be an IPv6 address).
fn parse_host(host: &str) -> Result<Vec<u8>, String> {
    if host.starts_with('[') {
        let Some(close) = host.rfind(']') else {
            return Err("missing ']' in host".into());
        };
        let colon_port = &host[close + 1..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {colon_port:?} after host"));
        }
        if let Some(zone) = host[..close].find("%25") {
            let mut decoded = unescape(&host.as_bytes()[..zone], Mode::Host)?;
            decoded.extend(unescape(&host.as_bytes()[zone..close], Mode::Zone)?);
            decoded.extend(unescape(&host.as_bytes()[close..], Mode::Host)?);
            return Ok(decoded);
        }
        let decoded = unescape(host.as_bytes(), Mode::Host)?;
        let literal = &decoded[1..close];
        if !std::str::from_utf8(literal).is_ok_and(is_ipv6) {
            return Err(format!(
                "invalid IP-literal {:?}",
                String::from_utf8_lossy(literal)
            ));
        }
        return Ok(decoded);
    }
    if let Some(i) = host.rfind(':') {
        let colon_port = &host[i..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {colon_port:?} after host"));
        }
    }
    unescape(host.as_bytes(), Mode::Host)
}

/// Go's `validOptionalPort`: empty, or a colon followed by decimal digits only.
fn valid_optional_port(port: &str) -> bool {
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Which part of a URL is being decoded (Go's `encoding` modes that matter here).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Host,
    Zone,
    /// Path, user info or fragment: only the escapes themselves are checked.
    Other,
}

/// Go's `shouldEscape(c, encodeHost)`: whether `c` may not appear raw in a host (true for
/// every non-ASCII byte, which a host may nevertheless hold raw).
fn host_char_needs_escape(c: u8) -> bool {
    !(c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
                | b'-'
                | b'_'
                | b'.'
                | b'~'
        ))
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Go's `unescape`: percent-decodes, failing on a broken escape and, in a host, on characters
/// a host may not hold.
fn unescape(s: &[u8], mode: Mode) -> Result<Vec<u8>, String> {
    let escape_error = |at: usize| {
        format!(
            "invalid URL escape {:?}",
            String::from_utf8_lossy(&s[at..(at + 3).min(s.len())])
        )
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'%' {
            let (Some(hi), Some(lo)) = (
                s.get(i + 1).copied().and_then(hex_value),
                s.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(escape_error(i));
            };
            let is_25 = hi == 2 && lo == 5;
            let value = hi << 4 | lo;
            match mode {
                Mode::Host if hi < 8 && !is_25 => return Err(escape_error(i)),
                Mode::Zone if !is_25 && value != b' ' && host_char_needs_escape(value) => {
                    return Err(escape_error(i));
                }
                _ => {}
            }
            out.push(value);
            i += 3;
        } else {
            if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && host_char_needs_escape(c) {
                return Err(format!(
                    "invalid character {:?} in host name",
                    char::from(c).to_string()
                ));
            }
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

/// Go's `net.SplitHostPort`: whether `hostport` is `host:port` (the port may be empty).
fn split_host_port(hostport: &[u8]) -> bool {
    let Some(last_colon) = hostport.iter().rposition(|&b| b == b':') else {
        return false;
    };
    let (no_open_from, no_close_from) = if hostport[0] == b'[' {
        let Some(end) = hostport.iter().position(|&b| b == b']') else {
            return false;
        };
        if end + 1 != last_colon {
            return false;
        }
        (1, end + 1)
    } else {
        if hostport[..last_colon].contains(&b':') {
            return false;
        }
        (0, 0)
    };
    !hostport[no_open_from..].contains(&b'[') && !hostport[no_close_from..].contains(&b']')
}

/// Whether `s` is an IPv6 address as Go's `netip.ParseAddr` reads one (no zone; an embedded
/// IPv4 tail allowed; a plain IPv4 address is not IPv6).
fn is_ipv6(s: &str) -> bool {
    let b = s.as_bytes();
    let mut groups = 0usize;
    let mut ellipsis = false;
    let mut i = 0;
    if b.starts_with(b"::") {
        ellipsis = true;
        i = 2;
        if i == b.len() {
            return true;
        }
    } else if b.first() == Some(&b':') {
        return false;
    }
    loop {
        let start = i;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        if i < b.len() && b[i] == b'.' {
            if groups > 6 || !is_ipv4(&s[start..]) {
                return false;
            }
            groups += 2;
            break;
        }
        let digits = i - start;
        if digits == 0 || digits > 4 {
            return false;
        }
        groups += 1;
        if groups > 8 {
            return false;
        }
        if i == b.len() {
            break;
        }
        if b[i] != b':' {
            return false;
        }
        i += 1;
        if i < b.len() && b[i] == b':' {
            if ellipsis {
                return false;
            }
            ellipsis = true;
            i += 1;
            if i == b.len() {
                break;
            }
        } else if i == b.len() {
            return false;
        }
    }
    if ellipsis {
        groups < 8
    } else {
        groups == 8
    }
}

/// Whether `s` is a dotted-quad IPv4 address as Go's `netip` reads one (no leading zeros).
fn is_ipv4(s: &str) -> bool {
    let mut fields = 0;
    for field in s.split('.') {
        fields += 1;
        let ok = !field.is_empty()
            && field.len() <= 3
            && field.bytes().all(|c| c.is_ascii_digit())
            && !(field.len() > 1 && field.starts_with('0'))
            && field.parse::<u16>().is_ok_and(|v| v <= 255);
        if !ok {
            return false;
        }
    }
    fields == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_literals() {
        for ok in [
            "::",
            "::1",
            "fe80::1",
            "2001:db8::8a2e:370:7334",
            "1:2:3:4:5:6:7:8",
            "::ffff:1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "1::",
        ] {
            assert!(is_ipv6(ok), "{ok}");
        }
        for bad in [
            "",
            ":",
            ":1",
            "1:",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::8",
            "1::2::3",
            "12345::",
            "g::",
            "1.2.3.4",
            "::1.2.3.04",
            "::256.1.1.1",
            "1:2:3:4:5:6:7:1.2.3.4",
        ] {
            assert!(!is_ipv6(bad), "{bad}");
        }
    }

    #[test]
    fn go_split_host_port() {
        for ok in ["a:1", "a:", ":1", "[::1]:1", "[a]:1"] {
            assert!(split_host_port(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a:b:1",
            "[::1]",
            "[::1]1",
            "[::1]:1:2",
            "a]:1",
            "[a:1",
            "a[:1",
        ] {
            assert!(!split_host_port(bad.as_bytes()), "{bad}");
        }
    }
}
