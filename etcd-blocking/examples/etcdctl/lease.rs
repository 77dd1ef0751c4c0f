//! `lease grant|revoke|timetolive|list|keep-alive`.

use std::time::{Duration, Instant};

use etcd_blocking::proto::etcdserverpb as pb;
use etcd_blocking::rpc::{Method, RetryClass, ServerStreamingRpc};
use etcd_blocking::Error;

use crate::ctx::{
    fail, go_err, outln, Ctx, Format, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR,
};
use crate::gofmt::{go_list, go_parse_int};
use crate::json;
use crate::print::{fields_hdr, protobuf};

/// One keepalive on its own stream: the request, then the half-close, so the server answers
/// once (with the header, which the driver's shared keepalive stream does not hand out).
pub struct KeepAliveOnce(pub i64);

impl ServerStreamingRpc for KeepAliveOnce {
    type Request = pb::LeaseKeepAliveRequest;
    type Message = pb::LeaseKeepAliveResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Lease/LeaseKeepAlive",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<Self::Request, Error> {
        Ok(pb::LeaseKeepAliveRequest { id: self.0 })
    }
}

/// A lease ID argument (hex), as etcdctl's `leaseFromArgs`.
pub fn lease_from_arg(arg: &str) -> i64 {
    go_parse_int(arg, 16, 64).unwrap_or_else(|e| {
        fail(
            EXIT_BAD_ARGS,
            format!("bad lease ID arg ({e}), expecting ID in Hex"),
        )
    })
}

pub fn grant(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(EXIT_BAD_ARGS, "lease grant command needs TTL argument");
    }
    let ttl = go_parse_int(&args[0], 10, 64)
        .unwrap_or_else(|e| fail(EXIT_BAD_ARGS, format!("bad TTL ({e})")));
    let resp = match ctx.call(pb::LeaseGrantRequest { ttl, id: 0 }) {
        Ok(r) => r,
        Err(e) => fail(
            EXIT_ERROR,
            format!("failed to grant lease ({})", go_err(&e)),
        ),
    };
    match ctx.format {
        Format::Simple => outln(format!(
            "lease {:016x} granted with TTL({}s)",
            resp.id, resp.ttl
        )),
        Format::Json => outln(json::lease_grant(&resp)),
        Format::Fields => {
            fields_hdr(&resp.header);
            outln(format!("\"ID\" : {}", resp.id));
            outln(format!("\"TTL\" : {}", resp.ttl));
        }
        // clientv3's wrapper embeds `*pb.ResponseHeader`, whose Marshal etcdctl calls.
        Format::Protobuf => protobuf(&resp.header.unwrap_or_default()),
        f => f.unsupported(),
    }
}

pub fn revoke(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(EXIT_BAD_ARGS, "lease revoke command needs 1 argument");
    }
    let id = lease_from_arg(&args[0]);
    let resp = match ctx.call(pb::LeaseRevokeRequest { id }) {
        Ok(r) => r,
        Err(e) => fail(
            EXIT_ERROR,
            format!("failed to revoke lease ({})", go_err(&e)),
        ),
    };
    match ctx.format {
        Format::Simple => outln(format!("lease {id:016x} revoked")),
        Format::Json => outln(json::lease_revoke(&resp)),
        Format::Fields => fields_hdr(&resp.header),
        Format::Protobuf => {
            // etcdctl hands the clientv3 type to its protobuf printer, which refuses it and
            // shows the value (`%v`: the header's compact text, then the XXX_ fields).
            let h = resp.header.unwrap_or_default();
            let mut text = String::new();
            for (name, v) in [
                ("cluster_id", h.cluster_id),
                ("member_id", h.member_id),
                ("revision", h.revision as u64),
                ("raft_term", h.raft_term),
            ] {
                if v != 0 {
                    text.push_str(&format!("{name}:{v} "));
                }
            }
            fail(
                crate::ctx::EXIT_BAD_FEATURE,
                format!(
                    "marshal unsupported for type clientv3.LeaseRevokeResponse ({{{text} {{}} [] 0}})"
                ),
            )
        }
        f => f.unsupported(),
    }
}

