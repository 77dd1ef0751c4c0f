//! `member add|list|promote|remove|update` and `endpoint health|status|hashkv`.

use std::sync::mpsc;
use std::time::Instant;

use etcd_blocking::proto::etcdserverpb as pb;
use etcd_blocking::{Client, Error, EtcdErrorKind};

use crate::ctx::{
    epoch_now, exit, fail, fake_pointer, go_err, outln, zap_str, Ctx, Format, EXIT_BAD_ARGS,
    EXIT_ERROR,
};
use crate::gofmt::{go_parse_uint, go_quote_str, humanize_bytes};
use crate::json;
use crate::print::{fields_hdr, protobuf, table};

/// Go's `types.NewURLs` checks, with its messages.
fn check_urls(urls: &[String]) -> Result<(), String> {
    if urls.is_empty() {
        return Err("no valid URLs given".into());
    }
    for u in urls {
        let u = u.trim();
        let (scheme, rest) = match u.split_once("://") {
            Some((s, r)) => (s, r),
            None => match u.split_once(':') {
                Some((s, r)) if !s.is_empty() && !s.contains('/') => (s, r),
                _ => ("", u),
            },
        };
        if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {u}"
            ));
        }
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let port_ok = match host.rsplit_once(':') {
            Some((h, _)) => !h.is_empty() || host.starts_with(':'),
            None => false,
        };
        if !port_ok {
            return Err(format!(
                "URL address does not have the form \"host:port\": {u}"
            ));
        }
        if !path.is_empty() {
            return Err(format!("URL must not contain a path: {u}"));
        }
    }
    Ok(())
}

fn member_id_arg(args: &[String]) -> u64 {
    if args.len() != 1 {
        fail(EXIT_BAD_ARGS, "member ID is not provided");
    }
    go_parse_uint(&args[0], 16).unwrap_or_else(|e| {
        fail(
            EXIT_BAD_ARGS,
            format!("bad member ID arg ({e}), expecting ID in Hex"),
        )
    })
}

fn peer_urls(ctx: &Ctx) -> (String, Vec<String>) {
    let s = ctx.flags.str("peer-urls");
    if s.is_empty() {
        fail(EXIT_BAD_ARGS, "member peer urls not provided");
    }
    let urls = s.split(',').map(str::to_string).collect();
    (s, urls)
}

fn cluster_id(h: &Option<pb::ResponseHeader>) -> u64 {
    h.as_ref().map(|h| h.cluster_id).unwrap_or_default()
}

