//! `alarm list|disarm`, `defrag`, `snapshot save` and `move-leader`.

use std::time::Instant;

use etcd_blocking::proto::etcdserverpb as pb;
use etcd_blocking::Endpoint;

use crate::ctx::{
    epoch_now, exit, fail, go_err, outln, zap_str, Ctx, Format, EXIT_BAD_ARGS, EXIT_ERROR,
    EXIT_INTERRUPTED,
};
use crate::gofmt::{go_io_err, go_parse_uint, humanize_bytes};
use crate::json;
use crate::print::{fields_hdr, protobuf};

fn alarm_name(a: i32) -> &'static str {
    match a {
        0 => "NONE",
        1 => "NOSPACE",
        2 => "CORRUPT",
        _ => "UNKNOWN",
    }
}

fn print_alarms(ctx: &Ctx, header: &Option<pb::ResponseHeader>, alarms: &[pb::AlarmMember]) {
    match ctx.format {
        Format::Simple => {
            for a in alarms {
                // gogo-protobuf's compact text form (`%+v` of the message).
                let mut s = String::new();
                if a.member_id != 0 {
                    s.push_str(&format!("memberID:{} ", a.member_id));
                }
                if a.alarm != 0 {
                    s.push_str(&format!("alarm:{} ", alarm_name(a.alarm)));
                }
                outln(s);
            }
        }
        Format::Json => outln(json::alarms(header, alarms)),
        Format::Fields => {
            fields_hdr(header);
            for a in alarms {
                outln(format!("\"MemberID\" : {}", a.member_id));
                outln(format!("\"AlarmType\" : {}", alarm_name(a.alarm)));
                outln("");
            }
        }
        Format::Protobuf => protobuf(&pb::AlarmResponse {
            header: *header,
            alarms: alarms.to_vec(),
        }),
        f => f.unsupported(),
    }
}

pub fn alarm_list(ctx: &mut Ctx, args: Vec<String>) {
    if !args.is_empty() {
        fail(EXIT_BAD_ARGS, "alarm list command accepts no arguments");
    }
    let resp = ctx.must(pb::AlarmRequest::default(), EXIT_ERROR);
    print_alarms(ctx, &resp.header, &resp.alarms);
}

pub fn alarm_disarm(ctx: &mut Ctx, args: Vec<String>) {
    if !args.is_empty() {
        fail(EXIT_BAD_ARGS, "alarm disarm command accepts no arguments");
    }
    // clientv3's AlarmDisarm of member 0 / NONE: list, then disarm each; the result has no
    // header.
    let listed = ctx.must(pb::AlarmRequest::default(), EXIT_ERROR);
    let mut cleared = Vec::new();
    for a in listed.alarms {
        let resp = ctx.must(
            pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Deactivate as i32,
                member_id: a.member_id,
                alarm: a.alarm,
            },
            EXIT_ERROR,
        );
        cleared.extend(resp.alarms);
    }
    print_alarms(ctx, &None, &cleared);
}

pub fn defrag(ctx: &mut Ctx, _args: Vec<String>) {
    if !ctx.flags.str("data-dir").is_empty() {
        eprintln!(
            "Use `etcdutl defrag` instead. The --data-dir is going to be decomissioned in v3.6.\n"
        );
        fail(
            EXIT_ERROR,
            "defragmenting a data directory is not supported here",
        );
    }
    ctx.client();
    let eps = crate::cluster::endpoints_from_cluster(ctx);
    let mut failures = 0;
    for ep in eps {
        match ctx.call_on(&ep, pb::DefragmentRequest {}) {
            Ok(_) => outln(format!("Finished defragmenting etcd member[{ep}]")),
            Err(e) => {
                crate::ctx::flush();
                eprintln!("Failed to defragment etcd member[{ep}] ({})", go_err(&e));
                failures += 1;
            }
        }
    }
    if failures != 0 {
        exit(EXIT_ERROR);
    }
}

/// A zap production `info` line.
fn info(logger: Option<&str>, caller: &str, msg: &str, fields: &[(&str, String)]) {
    let mut line = format!("{{\"level\":\"info\",\"ts\":{}", epoch_now());
    if let Some(l) = logger {
        line.push_str(&format!(",\"logger\":{}", zap_str(l)));
    }
    line.push_str(&format!(
        ",\"caller\":{},\"msg\":{}",
        zap_str(caller),
        zap_str(msg)
    ));
    for (k, v) in fields {
        line.push_str(&format!(",{}:{}", zap_str(k), zap_str(v)));
    }
    line.push('}');
    eprintln!("{line}");
}