pub fn time_to_live(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(
            EXIT_BAD_ARGS,
            "lease timetolive command needs lease ID as argument",
        );
    }
    let keys = ctx.flags.bool("keys");
    ctx.client();
    let id = lease_from_arg(&args[0]);
    let resp = ctx.must_untimed(pb::LeaseTimeToLiveRequest { id, keys }, EXIT_BAD_CONNECTION);
    match ctx.format {
        Format::Simple => {
            if resp.granted_ttl == 0 && resp.ttl == -1 {
                outln(format!("lease {:016x} already expired", resp.id));
                return;
            }
            let mut txt = format!(
                "lease {:016x} granted with TTL({}s), remaining({}s)",
                resp.id, resp.granted_ttl, resp.ttl
            );
            if keys {
                let ks: Vec<String> = resp
                    .keys
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect();
                txt.push_str(&format!(", attached keys({})", go_list(&ks)));
            }
            outln(txt);
        }
        Format::Json => outln(json::time_to_live(&resp)),
        Format::Fields => {
            fields_hdr(&resp.header);
            outln(format!("\"ID\" : {}", resp.id));
            outln(format!("\"TTL\" : {}", resp.ttl));
            outln(format!("\"GrantedTTL\" : {}", resp.granted_ttl));
            for k in &resp.keys {
                outln(format!("\"Key\" : {}", crate::gofmt::go_quote(k)));
            }
        }
        Format::Protobuf => protobuf(&resp.header.unwrap_or_default()),
        f => f.unsupported(),
    }
}

pub fn list(ctx: &mut Ctx, _args: Vec<String>) {
    let resp = ctx.must_untimed(pb::LeaseLeasesRequest {}, EXIT_BAD_CONNECTION);
    match ctx.format {
        Format::Simple => {
            outln(format!("found {} leases", resp.leases.len()));
            for l in &resp.leases {
                outln(format!("{:016x}", l.id));
            }
        }
        Format::Json => outln(json::leases(&resp)),
        Format::Fields => {
            fields_hdr(&resp.header);
            for l in &resp.leases {
                outln(format!("\"ID\" : {}", l.id));
            }
        }
        Format::Protobuf => protobuf(&resp.header.unwrap_or_default()),
        f => f.unsupported(),
    }
}

/// One renewal, with the server's header.
fn keep_alive_once(ctx: &mut Ctx, id: i64) -> Result<pb::LeaseKeepAliveResponse, Error> {
    let client = ctx.client().clone();
    let mut stream = client.server_stream(KeepAliveOnce(id))?;
    let first = stream.next();
    // The server ends the stream once it has seen the half-close.
    drop(stream);
    match first {
        Some(r) => r,
        None => Err(Error::ClientClosed),
    }
}

fn print_keep_alive(ctx: &Ctx, r: &pb::LeaseKeepAliveResponse) {
    match ctx.format {
        Format::Simple => outln(format!(
            "lease {:016x} keepalived with TTL({})",
            r.id, r.ttl
        )),
        Format::Json => outln(json::keep_alive(r.header.as_ref(), r.id, r.ttl)),
        Format::Fields => {
            fields_hdr(&r.header);
            outln(format!("\"ID\" : {}", r.id));
            outln(format!("\"TTL\" : {}", r.ttl));
        }
        Format::Protobuf => protobuf(&r.header.unwrap_or_default()),
        f => f.unsupported(),
    }
}

pub fn keep_alive(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(
            EXIT_BAD_ARGS,
            "lease keep-alive command needs lease ID as argument",
        );
    }
    let id = lease_from_arg(&args[0]);
    ctx.client();
    if ctx.flags.bool("once") {
        match keep_alive_once(ctx, id) {
            Ok(r) if r.ttl > 0 => print_keep_alive(ctx, &r),
            Ok(_) => fail(
                EXIT_BAD_CONNECTION,
                etcd_blocking::EtcdErrorKind::LeaseNotFound.message(),
            ),
            Err(e) => fail(EXIT_BAD_CONNECTION, go_err(&e)),
        }
        return;
    }
    // As clientv3's KeepAlive: renew at once, then a third of the TTL after each answer
    // (checked every 500 ms); the lease is gone when the server answers TTL <= 0 or its
    // deadline passes without an answer.
    let mut deadline: Option<Instant> = None;
    loop {
        match keep_alive_once(ctx, id) {
            Ok(r) if r.ttl > 0 => {
                print_keep_alive(ctx, &r);
                crate::ctx::flush();
                let now = Instant::now();
                deadline = Some(now + Duration::from_secs(r.ttl as u64));
                let next = now + Duration::from_secs((r.ttl / 3) as u64);
                loop {
                    std::thread::sleep(Duration::from_millis(500));
                    if Instant::now() >= next {
                        break;
                    }
                }
            }
            Ok(_) => break,
            Err(_) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    if ctx.format == Format::Simple {
        outln(format!("lease {id:016x} expired or revoked."));
    }
}
