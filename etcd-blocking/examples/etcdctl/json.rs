//! The JSON etcdctl 3.5.1 prints: Go's `encoding/json` of the gogo-protobuf structs (and of
//! the clientv3 wrappers around some of them), with their field names, field order and
//! `omitempty` rules, int64/uint64 as numbers and bytes as base64.

use etcd_blocking::proto::authpb;
use etcd_blocking::proto::etcdserverpb as pb;
use etcd_blocking::proto::mvccpb;

use crate::gofmt::{base64, json_str};

/// Builds one JSON object, field by field.
pub struct Obj(String);

impl Obj {
    pub fn new() -> Obj {
        Obj(String::from("{"))
    }

    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(k);
        self.0.push_str("\":");
    }

    /// A field with an already encoded value.
    pub fn raw(mut self, k: &str, v: &str) -> Obj {
        self.key(k);
        self.0.push_str(v);
        self
    }

    /// An optional nested value (a nil pointer with `omitempty` is left out).
    pub fn opt(self, k: &str, v: Option<String>) -> Obj {
        match v {
            Some(v) => self.raw(k, &v),
            None => self,
        }
    }

    /// A number, left out when zero and `omit`.
    pub fn num<N: Into<i128>>(self, k: &str, v: N, omit: bool) -> Obj {
        let v: i128 = v.into();
        if omit && v == 0 {
            return self;
        }
        self.raw(k, &v.to_string())
    }

    pub fn boolean(self, k: &str, v: bool, omit: bool) -> Obj {
        if omit && !v {
            return self;
        }
        self.raw(k, if v { "true" } else { "false" })
    }

    pub fn string(self, k: &str, v: &str, omit: bool) -> Obj {
        if omit && v.is_empty() {
            return self;
        }
        self.raw(k, &json_str(v.as_bytes()))
    }

    pub fn bytes(self, k: &str, v: &[u8], omit: bool) -> Obj {
        if omit && v.is_empty() {
            return self;
        }
        self.raw(k, &format!("\"{}\"", base64(v)))
    }

    /// A list, left out when empty and `omit`; `null` for an empty list otherwise when `nil`.
    pub fn list(self, k: &str, items: Vec<String>, omit: bool, nil_when_empty: bool) -> Obj {
        if items.is_empty() {
            if omit {
                return self;
            }
            if nil_when_empty {
                return self.raw(k, "null");
            }
        }
        self.raw(k, &format!("[{}]", items.join(",")))
    }

    pub fn strings(self, k: &str, items: &[String], omit: bool) -> Obj {
        let items = items.iter().map(|s| json_str(s.as_bytes())).collect();
        self.list(k, items, omit, true)
    }

    pub fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// The fields of a `ResponseHeader` into `o` (also used flattened, for the clientv3 lease
/// responses that embed `*pb.ResponseHeader`).
pub fn header_fields(o: Obj, h: &pb::ResponseHeader) -> Obj {
    o.num("cluster_id", h.cluster_id, true)
        .num("member_id", h.member_id, true)
        .num("revision", h.revision, true)
        .num("raft_term", h.raft_term, true)
}

pub fn header(h: &pb::ResponseHeader) -> String {
    header_fields(Obj::new(), h).end()
}

fn hdr(h: &Option<pb::ResponseHeader>) -> Option<String> {
    h.as_ref().map(header)
}

pub fn kv(kv: &mvccpb::KeyValue) -> String {
    Obj::new()
        .bytes("key", &kv.key, true)
        .num("create_revision", kv.create_revision, true)
        .num("mod_revision", kv.mod_revision, true)
        .num("version", kv.version, true)
        .bytes("value", &kv.value, true)
        .num("lease", kv.lease, true)
        .end()
}

pub fn range(r: &pb::RangeResponse) -> String {
    Obj::new()
        .opt("header", hdr(&r.header))
        .list("kvs", r.kvs.iter().map(kv).collect(), true, false)
        .boolean("more", r.more, true)
        .num("count", r.count, true)
        .end()
}

pub fn put(r: &pb::PutResponse) -> String {
    Obj::new()
        .opt("header", hdr(&r.header))
        .opt("prev_kv", r.prev_kv.as_ref().map(kv))
        .end()
}

