//! Output shared by several commands: key-values in each format, etcdctl's `fields` lines,
//! olekukonko/tablewriter tables, and raw protobuf.

use etcd_blocking::proto::etcdserverpb as pb;
use etcd_blocking::proto::mvccpb;
use prost::Message;

use crate::ctx::{out, outln, Ctx, Format};
use crate::gofmt::{go_quote, hex_escaped};
use crate::json;

/// etcdctl's `printKV` (simple format).
pub fn kv_simple(hex: bool, value_only: bool, kv: &mvccpb::KeyValue) {
    let (k, v) = if hex {
        (hex_escaped(&kv.key), hex_escaped(&kv.value))
    } else {
        (kv.key.to_vec(), kv.value.to_vec())
    };
    if !value_only {
        outln(k);
    }
    outln(v);
}

/// `"ClusterID" : N` ... of a header (fields format).
pub fn fields_hdr(h: &Option<pb::ResponseHeader>) {
    let h = (*h).unwrap_or_default();
    outln(format!("\"ClusterID\" : {}", h.cluster_id));
    outln(format!("\"MemberID\" : {}", h.member_id));
    outln(format!("\"Revision\" : {}", h.revision));
    outln(format!("\"RaftTerm\" : {}", h.raft_term));
}

pub fn fields_kv(pfx: &str, kv: &mvccpb::KeyValue) {
    outln(format!("\"{pfx}Key\" : {}", go_quote(&kv.key)));
    outln(format!("\"{pfx}CreateRevision\" : {}", kv.create_revision));
    outln(format!("\"{pfx}ModRevision\" : {}", kv.mod_revision));
    outln(format!("\"{pfx}Version\" : {}", kv.version));
    outln(format!("\"{pfx}Value\" : {}", go_quote(&kv.value)));
    outln(format!("\"{pfx}Lease\" : {}", kv.lease));
}

/// The raw protobuf encoding (`-w protobuf`).
pub fn protobuf(m: &impl Message) {
    out(&m.encode_to_vec());
}

pub fn get(ctx: &Ctx, r: &pb::RangeResponse, value_only: bool) {
    match ctx.format {
        Format::Simple => {
            for kv in &r.kvs {
                kv_simple(ctx.hex, value_only, kv);
            }
        }
        Format::Json => outln(json::range(r)),
        Format::Fields => {
            fields_hdr(&r.header);
            for kv in &r.kvs {
                fields_kv("", kv);
            }
            outln(format!("\"More\" : {}", r.more));
            outln(format!("\"Count\" : {}", r.count));
        }
        Format::Protobuf => protobuf(r),
        Format::Table => ctx.format.unsupported(),
    }
}

pub fn put(ctx: &Ctx, r: &pb::PutResponse) {
    match ctx.format {
        Format::Simple => {
            outln("OK");
            if let Some(kv) = &r.prev_kv {
                kv_simple(ctx.hex, false, kv);
            }
        }
        Format::Json => outln(json::put(r)),
        Format::Fields => {
            fields_hdr(&r.header);
            if let Some(kv) = &r.prev_kv {
                fields_kv("Prev", kv);
            }
        }
        Format::Protobuf => protobuf(r),
        Format::Table => ctx.format.unsupported(),
    }
}

pub fn del(ctx: &Ctx, r: &pb::DeleteRangeResponse) {
    match ctx.format {
        Format::Simple => {
            outln(r.deleted.to_string());
            for kv in &r.prev_kvs {
                kv_simple(ctx.hex, false, kv);
            }
        }
        Format::Json => outln(json::delete(r)),
        Format::Fields => {
            fields_hdr(&r.header);
            outln(format!("\"Deleted\" : {}", r.deleted));
            for kv in &r.prev_kvs {
                fields_kv("Prev", kv);
            }
        }
        Format::Protobuf => protobuf(r),
        Format::Table => ctx.format.unsupported(),
    }
}