/// go-humanize's `Time` for a moment in the past.
fn humanize_since(start: Instant) -> String {
    let secs = start.elapsed().as_secs();
    match secs {
        0 => "now".into(),
        1 => "1 second ago".into(),
        s if s < 60 => format!("{s} seconds ago"),
        s if s < 120 => "1 minute ago".into(),
        s => format!("{} minutes ago", s / 60),
    }
}

pub fn snapshot_save(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(EXIT_BAD_ARGS, "snapshot save expects one argument");
    }
    let path = args[0].clone();
    let eps = ctx.endpoints();
    if eps.len() != 1 {
        fail(
            EXIT_INTERRUPTED,
            format!(
                "snapshot must be requested to one selected node, not multiple {}",
                crate::gofmt::go_list(&eps)
            ),
        );
    }
    let endpoint: Endpoint = match ctx.endpoint_url(&eps[0]).parse() {
        Ok(e) => e,
        Err(e) => fail(EXIT_INTERRUPTED, go_err(&e)),
    };
    let part = format!("{path}.part");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        if let Err(e) = options.open(&part) {
            fail(
                EXIT_INTERRUPTED,
                format!("could not open {part} (open {part}: {})", go_io_err(&e)),
            );
        }
    }
    info(
        None,
        "snapshot/v3_snapshot.go:68",
        "created temporary db file",
        &[("path", part.clone())],
    );
    let start = Instant::now();
    let mut client = ctx.client().clone();
    if ctx.flags.changed("command-timeout") {
        client = client.with_timeout(ctx.command_timeout());
    }
    let result = client.snapshot_save(&endpoint, &path);
    info(
        Some("client"),
        "v3/maintenance.go:211",
        "opened snapshot stream; downloading",
        &[],
    );
    info(
        None,
        "snapshot/v3_snapshot.go:76",
        "fetching snapshot",
        &[("endpoint", eps[0].clone())],
    );
    let saved = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            fail(EXIT_INTERRUPTED, go_err(&e))
        }
    };
    info(
        Some("client"),
        "v3/maintenance.go:219",
        "completed snapshot read; closing",
        &[],
    );
    info(
        None,
        "snapshot/v3_snapshot.go:91",
        "fetched snapshot",
        &[
            ("endpoint", eps[0].clone()),
            ("size", humanize_bytes(saved.size)),
            ("took", humanize_since(start)),
        ],
    );
    info(
        None,
        "snapshot/v3_snapshot.go:100",
        "saved",
        &[("path", path.clone())],
    );
    outln(format!("Snapshot saved at {path}"));
}

pub fn move_leader(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(EXIT_BAD_ARGS, "move-leader command needs 1 argument");
    }
    let target = go_parse_uint(&args[0], 16).unwrap_or_else(|e| fail(EXIT_BAD_ARGS, e));
    let eps = ctx.endpoints();
    let mut leader = None;
    for ep in &eps {
        match ctx.call_on(ep, pb::StatusRequest {}) {
            Ok(r) => {
                let member = r.header.as_ref().map(|h| h.member_id).unwrap_or_default();
                if member == r.leader {
                    leader = Some((ep.clone(), r.leader));
                    break;
                }
            }
            Err(e) => fail(EXIT_ERROR, go_err(&e)),
        }
    }
    let Some((ep, leader_id)) = leader else {
        fail(
            EXIT_BAD_ARGS,
            format!(
                "no leader endpoint given at {}",
                crate::gofmt::go_list(&eps)
            ),
        );
    };
    let resp = match ctx.call_on(&ep, pb::MoveLeaderRequest { target_id: target }) {
        Ok(r) => r,
        Err(e) => fail(EXIT_ERROR, go_err(&e)),
    };
    match ctx.format {
        Format::Simple => outln(format!(
            "Leadership transferred from {leader_id:x} to {target:x}"
        )),
        Format::Json => outln(json::header_only(&resp.header)),
        Format::Protobuf => protobuf(&resp),
        f => f.unsupported(),
    }
}