pub fn delete(r: &pb::DeleteRangeResponse) -> String {
    Obj::new()
        .opt("header", hdr(&r.header))
        .num("deleted", r.deleted, true)
        .list("prev_kvs", r.prev_kvs.iter().map(kv).collect(), true, false)
        .end()
}

pub fn txn(r: &pb::TxnResponse) -> String {
    use pb::response_op::Response;
    let ops = r
        .responses
        .iter()
        .map(|op| {
            let inner = match &op.response {
                Some(Response::ResponseRange(r)) => {
                    Obj::new().raw("response_range", &range(r)).end()
                }
                Some(Response::ResponsePut(r)) => Obj::new().raw("response_put", &put(r)).end(),
                Some(Response::ResponseDeleteRange(r)) => {
                    Obj::new().raw("response_delete_range", &delete(r)).end()
                }
                Some(Response::ResponseTxn(r)) => Obj::new().raw("response_txn", &txn(r)).end(),
                None => "null".to_string(),
            };
            Obj::new().raw("Response", &inner).end()
        })
        .collect();
    Obj::new()
        .opt("header", hdr(&r.header))
        .boolean("succeeded", r.succeeded, true)
        .list("responses", ops, true, false)
        .end()
}

pub fn event(e: &mvccpb::Event) -> String {
    Obj::new()
        .num("type", e.r#type, true)
        .opt("kv", e.kv.as_ref().map(kv))
        .opt("prev_kv", e.prev_kv.as_ref().map(kv))
        .end()
}

/// clientv3's `WatchResponse` (exported Go fields, no tags).
pub fn watch(
    h: &pb::ResponseHeader,
    events: &[mvccpb::Event],
    compact_revision: i64,
    canceled: bool,
    created: bool,
) -> String {
    Obj::new()
        .raw("Header", &header(h))
        .list("Events", events.iter().map(event).collect(), false, false)
        .num("CompactRevision", compact_revision, false)
        .boolean("Canceled", canceled, false)
        .boolean("Created", created, false)
        .end()
}

/// clientv3's `LeaseGrantResponse`: the header embedded, then `ID`, `TTL`, `Error`.
pub fn lease_grant(r: &pb::LeaseGrantResponse) -> String {
    let o = match &r.header {
        Some(h) => header_fields(Obj::new(), h),
        None => Obj::new(),
    };
    o.num("ID", r.id, false)
        .num("TTL", r.ttl, false)
        .string("Error", &r.error, false)
        .end()
}

/// clientv3's `LeaseKeepAliveResponse`.
pub fn keep_alive(h: Option<&pb::ResponseHeader>, id: i64, ttl: i64) -> String {
    let o = match h {
        Some(h) => header_fields(Obj::new(), h),
        None => Obj::new(),
    };
    o.num("ID", id, false).num("TTL", ttl, false).end()
}

pub fn lease_revoke(r: &pb::LeaseRevokeResponse) -> String {
    Obj::new().opt("header", hdr(&r.header)).end()
}

/// clientv3's `LeaseTimeToLiveResponse`.
pub fn time_to_live(r: &pb::LeaseTimeToLiveResponse) -> String {
    let o = match &r.header {
        Some(h) => header_fields(Obj::new(), h),
        None => Obj::new(),
    };
    let keys = r
        .keys
        .iter()
        .map(|k| format!("\"{}\"", base64(k)))
        .collect();
    o.num("id", r.id, false)
        .num("ttl", r.ttl, false)
        .num("granted-ttl", r.granted_ttl, false)
        .list("keys", keys, false, true)
        .end()
}

/// clientv3's `LeaseLeasesResponse`.
pub fn leases(r: &pb::LeaseLeasesResponse) -> String {
    let o = match &r.header {
        Some(h) => header_fields(Obj::new(), h),
        None => Obj::new(),
    };
    let items = r
        .leases
        .iter()
        .map(|l| Obj::new().num("id", l.id, false).end())
        .collect();
    o.list("leases", items, false, false).end()
}

pub fn member(m: &pb::Member) -> String {
    Obj::new()
        .num("ID", m.id, true)
        .string("name", &m.name, true)
        .strings("peerURLs", &m.peer_ur_ls, true)
        .strings("clientURLs", &m.client_ur_ls, true)
        .boolean("isLearner", m.is_learner, true)
        .end()
}

pub fn members(
    h: &Option<pb::ResponseHeader>,
    member_: Option<&pb::Member>,
    list: &[pb::Member],
) -> String {
    Obj::new()
        .opt("header", hdr(h))
        .opt("member", member_.map(member))
        .list("members", list.iter().map(member).collect(), true, false)
        .end()
}

/// `member list --hex -w json`: etcdctl writes this one by hand, IDs in hex.
pub fn member_list_hex(r: &pb::MemberListResponse) -> String {
    let h = r.header.unwrap_or_default();
    let mut out = format!(
        "{{\"header\":{{\"cluster_id\":\"{:x}\",\"member_id\":\"{:x}\",\"raft_term\":{:x}}}",
        h.cluster_id, h.member_id, h.raft_term
    );
    let list = |urls: &[String]| {
        if urls.is_empty() {
            "null".to_string()
        } else {
            format!(
                "[{}]",
                urls.iter()
                    .map(|u| json_str(u.as_bytes()))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
    };
    for (i, m) in r.members.iter().enumerate() {
        out.push_str(if i == 0 {
            ",\"members\":[{\"ID\":\""
        } else {
            ",{\"ID\":\""
        });
        out.push_str(&format!(
            "{:x}\",\"name\":\"{}\",\"peerURLs\":{},\"clientURLS\":{}}}",
            m.id,
            m.name,
            list(&m.peer_ur_ls),
            list(&m.client_ur_ls)
        ));
        if i == r.members.len() - 1 {
            out.push(']');
        }
    }
    out.push('}');
    out
}

pub fn status(r: &pb::StatusResponse) -> String {
    Obj::new()
        .opt("header", hdr(&r.header))
        .string("version", &r.version, true)
        .num("dbSize", r.db_size, true)
        .num("leader", r.leader, true)
        .num("raftIndex", r.raft_index, true)
        .num("raftTerm", r.raft_term, true)
        .num("raftAppliedIndex", r.raft_applied_index, true)
        .strings("errors", &r.errors, true)
        .num("dbSizeInUse", r.db_size_in_use, true)
        .boolean("isLearner", r.is_learner, true)
        .end()
}

pub fn hash_kv(r: &pb::HashKvResponse) -> String {
    Obj::new()
        .opt("header", hdr(&r.header))
        .num("hash", r.hash, true)
        .num("compact_revision", r.compact_revision, true)
        .end()
}

pub fn alarms(h: &Option<pb::ResponseHeader>, alarms: &[pb::AlarmMember]) -> String {
    let items = alarms
        .iter()
        .map(|a| {
            Obj::new()
                .num("memberID", a.member_id, true)
                .num("alarm", a.alarm, true)
                .end()
        })
        .collect();
    Obj::new()
        .opt("header", hdr(h))
        .list("alarms", items, true, false)
        .end()
}

/// Any response that is just a header (`{"header":{...}}`).
pub fn header_only(h: &Option<pb::ResponseHeader>) -> String {
    Obj::new().opt("header", hdr(h)).end()
}

pub fn auth_status(r: &pb::AuthStatusResponse) -> String {
    Obj::new()
        .opt("header", hdr(&r.header))
        .boolean("enabled", r.enabled, true)
        .num("authRevision", r.auth_revision, true)
        .end()
}

pub fn names(h: &Option<pb::ResponseHeader>, field: &str, names: &[String]) -> String {
    Obj::new()
        .opt("header", hdr(h))
        .strings(field, names, true)
        .end()
}

pub fn role_get(r: &pb::AuthRoleGetResponse) -> String {
    let perms = r
        .perm
        .iter()
        .map(|p: &authpb::Permission| {
            Obj::new()
                .num("permType", p.perm_type, true)
                .bytes("key", &p.key, true)
                .bytes("range_end", &p.range_end, true)
                .end()
        })
        .collect();
    Obj::new()
        .opt("header", hdr(&r.header))
        .list("perm", perms, true, false)
        .end()
}