pub fn txn(ctx: &Ctx, r: &pb::TxnResponse) {
    use pb::response_op::Response;
    match ctx.format {
        Format::Simple => {
            outln(if r.succeeded { "SUCCESS" } else { "FAILURE" });
            for op in &r.responses {
                outln("");
                match &op.response {
                    Some(Response::ResponseDeleteRange(d)) => del(ctx, d),
                    Some(Response::ResponsePut(p)) => put(ctx, p),
                    Some(Response::ResponseRange(g)) => get(ctx, g, false),
                    other => outln(format!("unexpected response {other:?}")),
                }
            }
        }
        Format::Json => outln(json::txn(r)),
        Format::Fields => {
            fields_hdr(&r.header);
            outln(format!("\"Succeeded\" : {}", r.succeeded));
            for op in &r.responses {
                match &op.response {
                    Some(Response::ResponseDeleteRange(d)) => del(ctx, d),
                    Some(Response::ResponsePut(p)) => put(ctx, p),
                    Some(Response::ResponseRange(g)) => get(ctx, g, false),
                    other => outln(format!(
                        "\"Unknown\" : {}",
                        crate::gofmt::go_quote_str(&format!("{other:?}"))
                    )),
                }
            }
        }
        Format::Protobuf => protobuf(r),
        Format::Table => ctx.format.unsupported(),
    }
}

/// tablewriter's `WrapWords`: splits words into lines of at most `lim` columns with the least
/// raggedness.
fn wrap_words(words: &[&str], lim: usize) -> Vec<String> {
    const PENALTY: i64 = 100_000;
    let n = words.len();
    let width = |s: &str| s.chars().count() as i64;
    let mut length = vec![vec![0i64; n]; n];
    for i in 0..n {
        length[i][i] = width(words[i]);
        for j in i + 1..n {
            length[i][j] = length[i][j - 1] + 1 + width(words[j]);
        }
    }
    let lim = lim as i64;
    let mut nbrk = vec![0usize; n];
    let mut cost = vec![i64::from(i32::MAX); n];
    for i in (0..n).rev() {
        if length[i][n - 1] <= lim {
            cost[i] = 0;
            nbrk[i] = n;
        } else {
            for j in i + 1..n {
                let d = lim - length[i][j - 1];
                let mut c = d * d + cost[j];
                if length[i][j - 1] > lim {
                    c += PENALTY;
                }
                if c < cost[i] {
                    cost[i] = c;
                    nbrk[i] = j;
                }
            }
        }
    }
    let mut lines = Vec::new();
    let mut i = 0;
    while i < n {
        lines.push(words[i..nbrk[i]].join(" "));
        i = nbrk[i];
    }
    lines
}

/// A cell's lines and the width it claims (tablewriter wraps cells wider than 30 columns).
fn cell_lines(cell: &str) -> (Vec<String>, usize) {
    const MAX: usize = 30;
    let width = |s: &str| s.chars().count();
    let w = width(cell);
    if w <= MAX {
        return (vec![cell.to_string()], w);
    }
    let words: Vec<&str> = cell.split(' ').collect();
    let lim = words.iter().map(|w| width(w)).max().unwrap_or(0).max(MAX);
    let lines = wrap_words(&words, lim);
    let claimed = lines.iter().map(|l| width(l)).max().unwrap_or(0).max(MAX);
    (lines, claimed)
}

/// olekukonko/tablewriter as etcdctl sets it up: upper-case centred headers, cells aligned
/// right and wrapped past 30 columns, borders of `+`, `-` and `|`.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let header: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    let rows: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, cell)| {
                    let (lines, w) = cell_lines(cell);
                    widths[i] = widths[i].max(w);
                    lines
                })
                .collect()
        })
        .collect();
    let line = {
        let mut l = String::from("+");
        for w in &widths {
            l.push_str(&"-".repeat(w + 2));
            l.push('+');
        }
        l
    };
    outln(&line);
    let mut h = String::from("|");
    for (i, name) in header.iter().enumerate() {
        let gap = widths[i] - width(name);
        let left = gap / 2;
        h.push(' ');
        h.push_str(&" ".repeat(left));
        h.push_str(name);
        h.push_str(&" ".repeat(gap - left));
        h.push_str(" |");
    }
    outln(&h);
    outln(&line);
    for row in &rows {
        let height = row.iter().map(Vec::len).max().unwrap_or(1);
        for x in 0..height {
            let mut r = String::from("|");
            for (i, cell) in row.iter().enumerate() {
                let text = cell.get(x).map(String::as_str).unwrap_or("");
                r.push(' ');
                r.push_str(&" ".repeat(widths[i] - width(text)));
                r.push_str(text);
                r.push_str(" |");
            }
            outln(&r);
        }
    }
    outln(&line);
}