pub fn member_add(ctx: &mut Ctx, args: Vec<String>) {
    if args.is_empty() {
        fail(EXIT_BAD_ARGS, "member name not provided");
    }
    if args.len() > 1 {
        let mut ev = String::from("too many arguments");
        for s in &args {
            if s.to_lowercase().starts_with("http") {
                ev.push_str(&format!(", did you mean --peer-urls={s}"));
            }
        }
        fail(EXIT_BAD_ARGS, ev);
    }
    let name = args[0].clone();
    let (given, urls) = peer_urls(ctx);
    ctx.client();
    if let Err(e) = check_urls(&urls) {
        fail(EXIT_ERROR, e);
    }
    let learner = ctx.flags.bool("learner");
    let resp = ctx.must(
        pb::MemberAddRequest {
            peer_ur_ls: urls,
            is_learner: learner,
        },
        EXIT_ERROR,
    );
    let new = resp.member.clone().unwrap_or_default();
    match ctx.format {
        Format::Simple => {
            outln(format!(
                "Member {:16x} added to cluster {:16x}",
                new.id,
                cluster_id(&resp.header)
            ));
            let mut conf = Vec::new();
            for m in &resp.members {
                for u in &m.peer_ur_ls {
                    let n = if m.id == new.id { &name } else { &m.name };
                    conf.push(format!("{n}={u}"));
                }
            }
            outln("");
            outln(format!("ETCD_NAME={}", go_quote_str(&name)));
            outln(format!(
                "ETCD_INITIAL_CLUSTER={}",
                go_quote_str(&conf.join(","))
            ));
            outln(format!(
                "ETCD_INITIAL_ADVERTISE_PEER_URLS={}",
                go_quote_str(&given)
            ));
            outln("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
        }
        Format::Json => outln(json::members(
            &resp.header,
            resp.member.as_ref(),
            &resp.members,
        )),
        Format::Protobuf => protobuf(&resp),
        f => f.unsupported(),
    }
}

fn print_members_changed(
    ctx: &Ctx,
    verb: &str,
    id: u64,
    header: &Option<pb::ResponseHeader>,
    members: &[pb::Member],
    pb_msg: &dyn Fn(),
) {
    match ctx.format {
        Format::Simple => outln(format!(
            "Member {id:16x} {verb} cluster {:16x}",
            cluster_id(header)
        )),
        Format::Json => outln(json::members(header, None, members)),
        Format::Protobuf => pb_msg(),
        f => f.unsupported(),
    }
}

pub fn member_remove(ctx: &mut Ctx, args: Vec<String>) {
    let id = member_id_arg(&args);
    let resp = ctx.must(pb::MemberRemoveRequest { id }, EXIT_ERROR);
    print_members_changed(
        ctx,
        "removed from",
        id,
        &resp.header,
        &resp.members,
        &|| protobuf(&resp),
    );
}

pub fn member_update(ctx: &mut Ctx, args: Vec<String>) {
    let id = member_id_arg(&args);
    let (_, urls) = peer_urls(ctx);
    ctx.client();
    if let Err(e) = check_urls(&urls) {
        fail(EXIT_ERROR, e);
    }
    let resp = ctx.must(
        pb::MemberUpdateRequest {
            id,
            peer_ur_ls: urls,
        },
        EXIT_ERROR,
    );
    print_members_changed(ctx, "updated in", id, &resp.header, &resp.members, &|| {
        protobuf(&resp)
    });
}

pub fn member_promote(ctx: &mut Ctx, args: Vec<String>) {
    let id = member_id_arg(&args);
    let resp = ctx.must(pb::MemberPromoteRequest { id }, EXIT_ERROR);
    print_members_changed(ctx, "promoted in", id, &resp.header, &resp.members, &|| {
        protobuf(&resp)
    });
}

fn member_rows(r: &pb::MemberListResponse) -> Vec<Vec<String>> {
    r.members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                }
                .to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

pub fn member_list(ctx: &mut Ctx, _args: Vec<String>) {
    let resp = ctx.must(pb::MemberListRequest { linearizable: true }, EXIT_ERROR);
    match ctx.format {
        Format::Simple => {
            for row in member_rows(&resp) {
                outln(row.join(", "));
            }
        }
        Format::Json if ctx.hex => outln(json::member_list_hex(&resp)),
        Format::Json => outln(json::members(&resp.header, None, &resp.members)),
        Format::Fields => {
            fields_hdr(&resp.header);
            for m in &resp.members {
                outln(format!("\"ID\" : {}", m.id));
                outln(format!("\"Name\" : {}", go_quote_str(&m.name)));
                for u in &m.peer_ur_ls {
                    outln(format!("\"PeerURL\" : {}", go_quote_str(u)));
                }
                for u in &m.client_ur_ls {
                    outln(format!("\"ClientURL\" : {}", go_quote_str(u)));
                }
                outln(format!("\"IsLearner\" : {}", m.is_learner));
                outln("");
            }
        }
        Format::Table => table(
            &[
                "ID",
                "Status",
                "Name",
                "Peer Addrs",
                "Client Addrs",
                "Is Learner",
            ],
            &member_rows(&resp),
        ),
        Format::Protobuf => protobuf(&resp),
    }
}

/// The endpoints a per-member command visits (etcdctl's `endpointsFromCluster`): the
/// `--endpoints`, or with `--cluster` the client URLs of every member.
pub fn endpoints_from_cluster(ctx: &mut Ctx) -> Vec<String> {
    let eps = ctx.endpoints();
    if !ctx.flags.bool("cluster") {
        return eps;
    }
    // The member list needs no authentication: a client without credentials.
    let mut config = ctx.client_config();
    config.credentials = None;
    let client = Client::with_config(config).unwrap_or_else(|e| fail(EXIT_ERROR, go_err(&e)));
    let resp = client
        .with_timeout(ctx.command_timeout())
        .call(pb::MemberListRequest { linearizable: true });
    match resp {
        Ok(r) => r
            .members
            .iter()
            .flat_map(|m| m.client_ur_ls.iter().cloned())
            .collect(),
        Err(e) => {
            ctx.log_failed_call(&e);
            fail(
                EXIT_ERROR,
                format!(
                    "failed to fetch endpoints from etcd cluster member list: {}",
                    go_err(&e)
                ),
            )
        }
    }
}

pub fn endpoint_status(ctx: &mut Ctx, _args: Vec<String>) {
    ctx.client();
    let eps = endpoints_from_cluster(ctx);
    let mut list = Vec::new();
    let mut failed = false;
    for ep in eps {
        match ctx.call_on(&ep, pb::StatusRequest {}) {
            Ok(r) => list.push((ep, r)),
            Err(e) => {
                failed = true;
                crate::ctx::flush();
                eprintln!("Failed to get the status of endpoint {ep} ({})", go_err(&e));
            }
        }
    }
    let row = |ep: &str, r: &pb::StatusResponse| {
        let member_id = r.header.as_ref().map(|h| h.member_id).unwrap_or_default();
        vec![
            ep.to_string(),
            format!("{member_id:x}"),
            r.version.clone(),
            humanize_bytes(r.db_size as u64),
            (r.leader == member_id).to_string(),
            r.is_learner.to_string(),
            r.raft_term.to_string(),
            r.raft_index.to_string(),
            r.raft_applied_index.to_string(),
            r.errors.join(", "),
        ]
    };
    match ctx.format {
        Format::Simple => {
            for (ep, r) in &list {
                outln(row(ep, r).join(", "));
            }
        }
        Format::Json => {
            let items: Vec<String> = list
                .iter()
                .map(|(ep, r)| {
                    json::Obj::new()
                        .string("Endpoint", ep, false)
                        .raw("Status", &json::status(r))
                        .end()
                })
                .collect();
            outln(format!("[{}]", items.join(",")));
        }
        Format::Fields => {
            for (ep, r) in &list {
                fields_hdr(&r.header);
                outln(format!("\"Version\" : {}", go_quote_str(&r.version)));
                outln(format!("\"DBSize\" : {}", r.db_size));
                outln(format!("\"Leader\" : {}", r.leader));
                outln(format!("\"IsLearner\" : {}", r.is_learner));
                outln(format!("\"RaftIndex\" : {}", r.raft_index));
                outln(format!("\"RaftTerm\" : {}", r.raft_term));
                outln(format!("\"RaftAppliedIndex\" : {}", r.raft_applied_index));
                outln(format!("\"Errors\" : {}", crate::gofmt::go_list(&r.errors)));
                outln(format!("\"Endpoint\" : {}", go_quote_str(ep)));
                outln("");
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = list.iter().map(|(ep, r)| row(ep, r)).collect();
            table(
                &[
                    "endpoint",
                    "ID",
                    "version",
                    "db size",
                    "is leader",
                    "is learner",
                    "raft term",
                    "raft index",
                    "raft applied index",
                    "errors",
                ],
                &rows,
            );
        }
        f => f.unsupported(),
    }
    if failed {
        exit(EXIT_ERROR);
    }
}

pub fn endpoint_hashkv(ctx: &mut Ctx, _args: Vec<String>) {
    ctx.client();
    let rev = ctx.flags.int("rev");
    let eps = endpoints_from_cluster(ctx);
    let mut list = Vec::new();
    let mut last_err = None;
    for ep in eps {
        match ctx.call_on(&ep, pb::HashKvRequest { revision: rev }) {
            Ok(r) => list.push((ep, r)),
            Err(e) => {
                crate::ctx::flush();
                eprintln!("Failed to get the hash of endpoint {ep} ({})", go_err(&e));
                last_err = Some(e);
            }
        }
    }
    match ctx.format {
        Format::Simple => {
            for (ep, r) in &list {
                outln(format!("{ep}, {}", r.hash));
            }
        }
        Format::Json => {
            let items: Vec<String> = list
                .iter()
                .map(|(ep, r)| {
                    json::Obj::new()
                        .string("Endpoint", ep, false)
                        .raw("HashKV", &json::hash_kv(r))
                        .end()
                })
                .collect();
            outln(format!("[{}]", items.join(",")));
        }
        Format::Fields => {
            for (ep, r) in &list {
                fields_hdr(&r.header);
                outln(format!("\"Endpoint\" : {}", go_quote_str(ep)));
                outln(format!("\"Hash\" : {}", r.hash));
                outln("");
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|(ep, r)| vec![ep.clone(), r.hash.to_string()])
                .collect();
            table(&["endpoint", "hash"], &rows);
        }
        f => f.unsupported(),
    }
    if let Some(e) = last_err {
        fail(EXIT_ERROR, go_err(&e));
    }
}

struct Health {
    ep: String,
    health: bool,
    took: String,
    error: String,
}

/// The warn line of the per-endpoint health clients (zap production logger named `client`).
fn log_health_failure(ep: &str, e: &Error) {
    let authority = ep.split_once("://").map(|(_, a)| a).unwrap_or(ep);
    let Some(err) = crate::ctx::grpc_error_text(e, authority) else {
        return;
    };
    eprintln!(
        "{{\"level\":\"warn\",\"ts\":{},\"logger\":\"client\",\"caller\":\"v3/retry_interceptor.go:62\",\"msg\":\"retrying of unary invoker failed\",\"target\":{},\"attempt\":0,\"error\":{}}}",
        epoch_now(),
        zap_str(&format!("etcd-endpoints://{}/{authority}", fake_pointer())),
        zap_str(&err)
    );
}

pub fn endpoint_health(ctx: &mut Ctx, _args: Vec<String>) {
    let client = ctx.client().clone();
    let timeout = ctx.command_timeout();
    let eps = endpoints_from_cluster(ctx);
    let (tx, rx) = mpsc::channel();
    for ep in &eps {
        let url = ctx.endpoint_url(ep);
        let ep = ep.clone();
        let client = client.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let c = match client.on_endpoint(&url) {
                Ok(c) => c.with_timeout(timeout),
                Err(e) => {
                    let _ = tx.send(Health {
                        ep,
                        health: false,
                        took: String::new(),
                        error: go_err(&e),
                    });
                    return;
                }
            };
            let start = Instant::now();
            let got = c.call(pb::RangeRequest {
                key: "health".into(),
                ..Default::default()
            });
            let mut h = Health {
                ep: ep.clone(),
                health: false,
                took: crate::ctx::took(start.elapsed()),
                error: String::new(),
            };
            match got {
                Ok(_) => h.health = true,
                Err(e) if e.etcd_kind() == Some(EtcdErrorKind::PermissionDenied) => {
                    log_health_failure(&ep, &e);
                    h.health = true;
                }
                Err(e) => {
                    log_health_failure(&ep, &e);
                    h.error = go_err(&e);
                }
            }
            if h.health {
                match c.call(pb::AlarmRequest::default()) {
                    Ok(r) if !r.alarms.is_empty() => {
                        h.health = false;
                        h.error = "Active Alarm(s): ".into();
                        for a in &r.alarms {
                            h.error.push_str(match a.alarm {
                                1 => "NOSPACE ",
                                2 => "CORRUPT ",
                                _ => "UNKNOWN ",
                            });
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log_health_failure(&ep, &e);
                        h.health = false;
                        h.error = "Unable to fetch the alarm list".into();
                    }
                }
            }
            let _ = tx.send(h);
        });
    }
    drop(tx);
    let list: Vec<Health> = rx.iter().collect();
    let errs = list.iter().any(|h| !h.error.is_empty());
    match ctx.format {
        Format::Simple => {
            for h in &list {
                if h.error.is_empty() {
                    outln(format!(
                        "{} is healthy: successfully committed proposal: took = {}",
                        h.ep, h.took
                    ));
                } else {
                    crate::ctx::flush();
                    eprintln!(
                        "{} is unhealthy: failed to commit proposal: {}",
                        h.ep, h.error
                    );
                }
            }
        }
        Format::Json => {
            let items: Vec<String> = list
                .iter()
                .map(|h| {
                    json::Obj::new()
                        .string("endpoint", &h.ep, false)
                        .boolean("health", h.health, false)
                        .string("took", &h.took, false)
                        .string("error", &h.error, true)
                        .end()
                })
                .collect();
            outln(format!("[{}]", items.join(",")));
        }
        Format::Fields => {
            for h in &list {
                outln(format!("\"Endpoint\" : {}", go_quote_str(&h.ep)));
                outln(format!("\"Health\" : {}", h.health));
                outln(format!("\"Took\" : {}", h.took));
                outln(format!("\"Error\" : {}", h.error));
                outln("");
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|h| {
                    vec![
                        h.ep.clone(),
                        h.health.to_string(),
                        h.took.clone(),
                        h.error.clone(),
                    ]
                })
                .collect();
            table(&["endpoint", "health", "took", "error"], &rows);
        }
        f => f.unsupported(),
    }
    if errs {
        fail(EXIT_ERROR, "unhealthy cluster");
    }
}
